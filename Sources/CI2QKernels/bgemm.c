// bf16 × bf16 → f32 matrix product for prefill with bf16 weights: C[m, n0:n1] (+)= A[m, k] · W[n0:n1, k]ᵀ,
// A the layer input rounded to bf16 (i2q_f32_to_bf16), W the bf16 weight as stored ([n, k], in place).
//
// Reference: torch `F.linear` on the bf16-rounded input and bf16 weight, computed in float32
// (`x.bfloat16().float() @ w.float().T`): every product of two bf16 values is exact in float32, so
// the only difference from that reference (or from sgemm of the widened operands, the non-BF16
// path) is the order of the float32 additions: ≤ ~k·2⁻²⁴ relative to Σ|a·w| (BgemmKernelTests).
// The AVX-512 BF16 instruction `vdpbf16ps` treats denormal inputs as zero and flushes denormal
// results (Intel SDM); bf16 activations below 2⁻¹²⁶ ≈ 1.2e-38 do not occur in these models.
//
// Blocking (GotoBLAS-style, sized for a 1 MiB L2): n in blocks of ≤ 2048 columns (their packed panels
// ≤ 4 MiB, in L3), k in blocks of ≤ 1024 (pairs of k are the unit of
// `vdpbf16ps`), m in blocks of 192 rows (A block ≤ 384 KiB), n in panels of 32 columns packed as
// [k/2][32][2] so one 64-byte load gives 16 columns' pairs; the micro-kernel keeps a 12 × 32 tile
// of C in 24 registers and broadcasts each A pair from memory.

#pragma STDC FP_CONTRACT OFF

#include "panel.h"

enum { MR = 12, NR = 32, MC = 192, KC = 1024, NC = 2048 };

// MARK: f32 → bf16 as torch's CPU `.to(torch.bfloat16)`: round to nearest even, every NaN → 0xFFFF
// (what torch 2.15 writes; Tests/Fixtures/cast/special.safetensors). Bit-identical on every path.

static inline uint16_t bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0xffff;  // NaN
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

#if I2Q_X86
__attribute__((target("avx512f,avx512bw,avx512vl")))
static void round_avx512(const float *s, uint16_t *d, int64_t n) {
    int64_t i = 0;
    const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1),
                  absm = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000),
                  nanbits = _mm512_set1_epi32((int)0xffff0000u);
    for (; i + 16 <= n; i += 16) {
        const __m512i u = _mm512_loadu_si512(s + i);
        __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, bias), _mm512_and_si512(_mm512_srli_epi32(u, 16), one));
        const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, absm), inf);
        r = _mm512_mask_mov_epi32(r, nan, nanbits);
        _mm256_storeu_si256((__m256i *)(d + i), _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
    }
    for (; i < n; i++) d[i] = bf16_round(s[i]);
}

__attribute__((target("avx2")))
static void round_avx2(const float *s, uint16_t *d, int64_t n) {
    int64_t i = 0;
    const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1),
                  absm = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000),
                  nanbits = _mm256_set1_epi32((int)0xffff0000u);
    for (; i + 16 <= n; i += 16) {
        __m256i h[2];
        for (int j = 0; j < 2; j++) {
            const __m256i u = _mm256_loadu_si256((const __m256i *)(s + i + 8 * j));
            __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, bias), _mm256_and_si256(_mm256_srli_epi32(u, 16), one));
            const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absm), inf);
            r = _mm256_blendv_epi8(r, nanbits, nan);
            h[j] = _mm256_srli_epi32(r, 16);
        }
        // packus works per 128-bit lane: [h0 lo4, h1 lo4, h0 hi4, h1 hi4] → fix with a permute.
        const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(h[0], h[1]), 0xd8);
        _mm256_storeu_si256((__m256i *)(d + i), p);
    }
    for (; i < n; i++) d[i] = bf16_round(s[i]);
}
#endif

void i2q_f32_to_bf16(const float *s, uint16_t *d, int64_t n, int impl) {
    switch (i2q_q4a_impl(impl)) {
#if I2Q_X86
    case I2Q_IMPL_VNNI: round_avx512(s, d, n); return;
    case I2Q_IMPL_AVX2: round_avx2(s, d, n); return;
#endif
    default:
        for (int64_t i = 0; i < n; i++) d[i] = bf16_round(s[i]);
        return;
    }
}

