// 4-bit table weights (bitsandbytes NF4 / FP4) × int8 activations: the decode (m = 1) GEMV.
//
// Model of the approximation: llama.cpp's IQ4_NL × Q8_0 dot product (a 16-entry int8 code table
// looked up with `vpshufb`). The weight value is code[q] · absmax (bitsandbytes `dequantize_4bit`);
// here code[q] is replaced by t[q] / 127 with t[q] = round(127 · code[q]) (the int8 table the caller
// passes), and x by x̂ = d_b · q8 (i2q_q8_quantize, blocks of 32). Per output row,
//
//     y = Σ_c code[q_c]·a_c·x_c  ≈  Σ_{q8 blocks b} (d_b · a_b / 127) · Σ_{c∈b} t[q_c]·q8_c
//
// where the inner sums are exact int32. Bound against the exact float reference (bnb's dequantized
// weights w times the float32 x): |y − y_ref| ≤ Σ_c (|w̃_c|·|x_c − x̂_c| + a_c/254·|x_c|) + float32
// rounding, with w̃ = t[q]·a/127, |x − x̂| ≤ max|x_b|/254 and |code − t/127| ≤ 1/254 (Table4GemvTests).
// `I2Q_EXACT_GEMV=1` keeps the exact float kernel instead.
//
// Layout (bitsandbytes): `packed` is the row-major flattened tensor, two codes per byte, the FIRST
// element in the HIGH nibble; absmax blocks of `bs` elements of the flattened tensor. Requires
// cols % 32 == 0 and bs % 32 == 0, so each q8 block of 32 lies in one absmax block. The activation
// record's lo[p] is the even input of weight byte p (here its high nibble), hi[p] the odd one.
//
// Integer sums, identical in the three implementations (so results are bit-identical):
// - scalar: i_L = Σ t[w>>4]·lo + t[w&15]·hi over lane L's 4 bytes;
// - AVX2: `vpshufb` gives t[q] as s8; `vpmaddubsw(|t|, sign(q8, t))` is t·q8 in exact int16 pairs
//   (|t|, |q8| ≤ 127: ≤ 32258), `vpmaddwd` by 1 adds them into the lane's int32;
// - AVX-512 VNNI: u = t + 127 ∈ [0, 254] as u8, `vpdpbusd(u, q8)` − 127·Σq8 = Σ t·q8 (exact int32).
// Then, per lane, ds = d_b · a_blk (one float32 multiply, a_blk the block's absmax), acc_L =
// fma(float(i_L), ds, acc_L), and the 16 lanes reduced by the fixed tree (reduce16). The 1/127 is
// folded in once per row: y = v / 127 (float32 division).

#include "q8.h"

/// absmax of block b: float32 [blocks], or bnb double quantization dynamic[code[b]] · nested[b/256] + offset.
static inline float table_absmax(const i2q_absmax *a, int64_t b) {
    if (a->codes) return a->dynamic[a->codes[b]] * a->nested[b >> 8] + a->offset;
    return a->f32[b];
}

/// The absmax of every q8 block (32 elements) of the row starting at flattened element `flat`:
/// sb[0..<nb], then 0 up to nbp (a multiple of 4). One division per row, each absmax computed once.
static inline void row_absmax(const i2q_absmax *a, int64_t flat, int64_t bs, int64_t nb, int64_t nbp, float *sb) {
    int64_t blk = flat / bs, pos = flat % bs;
    float v = table_absmax(a, blk);
    for (int64_t i = 0; i < nb; i++) {
        sb[i] = v;
        pos += 32;
        if (pos == bs && i + 1 < nb) { pos = 0; v = table_absmax(a, ++blk); }
    }
    for (int64_t i = nb; i < nbp; i++) sb[i] = 0;
}

/// A [nbp]-float scratch: on the stack when small.
#define SCRATCH(name, n) float name##_stack[1024]; float *name = (n) <= 1024 ? name##_stack : (float *)malloc((size_t)(n) * sizeof(float))
#define SCRATCH_FREE(name) if (name != name##_stack) free(name)

