// IEEE half ↔ single conversions in portable C, bit-identical to the F16C instructions
// (`vcvtps2ph` with round-to-nearest-even, `vcvtph2ps`) for every input, NaNs included (F16C
// quiets a NaN and keeps the top of its payload) — HalfConversionTests check all 65,536 halves and
// the f32 edge cases against the F16C path. Used by the scalar paths of half.c and gemv16.c.
#ifndef I2Q_HALF_H
#define I2Q_HALF_H

#include <stdint.h>
#include <string.h>

static inline float i2q_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
    if (e == 0) {
        if (m == 0) bits = sign;
        else {  // subnormal: normalize
            int s = 0;
            while (!(m & 0x400)) { m <<= 1; s++; }
            m &= 0x3ff;
            bits = sign | ((uint32_t)(127 - 15 + 1 - s) << 23) | (m << 13);
        }
    } else if (e == 31) bits = sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0);  // NaN: quieted
    else bits = sign | ((e + 127 - 15) << 23) | (m << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t i2q_float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t a = x & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00 | (uint16_t)((a >> 13) & 0x3ff);  // NaN: quiet, payload's top bits
    if (a >= 0x477ff000u) return sign | 0x7c00;                                // ≥ 65520 rounds to inf
    if (a >= 0x38800000u) {                                                    // normal half
        uint32_t r = a - 0x38000000u;
        r += 0xfff + ((r >> 13) & 1);
        return sign | (uint16_t)(r >> 13);
    }
    if (a <= 0x33000000u) return sign;  // ≤ 2^-25: ties to even zero
    // Subnormal half: round(|x| / 2^-24) to nearest even, |x| = m · 2^(e − 150).
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u, shift = 126 - e;
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return sign | (uint16_t)q;
}

#endif