// MARK: the product (AVX-512 BF16 only; other CPUs multiply the widened operands with sgemm)

size_t i2q_bgemm_pack_bytes(int64_t k, int64_t n) {
    const int64_t kc = k < KC ? k : KC, nc = n < NC ? n : NC;
    return (size_t)((nc + NR - 1) / NR) * (size_t)((kc + 1) / 2) * NR * 4;
}

#if I2Q_X86
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/// Packs W rows [n0, n0 + cols) (cols ≤ 32), k range [k0, k0 + kc) into panel[kc/2][32][2] (zero-padded:
/// missing columns, and the second half of the last pair when kc is odd). The whole pairs are a dword
/// transpose (panel.h: 16×16 blocks in registers).
static void pack_panel(const uint16_t *w, int64_t ldw, int64_t n0, int cols, int64_t k0, int64_t kc, uint16_t *panel, int prefetch_rows) {
    const int64_t kp = (kc + 1) / 2;
    const uint32_t *rows[NR];
    for (int j = 0; j < NR; j++) rows[j] = j < cols ? (const uint32_t *)(w + (n0 + j) * ldw + k0) : NULL;
    // The next panel's rows, line by line in address order, ahead of their transpose: the transpose
    // reads 32 rows a line at a time, which the hardware prefetchers do not follow (a weight streamed from
    // memory, e.g. a 49152-row lm_head, otherwise costs a demand miss per line).
    if (prefetch_rows > 0)
        for (int j = 0; j < prefetch_rows; j++)
            for (int64_t b = 0; b < 2 * kc; b += 64) _mm_prefetch((const char *)(w + (n0 + NR + j) * ldw + k0) + b, _MM_HINT_T1);
    panel_dwords_avx512(rows, kc / 2, (uint32_t *)panel);
    if (kc & 1) {
        uint16_t *dst = panel + (kp - 1) * 64;
        for (int j = 0; j < NR; j++) { dst[2 * j] = j < cols ? w[(n0 + j) * ldw + k0 + kc - 1] : 0; dst[2 * j + 1] = 0; }
    }
}

/// Stores (or adds into C) `rows` rows of the accumulators, `cols` ≤ 32 columns.
BF16_TARGET
__attribute__((always_inline)) static inline void store_tile(__m512 acc[][2], float *c, int64_t ldc, int rows, int cols, int add, float scale) {
    const __mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
    const __mmask16 m1 = cols >= 32 ? 0xffff : cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1);
    for (int r = 0; r < rows; r++) {
        float *cr = c + r * ldc;
        __m512 v0 = acc[r][0], v1 = acc[r][1];
        if (add) {
            v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cr), v0);
            v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cr + 16), v1);
        }
        if (scale != 1.0f) { v0 = _mm512_mul_ps(v0, _mm512_set1_ps(scale)); v1 = _mm512_mul_ps(v1, _mm512_set1_ps(scale)); }
        _mm512_mask_storeu_ps(cr, m0, v0);
        _mm512_mask_storeu_ps(cr + 16, m1, v1);
    }
}

/// The odd last element of k (kc odd), paired with a zero.
BF16_TARGET
__attribute__((always_inline)) static inline void odd_tail(__m512 acc[][2], const uint16_t *a, int64_t lda, const uint16_t *panel, int64_t kc, int rows) {
    const int64_t kp = kc / 2;
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(panel + kp * 64);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(panel + kp * 64 + 32);
    for (int r = 0; r < rows; r++) {
        const __m512bh x = (__m512bh)_mm512_set1_epi32((int)a[r * lda + kc - 1]);
        acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, b0);
        acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, b1);
    }
}

