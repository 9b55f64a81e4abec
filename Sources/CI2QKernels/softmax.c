// Softmax of one attention row over the keys [lo, hi) (the rest of the row becomes 0): the causal
// and sliding-window masks without writing −inf, and the bidirectional attention's key mask (−inf
// entries give 0).
//
// Reference: torch.softmax in float32 (eager attention). exp is a Cephes-style polynomial (range
// reduction by ln 2 in two parts, degree-6 polynomial, exponent by integer add): ≤ 2 ulp from the
// correctly rounded exp for x ≥ −86.5; below that (and for −inf) it returns 0, where the true value
// is < 2.7e-38 — nothing next to the row's sum, which is ≥ 1. The row maximum is exact, the sum is
// taken in 16 lanes (element j in lane (j − lo) % 16, in order) added as a fixed tree, so the AVX-512,
// AVX2 and scalar paths are bit-identical (fmaf in the scalar code = the vector FMAs).
// Tests: SoftmaxKernelTests.

#pragma STDC FP_CONTRACT OFF

#include "q8.h"

#define EXP_LO (-86.5f)  // below: 0 (keeps 2^n normal: n ≥ −125)

static const float C_LOG2E = 1.44269504088896341f, C_LN2_HI = 0.693359375f, C_LN2_LO = -2.12194440e-4f;
static const float P0 = 1.9875691500e-4f, P1 = 1.3981999507e-3f, P2 = 8.3334519073e-3f, P3 = 4.1665795894e-2f,
                   P4 = 1.6666665459e-1f, P5 = 5.0000001201e-1f;

static inline float exp_scalar(float x) {
    if (!(x >= EXP_LO)) return 0.0f;  // (NaN is handled by exp_nan)
    const float n = (x * C_LOG2E + 12582912.0f) - 12582912.0f;  // round to nearest (|n| ≤ 128)
    float r = fmaf(-n, C_LN2_HI, x);
    r = fmaf(-n, C_LN2_LO, r);
    float p = P0;
    p = fmaf(p, r, P1); p = fmaf(p, r, P2); p = fmaf(p, r, P3); p = fmaf(p, r, P4); p = fmaf(p, r, P5);
    const float r2 = r * r;
    float e = fmaf(p, r2, r) + 1.0f;
    int32_t bits;
    memcpy(&bits, &e, 4);
    bits += (int32_t)n << 23;
    memcpy(&e, &bits, 4);
    return e;
}

static float exp_nan(float x) { return x != x ? x : exp_scalar(x); }

static void softmax_scalar(float *row, int64_t n, int64_t lo, int64_t hi) {
    float m = -INFINITY;
    for (int64_t j = lo; j < hi; j++) m = row[j] > m ? row[j] : m;
    float acc[16] = {0};
    for (int64_t j = lo; j < hi; j++) {
        const float e = exp_nan(row[j] - m);
        row[j] = e;
        acc[(j - lo) % 16] += e;
    }
    const float inv = 1.0f / reduce16(acc);
    for (int64_t j = 0; j < lo; j++) row[j] = 0;
    for (int64_t j = lo; j < hi; j++) row[j] = row[j] * inv;
    for (int64_t j = hi; j < n; j++) row[j] = 0;
}

#if I2Q_X86
__attribute__((target("avx512f,avx512bw,avx512vl,fma")))
static inline __m512 exp16(__m512 x) {
    const __mmask16 ok = _mm512_cmp_ps_mask(x, _mm512_set1_ps(EXP_LO), _CMP_GE_OQ);
    const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    const __m512 big = _mm512_set1_ps(12582912.0f);
    const __m512 n = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(C_LOG2E)), big), big);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(C_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(C_LN2_LO), r);
    __m512 p = _mm512_set1_ps(P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P1)); p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P3)); p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P5));
    const __m512 e = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    const __m512i bits = _mm512_add_epi32(_mm512_castps_si512(e), _mm512_slli_epi32(_mm512_cvtps_epi32(n), 23));
    __m512 out = _mm512_maskz_mov_ps(ok, _mm512_castsi512_ps(bits));
    return _mm512_mask_mov_ps(out, nan, x);
}

