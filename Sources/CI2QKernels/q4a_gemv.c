// Affine int4 weights × int8 activations: the decode (m = 1) GEMV.
//
// Model of the approximation: llama.cpp's Q4_1 × Q8_1 dot product (ggml `ggml_vec_dot_q4_1_q8_1`):
// the activations are quantized once per token to int8 in blocks of 32 with one float scale each
// (d_b = max|x_b| / 127, q = round(x / d_b)), and the weight codes multiply them in integers.
// Exact reference: AutoAWQ's float dequantization, W = (q − z) · s, times the float32 x
// (`PackedFourBit.dequantize`, the `QuantGemv` float path). Per output row and weight group g,
//
//     Σ_{c∈g} (q_c − z)·s·x_c  ≈  s · Σ_{b⊂g} d_b · Σ_{c∈b} (q_c − z)·q8_c
//
// where the inner sums are exact int32 (`vpdpbusd`: u8 codes × s8 activations; the zero point is
// applied in integers as z·Σq8 per lane). So the result is the exact product of the dequantized
// weights with the dequantized activations x̂ = d_b·q8, plus float32 rounding of a short sum:
//
//     |y − y_ref| ≤ Σ_c |w_c|·|x_c − x̂_c| + rounding ≤ Σ_c |w_c| · max_b|x_b| / 254 + rounding
//
// (round to nearest: |x − x̂| ≤ d_b / 2 = max|x_b| / 254). Tests: Int8GemvTests (bound per row,
// and the scalar and VNNI paths give identical bits).
//
// Float arithmetic (identical in both implementations, so results are bit-identical): 16 lanes per
// 128 inputs; lane L of chunk c covers inputs 128c + 32·(L/4) + 8·(L%4) ... +7 (8 consecutive inputs
// of block 4c + L/4). Per chunk and lane: i = Σ q·q8 − z·Σq8 (int32, exact), ds = d_b · s_g (one
// float32 multiply), acc_L = fma(float(i), ds, acc_L). Finally the 16 lanes are added as a tree:
// (L, L+8), then (L, L+4), (L, L+2), (L, L+1). Three implementations, chosen at run time
// (i2q_q4a_impl): AVX-512 VNNI, AVX2+FMA+F16C, portable scalar — all bit-identical.
//
// Activation buffer, one 256-byte record per 128 inputs (the last one zero-padded):
//   int8  lo[64]    lo[16j + i] = q8 of input 32j + 2i     (j: block in the chunk, i < 16)
//   int8  hi[64]    hi[16j + i] = q8 of input 32j + 2i + 1
//   int32 xsum[16]  xsum[L] = Σ q8 over the 8 inputs of lane L
//   float d[16]     d[L] = d of block L/4
// so that byte p of a 64-byte load of packed weights (block p/16, inputs 2(p%16) and 2(p%16)+1:
// low and high nibble) lines up with lo[p] and hi[p].

#pragma STDC FP_CONTRACT OFF

#include "q8.h"

int i2q_cpu_has_avx512vnni(void) {
#if I2Q_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
    return 0;
#endif
}