/// C tile [12, cols ≤ 32] (+)= A[12, kc] · panel, the accumulators in 24 registers. `add`: add to C,
/// else store. (A separate function from the partial tile's, so that no per-call zeroing of a stack
/// array of accumulators is left in this one.)
BF16_TARGET
__attribute__((noinline)) static void micro_full(const uint16_t *a, int64_t lda, const uint16_t *panel, int64_t kc, float *c, int64_t ldc,
                       int cols, int add, float scale) {
    __m512 acc[MR][2];
    for (int r = 0; r < MR; r++) { acc[r][0] = _mm512_setzero_ps(); acc[r][1] = _mm512_setzero_ps(); }
    const int64_t kp = kc / 2;  // whole pairs; an odd last element is handled after the loop
    for (int64_t p = 0; p < kp; p++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(panel + p * 64);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(panel + p * 64 + 32);
#define STEP(r) { uint32_t v; memcpy(&v, a + (r) * lda + 2 * p, 4); const __m512bh x = (__m512bh)_mm512_set1_epi32((int)v); \
                  acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, b0); acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, b1); }
        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7) STEP(8) STEP(9) STEP(10) STEP(11)
#undef STEP
    }
    // The tail and the store unrolled over constant rows, so that acc never needs a stack copy.
    if (kc & 1) {  // the odd last element, paired with a zero
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(panel + kp * 64);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(panel + kp * 64 + 32);
#define ODD(r) { const __m512bh x = (__m512bh)_mm512_set1_epi32((int)a[(r) * lda + kc - 1]); \
                 acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, b0); acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, b1); }
        ODD(0) ODD(1) ODD(2) ODD(3) ODD(4) ODD(5) ODD(6) ODD(7) ODD(8) ODD(9) ODD(10) ODD(11)
#undef ODD
    }
    const __mmask16 m0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
    const __mmask16 m1 = cols >= 32 ? 0xffff : cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1);
    const __m512 sc = _mm512_set1_ps(scale);
#define STORE(r) { float *cr = c + (r) * ldc; __m512 v0 = acc[r][0], v1 = acc[r][1]; \
                   if (add) { v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cr), v0); v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cr + 16), v1); } \
                   if (scale != 1.0f) { v0 = _mm512_mul_ps(v0, sc); v1 = _mm512_mul_ps(v1, sc); } \
                   _mm512_mask_storeu_ps(cr, m0, v0); _mm512_mask_storeu_ps(cr + 16, m1, v1); }
    STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5) STORE(6) STORE(7) STORE(8) STORE(9) STORE(10) STORE(11)
#undef STORE
}

/// C tile [ROWS < 12, cols ≤ 32] (+)= A[ROWS, kc] · panel: the same operations per row as micro_full,
/// with the row count a compile-time constant (one function per count, loops unrolled, so the
/// accumulators stay in registers as in micro_full; a run-time row count kept them on the stack and
/// ran ~3× slower per product).
BF16_TARGET
__attribute__((always_inline)) static inline void micro_rows(const uint16_t *a, int64_t lda, const uint16_t *panel, int64_t kc, float *c,
                                                             int64_t ldc, const int rows, int cols, int add, float scale) {
    __m512 acc[MR][2];
    _Pragma("clang loop unroll(full)") for (int r = 0; r < rows; r++) { acc[r][0] = _mm512_setzero_ps(); acc[r][1] = _mm512_setzero_ps(); }
    const int64_t kp = kc / 2;
    for (int64_t p = 0; p < kp; p++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(panel + p * 64);
        const __m512bh b1 = (__m512bh)_mm512_loadu_si512(panel + p * 64 + 32);
        _Pragma("clang loop unroll(full)") for (int r = 0; r < rows; r++) {
            uint32_t v;
            memcpy(&v, a + r * lda + 2 * p, 4);
            const __m512bh x = (__m512bh)_mm512_set1_epi32((int)v);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, b1);
        }
    }
    if (kc & 1) odd_tail(acc, a, lda, panel, kc, rows);
    store_tile(acc, c, ldc, rows, cols, add, scale);
}

#define MICRO_ROWS(R) BF16_TARGET __attribute__((noinline)) static void micro_##R(const uint16_t *a, int64_t lda, const uint16_t *panel, \
    int64_t kc, float *c, int64_t ldc, int cols, int add, float scale) { micro_rows(a, lda, panel, kc, c, ldc, R, cols, add, scale); }
