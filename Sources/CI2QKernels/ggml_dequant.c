// ggml block dequantization, C port of GGMLDequant (I2QQuant/GGML/GGMLDequantize.swift): the same
// float32 operations in the same order (no FMA: FP_CONTRACT OFF), so the values are bit-identical to
// gguf-py 0.19's `quants.dequantize` (what the Swift reference is tested against; the Swift code now
// calls this). NaN scales keep their payload (gguf-py's float16 → float32 view); q4_1/q5_1's d·q + m
// quiets a NaN operand's payload as numpy does. Scalar C: the compiler vectorises the inner loops.

#pragma STDC FP_CONTRACT OFF

#include "q8.h"
#include "half.h"

static inline float h2f(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    if ((h & 0x7C00) == 0x7C00 && (h & 0x03FF)) {
        uint32_t u = ((uint32_t)(h & 0x8000) << 16) | 0x7F800000u | ((uint32_t)(h & 0x03FF) << 13);
        float f; memcpy(&f, &u, 4); return f;
    }
    return i2q_half_to_float(h);
}

static inline float quiet(float a) { uint32_t u; memcpy(&u, &a, 4); u |= 0x00400000u; memcpy(&a, &u, 4); return a; }

static inline float addq(float a, float b) {
    const float s = a + b;
    if (s != s) {
        if (a != a) return quiet(a);
        if (b != b) return quiet(b);
    }
    return s;
}

static void dq_q4_0(const uint8_t *src, int64_t n, float *dst) {
    for (int64_t b = 0; b < n; b++) {
        const uint8_t *p = src + b * 18; float *o = dst + b * 32;
        const float d = h2f(p);
        for (int j = 0; j < 16; j++) {
            const uint8_t q = p[2 + j];
            o[j] = d * (float)((int)(q & 0x0F) - 8);
            o[j + 16] = d * (float)((int)(q >> 4) - 8);
        }
    }
}

static void dq_q4_1(const uint8_t *src, int64_t n, float *dst) {
    for (int64_t b = 0; b < n; b++) {
        const uint8_t *p = src + b * 20; float *o = dst + b * 32;
        const float d = h2f(p), m = h2f(p + 2);
        for (int j = 0; j < 16; j++) {
            const uint8_t q = p[4 + j];
            o[j] = addq(d * (float)(q & 0x0F), m);
            o[j + 16] = addq(d * (float)(q >> 4), m);
        }
    }
}

