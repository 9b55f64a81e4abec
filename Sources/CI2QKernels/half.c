// Bulk half-precision conversions for cast and f16 weights: f32 → f16, bf16 → f16 (widened exactly,
// then rounded), f16 → f32. Reference: IEEE 754 round-to-nearest-even, i.e. torch's `.to(float16)`
// for finite values and infinities, and Swift's `Float16(x)` (cast's NaN patterns are decided by
// FloatConversion's scalar pass, not here). F16C (`vcvtps2ph` / `vcvtph2ps`) when the CPU has it,
// else the portable converters of half.h — bit-identical (HalfConversionTests).

#include "q8.h"
#include "half.h"

#if I2Q_X86
__attribute__((target("avx2,fma,f16c")))
static void f32_to_f16_f16c(const float *s, uint16_t *d, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(d + i), _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) d[i] = (uint16_t)_cvtss_sh(s[i], _MM_FROUND_TO_NEAREST_INT);
}

__attribute__((target("avx2,fma,f16c")))
static void bf16_to_f16_f16c(const uint16_t *s, uint16_t *d, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + i))), 16));
        _mm_storeu_si128((__m128i *)(d + i), _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
    }
    for (; i < n; i++) {
        uint32_t b = (uint32_t)s[i] << 16;
        float f;
        memcpy(&f, &b, 4);
        d[i] = (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
    }
}

__attribute__((target("avx2,fma,f16c")))
static void f16_to_f32_f16c(const uint16_t *s, float *d, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    for (; i < n; i++) d[i] = _cvtsh_ss(s[i]);
}
#endif

static int use_f16c(int impl) {
    int c = i2q_q4a_impl(impl);
    return c == I2Q_IMPL_AVX2 || c == I2Q_IMPL_VNNI;
}

void i2q_f32_to_f16(const float *s, uint16_t *d, int64_t n, int impl) {
#if I2Q_X86
    if (use_f16c(impl)) { f32_to_f16_f16c(s, d, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) d[i] = i2q_float_to_half(s[i]);
}

void i2q_bf16_to_f16(const uint16_t *s, uint16_t *d, int64_t n, int impl) {
#if I2Q_X86
    if (use_f16c(impl)) { bf16_to_f16_f16c(s, d, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) {
        uint32_t b = (uint32_t)s[i] << 16;
        float f;
        memcpy(&f, &b, 4);
        d[i] = i2q_float_to_half(f);
    }
}

void i2q_f16_to_f32(const uint16_t *s, float *d, int64_t n, int impl) {
#if I2Q_X86
    if (use_f16c(impl)) { f16_to_f32_f16c(s, d, n); return; }
#endif
    for (int64_t i = 0; i < n; i++) d[i] = i2q_half_to_float(s[i]);
}