MICRO_ROWS(1) MICRO_ROWS(2) MICRO_ROWS(3) MICRO_ROWS(4) MICRO_ROWS(5) MICRO_ROWS(6)
MICRO_ROWS(7) MICRO_ROWS(8) MICRO_ROWS(9) MICRO_ROWS(10) MICRO_ROWS(11)
#undef MICRO_ROWS

/// C tile [rows ≤ 12, cols ≤ 32] (+)= A[rows, kc] · panel.
BF16_TARGET
static inline void micro(const uint16_t *a, int64_t lda, const uint16_t *panel, int64_t kc, float *c, int64_t ldc,
                         int rows, int cols, int add, float scale) {
    typedef void (*tile_fn)(const uint16_t *, int64_t, const uint16_t *, int64_t, float *, int64_t, int, int, float);
    static const tile_fn part[MR] = {NULL, micro_1, micro_2, micro_3, micro_4, micro_5, micro_6, micro_7, micro_8, micro_9, micro_10, micro_11};
    if (rows == MR) micro_full(a, lda, panel, kc, c, ldc, cols, add, scale);
    else part[rows](a, lda, panel, kc, c, ldc, cols, add, scale);
}

/// C[m, b0:b1] (+)= A[m, k0:k0+kc] · the packed panels of columns [b0, b1) (panel q at panels + q·kp·64,
/// kp = ⌈kc/2⌉): m in blocks of MC, each block against every panel in 12-row tiles.
BF16_TARGET
static void block_product(const uint16_t *a, int64_t lda, const uint16_t *panels, int64_t kc, float *c, int64_t ldc,
                          int64_t m, int64_t b0, int64_t b1, int add, float scale) {
    const int64_t kp = (kc + 1) / 2, count = (b1 - b0 + NR - 1) / NR;
    for (int64_t m0 = 0; m0 < m; m0 += MC) {
        const int64_t mc = m - m0 < MC ? m - m0 : MC;
        for (int64_t q = 0; q < count; q++) {
            const int64_t c0 = b0 + q * NR;
            const int cols = (int)(b1 - c0 < NR ? b1 - c0 : NR);
            for (int64_t r = 0; r < mc; r += MR)
                micro(a + (m0 + r) * lda, lda, panels + q * kp * 64, kc, c + (m0 + r) * ldc + c0, ldc,
                      (int)(mc - r < MR ? mc - r : MR), cols, add, scale);
        }
    }
}

BF16_TARGET
static void bgemm_avx512(const uint16_t *a, int64_t lda, const uint16_t *w, int64_t ldw, float *c, int64_t ldc,
                         int64_t m, int64_t k, int64_t n0, int64_t n1, int accumulate, float alpha, uint16_t *pack) {
    // Columns in blocks of ≤ NC (the packed block stays in L3 instead of streaming a whole lm_head's
    // panels through memory); per block: k in blocks of KC, m in blocks of MC, panels, 12-row tiles.
    // The k blocks of an element are still summed in the same order (block by block into C).
    for (int64_t b0 = n0; b0 < n1; b0 += NC) {
        const int64_t b1 = n1 - b0 < NC ? n1 : b0 + NC;
        const int64_t panels = (b1 - b0 + NR - 1) / NR;
        for (int64_t k0 = 0; k0 < k; k0 += KC) {
            const int64_t kc = k - k0 < KC ? k - k0 : KC, kp = (kc + 1) / 2;
            for (int64_t q = 0; q < panels; q++) {
                const int64_t c0 = b0 + q * NR;
                const int64_t next = b1 - (c0 + NR);  // rows of the next panel in this block
                pack_panel(w, ldw, c0, (int)(b1 - c0 < NR ? b1 - c0 : NR), k0, kc, pack + q * kp * 64,
                           (int)(next <= 0 ? 0 : next < NR ? next : NR));
            }
            block_product(a + k0, lda, pack, kc, c, ldc, m, b0, b1, accumulate || k0 > 0,
                          k0 + kc >= k ? alpha : 1.0f);  // the whole sum, then × alpha
        }
    }
}

