#ifndef CI2QFAULT_H
#define CI2QFAULT_H
#include <stddef.h>

/// Memory-mapped inputs and what to do when one of them faults (SIGBUS: the file shrank or its disk
/// failed after it was mapped). The handler names the file, runs `cleanup` (removing partial
/// outputs), and exits with status 1 — a clear error instead of a signal death.
typedef void (*i2q_fault_cleanup)(void);

/// Records that [base, base+length) maps `path` (copied; up to 1023 bytes kept).
void i2q_fault_register(const void *base, size_t length, const char *path);
/// Forgets the mapping that starts at `base`.
void i2q_fault_unregister(const void *base);
/// Installs the SIGBUS handler (once per process; a later call only replaces `cleanup`).
void i2q_fault_install(i2q_fault_cleanup cleanup);

#endif