/// How a chunk's 4 q8 blocks find their absmax (rows starting on a block boundary, bs/32 = q8
/// blocks per absmax block a power of two): mode 1 (bs = 32: lanes read af[4c + L/4]), 2 (bs = 64:
/// half h reads af[2c + h]), 4 (bs ≥ 128: one value af[c >> shift]); else 0 (per q8 block, sb).
typedef struct { int mode, shift; } table_mode;

static inline table_mode row_mode(int64_t flat, int64_t bs) {
    const int64_t per = bs / 32;
    table_mode m = {0, 0};
    if (flat % bs != 0 || (per & (per - 1)) != 0) return m;
    m.mode = per == 1 ? 1 : (per == 2 ? 2 : 4);
    while (m.mode == 4 && ((int64_t)4 << m.shift) < per) m.shift++;
    return m;
}

/// af[k] = absmax of block flat/bs + k for the ceil(cols/bs) blocks of a block-aligned row, then 0
/// up to `cap` entries (a partial last chunk of mode 1 reads up to 3 past the end).
static inline void row_block_absmax(const i2q_absmax *a, int64_t flat, int64_t bs, int64_t cols, int64_t cap, float *af) {
    const int64_t b0 = flat / bs, n = (cols + bs - 1) / bs;
    for (int64_t k = 0; k < n; k++) af[k] = table_absmax(a, b0 + k);
    for (int64_t k = n; k < cap; k++) af[k] = 0;
}

/// A row's mode and its absmax table in sb ([nbp + 4]): per absmax block for modes 1/2/4, per q8 block for 0.
static inline table_mode row_setup(const i2q_absmax *a, int64_t flat, int64_t bs, int64_t cols, int64_t nb, int64_t nbp, float *sb) {
    const table_mode m = row_mode(flat, bs);
    if (m.mode == 0) row_absmax(a, flat, bs, nb, nbp, sb); else row_block_absmax(a, flat, bs, cols, nbp + 4, sb);
    return m;
}

static void rows_scalar(const uint8_t *packed, int64_t cols, int64_t bs, const i2q_absmax *a, const int8_t *t,
                        int64_t r0, int64_t r1, const q8chunk *xc, float *y, int accumulate) {
    const int64_t nb = cols / 32, nchunks = (nb + 3) / 4, nbp = 4 * nchunks;
    SCRATCH(sb, nbp);
    for (int64_t r = r0; r < r1; r++) {
        const int64_t flat = r * cols;
        const uint8_t *w = packed + flat / 2;
        row_absmax(a, flat, bs, nb, nbp, sb);
        float acc[16] = {0};
        for (int64_t c = 0; c < nchunks; c++) {
            const q8chunk *ch = xc + c;
            const int nblk = nb - 4 * c < 4 ? (int)(nb - 4 * c) : 4;
            const float *s4 = sb + 4 * c;
            for (int L = 0; L < 4 * nblk; L++) {
                const uint8_t *wb = w + 64 * c + 4 * L;
                int32_t s = 0;
                for (int k = 0; k < 4; k++) s += (int32_t)t[wb[k] >> 4] * ch->lo[4 * L + k] + (int32_t)t[wb[k] & 15] * ch->hi[4 * L + k];
                const float ds = ch->d[L] * s4[L / 4];
                acc[L] = fmaf((float)s, ds, acc[L]);
            }
        }
        const float v = reduce16(acc) / 127.0f;
        y[r] = accumulate ? y[r] + v : v;
    }
    SCRATCH_FREE(sb);
}

#if I2Q_X86
I2Q_AVX2_TARGET __attribute__((always_inline))
static inline __m256 half_avx2(__m256 acc, __m256i wv, __m256i tbl, const q8chunk *ch, int h, __m256 sv) {
    const __m256i nib = _mm256_set1_epi8(15);
    const __m256i te = _mm256_shuffle_epi8(tbl, _mm256_and_si256(_mm256_srli_epi16(wv, 4), nib));  // even inputs
    const __m256i to = _mm256_shuffle_epi8(tbl, _mm256_and_si256(wv, nib));                         // odd inputs
    const __m256i xe = _mm256_load_si256((const __m256i *)(ch->lo + 32 * h));
    const __m256i xo = _mm256_load_si256((const __m256i *)(ch->hi + 32 * h));
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i pe = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(te), _mm256_sign_epi8(xe, te)), ones);
    const __m256i po = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(to), _mm256_sign_epi8(xo, to)), ones);
    const __m256 ds = _mm256_mul_ps(_mm256_load_ps(ch->d + 8 * h), sv);
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(pe, po)), ds, acc);
}

