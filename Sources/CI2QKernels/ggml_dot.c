// Fused ggml-block × quantized-activation dot products for decoding (m = 1): llama.cpp's vec_dot
// family (`ggml_vec_dot_q4_0_q8_0`, `_q4_1_q8_1`, `_q5_0_q8_0`, `_q5_1_q8_1`, `_q8_0_q8_0`,
// `_q2_K_q8_K`, `_q3_K_q8_K`, `_q4_K_q8_K`, `_q5_K_q8_K`, `_q6_K_q8_K`): per block, the exact integer dot product of the weight's
// codes with the activation's int8 codes (from i2q_ggml_quantize_q8 — libggml-cpu's bytes), scaled by
// the block's scales in float32, as ggml's generic code does. Equal to the dequantized weight times
// the rounded activations (GGMLGemv's prefill arithmetic) up to float32 summation order; against
// ggml_mul_mat ≤ 2e-6 · Σ|w·x| (GGMLActivationTests, measured ≤ 4e-7).
//
// One C body per type; the scalar, AVX2 and AVX-512 (VNNI) functions are that body compiled for each
// target (clang vectorizes the int8 loops). Integer sums are exact and the float32 part runs in the
// same order on every target, so all paths give bit-identical results (GGMLDotTests).

#pragma STDC FP_CONTRACT OFF

#include "q8.h"
#include "half.h"

#define AI static inline __attribute__((always_inline))

// f16 → f32 by table (as ggml's ggml_table_f32_f16): the same values as i2q_half_to_float, without
// its branches in the per-block scale reads. Filled once, before the first row is computed.
static float f16_table[65536];
static int f16_table_ready;

static void fill_f16_table(void) {
    if (__atomic_load_n(&f16_table_ready, __ATOMIC_ACQUIRE)) return;
    for (uint32_t h = 0; h < 65536; h++) f16_table[h] = i2q_half_to_float((uint16_t)h);
    __atomic_store_n(&f16_table_ready, 1, __ATOMIC_RELEASE);  // benign race: every filler writes the same values
}

AI float hf(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return f16_table[v]; }

AI int dot32(const int8_t *a, const int8_t *b) {
    int s = 0;
    for (int i = 0; i < 32; i++) s += (int)a[i] * (int)b[i];
    return s;
}

AI int dot16(const int8_t *a, const int8_t *b) {
    int s = 0;
    for (int i = 0; i < 16; i++) s += (int)a[i] * (int)b[i];
    return s;
}

// Block-32 types: weight codes unpacked to int8 (offset removed for the symmetric types).
AI float row_q4_0(const uint8_t *w, const uint8_t *x, int64_t nb) {
    float sum = 0;
    for (int64_t b = 0; b < nb; b++, w += 18, x += 34) {
        int8_t q[32];
        for (int j = 0; j < 16; j++) { q[j] = (int8_t)((w[2 + j] & 15) - 8); q[j + 16] = (int8_t)((w[2 + j] >> 4) - 8); }
        sum += (float)dot32(q, (const int8_t *)(x + 2)) * (hf(w) * hf(x));
    }
    return sum;
}

