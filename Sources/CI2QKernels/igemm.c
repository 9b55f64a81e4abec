// int8 × int8 → int32 matrix product for prefill (--int8-activations): C[m, n0:n1] (+)= A · Wᵀ with
// both operands quantized to int8 on the fly (W8A8, dynamic, symmetric — SmoothQuant's "per-token
// activation, per-channel weight" form without its smoothing, llama.cpp's Q8_0 rounding per whole row):
//
//   activations, per row r:       dx[r] = max_k |x[r, k]| / 127,  xq[r, k] = rint(x[r, k] · (1 / dx[r]))
//   weights, per output row j:    dw[j] = max_k |w[j, k]| / 127,  wq[j, k] = rint(w[j, k] · (1 / dw[j]))
//   product:                      C[r, j] = (float(Σ_k xq[r, k] · wq[j, k]) · dw[j]) · dx[r]   (+ C[r, j])
//
// rint = round to nearest even (the default rounding mode; `vcvtps2dq`), codes clamped to [-127, 127],
// a zero row gets d = 0 and codes 0. The integer sum is exact on every path (|Σ| < 2³¹ for k < 133,000),
// and the float32 operations are the same in the same order (FP_CONTRACT off), so the AVX-512 VNNI,
// AVX2 and scalar paths give identical bits. Reference: that formula in numpy
// (scripts/fixtures/make_int8_gemm_fixtures.py → Tests/Fixtures/int8-gemm, Int8GemmKernelTests: every
// path equal to it bit for bit). Against the float32 product the error is the two roundings: each code
// is off by ≤ ½ step, so |ΔC| ≤ ½·(dx·Σ|w| + dw·Σ|x|) + ¼·k·dx·dw — ~1 % of a typical output's size for
// SigLIP's activations; the model-level cost is measured (Benchmarks/README.md, easy-VQA accuracy).
//
// Layout: A rows quantized into [m][kp] bytes (kp = k rounded up to 4, zero-padded) with per-row scale
// and code sum; W rows quantized into 32-column panels [kp/4][32][4] (one 64-byte load = 16 columns × 4
// consecutive k: `vpdpbusd`'s unit). The VNNI path stores the weight codes + 128 as unsigned bytes
// (vpdpbusd multiplies unsigned × signed) and subtracts 128·Σ_k xq[r, k] from each sum; the AVX2 path
// (`vpsignb` + `vpmaddubsw` + `vpmaddwd`: pairs of products ≤ 2·127² fit int16 exactly) and the scalar
// path use the signed codes.
//
// Blocking: no k blocking (a weight row's scale needs the whole row, and int8 panels are small: 32 × kp
// bytes ≤ 0.5 MiB for k ≤ 16384); columns in blocks whose packed panels fit ~2 MiB; rows in blocks whose
// A rows fit ~384 KiB (L2); a 12 × 32 tile of C in 24 zmm registers (AVX-512), 4 × 32 in 16 ymm (AVX2).

#pragma STDC FP_CONTRACT OFF

#include "half.h"
#include "panel.h"

enum { IMR = 12, INR = 32, IMR2 = 4 };

static inline int64_t kpad(int64_t k) { return (k + 3) & ~(int64_t)3; }

static inline int8_t code(float v, float id) {
    float r = nearbyintf(v * id);
    if (r > 127.0f) r = 127.0f;
    if (r < -127.0f) r = -127.0f;
    return (int8_t)(int)r;
}

// MARK: rows → codes (activations and weights alike)

/// One row of float32 values → codes[kp] (zero-padded), returns d; *sum = Σ codes.
static float quantize_row_scalar(const float *x, int64_t k, int8_t *q, int32_t *sum) {
    float amax = 0.0f;
    for (int64_t i = 0; i < k; i++) { const float a = fabsf(x[i]); if (a > amax) amax = a; }
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    int32_t s = 0;
    for (int64_t i = 0; i < k; i++) { q[i] = code(x[i], id); s += q[i]; }
    for (int64_t i = k; i < kpad(k); i++) q[i] = 0;
    if (sum) *sum = s;
    return d;
}