I2Q_AVX2_TARGET __attribute__((always_inline))
static inline float row_avx2(const uint8_t *w, const float *s, int64_t nb, int shift, __m256i tbl, const q8chunk *xc, const int mode) {
    const __m256i first = _mm256_set_epi32(1, 1, 1, 1, 0, 0, 0, 0), second = _mm256_set_epi32(3, 3, 3, 3, 2, 2, 2, 2);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int64_t c = 0; c * 4 < nb; c++) {
        const int nblk = nb - 4 * c < 4 ? (int)(nb - 4 * c) : 4;
        __m256 sv0, sv1;
        if (mode == 2) {
            sv0 = _mm256_broadcast_ss(s + 2 * c);
            sv1 = nblk > 2 ? _mm256_broadcast_ss(s + 2 * c + 1) : _mm256_setzero_ps();
        } else if (mode == 4) {
            sv0 = sv1 = _mm256_broadcast_ss(s + (c >> shift));
        } else {  // 1: af per q8 block; 0: sb per q8 block — both [4c..4c+3]
            const __m256 s4 = _mm256_castps128_ps256(_mm_loadu_ps(s + 4 * c));
            sv0 = _mm256_permutevar8x32_ps(s4, first);
            sv1 = _mm256_permutevar8x32_ps(s4, second);
        }
        __m256i w0, w1;
        if (nblk == 4) {
            w0 = _mm256_loadu_si256((const __m256i *)(w + 64 * c));
            w1 = _mm256_loadu_si256((const __m256i *)(w + 64 * c + 32));
        } else {  // partial last chunk: padding bytes 0, padding lanes' absmax 0 (their d is 0 too)
            uint8_t tmp[64] = {0};
            memcpy(tmp, w + 64 * c, (size_t)(16 * nblk));
            w0 = _mm256_loadu_si256((const __m256i *)tmp);
            w1 = _mm256_loadu_si256((const __m256i *)(tmp + 32));
            const __m256i keep0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(4 * nblk), _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0));
            const __m256i keep1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(4 * nblk), _mm256_set_epi32(15, 14, 13, 12, 11, 10, 9, 8));
            sv0 = _mm256_and_ps(sv0, _mm256_castsi256_ps(keep0));
            sv1 = _mm256_and_ps(sv1, _mm256_castsi256_ps(keep1));
        }
        acc0 = half_avx2(acc0, w0, tbl, xc + c, 0, sv0);
        if (nblk > 2) acc1 = half_avx2(acc1, w1, tbl, xc + c, 1, sv1);
    }
    return reduce16_avx2(acc0, acc1);
}

I2Q_AVX2_TARGET
static void rows_avx2(const uint8_t *packed, int64_t cols, int64_t bs, const i2q_absmax *a, const int8_t *t,
                      int64_t r0, int64_t r1, const q8chunk *xc, float *y, int accumulate) {
    const int64_t nb = cols / 32, nbp = 4 * ((nb + 3) / 4);
    const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)t));
    SCRATCH(sb, nbp + 4);
    for (int64_t r = r0; r < r1; r++) {
        const int64_t flat = r * cols;
        const uint8_t *w = packed + flat / 2;
        const table_mode m = row_setup(a, flat, bs, cols, nb, nbp, sb);
        float v;
        switch (m.mode) {
        case 1: v = row_avx2(w, sb, nb, m.shift, tbl, xc, 1); break;
        case 2: v = row_avx2(w, sb, nb, m.shift, tbl, xc, 2); break;
        case 4: v = row_avx2(w, sb, nb, m.shift, tbl, xc, 4); break;
        default: v = row_avx2(w, sb, nb, m.shift, tbl, xc, 0); break;
        }
        v = v / 127.0f;
        y[r] = accumulate ? y[r] + v : v;
    }
    SCRATCH_FREE(sb);
}

