// Shared by the int8-activation GEMV kernels (q4a_gemv.c, table4_gemv.c): the quantized activation
// record, the fixed 16-lane reduction tree, and the ISA target attributes of the SIMD paths.
#ifndef I2Q_Q8_H
#define I2Q_Q8_H

#pragma STDC FP_CONTRACT OFF

#include "CI2QKernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define I2Q_X86 1
#endif

typedef struct {
    int8_t lo[64];
    int8_t hi[64];
    int32_t xsum[16];
    float d[16];
} q8chunk;  // 256 bytes

_Static_assert(sizeof(q8chunk) == 256, "q8chunk layout");

/// The fixed reduction tree of the 16 lanes (the vector path does the same adds).
static inline float reduce16(const float a[16]) {
    float b[8], c[4], d[2];
    for (int i = 0; i < 8; i++) b[i] = a[i] + a[i + 8];
    for (int i = 0; i < 4; i++) c[i] = b[i] + b[i + 4];
    for (int i = 0; i < 2; i++) d[i] = c[i] + c[i + 2];
    return d[0] + d[1];
}

#if I2Q_X86
#define I2Q_VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")))

I2Q_VNNI_TARGET
static inline float reduce16_avx512(__m512 a) {
    const __m256 b = _mm256_add_ps(_mm512_castps512_ps256(a),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
    const __m128 c = _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));
    const __m128 d = _mm_add_ps(c, _mm_movehl_ps(c, c));                 // d0 = c0+c2, d1 = c1+c3
    return _mm_cvtss_f32(_mm_add_ss(d, _mm_movehdup_ps(d)));             // d0 + d1
}

#define I2Q_AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

I2Q_AVX2_TARGET
static inline float reduce16_avx2(__m256 a0, __m256 a1) {
    const __m256 b = _mm256_add_ps(a0, a1);                                // (L, L+8)
    const __m128 c = _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));  // (L, L+4)
    const __m128 d = _mm_add_ps(c, _mm_movehl_ps(c, c));                   // (L, L+2)
    return _mm_cvtss_f32(_mm_add_ss(d, _mm_movehdup_ps(d)));               // (L, L+1)
}
#endif

#endif