/// max of row[lo..<hi] in 16 lanes: the same value as the scalar loop's (max is exact in any order; a NaN
/// is skipped alike — max_ps returns its second operand when one is NaN; ±0 give the same x − m).
__attribute__((target("avx512f,avx512bw,avx512vl,fma")))
static float row_max_avx512(const float *row, int64_t lo, int64_t hi) {
    __m512 mx = _mm512_set1_ps(-INFINITY);
    int64_t i = lo;
    for (; i + 16 <= hi; i += 16) mx = _mm512_max_ps(_mm512_loadu_ps(row + i), mx);
    float m = _mm512_reduce_max_ps(mx);
    for (; i < hi; i++) m = row[i] > m ? row[i] : m;
    return m;
}

/// The same max in 8 lanes.
__attribute__((target("avx2,fma")))
static float row_max_avx2(const float *row, int64_t lo, int64_t hi) {
    __m256 mx = _mm256_set1_ps(-INFINITY);
    int64_t i = lo;
    for (; i + 8 <= hi; i += 8) mx = _mm256_max_ps(_mm256_loadu_ps(row + i), mx);
    float lanes[8], m = -INFINITY;
    _mm256_storeu_ps(lanes, mx);
    for (int l = 0; l < 8; l++) m = lanes[l] > m ? lanes[l] : m;
    for (; i < hi; i++) m = row[i] > m ? row[i] : m;
    return m;
}

__attribute__((target("avx512f,avx512bw,avx512vl,fma")))
static void softmax_avx512(float *row, int64_t n, int64_t lo, int64_t hi) {
    const float m = row_max_avx512(row, lo, hi);
    const __m512 mv = _mm512_set1_ps(m);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j = lo; j < hi; j += 16) {
        const int64_t left = hi - j;
        const __mmask16 k = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
        const __m512 e = _mm512_maskz_mov_ps(k, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + j), mv)));
        _mm512_mask_storeu_ps(row + j, k, e);
        acc = _mm512_add_ps(acc, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / reduce16_avx512(acc));
    for (int64_t j = 0; j < lo; j++) row[j] = 0;
    for (int64_t j = lo; j < hi; j += 16) {
        const int64_t left = hi - j;
        const __mmask16 k = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
        _mm512_mask_storeu_ps(row + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, row + j), inv));
    }
    for (int64_t j = hi; j < n; j++) row[j] = 0;
}

__attribute__((target("avx2,fma")))
static inline __m256 exp8(__m256 x) {
    const __m256 ok = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_LO), _CMP_GE_OQ);
    const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    const __m256 big = _mm256_set1_ps(12582912.0f);
    const __m256 n = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(C_LOG2E)), big), big);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(C_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(C_LN2_LO), r);
    __m256 p = _mm256_set1_ps(P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P1)); p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P3)); p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P5));
    const __m256 e = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_add_epi32(_mm256_castps_si256(e), _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23));
    const __m256 out = _mm256_and_ps(_mm256_castsi256_ps(bits), ok);
    return _mm256_blendv_ps(out, x, nan);
}

__attribute__((target("avx2,fma")))
static void softmax_avx2(float *row, int64_t n, int64_t lo, int64_t hi) {
    const float m = row_max_avx2(row, lo, hi);
    const __m256 mv = _mm256_set1_ps(m);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();  // lanes 0-7, 8-15
    int64_t j = lo;
    for (; j + 16 <= hi; j += 16) {
        const __m256 e0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(row + j), mv));
        const __m256 e1 = exp8(_mm256_sub_ps(_mm256_loadu_ps(row + j + 8), mv));
        _mm256_storeu_ps(row + j, e0); _mm256_storeu_ps(row + j + 8, e1);
        a0 = _mm256_add_ps(a0, e0); a1 = _mm256_add_ps(a1, e1);
    }
    float acc[16];
    _mm256_storeu_ps(acc, a0); _mm256_storeu_ps(acc + 8, a1);
    for (int64_t t = j; t < hi; t++) { const float e = exp_nan(row[t] - m); row[t] = e; acc[t - j] += e; }
    const float inv = 1.0f / reduce16(acc);
    const __m256 iv = _mm256_set1_ps(inv);
    for (int64_t t = 0; t < lo; t++) row[t] = 0;
    int64_t t = lo;
    for (; t + 8 <= hi; t += 8) _mm256_storeu_ps(row + t, _mm256_mul_ps(_mm256_loadu_ps(row + t), iv));
    for (; t < hi; t++) row[t] = row[t] * inv;
    for (t = hi; t < n; t++) row[t] = 0;
}
#endif