int i2q_cpu_has_avx512bf16(void) {
#if I2Q_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

size_t i2q_q8_bytes(int64_t k) { return (size_t)((k + 127) / 128) * sizeof(q8chunk); }

void i2q_q8_quantize(const float *x, int64_t k, void *out) {
    q8chunk *chunks = (q8chunk *)out;
    const int64_t nb = k / 32;
    memset(out, 0, i2q_q8_bytes(k));
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + 32 * b;
        float amax = 0;
        int finite = 1;
        for (int i = 0; i < 32; i++) {
            const float a = fabsf(xb[i]);
            if (!isfinite(a)) finite = 0;
            else if (a > amax) amax = a;
        }
        q8chunk *ch = chunks + b / 4;
        const int j = (int)(b % 4);
        int8_t q[32];
        float d;
        if (finite) {
            d = amax / 127.0f;
            const float id = d != 0 ? 1.0f / d : 0.0f;
            for (int i = 0; i < 32; i++) {
                // Round to nearest even without a libm call: |x·id| ≤ 127 (+ rounding), and adding
                // then subtracting 1.5·2²³ rounds a float of magnitude < 2²² to an integer (RNE).
                float v = (xb[i] * id + 12582912.0f) - 12582912.0f;
                v = v > 127 ? 127 : (v < -127 ? -127 : v);
                q[i] = (int8_t)v;
            }
        } else {
            d = NAN;
            memset(q, 0, sizeof q);
        }
        for (int i = 0; i < 16; i++) {
            ch->lo[16 * j + i] = q[2 * i];
            ch->hi[16 * j + i] = q[2 * i + 1];
        }
        for (int m = 0; m < 4; m++) {
            int32_t s = 0;
            for (int t = 0; t < 8; t++) s += q[8 * m + t];
            ch->xsum[4 * j + m] = s;
            ch->d[4 * j + m] = d;
        }
    }
}

void i2q_q8_dequantize(const void *xq, int64_t k, float *out) {
    const q8chunk *chunks = (const q8chunk *)xq;
    for (int64_t c = 0; c < k; c++) {
        const q8chunk *ch = chunks + c / 128;
        const int64_t e = c % 128, j = e / 32, i = e % 32;
        const int8_t q = (i % 2 == 0) ? ch->lo[16 * j + i / 2] : ch->hi[16 * j + i / 2];
        out[c] = ch->d[4 * j] * (float)q;
    }
}

/// IEEE binary16 bits → float32 (exact, subnormals included).
static inline float f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1F, m = h & 0x3FF, bits;
    if (e == 0x1F) {
        bits = sign | 0x7F800000 | (m << 13);
    } else if (e != 0) {
        bits = sign | ((e + 112) << 23) | (m << 13);
    } else if (m == 0) {
        bits = sign;
    } else {  // subnormal: normalise
        e = 113;
        while ((m & 0x400) == 0) { m <<= 1; e--; }
        bits = sign | (e << 23) | ((m & 0x3FF) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}


/// Portable implementation: the lane arithmetic spelled out (bit-identical to the VNNI path).
static void rows_scalar(const uint8_t *packed, const uint16_t *scales, const uint8_t *zeros, int64_t cols,
                        int64_t unit, int64_t r0, int64_t r1, const q8chunk *xc, float *y, int accumulate) {
    const int64_t nb = cols / 32, bpg = unit / 32, gpr = cols / unit, nchunks = (nb + 3) / 4;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *w = packed + r * (cols / 2);
        const uint16_t *sc = scales + r * gpr;
        const uint8_t *zs = zeros ? zeros + r * gpr : NULL;
        float acc[16] = {0};
        for (int64_t c = 0; c < nchunks; c++) {
            const q8chunk *ch = xc + c;
            for (int L = 0; L < 16; L++) {
                const int64_t b = 4 * c + L / 4;
                if (b >= nb) continue;  // padding lanes add nothing (the vector path adds +0)
                const uint8_t *wb = w + 64 * c + 4 * L;  // bytes 4L..4L+3 of the chunk's 64
                int32_t s = 0;
                for (int t = 0; t < 4; t++)
                    s += (int32_t)(wb[t] & 15) * ch->lo[4 * L + t] + (int32_t)(wb[t] >> 4) * ch->hi[4 * L + t];
                const int64_t g = b / bpg;
                s -= (int32_t)(zs ? zs[g] : 8) * ch->xsum[L];
                const float ds = ch->d[L] * f16_to_f32(sc[g]);
                acc[L] = fmaf((float)s, ds, acc[L]);
            }
        }
        const float v = reduce16(acc);
        y[r] = accumulate ? y[r] + v : v;
    }
}