#if I2Q_X86
I2Q_VNNI_TARGET
static float quantize_row_avx512(const float *x, int64_t k, int8_t *q, int32_t *sum) {
    __m512 mx = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    float amax = _mm512_reduce_max_ps(mx);  // max is exact: any order gives the same value
    for (; i < k; i++) { const float a = fabsf(x[i]); if (a > amax) amax = a; }
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m512 vid = _mm512_set1_ps(id), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    __m512i vs = _mm512_setzero_si512();
    i = 0;
    for (; i + 16 <= k; i += 16) {
        // rint(x·id) clamped: the product, then vrndscaleps to nearest even (as nearbyintf), then min/max
        __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        r = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
        const __m512i c = _mm512_cvtps_epi32(r);
        vs = _mm512_add_epi32(vs, c);
        _mm_storeu_si128((__m128i *)(q + i), _mm512_cvtepi32_epi8(c));
    }
    int32_t s = _mm512_reduce_add_epi32(vs);  // integer sum: exact in any order
    for (; i < k; i++) { q[i] = code(x[i], id); s += q[i]; }
    for (; i < kpad(k); i++) q[i] = 0;
    if (sum) *sum = s;
    return d;
}

I2Q_AVX2_TARGET
static float quantize_row_avx2(const float *x, int64_t k, int8_t *q, int32_t *sum) {
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 mx = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(x + i), absm));
    float lanes[8], amax = 0.0f;
    _mm256_storeu_ps(lanes, mx);
    for (int j = 0; j < 8; j++) if (lanes[j] > amax) amax = lanes[j];
    for (; i < k; i++) { const float a = fabsf(x[i]); if (a > amax) amax = a; }
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m256 vid = _mm256_set1_ps(id), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    __m256i vs = _mm256_setzero_si256();
    i = 0;
    for (; i + 8 <= k; i += 8) {
        __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        r = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
        const __m256i c = _mm256_cvtps_epi32(r);
        vs = _mm256_add_epi32(vs, c);
        int32_t t[8];
        _mm256_storeu_si256((__m256i *)t, c);
        for (int j = 0; j < 8; j++) q[i + j] = (int8_t)t[j];
    }
    int32_t t[8], s = 0;
    _mm256_storeu_si256((__m256i *)t, vs);
    for (int j = 0; j < 8; j++) s += t[j];
    for (; i < k; i++) { q[i] = code(x[i], id); s += q[i]; }
    for (; i < kpad(k); i++) q[i] = 0;
    if (sum) *sum = s;
    return d;
}
#endif

static float quantize_row(const float *x, int64_t k, int8_t *q, int32_t *sum, int impl) {
    switch (impl) {
#if I2Q_X86
    case I2Q_IMPL_VNNI: return quantize_row_avx512(x, k, q, sum);
    case I2Q_IMPL_AVX2: return quantize_row_avx2(x, k, q, sum);
#endif
    default: return quantize_row_scalar(x, k, q, sum);
    }
}

void i2q_i8_quantize_rows(const float *x, int64_t ldx, int64_t m, int64_t k, int8_t *q, int64_t ldq,
                          float *d, int32_t *sum, int impl) {
    const int p = i2q_q4a_impl(impl);
    for (int64_t r = 0; r < m; r++) d[r] = quantize_row(x + r * ldx, k, q + r * ldq, sum + r, p);
}

// MARK: weight panels

typedef struct { int64_t kp, nc, mc; } iblocks;

static iblocks blocks(int64_t k, int64_t n) {
    iblocks b;
    b.kp = kpad(k);
    int64_t nc = ((int64_t)2 << 20) / b.kp / INR * INR;  // packed panels of a column block ≤ ~2 MiB
    if (nc < INR) nc = INR;
    if (nc > n) nc = (n + INR - 1) / INR * INR;
    b.nc = nc;
    int64_t mc = ((int64_t)384 << 10) / b.kp / IMR * IMR;  // A rows of a row block ≤ ~384 KiB
    if (mc < IMR) mc = IMR;
    if (mc > 192) mc = 192;
    b.mc = mc;
    return b;
}

size_t i2q_igemm_pack_bytes(int64_t k, int64_t n) {
    const iblocks b = blocks(k, n);
    // panels, their column scales, one weight row widened to float32, a panel's 32 rows of codes
    return (size_t)(b.nc * b.kp + b.nc * 4 + 4 * b.kp + 32 * b.kp + 64);
}

