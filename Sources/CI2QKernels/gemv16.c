// Float weights (f32, or bf16 / f16 widened exactly to f32) × float32 activations: the decode
// (m = 1) GEMV of unquantized layers, y[r] (+)= Σ_c W[r,c] · x[c].
//
// Reference: torch `F.linear` with m = 1 in float32 (`Matmul.linear`); the sum is taken in a fixed
// order, so the result differs from a BLAS's by float32 rounding only (≤ ~k·2⁻²⁴ relative to Σ|w·x|).
// Order (identical in every implementation, so all are bit-identical): 16 lanes; lane L accumulates
// acc_L = fma(w[16v + L], x[16v + L], acc_L) for v = 0 … k/16 − 1; the lanes are added as a tree
// (L, L+8), (L, L+4), (L, L+2), (L, L+1); the k % 16 tail inputs are added after it in order, each
// as s = s + w·x (multiply, then add: no FMA). bf16 → f32 is a 16-bit shift and f16 → f32 is
// exact (F16C `vcvtph2ps` or the portable decoder), so the widened weights are the same everywhere.
// Implementations chosen at run time (i2q_q4a_impl's choice and I2Q_CPU cap): AVX-512 F, AVX2+FMA+F16C,
// portable scalar (fmaf). Tests: GemvKernelTests (every path the CPU has = scalar, bit for bit).

#pragma STDC FP_CONTRACT OFF

#include "q8.h"
#include "half.h"
#include <math.h>

static inline float widen(const void *w, int dtype, int64_t i) {
    switch (dtype) {
    case I2Q_W_BF16: { uint32_t b = (uint32_t)((const uint16_t *)w)[i] << 16; float f; memcpy(&f, &b, 4); return f; }
    case I2Q_W_F16: return i2q_half_to_float(((const uint16_t *)w)[i]);
    default: return ((const float *)w)[i];
    }
}

static float tail(const void *w, int dtype, const float *x, int64_t from, int64_t k, float s) {
    for (int64_t c = from; c < k; c++) { float p = widen(w, dtype, c) * x[c]; s = s + p; }
    return s;
}

static float row_scalar(const void *w, int dtype, const float *x, int64_t k) {
    float acc[16] = {0};
    int64_t vk = k / 16;
    for (int64_t v = 0; v < vk; v++)
        for (int L = 0; L < 16; L++) acc[L] = fmaf(widen(w, dtype, 16 * v + L), x[16 * v + L], acc[L]);
    for (int step = 8; step >= 1; step /= 2)
        for (int L = 0; L < step; L++) acc[L] = acc[L] + acc[L + step];
    return tail(w, dtype, x, vk * 16, k, acc[0]);
}

#if I2Q_X86
__attribute__((target("avx2,fma,f16c")))
static inline __m256 load8_avx2(const void *w, int dtype, int64_t i) {
    switch (dtype) {
    case I2Q_W_BF16: return _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i))), 16));
    case I2Q_W_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
    default: return _mm256_loadu_ps((const float *)w + i);
    }
}

__attribute__((target("avx2,fma,f16c")))
static float row_avx2(const void *w, int dtype, const float *x, int64_t k) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();  // lanes 0-7, 8-15
    int64_t vk = k / 16;
    for (int64_t v = 0; v < vk; v++) {
        a0 = _mm256_fmadd_ps(load8_avx2(w, dtype, 16 * v), _mm256_loadu_ps(x + 16 * v), a0);
        a1 = _mm256_fmadd_ps(load8_avx2(w, dtype, 16 * v + 8), _mm256_loadu_ps(x + 16 * v + 8), a1);
    }
    __m256 t8 = _mm256_add_ps(a0, a1);                                                  // (L, L+8)
    __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));  // (L, L+4)
    __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));                                 // (L, L+2)
    __m128 t1 = _mm_add_ss(t2, _mm_shuffle_ps(t2, t2, 1));                             // (L, L+1)
    return tail(w, dtype, x, vk * 16, k, _mm_cvtss_f32(t1));
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
static inline __m512 load16_avx512(const void *w, int dtype, int64_t i) {
    switch (dtype) {
    case I2Q_W_BF16: return _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i))), 16));
    case I2Q_W_F16: return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)w + i)));
    default: return _mm512_loadu_ps((const float *)w + i);
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
static float row_avx512(const void *w, int dtype, const float *x, int64_t k) {
    __m512 a = _mm512_setzero_ps();
    int64_t vk = k / 16;
    for (int64_t v = 0; v < vk; v++) a = _mm512_fmadd_ps(load16_avx512(w, dtype, 16 * v), _mm512_loadu_ps(x + 16 * v), a);
    __m256 t8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
    __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
    __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
    __m128 t1 = _mm_add_ss(t2, _mm_shuffle_ps(t2, t2, 1));
    return tail(w, dtype, x, vk * 16, k, _mm_cvtss_f32(t1));
}
#endif