void i2q_softmax(float *row, int64_t n, int64_t lo, int64_t hi, int impl) {
    if (lo < 0) lo = 0;
    if (hi > n) hi = n;
    switch (i2q_q4a_impl(impl)) {
#if I2Q_X86
    case I2Q_IMPL_VNNI: softmax_avx512(row, n, lo, hi); return;
    case I2Q_IMPL_AVX2: softmax_avx2(row, n, lo, hi); return;
#endif
    default: softmax_scalar(row, n, lo, hi); return;
    }
}

void i2q_exp(const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = exp_nan(x[i]);
}

// MARK: Σ exp(x − max) for log-softmax (perplexity, KL divergence)
//
// The same exp; the terms are widened to double and summed in 16 double lanes (element j in lane
// j % 16, in order), added as the fixed tree — bit-identical on every path. Against the sum in
// double of the correctly rounded float exps: ≤ 2·2⁻²⁴ relative (each term's exp error), so
// log Σ is within ~1.2e-7 absolute — below float32 log-softmax's own rounding (torch's reference).

static double reduce16d(const double a[16]) {
    double b[8], c[4], d[2];
    for (int i = 0; i < 8; i++) b[i] = a[i] + a[i + 8];
    for (int i = 0; i < 4; i++) c[i] = b[i] + b[i + 4];
    for (int i = 0; i < 2; i++) d[i] = c[i] + c[i + 2];
    return d[0] + d[1];
}

static double sumexp_scalar(const float *x, int64_t n, float m) {
    double acc[16] = {0};
    for (int64_t j = 0; j < n; j++) acc[j % 16] += (double)exp_nan(x[j] - m);
    return reduce16d(acc);
}

#if I2Q_X86
__attribute__((target("avx512f,avx512bw,avx512vl,fma")))
static double sumexp_avx512(const float *x, int64_t n, float m) {
    const __m512 mv = _mm512_set1_ps(m);
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();  // lanes 0-7, 8-15
    for (int64_t j = 0; j < n; j += 16) {
        const int64_t left = n - j;
        const __mmask16 k = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
        const __m512 e = _mm512_maskz_mov_ps(k, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), mv)));
        lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    double acc[16];
    _mm512_storeu_pd(acc, lo); _mm512_storeu_pd(acc + 8, hi);
    return reduce16d(acc);
}

__attribute__((target("avx2,fma")))
static double sumexp_avx2(const float *x, int64_t n, float m) {
    const __m256 mv = _mm256_set1_ps(m);
    __m256d a[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        for (int h = 0; h < 2; h++) {
            const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j + 8 * h), mv));
            a[2 * h] = _mm256_add_pd(a[2 * h], _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
            a[2 * h + 1] = _mm256_add_pd(a[2 * h + 1], _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
        }
    }
    double acc[16];
    for (int q = 0; q < 4; q++) _mm256_storeu_pd(acc + 4 * q, a[q]);
    for (int64_t t = j; t < n; t++) acc[t - j] += (double)exp_nan(x[t] - m);
    return reduce16d(acc);
}
#endif

double i2q_sumexp(const float *x, int64_t n, float *max_out, int impl) {
    float m = -INFINITY;
    switch (i2q_q4a_impl(impl)) {
#if I2Q_X86
    case I2Q_IMPL_VNNI: *max_out = m = row_max_avx512(x, 0, n); return sumexp_avx512(x, n, m);
    case I2Q_IMPL_AVX2: *max_out = m = row_max_avx2(x, 0, n); return sumexp_avx2(x, n, m);
#endif
    default:
        for (int64_t j = 0; j < n; j++) m = x[j] > m ? x[j] : m;
        *max_out = m;
        return sumexp_scalar(x, n, m);
    }
}

// MARK: activations (SiLU·up, gelu_pytorch_tanh) on the same exp
//
// exp here also covers x > 88.72 (+inf). silu(g)·u = g / (1 + exp(−g)) · u (transformers' act_fn(gate)·up);
// gelu_tanh(x) = 0.5·x·(1 + tanh(u)), u = √(2/π)·(x + 0.044715·x³), computed as x·e/(e + 1) with
// e = exp(2u) — the same value without the cancellation of 1 + tanh near −1; x when e is +inf.
// Reference: torch's float32 silu and gelu(approximate="tanh"): a few ulp (the exp's ≤ 2 ulp and
// three roundings). Same operations in the same order on every path: bit-identical.

#define EXP_HI 88.72f

