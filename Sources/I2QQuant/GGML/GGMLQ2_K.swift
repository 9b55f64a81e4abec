/// Q2_K (super-block of 256 = 16 sub-blocks of 16; 84 bytes: `scales`[16] — scale code in the low
/// nibble, min code in the high —, `qs`[64] 2-bit codes (byte 32·(j/128) + j%32, bits
/// 2·((j%128)/32)), f16 `d`, f16 `dmin`; x ≈ d·sc·q − dmin·m).
/// Bit-exact to ggml's `quantize_row_q2_K_ref` (no importance) and `quantize_row_q2_K_impl`
/// (importance-weighted), i.e. to `ggml_quantize_chunk(GGML_TYPE_Q2_K, …)` — checked byte for byte
/// against Tests/Fixtures/kquant (scripts/fixtures/make_kquant_fixtures.py).
enum GGMLQ2_K {
    static let bytes = 84

    /// `quantize_row_q2_K_ref`: per sub-block weights |x|, `make_qkx2_quants(16, 3, …, −0.5, 0.1,
    /// 15, use_mad = true)`; scales and mins as four-bit codes of 15 / max. x: [blocks × 256]; y: [blocks × 84].
    static func ref(_ x: UnsafePointer<Float>, blocks: Int, _ y: UnsafeMutableRawPointer, _ s: GGMLQuantScratch) {
        for i in 0..<blocks {
            let xb = x + 256 * i, o = y + 84 * i
            let sc = o.assumingMemoryBound(to: UInt8.self)
            var maxScale: Float = 0, maxMin: Float = 0
            for j in 0..<16 {
                let xj = xb + 16 * j
                for l in 0..<16 { s.weights[l] = abs(xj[l]) }
                var m: Float = 0
                s.scales[j] = GGMLQuantMath.makeQkxQuants(16, 3, xj, s.weights, s.L + 16 * j, &m, s.laux, -0.5, 0.1, 15,
                                                          qkx3: false, mad: true)
                s.mins[j] = m
                if s.scales[j] > maxScale { maxScale = s.scales[j] }
                if m > maxMin { maxMin = m }
            }
            var d = GGMLQuantMath.fp16(0), dmin = GGMLQuantMath.fp16(0)
            if maxScale > 0 {
                let iscale = 15 / maxScale
                for j in 0..<16 { sc[j] = UInt8(truncatingIfNeeded: GGMLQuantMath.nearestInt(iscale * s.scales[j])) }
                d = GGMLQuantMath.fp16(maxScale / 15)
            } else {
                for j in 0..<16 { sc[j] = 0 }
            }
            if maxMin > 0 {
                let iscale = 15 / maxMin
                for j in 0..<16 { sc[j] |= UInt8(truncatingIfNeeded: GGMLQuantMath.nearestInt(iscale * s.mins[j]) << 4) }
                dmin = GGMLQuantMath.fp16(maxMin / 15)
            }
            o.storeBytes(of: d.littleEndian, toByteOffset: 80, as: UInt16.self)
            o.storeBytes(of: dmin.littleEndian, toByteOffset: 82, as: UInt16.self)
            finish(xb, o, s)
        }
    }

    /// `quantize_row_q2_K_impl` for one row: σ² = Σx²/256 over the super-block, weights
    /// qw·√(σ² + x²), `make_qkx3_quants(16, 3, …, −0.9, 0.05, 36)`, then the scales and mins by
    /// `make_qp_quants(16, 15, …, sw)`. x, qw: [n]; y: [n / 256 × 84].
    static func impl(_ x: UnsafePointer<Float>, _ n: Int, _ y: UnsafeMutableRawPointer, _ qw: UnsafePointer<Float>,
                     _ s: GGMLQuantScratch) {
        for i in 0..<(n / 256) {
            let xb = x + 256 * i, qb = qw + 256 * i, o = y + 84 * i
            var sumX2: Float = 0
            for j in 0..<256 { sumX2 += xb[j] * xb[j] }
            let sigma2 = sumX2 / 256
            for j in 0..<16 {
                let xj = xb + 16 * j, qj = qb + 16 * j
                for l in 0..<16 { s.weights[l] = qj[l] * (sigma2 + xj[l] * xj[l]).squareRoot() }
                var sumw: Float = 0
                for l in 0..<16 { sumw += s.weights[l] }
                s.sw[j] = sumw
                var m: Float = 0
                s.scales[j] = GGMLQuantMath.makeQkxQuants(16, 3, xj, s.weights, s.L + 16 * j, &m, s.laux, -0.9, 0.05, 36, qkx3: true)
                s.mins[j] = m
            }
            let dm = GGMLQuantMath.makeQpQuants(16, 15, s.scales, s.ls, s.sw)
            let mm = GGMLQuantMath.makeQpQuants(16, 15, s.mins, s.lm, s.sw)
            o.storeBytes(of: GGMLQuantMath.fp16(dm).littleEndian, toByteOffset: 80, as: UInt16.self)
            o.storeBytes(of: GGMLQuantMath.fp16(mm).littleEndian, toByteOffset: 82, as: UInt16.self)
            let sc = o.assumingMemoryBound(to: UInt8.self)
            for j in 0..<16 { sc[j] = s.ls[j] | (s.lm[j] << 4) }
            finish(xb, o, s)
        }
    }

    /// Requantizes with the stored scales (sub-blocks with d·sc = 0 keep the search's codes in s.L)
    /// and packs qs.
    @inline(__always)
    static func finish(_ x: UnsafePointer<Float>, _ o: UnsafeMutableRawPointer, _ s: GGMLQuantScratch) {
        let sc = UnsafePointer(o.assumingMemoryBound(to: UInt8.self))
        let d0 = GGMLQuantMath.fp32(UInt16(littleEndian: o.loadUnaligned(fromByteOffset: 80, as: UInt16.self)))
        let m0 = GGMLQuantMath.fp32(UInt16(littleEndian: o.loadUnaligned(fromByteOffset: 82, as: UInt16.self)))
        for j in 0..<16 {
            let d = d0 * Float(sc[j] & 0xF)
            if d == 0 { continue }
            let dm = m0 * Float(sc[j] >> 4)
            for ii in 0..<16 {
                let l = GGMLQuantMath.nearestInt((x[16 * j + ii] + dm) / d)
                s.L[16 * j + ii] = UInt8(truncatingIfNeeded: Swift.max(0, Swift.min(3, l)))
            }
        }
        for j in stride(from: 0, to: 256, by: 128) {
            for l in 0..<32 {
                let q = s.L[j + l] | (s.L[j + l + 32] << 2) | (s.L[j + l + 64] << 4) | (s.L[j + l + 96] << 6)
                o.storeBytes(of: q, toByteOffset: 16 + j / 4 + l, as: UInt8.self)
            }
        }
    }
}