static void dq_q5_0(const uint8_t *src, int64_t n, float *dst) {
    for (int64_t b = 0; b < n; b++) {
        const uint8_t *p = src + b * 22; float *o = dst + b * 32;
        const float d = h2f(p);
        uint32_t qh; memcpy(&qh, p + 2, 4);
        for (int j = 0; j < 16; j++) {
            const uint8_t q = p[6 + j];
            const int lo = (q & 0x0F) | (int)((qh >> j) & 1) << 4, hi = (q >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            o[j] = d * (float)(lo - 16);
            o[j + 16] = d * (float)(hi - 16);
        }
    }
}

static void dq_q5_1(const uint8_t *src, int64_t n, float *dst) {
    for (int64_t b = 0; b < n; b++) {
        const uint8_t *p = src + b * 24; float *o = dst + b * 32;
        const float d = h2f(p), m = h2f(p + 2);
        uint32_t qh; memcpy(&qh, p + 4, 4);
        for (int j = 0; j < 16; j++) {
            const uint8_t q = p[8 + j];
            const int lo = (q & 0x0F) | (int)((qh >> j) & 1) << 4, hi = (q >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            o[j] = addq(d * (float)lo, m);
            o[j + 16] = addq(d * (float)hi, m);
        }
    }
}

static void dq_q8_0(const uint8_t *src, int64_t n, float *dst) {
    for (int64_t b = 0; b < n; b++) {
        const uint8_t *p = src + b * 34; float *o = dst + b * 32;
        const float d = h2f(p);
        for (int j = 0; j < 32; j++) o[j] = (float)(int8_t)p[2 + j] * d;
    }
}

static void dq_q2_K(const uint8_t *src, int64_t n, float *dst) {
    for (int64_t b = 0; b < n; b++) {
        const uint8_t *p = src + b * 84; float *o = dst + b * 256;
        const float d = h2f(p + 80), dmin = h2f(p + 82);
        float dl[16], ml[16];
        for (int g = 0; g < 16; g++) { dl[g] = d * (float)(p[g] & 0x0F); ml[g] = dmin * (float)(p[g] >> 4); }
        for (int e = 0; e < 256; e++) {
            const int q = (p[16 + 32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
            o[e] = dl[e / 16] * (float)q - ml[e / 16];
        }
    }
}

static void dq_q3_K(const uint8_t *src, int64_t n, float *dst) {
    for (int64_t b = 0; b < n; b++) {
        const uint8_t *p = src + b * 110; float *o = dst + b * 256;
        const float d = h2f(p + 108);
        float dl[16];
        for (int i = 0; i < 16; i++) {
            const uint8_t l = i < 8 ? (p[96 + i] & 0x0F) : (p[96 + i - 8] >> 4);
            const uint8_t h = (p[104 + i % 4] >> (2 * (i / 4))) & 0x03;
            const int sc = (int)(int8_t)(uint8_t)(l | (h << 4)) - 32;
            dl[i] = d * (float)sc;
        }
        for (int e = 0; e < 256; e++) {
            const int ql = (p[32 + 32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
            const int qh = ((p[e % 32] >> (e / 32)) & 1) ^ 1;
            o[e] = dl[e / 16] * (float)(ql - (qh << 2));
        }
    }
}

static inline void scale_min(const uint8_t *p, float d, float dmin, float sc[8], float mn[8]) {
    for (int j = 0; j < 4; j++) {
        const uint8_t a = p[j], m = p[4 + j], md = p[8 + j];
        sc[j] = d * (float)(a & 0x3F);
        mn[j] = dmin * (float)(m & 0x3F);
        sc[4 + j] = d * (float)((md & 0x0F) | ((a >> 2) & 0x30));
        mn[4 + j] = dmin * (float)((md >> 4) | ((m >> 2) & 0x30));
    }
}

static void dq_q4_K(const uint8_t *src, int64_t n, float *dst) {
    for (int64_t b = 0; b < n; b++) {
        const uint8_t *p = src + b * 144; float *o = dst + b * 256;
        float sc[8], mn[8];
        scale_min(p + 4, h2f(p), h2f(p + 2), sc, mn);
        for (int g = 0; g < 8; g++) {
            const uint8_t *qs = p + 16 + 32 * (g / 2);
            const int sh = 4 * (g % 2);
            for (int i = 0; i < 32; i++) o[32 * g + i] = sc[g] * (float)((qs[i] >> sh) & 0x0F) - mn[g];
        }
    }
}

static void dq_q5_K(const uint8_t *src, int64_t n, float *dst) {
    for (int64_t b = 0; b < n; b++) {
        const uint8_t *p = src + b * 176; float *o = dst + b * 256;
        float sc[8], mn[8];
        scale_min(p + 4, h2f(p), h2f(p + 2), sc, mn);
        for (int g = 0; g < 8; g++) {
            const uint8_t *qs = p + 48 + 32 * (g / 2), *qh = p + 16;
            const int sh = 4 * (g % 2);
            for (int i = 0; i < 32; i++) o[32 * g + i] = sc[g] * (float)(((qs[i] >> sh) & 0x0F) | (((qh[i] >> g) & 1) << 4)) - mn[g];
        }
    }
}

static void dq_q6_K(const uint8_t *src, int64_t n, float *dst) {
    for (int64_t b = 0; b < n; b++) {
        const uint8_t *p = src + b * 210; float *o = dst + b * 256;
        const float d = h2f(p + 208);
        float ds[16];
        for (int g = 0; g < 16; g++) ds[g] = d * (float)(int8_t)p[192 + g];
        for (int e = 0; e < 256; e++) {
            const int h = e / 128;
            const int ql = (p[64 * h + e % 64] >> (4 * ((e / 64) % 2))) & 0x0F;
            const int qh = (p[128 + 32 * h + e % 32] >> (2 * ((e / 32) % 4))) & 0x03;
            const int q = (int)(int8_t)(uint8_t)(ql | (qh << 4)) - 32;
            o[e] = ds[e / 16] * (float)q;
        }
    }
}

int i2q_ggml_dequantize(int type, const void *src, int64_t blocks, float *dst) {
    const uint8_t *s = (const uint8_t *)src;
    switch (type) {  // ggml_type values
    case 2: dq_q4_0(s, blocks, dst); return 1;
    case 3: dq_q4_1(s, blocks, dst); return 1;
    case 6: dq_q5_0(s, blocks, dst); return 1;
    case 7: dq_q5_1(s, blocks, dst); return 1;
    case 8: dq_q8_0(s, blocks, dst); return 1;
    case 10: dq_q2_K(s, blocks, dst); return 1;
    case 11: dq_q3_K(s, blocks, dst); return 1;
    case 12: dq_q4_K(s, blocks, dst); return 1;
    case 13: dq_q5_K(s, blocks, dst); return 1;
    case 14: dq_q6_K(s, blocks, dst); return 1;
    default: return 0;
    }
}
