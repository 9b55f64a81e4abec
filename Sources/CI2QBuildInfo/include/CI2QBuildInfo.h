#ifndef CI2QBUILDINFO_H
#define CI2QBUILDINFO_H

/// What this binary is: the git commit and date it was built from (set by `make`; "unknown" and the
/// compiler's date otherwise) and the CPU its Swift code was compiled for (Package.swift's
/// I2Q_TARGET_CPU). The C kernels choose their instruction set at run time whatever this says.
const char *i2q_build_commit(void);
const char *i2q_build_date(void);
const char *i2q_build_target_cpu(void);

#endif
