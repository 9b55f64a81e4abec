// Build facts and the start-up CPU check. This file is compiled for the baseline of the platform
// (no -march), so it runs on any x86-64 CPU even when the Swift code was compiled for a newer one.
#include "CI2QBuildInfo.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef I2Q_GIT_COMMIT
#define I2Q_GIT_COMMIT "unknown"
#endif
#ifndef I2Q_BUILD_DATE
#define I2Q_BUILD_DATE __DATE__
#endif
#ifndef I2Q_SWIFT_TARGET_CPU
#define I2Q_SWIFT_TARGET_CPU "unknown"
#endif

const char *i2q_build_commit(void) { return I2Q_GIT_COMMIT; }
const char *i2q_build_date(void) { return I2Q_BUILD_DATE; }
const char *i2q_build_target_cpu(void) { return I2Q_SWIFT_TARGET_CPU; }

#if defined(__x86_64__) || defined(__i386__)
// A binary whose Swift code was compiled for AVX2 (`haswell`, the default) dies with SIGILL on an
// older CPU at the first vector instruction, somewhere. Say why before main instead, and how to
// build one that runs there.
__attribute__((constructor)) static void i2q_check_cpu(void) {
    const char *t = I2Q_SWIFT_TARGET_CPU;
    int needs_avx2 = strcmp(t, "haswell") == 0 || strcmp(t, "core-avx2") == 0 || strcmp(t, "znver3") == 0 ||
                     strcmp(t, "broadwell") == 0 || strcmp(t, "skylake") == 0 || strcmp(t, "znver2") == 0;
    int needs_avx512 = strcmp(t, "skylake-avx512") == 0 || strcmp(t, "cascadelake") == 0 ||
                       strcmp(t, "cooperlake") == 0 || strcmp(t, "icelake-server") == 0 ||
                       strcmp(t, "sapphirerapids") == 0 || strcmp(t, "znver4") == 0;
    __builtin_cpu_init();
    int ok = 1;
    if (needs_avx2 || needs_avx512)
        ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
             __builtin_cpu_supports("bmi2");
    if (needs_avx512)
        ok = ok && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl");
    if (!ok) {
        fprintf(stderr,
                "i2q: this binary was built for %s CPUs (%s), which this CPU is not; rebuild it here with "
                "`make install I2Q_TARGET_CPU=x86-64` (portable) or `I2Q_TARGET_CPU=native`\n",
                t, needs_avx512 ? "AVX-512" : "AVX2 + FMA + F16C + BMI2");
        exit(1);
    }
}
#endif