static inline float exp_full(float x) { return x > EXP_HI ? INFINITY : exp_nan(x); }

static inline float silu_mul1(float g, float u) { const float e = exp_full(-g); return g / (1.0f + e) * u; }

static inline float gelu1(float x) {
    const float c = 0.7978845608028654f, k = 0.044715f;
    const float x3 = x * x * x;
    const float v = c * (x + k * x3);
    const float e = exp_full(v + v);
    return e == INFINITY ? x : x * (e / (e + 1.0f));
}

#if I2Q_X86
__attribute__((target("avx512f,avx512bw,avx512vl,fma")))
static inline __m512 exp16_full(__m512 x) {
    const __mmask16 big = _mm512_cmp_ps_mask(x, _mm512_set1_ps(EXP_HI), _CMP_GT_OQ);
    return _mm512_mask_mov_ps(exp16(x), big, _mm512_set1_ps(INFINITY));
}

__attribute__((target("avx512f,avx512bw,avx512vl,fma")))
static void act_avx512(const float *g, const float *u, float *o, int64_t n, int gelu) {
    for (int64_t i = 0; i < n; i += 16) {
        const int64_t left = n - i;
        const __mmask16 k = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
        const __m512 x = _mm512_maskz_loadu_ps(k, g + i);
        __m512 r;
        if (gelu) {
            const __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
            const __m512 v = _mm512_mul_ps(_mm512_set1_ps(0.7978845608028654f), _mm512_add_ps(x, _mm512_mul_ps(_mm512_set1_ps(0.044715f), x3)));
            const __m512 e = exp16_full(_mm512_add_ps(v, v));
            r = _mm512_mul_ps(x, _mm512_div_ps(e, _mm512_add_ps(e, _mm512_set1_ps(1.0f))));
            r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(e, _mm512_set1_ps(INFINITY), _CMP_EQ_OQ), x);
        } else {
            const __m512 e = exp16_full(_mm512_sub_ps(_mm512_setzero_ps(), x));
            r = _mm512_mul_ps(_mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), _mm512_maskz_loadu_ps(k, u + i));
        }
        _mm512_mask_storeu_ps(o + i, k, r);
    }
}

__attribute__((target("avx2,fma")))
static inline __m256 exp8_full(__m256 x) {
    const __m256 big = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_HI), _CMP_GT_OQ);
    return _mm256_blendv_ps(exp8(x), _mm256_set1_ps(INFINITY), big);
}

__attribute__((target("avx2,fma")))
static void act_avx2(const float *g, const float *u, float *o, int64_t n, int gelu) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        __m256 r;
        if (gelu) {
            const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
            const __m256 v = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_add_ps(x, _mm256_mul_ps(_mm256_set1_ps(0.044715f), x3)));
            const __m256 e = exp8_full(_mm256_add_ps(v, v));
            r = _mm256_mul_ps(x, _mm256_div_ps(e, _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
            r = _mm256_blendv_ps(r, x, _mm256_cmp_ps(e, _mm256_set1_ps(INFINITY), _CMP_EQ_OQ));
        } else {
            const __m256 e = exp8_full(_mm256_sub_ps(_mm256_setzero_ps(), x));
            r = _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), _mm256_loadu_ps(u + i));
        }
        _mm256_storeu_ps(o + i, r);
    }
    for (; i < n; i++) o[i] = gelu ? gelu1(g[i]) : silu_mul1(g[i], u[i]);
}
#endif

void i2q_silu_mul(const float *g, const float *u, float *o, int64_t n, int impl) {
    switch (i2q_q4a_impl(impl)) {
#if I2Q_X86
    case I2Q_IMPL_VNNI: act_avx512(g, u, o, n, 0); return;
    case I2Q_IMPL_AVX2: act_avx2(g, u, o, n, 0); return;
#endif
    default: for (int64_t i = 0; i < n; i++) o[i] = silu_mul1(g[i], u[i]); return;
    }
}

void i2q_gelu_tanh(float *x, int64_t n, int impl) {
    switch (i2q_q4a_impl(impl)) {
#if I2Q_X86
    case I2Q_IMPL_VNNI: act_avx512(x, NULL, x, n, 1); return;
    case I2Q_IMPL_AVX2: act_avx2(x, NULL, x, n, 1); return;
#endif
    default: for (int64_t i = 0; i < n; i++) x[i] = gelu1(x[i]); return;
    }
}
