// Packing of GEMM weight panels: 32 rows' dwords (a bf16 pair, or 4 int8 codes) interleaved as
// panel[p][32] — dword p of rows 0…31 side by side — so one 64-byte load gives 16 columns' dwords.
// The AVX-512 path transposes 16×16 blocks of dwords in registers (a pure data movement: the same
// bytes as the scalar loop, BgemmKernelTests/Int8GemmTests compare the products bit for bit).
#ifndef I2Q_PANEL_H
#define I2Q_PANEL_H

#include "q8.h"

/// panel[p][32] = rows[j][p] for p < count, j < 32 (rows[j] = NULL: zeros).
static inline void panel_dwords_scalar(const uint32_t *const rows[32], int64_t count, uint32_t *panel) {
    for (int64_t p = 0; p < count; p++) {
        uint32_t *dst = panel + p * 32;
        for (int j = 0; j < 32; j++) {
            uint32_t v = 0;
            if (rows[j]) memcpy(&v, rows[j] + p, 4);
            dst[j] = v;
        }
    }
}

#if I2Q_X86
/// 16×16 dword transpose of r[0..15] in place (r[i] lane t ↔ r[t] lane i).
I2Q_VNNI_TARGET
static inline void transpose16_epi32(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    // r[4q + s] now holds, in 128-bit lane L, dwords of rows 4L…4L+3 of column 4·(lane quad) + s … of
    // 4-row group q; gather the lanes: first pairs of 128-bit lanes, then 256-bit halves.
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);        // lanes 0,2 of r[i], lanes 0,2 of r[i+4]
        t[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xdd);    // lanes 1,3
        t[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
        r[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0xdd);
    }
}

I2Q_VNNI_TARGET
static inline void panel_dwords_avx512(const uint32_t *const rows[32], int64_t count, uint32_t *panel) {
    int64_t p = 0;
    for (; p + 16 <= count; p += 16) {
        for (int h = 0; h < 2; h++) {  // rows 16h … 16h+15
            __m512i r[16];
            for (int i = 0; i < 16; i++) r[i] = rows[16 * h + i] ? _mm512_loadu_si512(rows[16 * h + i] + p) : _mm512_setzero_si512();
            transpose16_epi32(r);
            for (int t = 0; t < 16; t++) _mm512_storeu_si512(panel + (p + t) * 32 + 16 * h, r[t]);
        }
    }
    if (p < count) {
        const uint32_t *rest[32];
        for (int j = 0; j < 32; j++) rest[j] = rows[j] ? rows[j] + p : NULL;
        panel_dwords_scalar(rest, count - p, panel + p * 32);
    }
}
#endif

#endif