/// Weight row j (dtype I2Q_W_*) widened to float32 into row[k].
static void widen_row(const void *w, int wtype, int64_t ldw, int64_t j, int64_t k, float *row) {
    switch (wtype) {
    case I2Q_W_F32: memcpy(row, (const float *)w + j * ldw, (size_t)k * 4); return;
    case I2Q_W_BF16: {
        const uint16_t *s = (const uint16_t *)w + j * ldw;
        for (int64_t i = 0; i < k; i++) { const uint32_t u = (uint32_t)s[i] << 16; memcpy(row + i, &u, 4); }
        return;
    }
    default: {
        const uint16_t *s = (const uint16_t *)w + j * ldw;
        for (int64_t i = 0; i < k; i++) row[i] = i2q_half_to_float(s[i]);
        return;
    }
    }
}

/// Quantizes weight rows [c0, c0 + cols) (cols ≤ 32) into panel[kp/4][32][4] (+128 as unsigned bytes
/// when `unsigned_codes`), their scales into dw[32] (0 for the missing columns). row: kp floats;
/// codes: 32·kp bytes (the rows' codes, then interleaved by a dword transpose, panel.h).
static void pack_panel(const void *w, int wtype, int64_t ldw, int64_t c0, int cols, int64_t k, int8_t *panel, float *dw,
                       float *row, int8_t *codes, int unsigned_codes, int impl) {
    const int64_t kp = kpad(k);
    const uint32_t *rows[INR];
    for (int j = 0; j < INR; j++) {
        rows[j] = NULL;
        dw[j] = 0.0f;
        if (j >= cols) continue;
        int8_t *q = codes + j * kp;
        widen_row(w, wtype, ldw, c0 + j, k, row);
        dw[j] = quantize_row(row, k, q, NULL, impl);
        if (unsigned_codes) for (int64_t i = 0; i < kp; i++) q[i] = (int8_t)((uint8_t)q[i] ^ 0x80);
        rows[j] = (const uint32_t *)q;
    }
    // missing columns: zero bytes and scale 0 (and never stored: the tile store is masked to `cols`)
#if I2Q_X86
    if (impl == I2Q_IMPL_VNNI) { panel_dwords_avx512(rows, kp / 4, (uint32_t *)panel); return; }
#endif
    panel_dwords_scalar(rows, kp / 4, (uint32_t *)panel);
}

// MARK: micro-kernels: C tile (+)= A[rows, kp] · panel

/// The shared epilogue of every path, per element: (float(s) · dw[j]) · dx[r] (+ C).
static inline float finish(int32_t s, float dwj, float dxr, const float *cold, int add) {
    const float v = ((float)s * dwj) * dxr;
    return add ? *cold + v : v;
}

static void micro_scalar(const int8_t *a, int64_t lda, const float *dx, const int8_t *panel, int64_t kp, const float *dw,
                         float *c, int64_t ldc, int rows, int cols, int add) {
    for (int r = 0; r < rows; r++) {
        int32_t acc[INR] = {0};
        for (int64_t p = 0; p < kp / 4; p++)
            for (int j = 0; j < INR; j++)
                for (int t = 0; t < 4; t++) acc[j] += (int32_t)a[r * lda + 4 * p + t] * (int32_t)panel[p * 128 + 4 * j + t];
        for (int j = 0; j < cols; j++) c[r * ldc + j] = finish(acc[j], dw[j], dx[r], c + r * ldc + j, add);
    }
}