#if I2Q_X86


/// Scale and zero point of every lane's block for a chunk, general group sizes (any multiple of 32).
I2Q_VNNI_TARGET
static inline void lanes_generic(const uint16_t *sc, const uint8_t *zs, int64_t bpg, int64_t b0, int nblk,
                                 __m512 *sv, __m512i *zv) {
    const __m512i quarter = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);  // lane / 4
    float s4[4] = {0, 0, 0, 0};
    int32_t z4[4] = {0, 0, 0, 0};
    for (int i = 0; i < nblk; i++) {
        const int64_t g = (b0 + i) / bpg;
        s4[i] = _cvtsh_ss(sc[g]);
        z4[i] = zs ? zs[g] : 8;
    }
    *sv = _mm512_permutexvar_ps(quarter, _mm512_castps128_ps512(_mm_loadu_ps(s4)));
    *zv = _mm512_permutexvar_epi32(quarter, _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)z4)));
}

/// One chunk of one row: acc += float(Σ q·q8 − z·Σq8) · (d · s) per lane.
I2Q_VNNI_TARGET __attribute__((always_inline))
static inline __m512 chunk_vnni(__m512 acc, __m512i wv, const q8chunk *ch, __m512 sv, __m512i zv, __mmask16 lanes) {
    const __m512i nib = _mm512_set1_epi8(15);
    const __m512i lo = _mm512_and_si512(wv, nib);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(wv, 4), nib);
    __m512i isum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_load_si512(ch->lo));
    isum = _mm512_dpbusd_epi32(isum, hi, _mm512_load_si512(ch->hi));
    isum = _mm512_sub_epi32(isum, _mm512_mullo_epi32(zv, _mm512_load_si512(ch->xsum)));
    const __m512 ds = _mm512_maskz_mul_ps(lanes, _mm512_load_ps(ch->d), sv);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), ds, acc);
}

/// Scale and zero-point lanes of the j-th chunk of a window (row_vnni_pow2): BPG ≥ 1 permutes the
/// window's 16 converted groups S/Z by `idx`; BPG = 0 (bpg ≥ 4) broadcasts group j / (bpg/4).
I2Q_VNNI_TARGET __attribute__((always_inline))
static inline void window_lanes(const int BPG, int64_t j, int64_t bpg, const float *sw, const int32_t *zw,
                                __m512 S, __m512i Z, __m512i idx, __m512 *sv, __m512i *zv) {
    if (BPG == 0) {
        const int64_t g = j / (bpg / 4);
        *sv = _mm512_set1_ps(sw[g]);
        *zv = _mm512_set1_epi32(zw[g]);
    } else {
        *sv = _mm512_permutexvar_ps(idx, S);
        *zv = _mm512_permutexvar_epi32(idx, Z);
    }
}