I2Q_VNNI_TARGET __attribute__((always_inline))
static inline float row_vnni(const uint8_t *w, const float *s, int64_t nb, int shift, __m512i tbl, const q8chunk *xc, const int mode) {
    const __m512i nib = _mm512_set1_epi8(15), k127 = _mm512_set1_epi32(127);
    const __m512i quarter = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);  // lane / 4
    const __m512i eighth = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);   // lane / 8
    __m512 acc = _mm512_setzero_ps();
    for (int64_t c = 0; c * 4 < nb; c++) {
        const int nblk = nb - 4 * c < 4 ? (int)(nb - 4 * c) : 4;
        __m512 sv;
        if (mode == 2) sv = _mm512_permutexvar_ps(eighth, _mm512_castps128_ps512(_mm_castpd_ps(_mm_load_sd((const double *)(s + 2 * c)))));
        else if (mode == 4) sv = _mm512_set1_ps(s[c >> shift]);
        else sv = _mm512_permutexvar_ps(quarter, _mm512_castps128_ps512(_mm_loadu_ps(s + 4 * c)));
        const __mmask16 lanes = (__mmask16)((1u << (4 * nblk)) - 1);
        const __m512i wv = _mm512_maskz_loadu_epi8((__mmask64)(nblk == 4 ? ~0ull : (1ull << (16 * nblk)) - 1), w + 64 * c);
        const q8chunk *ch = xc + c;
        const __m512i ue = _mm512_shuffle_epi8(tbl, _mm512_and_si512(_mm512_srli_epi16(wv, 4), nib));
        const __m512i uo = _mm512_shuffle_epi8(tbl, _mm512_and_si512(wv, nib));
        __m512i isum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ue, _mm512_load_si512(ch->lo));
        isum = _mm512_dpbusd_epi32(isum, uo, _mm512_load_si512(ch->hi));
        isum = _mm512_sub_epi32(isum, _mm512_mullo_epi32(k127, _mm512_load_si512(ch->xsum)));
        const __m512 ds = _mm512_maskz_mul_ps(lanes, _mm512_load_ps(ch->d), sv);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), ds, acc);
    }
    return reduce16_avx512(acc);
}

I2Q_VNNI_TARGET
static void rows_vnni(const uint8_t *packed, int64_t cols, int64_t bs, const i2q_absmax *a, const int8_t *t,
                      int64_t r0, int64_t r1, const q8chunk *xc, float *y, int accumulate) {
    const int64_t nb = cols / 32, nbp = 4 * ((nb + 3) / 4);
    SCRATCH(sb, nbp + 4);
    uint8_t u[16];
    for (int i = 0; i < 16; i++) u[i] = (uint8_t)(t[i] + 127);
    const __m512i tbl = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)u));
    for (int64_t r = r0; r < r1; r++) {
        const int64_t flat = r * cols;
        const uint8_t *w = packed + flat / 2;
        const table_mode m = row_setup(a, flat, bs, cols, nb, nbp, sb);
        float v;
        switch (m.mode) {
        case 1: v = row_vnni(w, sb, nb, m.shift, tbl, xc, 1); break;
        case 2: v = row_vnni(w, sb, nb, m.shift, tbl, xc, 2); break;
        case 4: v = row_vnni(w, sb, nb, m.shift, tbl, xc, 4); break;
        default: v = row_vnni(w, sb, nb, m.shift, tbl, xc, 0); break;
        }
        v = v / 127.0f;
        y[r] = accumulate ? y[r] + v : v;
    }
    SCRATCH_FREE(sb);
}
#endif

void i2q_table4_gemv(const uint8_t *packed, int64_t cols, int64_t bs, const i2q_absmax *absmax, const int8_t *table,
                     int64_t r0, int64_t r1, const void *xq, float *y, int accumulate, int impl) {
    const q8chunk *xc = (const q8chunk *)xq;
    switch (i2q_q4a_impl(impl)) {
#if I2Q_X86
    case I2Q_IMPL_VNNI: rows_vnni(packed, cols, bs, absmax, table, r0, r1, xc, y, accumulate); return;
    case I2Q_IMPL_AVX2: rows_avx2(packed, cols, bs, absmax, table, r0, r1, xc, y, accumulate); return;
#endif
    default: rows_scalar(packed, cols, bs, absmax, table, r0, r1, xc, y, accumulate); return;
    }
}
