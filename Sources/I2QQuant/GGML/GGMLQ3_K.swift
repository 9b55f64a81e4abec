/// Q3_K (super-block of 256 = 16 sub-blocks of 16; 110 bytes: `hmask`[32] high bits — bit j/32 of
/// byte j%32 is set when element j's code is ≥ 4 —, `qs`[64] low 2 bits (byte 32·(j/128) + j%32,
/// bits 2·((j%128)/32)), 12 bytes of sixteen six-bit signed scales (+32), f16 `d`;
/// x ≈ d·(sc − 32)·(q − 4)).
/// Bit-exact to ggml's `quantize_row_q3_K_ref` (no importance) and `quantize_row_q3_K_impl`
/// (importance-weighted), i.e. to `ggml_quantize_chunk(GGML_TYPE_Q3_K, …)` — checked byte for byte
/// against Tests/Fixtures/kquant (scripts/fixtures/make_kquant_fixtures.py).
enum GGMLQ3_K {
    static let bytes = 110

    /// `quantize_row_q3_K_ref`: per sub-block `make_q3_quants(16, 4, x, L, true)`; the scales as
    /// six-bit codes of −32 / (the scale of largest |scale|); d = 1 / that iscale.
    /// x: [blocks × 256]; y: [blocks × 110].
    static func ref(_ x: UnsafePointer<Float>, blocks: Int, _ y: UnsafeMutableRawPointer, _ s: GGMLQuantScratch) {
        for i in 0..<blocks {
            let xb = x + 256 * i, o = y + 110 * i
            var maxScale: Float = 0, amax: Float = 0
            for j in 0..<16 {
                s.scales[j] = GGMLQuantMath.makeQ3Quants(16, 4, xb + 16 * j, s.l8 + 16 * j)
                let scale = abs(s.scales[j])
                if scale > amax { amax = scale; maxScale = s.scales[j] }
            }
            for k in 96..<108 { o.storeBytes(of: UInt8(0), toByteOffset: k, as: UInt8.self) }
            var dBits = GGMLQuantMath.fp16(0)
            if maxScale != 0 {
                let iscale = -32 / maxScale
                for j in 0..<16 {
                    let l = Int8(truncatingIfNeeded: GGMLQuantMath.nearestInt(iscale * s.scales[j]))  // (int8_t)nearest_int
                    packScale(j, Int32(Swift.max(-32, Swift.min(31, l))) + 32, o)
                }
                dBits = GGMLQuantMath.fp16(1 / iscale)
            }
            o.storeBytes(of: dBits.littleEndian, toByteOffset: 108, as: UInt16.self)
            finish(xb, o, s)
        }
    }

    /// `quantize_row_q3_K_impl` for one row: σ² = 2·Σx²/256 over the super-block, weights
    /// qw·√(σ² + x²), per sub-block `make_qx_quants(16, 4, x, L, 1, weights)`, then the 16 scales
    /// themselves by `make_qx_quants(16, 32, scales, Ls, 1, sw)` (sw: each sub-block's weight sum).
    /// x, qw: [n]; y: [n / 256 × 110].
    static func impl(_ x: UnsafePointer<Float>, _ n: Int, _ y: UnsafeMutableRawPointer, _ qw: UnsafePointer<Float>,
                     _ s: GGMLQuantScratch) {
        for i in 0..<(n / 256) {
            let xb = x + 256 * i, qb = qw + 256 * i, o = y + 110 * i
            var sumX2: Float = 0
            for j in 0..<256 { sumX2 += xb[j] * xb[j] }
            let sigma2 = 2 * sumX2 / 256
            for j in 0..<16 {
                let xj = xb + 16 * j, qj = qb + 16 * j
                for l in 0..<16 { s.weights[l] = qj[l] * (sigma2 + xj[l] * xj[l]).squareRoot() }
                var sumw: Float = 0
                for l in 0..<16 { sumw += s.weights[l] }
                s.sw[j] = sumw
                s.scales[j] = GGMLQuantMath.makeQxQuants(16, 4, xj, s.l8 + 16 * j, s.weights)
            }
            for k in 96..<108 { o.storeBytes(of: UInt8(0), toByteOffset: k, as: UInt8.self) }
            let dBlock = GGMLQuantMath.makeQxQuants(16, 32, s.scales, s.ls8, s.sw)
            for j in 0..<16 { packScale(j, Int32(s.ls8[j]), o) }
            o.storeBytes(of: GGMLQuantMath.fp16(dBlock).littleEndian, toByteOffset: 108, as: UInt16.self)
            finish(xb, o, s)
        }
    }

    /// Six-bit code l of sub-block j into the 12 scale bytes (o[96..<108], zeroed first): the low
    /// nibble in byte j%8 (low half for j < 8, high half otherwise), the top 2 bits in byte 8 + j%4
    /// at bit 2·(j/4).
    @inline(__always)
    static func packScale(_ j: Int, _ l: Int32, _ o: UnsafeMutableRawPointer) {
        let sc = (o + 96).assumingMemoryBound(to: UInt8.self)
        if j < 8 {
            sc[j] = UInt8(truncatingIfNeeded: l & 0xF)
        } else {
            sc[j - 8] |= UInt8(truncatingIfNeeded: (l & 0xF) << 4)
        }
        sc[j % 4 + 8] |= UInt8(truncatingIfNeeded: (l >> 4) << (2 * (j / 4)))
    }

    /// Requantizes with the stored scales (d·(sc − 32); sub-blocks where that is 0 keep the search's
    /// codes in s.l8), then writes hmask and qs.
    @inline(__always)
    static func finish(_ x: UnsafePointer<Float>, _ o: UnsafeMutableRawPointer, _ s: GGMLQuantScratch) {
        let L = s.l8  // [256] codes in [0, 8)
        let sc = UnsafePointer((o + 96).assumingMemoryBound(to: UInt8.self))
        let d0 = GGMLQuantMath.fp32(UInt16(littleEndian: o.loadUnaligned(fromByteOffset: 108, as: UInt16.self)))
        for j in 0..<16 {
            let low = j < 8 ? sc[j] & 0xF : sc[j - 8] >> 4
            let code = Int32(low | (((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32
            let d = d0 * Float(Int8(truncatingIfNeeded: code))
            if d == 0 { continue }
            for ii in 0..<16 {
                let l = Swift.max(-4, Swift.min(3, GGMLQuantMath.nearestInt(x[16 * j + ii] / d)))
                L[16 * j + ii] = Int8(truncatingIfNeeded: l + 4)
            }
        }
        let hmask = o.assumingMemoryBound(to: UInt8.self)
        for m in 0..<32 { hmask[m] = 0 }
        for j in 0..<256 where L[j] > 3 {
            hmask[j % 32] |= UInt8(1) << (j / 32)
            L[j] -= 4
        }
        for j in stride(from: 0, to: 256, by: 128) {
            for l in 0..<32 {
                @inline(__always) func c(_ k: Int) -> UInt8 { UInt8(bitPattern: L[j + l + k]) }
                o.storeBytes(of: c(0) | (c(32) << 2) | (c(64) << 4) | (c(96) << 6), toByteOffset: 32 + j / 4 + l, as: UInt8.self)
            }
        }
    }
}