/// One row, group size 32·bpg with bpg a power of two (BPG: 1, 2, or 0 for bpg ≥ 4 — a constant
/// after inlining). Scales/zeros are read 16 groups at a time ("window", converted once); a window
/// spans cpw = 4·bpg chunks. Lane L of the j-th chunk of a window reads group (4j + L/4) / bpg of
/// it: bpg = 1: 4j + L/4; bpg = 2: 2j + L/8; bpg ≥ 4: j / (bpg/4) for all lanes.
I2Q_VNNI_TARGET __attribute__((always_inline))
static inline float row_vnni_pow2(const uint8_t *w, const uint16_t *sc, const uint8_t *zs, int64_t nb, int64_t bpg,
                                  int64_t gpr, const q8chunk *xc, const int BPG) {
    const int64_t nfull = nb / 4, cpw = 4 * bpg;
    const int tail = (int)(nb % 4);
    const __m512i idx0 = BPG == 1 ? _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0)
                                  : _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i step = _mm512_set1_epi32(BPG == 1 ? 4 : 2);
    __m512 acc = _mm512_setzero_ps();
    __m512i Z = _mm512_set1_epi32(8);
    float sw[16];
    int32_t zw[16];
    for (int64_t c0 = 0; c0 * 4 < nb; c0 += cpw) {  // windows of 16 groups
        const int64_t g0 = (c0 / cpw) * 16, n = gpr - g0 < 16 ? gpr - g0 : 16;
        const __mmask16 m = (__mmask16)((1u << n) - 1);
        const __m512 S = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, sc + g0));  // [16] f32
        if (zs) Z = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, zs + g0));     // [16] i32
        if (BPG == 0) { _mm512_storeu_ps(sw, S); _mm512_storeu_si512(zw, Z); }
        __m512i idx = idx0;
        const int64_t cend = c0 + cpw < nfull ? c0 + cpw : nfull;
        int64_t c = c0;
        for (; c < cend; c++) {
            __m512 sv;
            __m512i zv;
            window_lanes(BPG, c - c0, bpg, sw, zw, S, Z, idx, &sv, &zv);
            if (BPG != 0) idx = _mm512_add_epi32(idx, step);
            acc = chunk_vnni(acc, _mm512_loadu_si512(w + 64 * c), xc + c, sv, zv, 0xFFFF);
        }
        if (tail && c == nfull && c < c0 + cpw) {  // the partial last chunk lies in this window
            __m512 sv;
            __m512i zv;
            window_lanes(BPG, c - c0, bpg, sw, zw, S, Z, idx, &sv, &zv);
            const __m512i wv = _mm512_maskz_loadu_epi8((__mmask64)((1ull << (16 * tail)) - 1), w + 64 * c);
            acc = chunk_vnni(acc, wv, xc + c, sv, zv, (__mmask16)((1u << (4 * tail)) - 1));
        }
    }
    return reduce16_avx512(acc);
}

/// One row, any group size 32·bpg (scale/zero lanes built per chunk: slower, for unusual groups).
I2Q_VNNI_TARGET
static float row_vnni_generic(const uint8_t *w, const uint16_t *sc, const uint8_t *zs, int64_t nb, int64_t bpg,
                              const q8chunk *xc) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t c = 0; c * 4 < nb; c++) {
        const int nblk = nb - 4 * c < 4 ? (int)(nb - 4 * c) : 4;
        __m512 sv;
        __m512i zv;
        lanes_generic(sc, zs, bpg, 4 * c, nblk, &sv, &zv);
        const __m512i wv = _mm512_maskz_loadu_epi8((__mmask64)(nblk == 4 ? ~0ull : (1ull << (16 * nblk)) - 1), w + 64 * c);
        acc = chunk_vnni(acc, wv, xc + c, sv, zv, (__mmask16)((1u << (4 * nblk)) - 1));
    }
    return reduce16_avx512(acc);
}

I2Q_VNNI_TARGET
static void rows_vnni(const uint8_t *packed, const uint16_t *scales, const uint8_t *zeros, int64_t cols,
                      int64_t unit, int64_t r0, int64_t r1, const q8chunk *xc, float *y, int accumulate) {
    const int64_t nb = cols / 32, bpg = unit / 32, gpr = cols / unit;
    const int pow2 = (bpg & (bpg - 1)) == 0;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *w = packed + r * (cols / 2);
        const uint16_t *sc = scales + r * gpr;
        const uint8_t *zs = zeros ? zeros + r * gpr : NULL;
        float v;
        if (pow2 && bpg == 1) v = row_vnni_pow2(w, sc, zs, nb, bpg, gpr, xc, 1);
        else if (pow2 && bpg == 2) v = row_vnni_pow2(w, sc, zs, nb, bpg, gpr, xc, 2);
        else if (pow2) v = row_vnni_pow2(w, sc, zs, nb, bpg, gpr, xc, 0);
        else v = row_vnni_generic(w, sc, zs, nb, bpg, xc);
        y[r] = accumulate ? y[r] + v : v;
    }
}