#if I2Q_X86
/// AVX2: 4 rows × 16 columns (a half panel; 8 accumulators — AVX2 has 16 ymm registers), signed codes;
/// |w| · sign(x, w) in `vpmaddubsw` (pairs ≤ 2·127² < 2¹⁵: exact), pairs summed by `vpmaddwd`.
I2Q_AVX2_TARGET
static void micro_avx2(const int8_t *a, int64_t lda, const float *dx, const int8_t *panel, int64_t kp, const float *dw,
                       float *c, int64_t ldc, int rows, int cols, int add) {
    for (int half = 0; half < 2 && 16 * half < cols; half++) {
        __m256i acc[IMR2][2];
        for (int r = 0; r < IMR2; r++) { acc[r][0] = _mm256_setzero_si256(); acc[r][1] = _mm256_setzero_si256(); }
        const __m256i ones = _mm256_set1_epi16(1);
        const int8_t *pb = panel + 64 * half;
        for (int64_t p = 0; p < kp / 4; p++) {
            const __m256i b0 = _mm256_loadu_si256((const __m256i *)(pb + p * 128)), b1 = _mm256_loadu_si256((const __m256i *)(pb + p * 128 + 32));
            const __m256i ab0 = _mm256_sign_epi8(b0, b0), ab1 = _mm256_sign_epi8(b1, b1);
            for (int r = 0; r < rows; r++) {
                int32_t x4;
                memcpy(&x4, a + r * lda + 4 * p, 4);
                const __m256i xb = _mm256_set1_epi32(x4);
                acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(ab0, _mm256_sign_epi8(xb, b0)), ones));
                acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(ab1, _mm256_sign_epi8(xb, b1)), ones));
            }
        }
        const int hc = cols - 16 * half < 16 ? cols - 16 * half : 16;
        for (int r = 0; r < rows; r++) {
            int32_t s[16];
            _mm256_storeu_si256((__m256i *)s, acc[r][0]);
            _mm256_storeu_si256((__m256i *)(s + 8), acc[r][1]);
            float *cr = c + r * ldc + 16 * half;
            for (int j = 0; j < hc; j++) cr[j] = finish(s[j], dw[16 * half + j], dx[r], cr + j, add);
        }
    }
}

#define IVNNI_STORE(r)                                                                                                    \
    {                                                                                                                     \
        float *cr = c + (r) * ldc;                                                                                        \
        const __m512i corr = _mm512_set1_epi32(128 * sum[r]);                                                             \
        const __m512 sx = _mm512_set1_ps(dx[r]);                                                                          \
        __m512 v0 = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][0], corr)), w0), sx);         \
        __m512 v1 = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][1], corr)), w1), sx);         \
        if (add) {                                                                                                        \
            v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cr), v0);                                                        \
            v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cr + 16), v1);                                                   \
        }                                                                                                                 \
        _mm512_mask_storeu_ps(cr, m0, v0);                                                                                \
        _mm512_mask_storeu_ps(cr + 16, m1, v1);                                                                           \
    }

/// AVX-512 VNNI: 12 rows × 32 columns in 24 registers; unsigned weight codes (+128), each A quad
/// broadcast from memory; Σ (wq + 128)·xq − 128·Σ xq = Σ wq·xq exactly.
I2Q_VNNI_TARGET
__attribute__((noinline)) static void micro_vnni_full(const int8_t *a, int64_t lda, const float *dx, const int32_t *sum,
                                                      const uint8_t *panel, int64_t kp, const float *dw, float *c, int64_t ldc,
                                                      int cols, int add) {
    __m512i acc[IMR][2];
    for (int r = 0; r < IMR; r++) { acc[r][0] = _mm512_setzero_si512(); acc[r][1] = _mm512_setzero_si512(); }
    for (int64_t p = 0; p < kp / 4; p++) {
        const __m512i b0 = _mm512_loadu_si512(panel + p * 128), b1 = _mm512_loadu_si512(panel + p * 128 + 64);
#define STEP(r) { int32_t v; memcpy(&v, a + (r) * lda + 4 * p, 4); const __m512i x = _mm512_set1_epi32(v); \
                  acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], b0, x); acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], b1, x); }
        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7) STEP(8) STEP(9) STEP(10) STEP(11)
#undef STEP
    }
    const __mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
    const __mmask16 m1 = cols >= 32 ? 0xffff : cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1);
    const __m512 w0 = _mm512_loadu_ps(dw), w1 = _mm512_loadu_ps(dw + 16);
    IVNNI_STORE(0) IVNNI_STORE(1) IVNNI_STORE(2) IVNNI_STORE(3) IVNNI_STORE(4) IVNNI_STORE(5)
    IVNNI_STORE(6) IVNNI_STORE(7) IVNNI_STORE(8) IVNNI_STORE(9) IVNNI_STORE(10) IVNNI_STORE(11)
}