void i2q_gemv(const void *w, int dtype, const float *x, float *y, int64_t k, int64_t r0, int64_t r1,
              int accumulate, int impl) {
    i2q_gemv_ld(w, dtype, k, x, y, k, r0, r1, accumulate, impl);
}

void i2q_gemv_ld(const void *w, int dtype, int64_t ldw, const float *x, float *y, int64_t k, int64_t r0, int64_t r1,
                 int accumulate, int impl) {
    size_t esize = dtype == I2Q_W_F32 ? 4 : 2;
    int chosen = i2q_q4a_impl(impl);
    for (int64_t r = r0; r < r1; r++) {
        const void *wr = (const char *)w + (size_t)r * (size_t)ldw * esize;
        float v;
        switch (chosen) {
#if I2Q_X86
        case I2Q_IMPL_VNNI: v = row_avx512(wr, dtype, x, k); break;
        case I2Q_IMPL_AVX2: v = row_avx2(wr, dtype, x, k); break;
#endif
        default: v = row_scalar(wr, dtype, x, k); break;
        }
        y[r] = accumulate ? y[r] + v : v;
    }
}

// Decode attention's Σ_j p_j · v_j: out[c] = Σ_{j<n} p[j] · v[j·ldv + c] for c < d, each element
// summed in order j = 0, 1, … as out = out + p·v (multiply, then add; no FMA). Every output element
// is its own sum, so the vector paths (which work across c) give the scalar path's bits exactly.
static void wsum_scalar(const float *p, const float *v, int64_t ldv, int64_t n, int64_t d, float *out) {
    for (int64_t c = 0; c < d; c++) out[c] = 0;
    for (int64_t j = 0; j < n; j++) {
        const float *vj = v + j * ldv;
        float pj = p[j];
        for (int64_t c = 0; c < d; c++) { float t = pj * vj[c]; out[c] = out[c] + t; }
    }
}

#if I2Q_X86
__attribute__((target("avx2,fma,f16c")))
static void wsum_avx2(const float *p, const float *v, int64_t ldv, int64_t n, int64_t d, float *out) {
    int64_t c = 0;
    for (; c + 32 <= d; c += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t j = 0; j < n; j++) {
            const float *vj = v + j * ldv + c;
            __m256 pj = _mm256_set1_ps(p[j]);
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(pj, _mm256_loadu_ps(vj)));
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(pj, _mm256_loadu_ps(vj + 8)));
            a2 = _mm256_add_ps(a2, _mm256_mul_ps(pj, _mm256_loadu_ps(vj + 16)));
            a3 = _mm256_add_ps(a3, _mm256_mul_ps(pj, _mm256_loadu_ps(vj + 24)));
        }
        _mm256_storeu_ps(out + c, a0); _mm256_storeu_ps(out + c + 8, a1);
        _mm256_storeu_ps(out + c + 16, a2); _mm256_storeu_ps(out + c + 24, a3);
    }
    if (c < d) wsum_scalar(p, v + c, ldv, n, d - c, out + c);
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
static void wsum_avx512(const float *p, const float *v, int64_t ldv, int64_t n, int64_t d, float *out) {
    int64_t c = 0;
    for (; c + 64 <= d; c += 64) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t j = 0; j < n; j++) {
            const float *vj = v + j * ldv + c;
            __m512 pj = _mm512_set1_ps(p[j]);
            a0 = _mm512_add_ps(a0, _mm512_mul_ps(pj, _mm512_loadu_ps(vj)));
            a1 = _mm512_add_ps(a1, _mm512_mul_ps(pj, _mm512_loadu_ps(vj + 16)));
            a2 = _mm512_add_ps(a2, _mm512_mul_ps(pj, _mm512_loadu_ps(vj + 32)));
            a3 = _mm512_add_ps(a3, _mm512_mul_ps(pj, _mm512_loadu_ps(vj + 48)));
        }
        _mm512_storeu_ps(out + c, a0); _mm512_storeu_ps(out + c + 16, a1);
        _mm512_storeu_ps(out + c + 32, a2); _mm512_storeu_ps(out + c + 48, a3);
    }
    if (c < d) wsum_avx2(p, v + c, ldv, n, d - c, out + c);
}
#endif

void i2q_weighted_sum(const float *p, const float *v, int64_t ldv, int64_t n, int64_t d, float *out, int impl) {
    switch (i2q_q4a_impl(impl)) {
#if I2Q_X86
    case I2Q_IMPL_VNNI: wsum_avx512(p, v, ldv, n, d, out); return;
    case I2Q_IMPL_AVX2: wsum_avx2(p, v, ldv, n, d, out); return;
#endif
    default: wsum_scalar(p, v, ldv, n, d, out); return;
    }
}