// MARK: AVX2 + FMA + F16C (no AVX-512): the same lane arithmetic in two 256-bit halves.
//
// Lanes 0-7 of a chunk are its weight bytes 0-31, lanes 8-15 bytes 32-63. `vpmaddubsw` multiplies
// the u8 codes (≤ 15) by the s8 activations and adds byte pairs into int16 — exact, as
// |2·15·127| = 3810 and the lo + hi sum ≤ 7620 < 32767 never saturate — and `vpmaddwd` by ones
// adds the int16 pairs into the lane's int32: the same exact integer i as `vpdpbusd`. Then
// ds = d·s (one multiply), fma(float(i), ds, acc), and the scalar path's reduction tree
// ((L, L+8) is the sum of the two halves): bit-identical to rows_scalar.


/// Lanes 8h..8h+7 of one chunk (h = 0, 1): int32 Σ q·q8 − z·Σq8, then acc = fma(float(i), d·s, acc).
I2Q_AVX2_TARGET __attribute__((always_inline))
static inline __m256 half_avx2(__m256 acc, __m256i wv, const q8chunk *ch, int h, __m256 sv, __m256i zv) {
    const __m256i nib = _mm256_set1_epi8(15);
    const __m256i lo = _mm256_and_si256(wv, nib);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(wv, 4), nib);
    const __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_load_si256((const __m256i *)(ch->lo + 32 * h))),
                                         _mm256_maddubs_epi16(hi, _mm256_load_si256((const __m256i *)(ch->hi + 32 * h))));
    __m256i isum = _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
    isum = _mm256_sub_epi32(isum, _mm256_mullo_epi32(zv, _mm256_load_si256((const __m256i *)(ch->xsum + 8 * h))));
    const __m256 ds = _mm256_mul_ps(_mm256_load_ps(ch->d + 8 * h), sv);
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), ds, acc);
}