AI float row_q5_0(const uint8_t *w, const uint8_t *x, int64_t nb) {
    float sum = 0;
    for (int64_t b = 0; b < nb; b++, w += 22, x += 34) {
        uint32_t qh; memcpy(&qh, w + 2, 4);
        int8_t q[32];
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)(((w[6 + j] & 15) | (((qh >> j) & 1) << 4)) - 16);
            q[j + 16] = (int8_t)(((w[6 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16);
        }
        sum += (float)dot32(q, (const int8_t *)(x + 2)) * (hf(w) * hf(x));
    }
    return sum;
}

AI float row_q8_0(const uint8_t *w, const uint8_t *x, int64_t nb) {
    float sum = 0;
    for (int64_t b = 0; b < nb; b++, w += 34, x += 34)
        sum += (float)dot32((const int8_t *)(w + 2), (const int8_t *)(x + 2)) * (hf(w) * hf(x));
    return sum;
}

// Q4_1/Q5_1 × Q8_1: d_w·d_x·Σq_w·q_x + m_w·s_x.
AI float row_q4_1(const uint8_t *w, const uint8_t *x, int64_t nb) {
    float sum = 0, mins = 0;
    for (int64_t b = 0; b < nb; b++, w += 20, x += 36) {
        int8_t q[32];
        for (int j = 0; j < 16; j++) { q[j] = (int8_t)(w[4 + j] & 15); q[j + 16] = (int8_t)(w[4 + j] >> 4); }
        sum += (float)dot32(q, (const int8_t *)(x + 4)) * (hf(w) * hf(x));
        mins += hf(w + 2) * hf(x + 2);
    }
    return sum + mins;
}

AI float row_q5_1(const uint8_t *w, const uint8_t *x, int64_t nb) {
    float sum = 0, mins = 0;
    for (int64_t b = 0; b < nb; b++, w += 24, x += 36) {
        uint32_t qh; memcpy(&qh, w + 4, 4);
        int8_t q[32];
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)((w[8 + j] & 15) | (((qh >> j) & 1) << 4));
            q[j + 16] = (int8_t)((w[8 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
        }
        sum += (float)dot32(q, (const int8_t *)(x + 4)) * (hf(w) * hf(x));
        mins += hf(w + 2) * hf(x + 2);
    }
    return sum + mins;
}

// K-quants × Q8_K (block of 256: float d, int8 qs[256], int16 bsums[16]).
AI void scales_mins(const uint8_t *s, int sc[8], int mn[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63; mn[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0x0F) | ((s[j] >> 6) << 4);
        mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
}

AI float finish_k(const uint8_t *w, const uint8_t *x, const int8_t *q, const int sc[8], const int mn[8]) {
    int sumi = 0, summ = 0;
    int16_t bs[16]; memcpy(bs, x + 260, 32);
    for (int j = 0; j < 8; j++) {
        sumi += sc[j] * dot32(q + 32 * j, (const int8_t *)(x + 4) + 32 * j);
        summ += mn[j] * ((int)bs[2 * j] + (int)bs[2 * j + 1]);
    }
    float dx; memcpy(&dx, x, 4);
    return dx * hf(w) * (float)sumi - dx * hf(w + 2) * (float)summ;
}

AI float row_q4_K(const uint8_t *w, const uint8_t *x, int64_t nb) {
    float sum = 0;
    for (int64_t b = 0; b < nb; b++, w += 144, x += 292) {
        int sc[8], mn[8];
        scales_mins(w + 4, sc, mn);
        int8_t q[256];
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) { q[64 * c + l] = (int8_t)(w[16 + 32 * c + l] & 15); q[64 * c + 32 + l] = (int8_t)(w[16 + 32 * c + l] >> 4); }
        sum += finish_k(w, x, q, sc, mn);
    }
    return sum;
}

AI float row_q5_K(const uint8_t *w, const uint8_t *x, int64_t nb) {
    float sum = 0;
    for (int64_t b = 0; b < nb; b++, w += 176, x += 292) {
        int sc[8], mn[8];
        scales_mins(w + 4, sc, mn);
        const uint8_t *qh = w + 16, *qs = w + 48;
        int8_t q[256];
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                q[64 * c + l] = (int8_t)((qs[32 * c + l] & 15) | (((qh[l] >> (2 * c)) & 1) << 4));
                q[64 * c + 32 + l] = (int8_t)((qs[32 * c + l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4));
            }
        sum += finish_k(w, x, q, sc, mn);
    }
    return sum;
}

AI float row_q6_K(const uint8_t *w, const uint8_t *x, int64_t nb) {
    float sum = 0;
    for (int64_t b = 0; b < nb; b++, w += 210, x += 292) {
        int8_t q[256];
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w + 64 * h, *qh = w + 128 + 32 * h;
            for (int l = 0; l < 32; l++) {
                q[128 * h + l] = (int8_t)(((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32);
                q[128 * h + l + 32] = (int8_t)(((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32);
                q[128 * h + l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                q[128 * h + l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
        int sumi = 0;
        for (int j = 0; j < 16; j++) sumi += (int)(int8_t)w[192 + j] * dot16(q + 16 * j, (const int8_t *)(x + 4) + 16 * j);
        float dx; memcpy(&dx, x, 4);
        sum += dx * hf(w + 208) * (float)sumi;
    }
    return sum;
}

// Q2_K × Q8_K (`ggml_vec_dot_q2_K_q8_K`): codes 0..3, a four-bit scale (low nibble) and min (high
// nibble) per 16; element e's code is bits 2·((e%128)/32) of byte 16 + 32·(e/128) + e%32.
// d_x·d·Σ sc_j·(q·x)_j − d_x·dmin·Σ m_j·bsum_j.
AI float row_q2_K(const uint8_t *w, const uint8_t *x, int64_t nb) {
    float sum = 0;
    for (int64_t b = 0; b < nb; b++, w += 84, x += 292) {
        int8_t q[256];
        for (int e = 0; e < 256; e++) q[e] = (int8_t)((w[16 + 32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3);
        int16_t bs[16]; memcpy(bs, x + 260, 32);
        int sumi = 0, summ = 0;
        for (int j = 0; j < 16; j++) {
            sumi += (int)(w[j] & 15) * dot16(q + 16 * j, (const int8_t *)(x + 4) + 16 * j);
            summ += (int)(w[j] >> 4) * (int)bs[j];
        }
        float dx; memcpy(&dx, x, 4);
        sum += dx * hf(w + 80) * (float)sumi - dx * hf(w + 82) * (float)summ;
    }
    return sum;
}

// Q3_K × Q8_K (`ggml_vec_dot_q3_K_q8_K`): codes −4..3 (low 2 bits as Q2_K's at byte 32 + …, minus 4
// where bit e/32 of hmask[e%32] is clear), sixteen six-bit scales − 32 (low nibbles in bytes
// 96..103, top 2 bits in 104..107). d_x·d·Σ sc_j·(q·x)_j.
AI float row_q3_K(const uint8_t *w, const uint8_t *x, int64_t nb) {
    float sum = 0;
    for (int64_t b = 0; b < nb; b++, w += 110, x += 292) {
        int8_t q[256];
        for (int e = 0; e < 256; e++) {
            const int lo = (w[32 + 32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
            q[e] = (int8_t)(lo - (((w[e % 32] >> (e / 32)) & 1) ? 0 : 4));
        }
        const uint8_t *s = w + 96;
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            const int sc = ((j < 8 ? s[j] & 15 : s[j - 8] >> 4) | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
            sumi += sc * dot16(q + 16 * j, (const int8_t *)(x + 4) + 16 * j);
        }
        float dx; memcpy(&dx, x, 4);
        sum += dx * hf(w + 108) * (float)sumi;
    }
    return sum;
}

// Rows [r0, r1): y[r] (+)= row · x, for each type, compiled per target.
#define ROWS(NAME, ATTR)                                                                                           \
    ATTR static int NAME(int type, const uint8_t *w, int64_t row_bytes, int64_t k, const uint8_t *xq, int64_t r0, \
                         int64_t r1, float *y, int acc) {                                                          \
        const int64_t nb32 = k / 32, nb256 = k / 256;                                                              \
        for (int64_t r = r0; r < r1; r++) {                                                                        \
            const uint8_t *wr = w + r * row_bytes;                                                                 \
            float v;                                                                                               \
            switch (type) {                                                                                        \
            case 2: v = row_q4_0(wr, xq, nb32); break;                                                             \
            case 3: v = row_q4_1(wr, xq, nb32); break;                                                             \
            case 6: v = row_q5_0(wr, xq, nb32); break;                                                             \
            case 7: v = row_q5_1(wr, xq, nb32); break;                                                             \
            case 8: v = row_q8_0(wr, xq, nb32); break;                                                             \
            case 10: v = row_q2_K(wr, xq, nb256); break;                                                           \
            case 11: v = row_q3_K(wr, xq, nb256); break;                                                           \
            case 12: v = row_q4_K(wr, xq, nb256); break;                                                           \
            case 13: v = row_q5_K(wr, xq, nb256); break;                                                           \
            case 14: v = row_q6_K(wr, xq, nb256); break;                                                           \
            default: return 0;                                                                                     \
            }                                                                                                      \
            y[r] = acc ? y[r] + v : v;                                                                             \
        }                                                                                                          \
        return 1;                                                                                                  \
    }

ROWS(rows_scalar, __attribute__((noinline)))
#if I2Q_X86
ROWS(rows_avx2, I2Q_AVX2_TARGET __attribute__((noinline)))
ROWS(rows_vnni, I2Q_VNNI_TARGET __attribute__((noinline)))
#endif

int i2q_ggml_dot_supported(int weight_type) {
    switch (weight_type) {
    case 2: case 3: case 6: case 7: case 8: case 10: case 11: case 12: case 13: case 14: return 1;
    default: return 0;
    }
}

int i2q_ggml_gemv(int weight_type, const void *w, int64_t row_bytes, int64_t k, const void *xq,
                  int64_t r0, int64_t r1, float *y, int accumulate, int impl) {
    fill_f16_table();
    const int use = i2q_q4a_impl(impl);
#if I2Q_X86
    if (use == I2Q_IMPL_VNNI) return rows_vnni(weight_type, w, row_bytes, k, xq, r0, r1, y, accumulate);
    if (use == I2Q_IMPL_AVX2) return rows_avx2(weight_type, w, row_bytes, k, xq, r0, r1, y, accumulate);
#endif
    return rows_scalar(weight_type, w, row_bytes, k, xq, r0, r1, y, accumulate);
}
