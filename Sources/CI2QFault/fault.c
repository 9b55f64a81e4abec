// SIGBUS on memory-mapped inputs. Everything the handler touches is async-signal-safe: a fixed table
// of mappings (slots claimed with atomics), write(2), the cleanup callback, _exit(2).
#define _GNU_SOURCE
#include "CI2QFault.h"
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#define SLOTS 4096
#define PATH_MAX_KEPT 1024

static struct {
    _Atomic(const char *) base;  // NULL: free
    size_t length;
    char path[PATH_MAX_KEPT];
} slots[SLOTS];

static _Atomic(i2q_fault_cleanup) cleanup_fn;
static atomic_int installed;

void i2q_fault_register(const void *base, size_t length, const char *path) {
    if (!base || !length) return;
    for (int i = 0; i < SLOTS; i++) {
        const char *expected = NULL;
        // Claim with a sentinel first so the handler never sees a half-written slot.
        if (atomic_compare_exchange_strong(&slots[i].base, &expected, (const char *)1)) {
            slots[i].length = length;
            strncpy(slots[i].path, path, PATH_MAX_KEPT - 1);
            slots[i].path[PATH_MAX_KEPT - 1] = 0;
            atomic_store(&slots[i].base, (const char *)base);
            return;
        }
    }
    // Table full: the fault is still caught, only without the file's name.
}

void i2q_fault_unregister(const void *base) {
    for (int i = 0; i < SLOTS; i++) {
        if (atomic_load(&slots[i].base) == (const char *)base) {
            atomic_store(&slots[i].base, NULL);
            return;
        }
    }
}

static void say(const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(2, s, n);
        if (w <= 0) return;
        s += w; n -= (size_t)w;
    }
}

static void on_sigbus(int sig, siginfo_t *info, void *ctx) {
    (void)sig; (void)ctx;
    const char *addr = info ? (const char *)info->si_addr : NULL;
    const char *path = NULL;
    for (int i = 0; i < SLOTS && addr; i++) {
        const char *b = atomic_load(&slots[i].base);
        if (b && b != (const char *)1 && addr >= b && addr < b + slots[i].length) { path = slots[i].path; break; }
    }
    say("\nerror: ");
    if (path) { say(path); say(" shrank or became unreadable while it was being read"); }
    else say("a memory-mapped input shrank or became unreadable while it was being read");
    say(" (SIGBUS). Input files must not be modified during a run; the partial output was removed. Run again once the file is complete.\n");
    i2q_fault_cleanup f = atomic_load(&cleanup_fn);
    if (f) f();
    _exit(1);
}

void i2q_fault_install(i2q_fault_cleanup cleanup) {
    atomic_store(&cleanup_fn, cleanup);
    int expected = 0;
    if (!atomic_compare_exchange_strong(&installed, &expected, 1)) return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
}