/// One row: mode 1 (bpg = 1: lane L reads group 4c + L/4), 2 (bpg = 2: half h reads group 2c + h),
/// 4 (bpg a power of two ≥ 4: the chunk's one group c / (bpg/4), `shift` = log2(bpg/4)), or 0 (any
/// bpg: per-block tables sb/zb). sf/zf: the row's scales (f32) and zero points (i32), [gpr].
I2Q_AVX2_TARGET __attribute__((always_inline))
static inline float row_avx2(const uint8_t *w, const float *sf, const int32_t *zf, const float *sb, const int32_t *zb,
                             int64_t nb, int shift, const q8chunk *xc, const int mode) {
    const __m256i first = _mm256_set_epi32(1, 1, 1, 1, 0, 0, 0, 0), second = _mm256_set_epi32(3, 3, 3, 3, 2, 2, 2, 2);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int64_t c = 0; c * 4 < nb; c++) {
        const int nblk = nb - 4 * c < 4 ? (int)(nb - 4 * c) : 4;
        // Lane L reads block L/4: half 0 = blocks 0, 1; half 1 = blocks 2, 3 (padding blocks: s = z = 0).
        __m256 sv0, sv1;
        __m256i zv0, zv1;
        if (mode == 2) {
            sv0 = _mm256_broadcast_ss(sf + 2 * c);
            zv0 = _mm256_set1_epi32(zf[2 * c]);
            sv1 = nblk > 2 ? _mm256_broadcast_ss(sf + 2 * c + 1) : _mm256_setzero_ps();
            zv1 = nblk > 2 ? _mm256_set1_epi32(zf[2 * c + 1]) : _mm256_setzero_si256();
        } else if (mode == 4) {
            sv0 = sv1 = _mm256_broadcast_ss(sf + (c >> shift));
            zv0 = zv1 = _mm256_set1_epi32(zf[c >> shift]);
        } else {
            const float *s = mode == 1 ? sf : sb;
            const int32_t *z = mode == 1 ? zf : zb;
            const __m256 s4 = _mm256_castps128_ps256(_mm_loadu_ps(s + 4 * c));
            const __m256i z4 = _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(z + 4 * c)));
            sv0 = _mm256_permutevar8x32_ps(s4, first); sv1 = _mm256_permutevar8x32_ps(s4, second);
            zv0 = _mm256_permutevar8x32_epi32(z4, first); zv1 = _mm256_permutevar8x32_epi32(z4, second);
        }
        __m256i w0, w1;
        if (nblk == 4) {
            w0 = _mm256_loadu_si256((const __m256i *)(w + 64 * c));
            w1 = _mm256_loadu_si256((const __m256i *)(w + 64 * c + 32));
        } else {  // the partial last chunk: its 16·nblk bytes, zeros after (padding lanes add +0)
            uint8_t tmp[64] = {0};
            memcpy(tmp, w + 64 * c, (size_t)(16 * nblk));
            w0 = _mm256_loadu_si256((const __m256i *)tmp);
            w1 = _mm256_loadu_si256((const __m256i *)(tmp + 32));
            // Padding blocks of a partial chunk get s = 0 (d = 0 there too), as the scalar path skips them.
            if (mode != 0) {
                const __m256i keep0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(4 * nblk), _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0));
                const __m256i keep1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(4 * nblk), _mm256_set_epi32(15, 14, 13, 12, 11, 10, 9, 8));
                sv0 = _mm256_and_ps(sv0, _mm256_castsi256_ps(keep0)); zv0 = _mm256_and_si256(zv0, keep0);
                sv1 = _mm256_and_ps(sv1, _mm256_castsi256_ps(keep1)); zv1 = _mm256_and_si256(zv1, keep1);
            }
        }
        acc0 = half_avx2(acc0, w0, xc + c, 0, sv0, zv0);
        if (nblk > 2) acc1 = half_avx2(acc1, w1, xc + c, 1, sv1, zv1);
    }
    return reduce16_avx2(acc0, acc1);
}

I2Q_AVX2_TARGET
static void rows_avx2(const uint8_t *packed, const uint16_t *scales, const uint8_t *zeros, int64_t cols,
                      int64_t unit, int64_t r0, int64_t r1, const q8chunk *xc, float *y, int accumulate) {
    const int64_t nb = cols / 32, bpg = unit / 32, gpr = cols / unit, nbp = 4 * ((nb + 3) / 4);
    const int pow2 = (bpg & (bpg - 1)) == 0;
    const int mode = !pow2 ? 0 : (bpg == 1 ? 1 : (bpg == 2 ? 2 : 4));
    int shift = 0;
    while (mode == 4 && (4 << shift) < bpg) shift++;
    // The row's scales and zero points as f32 / i32 ([gpr + 4], zero-padded: a partial last chunk
    // of mode 1 reads up to 3 past the end), and for mode 0 per q8 block ([nbp]).
    const int64_t ng = gpr + 4, nt = mode == 0 ? nbp : 4;
    float sstack[512], bstack[512];
    int32_t zstack[512], zbstack[512];
    float *sf = ng <= 512 ? sstack : (float *)malloc((size_t)ng * sizeof(float));
    int32_t *zf = ng <= 512 ? zstack : (int32_t *)malloc((size_t)ng * sizeof(int32_t));
    float *sb = nt <= 512 ? bstack : (float *)malloc((size_t)nt * sizeof(float));
    int32_t *zb = nt <= 512 ? zbstack : (int32_t *)malloc((size_t)nt * sizeof(int32_t));
    for (int64_t g = gpr; g < ng; g++) { sf[g] = 0; zf[g] = 0; }
    for (int64_t b = 0; b < nt; b++) { sb[b] = 0; zb[b] = 0; }
    for (int64_t r = r0; r < r1; r++) {
        const uint16_t *sc = scales + r * gpr;
        const uint8_t *zs = zeros ? zeros + r * gpr : NULL;
        int64_t g = 0;
        for (; g + 8 <= gpr; g += 8) {  // f16 → f32 is exact
            _mm256_storeu_ps(sf + g, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sc + g))));
            _mm256_storeu_si256((__m256i *)(zf + g), zs ? _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(zs + g)))
                                                       : _mm256_set1_epi32(8));
        }
        for (; g < gpr; g++) { sf[g] = _cvtsh_ss(sc[g]); zf[g] = zs ? zs[g] : 8; }
        if (mode == 0) {
            for (int64_t b = 0; b < nb; b++) { sb[b] = sf[b / bpg]; zb[b] = zf[b / bpg]; }
        }
        const uint8_t *w = packed + r * (cols / 2);
        float v;
        switch (mode) {
        case 1: v = row_avx2(w, sf, zf, sb, zb, nb, shift, xc, 1); break;
        case 2: v = row_avx2(w, sf, zf, sb, zb, nb, shift, xc, 2); break;
        case 4: v = row_avx2(w, sf, zf, sb, zb, nb, shift, xc, 4); break;
        default: v = row_avx2(w, sf, zf, sb, zb, nb, shift, xc, 0); break;
        }
        y[r] = accumulate ? y[r] + v : v;
    }
    if (sf != sstack) free(sf);
    if (zf != zstack) free(zf);
    if (sb != bstack) free(sb);
    if (zb != zbstack) free(zb);
}
#endif

