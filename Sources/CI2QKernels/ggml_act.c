// Activation rounding of llama.cpp's CPU backend for ggml-block weights.
//
// ggml's mul_mat with a quantized weight first quantizes the activations (src1) to the weight type's
// vec_dot_type and multiplies integer blocks: Q4_0/Q5_0/Q8_0 weights with Q8_0 activations, Q4_1/Q5_1
// with Q8_1, Q2_K…Q6_K with Q8_K. These functions reproduce those activation bytes (reference: the x86
// build of ggml-cpu in llama-cpp-python 0.3.36 — `quantize_row_q8_0` / `quantize_row_q8_1` (AVX2 code:
// d = max|x|/127 stored as f16, id = 127/max|x|, round half to even) and `quantize_row_q8_K` (=
// `quantize_row_q8_K_ref`: iscale = −127/x_absmax with its sign, nearest_int, min 127, d = 1/iscale in
// float32); GGMLActivationTests compare bytes with libggml-cpu's own functions) and their values
// d·q, so that the float32 product of the dequantized weight with the rounded activations equals
// llama.cpp's integer block dot product up to float32 summation order — the same model llama.cpp runs.
// Q8_1's s = f16(d·Σq) (Q4_1/Q5_1's min term m·s) is not f16(d)·Σq, which the values carry: the
// difference is added per weight row by i2q_ggml_q8_1_min_term. Scalar C (no FMA); O(k) per row.

#pragma STDC FP_CONTRACT OFF

#include "q8.h"
#include "half.h"

/// round(v) half to even, as `_mm256_round_ps(_, _MM_ROUND_NEAREST)` then `cvtps_epi32` (v is finite
/// and |v| ≤ 127·(1 + 2⁻²³) here).
static inline int round_even(float v) {
    float r = v + 12582912.f;  // 1.5·2²³: the float addition rounds to an integer, ties to even
    r -= 12582912.f;
    return (int)r;
}

/// ggml's nearest_int (the bit trick, ties to even).
static inline int nearest_int(float f) {
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

static inline float absmax32(const float *x) {
    float m = 0;
    for (int j = 0; j < 32; j++) { const float a = fabsf(x[j]); m = a > m ? a : m; }
    return m;
}

/// One block of 32 as Q8_0/Q8_1 (x86 AVX2 code): q[32]; returns d = max|x|/127 (float32), *sum = Σq.
static float q8_32(const float *x, int8_t *q, int *sum) {
    const float mx = absmax32(x);
    const float d = mx / 127.f;
    const float id = mx != 0.0f ? 127.f / mx : 0.0f;
    int s = 0;
    for (int j = 0; j < 32; j++) {
        int v = round_even(x[j] * id);
        v = v > 127 ? 127 : (v < -128 ? -128 : v);
        q[j] = (int8_t)v;
        s += v;
    }
    *sum = s;
    return d;
}

/// One block of 256 as Q8_K (quantize_row_q8_K_ref): q[256], bsums[16]; returns d.
static float q8_256(const float *x, int8_t *q, int16_t *bsums) {
    float max = 0, amax = 0;
    for (int j = 0; j < 256; j++) {
        const float ax = fabsf(x[j]);
        if (ax > amax) { amax = ax; max = x[j]; }
    }
    if (!amax) {
        memset(q, 0, 256);
        memset(bsums, 0, 32);  // ggml leaves them unset; zero here
        return 0;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < 256; j++) {
        const int v = nearest_int(iscale * x[j]);
        q[j] = (int8_t)(v < 127 ? v : 127);
    }
    for (int j = 0; j < 16; j++) {
        int s = 0;
        for (int i = 0; i < 16; i++) s += q[16 * j + i];
        bsums[j] = (int16_t)s;
    }
    return 1 / iscale;
}

void i2q_ggml_quantize_q8(int type, const float *x, int64_t k, void *dst) {
    uint8_t *o = (uint8_t *)dst;
    if (type == 15) {  // Q8_K: float d, int8 qs[256], int16 bsums[16] (292 bytes)
        for (int64_t b = 0; b < k / 256; b++, x += 256, o += 292) {
            int16_t bsums[16];
            const float d = q8_256(x, (int8_t *)(o + 4), bsums);
            memcpy(o, &d, 4);
            memcpy(o + 260, bsums, 32);
        }
        return;
    }
    const int size = type == 9 ? 36 : 34;  // Q8_1: f16 d, f16 s, qs[32]; Q8_0: f16 d, qs[32]
    for (int64_t b = 0; b < k / 32; b++, x += 32, o += size) {
        int sum;
        const float d = q8_32(x, (int8_t *)(o + size - 32), &sum);
        const uint16_t d16 = i2q_float_to_half(d);
        memcpy(o, &d16, 2);
        if (type == 9) {
            const uint16_t s16 = i2q_float_to_half(d * (float)sum);
            memcpy(o + 2, &s16, 2);
        }
    }
}

int i2q_ggml_vec_dot_type(int weight_type) {
    switch (weight_type) {
    case 2: case 6: case 8: return 8;    // Q4_0, Q5_0, Q8_0 → Q8_0
    case 3: case 7: return 9;            // Q4_1, Q5_1 → Q8_1
    case 10: case 11: case 12: case 13: case 14: return 15;  // Q2_K … Q6_K → Q8_K
    default: return -1;
    }
}

int i2q_ggml_round_activations(int weight_type, const float *x, int64_t m, int64_t k, float *out) {
    const int t = i2q_ggml_vec_dot_type(weight_type);
    if (t < 0) return 0;
    const int64_t bs = t == 15 ? 256 : 32;
    if (k % bs) return 0;
    int8_t q[256];
    for (int64_t r = 0; r < m; r++) {
        const float *xr = x + r * k;
        float *o = out + r * k;
        for (int64_t c = 0; c < k; c += bs) {
            float d;
            if (t == 15) {
                int16_t bsums[16];
                d = q8_256(xr + c, q, bsums);
            } else {
                int sum;
                d = i2q_half_to_float(i2q_float_to_half(q8_32(xr + c, q, &sum)));
            }
            for (int64_t j = 0; j < bs; j++) o[c + j] = d * (float)q[j];
        }
    }
    return 1;
}

void i2q_ggml_q8_1_min_term(int weight_type, const void *blocks, int64_t rows, int64_t row_bytes, int64_t k,
                            const float *x, int64_t m, float *y, int64_t ldy) {
    if (weight_type != 3 && weight_type != 7) return;  // Q4_1 (20-byte blocks), Q5_1 (24)
    const int64_t nb = k / 32, bsize = weight_type == 3 ? 20 : 24;
    float *delta = (float *)malloc((size_t)(nb > 0 ? nb : 1) * sizeof(float));  // [nb]: s − d·Σq per block
    if (!delta) abort();
    int8_t q[32];
    for (int64_t i = 0; i < m; i++) {
        for (int64_t b = 0; b < nb; b++) {
            int sum;
            const float d = q8_32(x + i * k + 32 * b, q, &sum);
            const float s = i2q_half_to_float(i2q_float_to_half(d * (float)sum));
            const float dq = i2q_half_to_float(i2q_float_to_half(d)) * (float)sum;
            delta[b] = s - dq;
        }
        for (int64_t r = 0; r < rows; r++) {
            const uint8_t *row = (const uint8_t *)blocks + r * row_bytes;
            float acc = 0;
            for (int64_t b = 0; b < nb; b++) {
                uint16_t mh;
                memcpy(&mh, row + b * bsize + 2, 2);
                acc += i2q_half_to_float(mh) * delta[b];
            }
            y[i * ldy + r] += acc;
        }
    }
    free(delta);
}