I2Q_VNNI_TARGET
__attribute__((noinline)) static void micro_vnni_part(const int8_t *a, int64_t lda, const float *dx, const int32_t *sum,
                                                      const uint8_t *panel, int64_t kp, const float *dw, float *c, int64_t ldc,
                                                      int rows, int cols, int add) {
    __m512i acc[IMR][2];
    for (int r = 0; r < rows; r++) { acc[r][0] = _mm512_setzero_si512(); acc[r][1] = _mm512_setzero_si512(); }
    for (int64_t p = 0; p < kp / 4; p++) {
        const __m512i b0 = _mm512_loadu_si512(panel + p * 128), b1 = _mm512_loadu_si512(panel + p * 128 + 64);
        for (int r = 0; r < rows; r++) {
            int32_t v;
            memcpy(&v, a + r * lda + 4 * p, 4);
            const __m512i x = _mm512_set1_epi32(v);
            acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], b0, x);
            acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], b1, x);
        }
    }
    const __mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
    const __mmask16 m1 = cols >= 32 ? 0xffff : cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1);
    const __m512 w0 = _mm512_loadu_ps(dw), w1 = _mm512_loadu_ps(dw + 16);
    for (int r = 0; r < rows; r++) IVNNI_STORE(r)
}
#undef IVNNI_STORE
#endif

// MARK: the product

void i2q_igemm(const int8_t *a, int64_t lda, const float *dx, const int32_t *sum, const void *w, int wtype, int64_t ldw,
               float *c, int64_t ldc, int64_t m, int64_t k, int64_t n0, int64_t n1, int accumulate, void *pack, int impl) {
    const int p = i2q_q4a_impl(impl);
    const iblocks bl = blocks(k, n1 - n0);
    const int64_t kp = bl.kp;
    int8_t *panels = (int8_t *)pack;                       // [nc / 32][kp / 4][32][4]
    float *dws = (float *)(panels + bl.nc * kp);           // [nc]
    float *row = dws + bl.nc;                              // [kp] a widened weight row
    int8_t *codes = (int8_t *)(row + kp);                  // [32][kp] a panel's rows of codes
    for (int64_t b0 = n0; b0 < n1; b0 += bl.nc) {
        const int64_t b1 = n1 - b0 < bl.nc ? n1 : b0 + bl.nc;
        const int64_t npan = (b1 - b0 + INR - 1) / INR;
        for (int64_t q = 0; q < npan; q++) {
            const int64_t c0 = b0 + q * INR;
            pack_panel(w, wtype, ldw, c0, (int)(b1 - c0 < INR ? b1 - c0 : INR), k, panels + q * kp * INR, dws + q * INR,
                       row, codes, p == I2Q_IMPL_VNNI, p);
        }
        for (int64_t m0 = 0; m0 < m; m0 += bl.mc) {
            const int64_t mc = m - m0 < bl.mc ? m - m0 : bl.mc;
            for (int64_t q = 0; q < npan; q++) {
                const int64_t c0 = b0 + q * INR;
                const int cols = (int)(b1 - c0 < INR ? b1 - c0 : INR);
                const int8_t *pan = panels + q * kp * INR;
                const float *dw = dws + q * INR;
                switch (p) {
#if I2Q_X86
                case I2Q_IMPL_VNNI:
                    for (int64_t r = m0; r < m0 + mc; r += IMR) {
                        const int rows = (int)(m0 + mc - r < IMR ? m0 + mc - r : IMR);
                        if (rows == IMR)
                            micro_vnni_full(a + r * lda, lda, dx + r, sum + r, (const uint8_t *)pan, kp, dw, c + r * ldc + c0, ldc, cols, accumulate);
                        else
                            micro_vnni_part(a + r * lda, lda, dx + r, sum + r, (const uint8_t *)pan, kp, dw, c + r * ldc + c0, ldc, rows, cols, accumulate);
                    }
                    break;
                case I2Q_IMPL_AVX2:
                    for (int64_t r = m0; r < m0 + mc; r += IMR2) {
                        const int rows = (int)(m0 + mc - r < IMR2 ? m0 + mc - r : IMR2);
                        micro_avx2(a + r * lda, lda, dx + r, pan, kp, dw, c + r * ldc + c0, ldc, rows, cols, accumulate);
                    }
                    break;
#endif
                default:
                    for (int64_t r = m0; r < m0 + mc; r += IMR2) {
                        const int rows = (int)(m0 + mc - r < IMR2 ? m0 + mc - r : IMR2);
                        micro_scalar(a + r * lda, lda, dx + r, pan, kp, dw, c + r * ldc + c0, ldc, rows, cols, accumulate);
                    }
                    break;
                }
            }
        }
    }
}