int i2q_cpu_has_avx2(void) {
#if I2Q_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
    return 0;
#endif
}

int i2q_q4a_impl(int impl) {
    static int best = -1;  // cached CPU check (a benign race: every thread stores the same value)
    int b = __atomic_load_n(&best, __ATOMIC_RELAXED);
    if (b < 0) {
        b = i2q_cpu_has_avx512vnni() ? I2Q_IMPL_VNNI : (i2q_cpu_has_avx2() ? I2Q_IMPL_AVX2 : I2Q_IMPL_SCALAR);
        // I2Q_CPU=avx2 or scalar caps the choice (to measure or test a slower CPU's path here).
        const char *cap = getenv("I2Q_CPU");
        if (cap && strcmp(cap, "scalar") == 0) b = I2Q_IMPL_SCALAR;
        else if (cap && strcmp(cap, "avx2") == 0 && b == I2Q_IMPL_VNNI) b = I2Q_IMPL_AVX2;
        __atomic_store_n(&best, b, __ATOMIC_RELAXED);
    }
    switch (impl) {
    case I2Q_IMPL_AUTO: return b;
    case I2Q_IMPL_VNNI: return i2q_cpu_has_avx512vnni() ? I2Q_IMPL_VNNI : -1;
    case I2Q_IMPL_AVX2: return i2q_cpu_has_avx2() ? I2Q_IMPL_AVX2 : -1;
    case I2Q_IMPL_SCALAR: return I2Q_IMPL_SCALAR;
    default: return -1;
    }
}

void i2q_q4a_gemv(const uint8_t *packed, const uint16_t *scales, const uint8_t *zeros,
                  int64_t cols, int64_t unit, int64_t r0, int64_t r1,
                  const void *xq, float *y, int accumulate, int impl) {
    const q8chunk *xc = (const q8chunk *)xq;
    switch (i2q_q4a_impl(impl)) {
#if I2Q_X86
    case I2Q_IMPL_VNNI: rows_vnni(packed, scales, zeros, cols, unit, r0, r1, xc, y, accumulate); return;
    case I2Q_IMPL_AVX2: rows_avx2(packed, scales, zeros, cols, unit, r0, r1, xc, y, accumulate); return;
#endif
    default: rows_scalar(packed, scales, zeros, cols, unit, r0, r1, xc, y, accumulate); return;
    }
}