/// The same product from a weight repacked once (i2q_bgemm_repack): the same panels, tiles and order
/// of additions, so the same bits as packing per call.
BF16_TARGET
static void bgemm_repacked_avx512(const uint16_t *a, int64_t lda, const uint16_t *packed, float *c, int64_t ldc,
                                  int64_t m, int64_t k, int64_t n, int64_t n0, int64_t n1, int accumulate, float alpha) {
    const int64_t all = (n + NR - 1) / NR;
    for (int64_t b0 = n0; b0 < n1; b0 += NC) {
        const int64_t b1 = n1 - b0 < NC ? n1 : b0 + NC;
        const uint16_t *kblock = packed;  // the panels of k block k0, for all n
        for (int64_t k0 = 0; k0 < k; k0 += KC) {
            const int64_t kc = k - k0 < KC ? k - k0 : KC, kp = (kc + 1) / 2;
            block_product(a + k0, lda, kblock + (b0 / NR) * kp * 64, kc, c, ldc, m, b0, b1, accumulate || k0 > 0,
                          k0 + kc >= k ? alpha : 1.0f);
            kblock += all * kp * 64;
        }
    }
}

BF16_TARGET
static void repack_avx512(const uint16_t *w, int64_t ldw, int64_t n, int64_t k, int64_t p0, int64_t p1, uint16_t *out) {
    const int64_t all = (n + NR - 1) / NR;
    uint16_t *kblock = out;
    for (int64_t k0 = 0; k0 < k; k0 += KC) {
        const int64_t kc = k - k0 < KC ? k - k0 : KC, kp = (kc + 1) / 2;
        for (int64_t q = p0; q < p1; q++) {
            const int64_t c0 = q * NR, next = n - (c0 + NR);
            pack_panel(w, ldw, c0, (int)(n - c0 < NR ? n - c0 : NR), k0, kc, kblock + q * kp * 64,
                       (int)(q + 1 >= p1 || next <= 0 ? 0 : next < NR ? next : NR));
        }
        kblock += all * kp * 64;
    }
}
#endif

static int bgemm_native(void) {
#if I2Q_X86
    static int has = -1;  // cached CPU check (a benign race: every thread stores the same value)
    int h = __atomic_load_n(&has, __ATOMIC_RELAXED);
    if (h < 0) { h = i2q_cpu_has_avx512bf16(); __atomic_store_n(&has, h, __ATOMIC_RELAXED); }
    return h && i2q_q4a_impl(I2Q_IMPL_AUTO) == I2Q_IMPL_VNNI;
#else
    return 0;
#endif
}

int i2q_bgemm(const uint16_t *a, int64_t lda, const uint16_t *w, int64_t ldw, float *c, int64_t ldc,
              int64_t m, int64_t k, int64_t n0, int64_t n1, int accumulate, float alpha, void *pack) {
    if (!bgemm_native()) return 0;
#if I2Q_X86
    bgemm_avx512(a, lda, w, ldw, c, ldc, m, k, n0, n1, accumulate, alpha, (uint16_t *)pack);
#endif
    return 1;
}

size_t i2q_bgemm_repack_bytes(int64_t k, int64_t n) {
    size_t pairs = 0;
    for (int64_t k0 = 0; k0 < k; k0 += KC) pairs += (size_t)((k - k0 < KC ? k - k0 : KC) + 1) / 2;
    return (size_t)((n + NR - 1) / NR) * pairs * NR * 4;
}

int i2q_bgemm_repack(const uint16_t *w, int64_t ldw, int64_t n, int64_t k, int64_t p0, int64_t p1, void *out) {
    if (!bgemm_native()) return 0;
#if I2Q_X86
    repack_avx512(w, ldw, n, k, p0, p1, (uint16_t *)out);
#endif
    return 1;
}

int i2q_bgemm_repacked(const uint16_t *a, int64_t lda, const void *packed, float *c, int64_t ldc,
                       int64_t m, int64_t k, int64_t n, int64_t n0, int64_t n1, int accumulate, float alpha) {
    if (!bgemm_native()) return 0;
#if I2Q_X86
    bgemm_repacked_avx512(a, lda, (const uint16_t *)packed, c, ldc, m, k, n, n0, n1, accumulate, alpha);
#endif
    return 1;
}
