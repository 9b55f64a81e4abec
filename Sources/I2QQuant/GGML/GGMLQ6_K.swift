/// Q6_K (super-block of 256 = 16 sub-blocks of 16; 210 bytes: `ql`[128] low nibbles, `qh`[64]
/// high 2 bits, int8 `scales`[16], f16 `d`; x ≈ d·scale[e/16]·(q − 32)).
/// Bit-exact to ggml's `quantize_row_q6_K_ref` (no importance) and `quantize_row_q6_K_impl`
/// (importance-weighted), i.e. to `ggml_quantize_chunk(GGML_TYPE_Q6_K, …)` (Tests/Fixtures/kquant).
enum GGMLQ6_K {
    static let bytes = 210

    /// `quantize_row_q6_K_ref`: per sub-block `make_qx_quants(16, 32, x, L, 1, nil)` (weights x²).
    /// x: [blocks × 256]; y: [blocks × 210].
    static func ref(_ x: UnsafePointer<Float>, blocks: Int, _ y: UnsafeMutableRawPointer, _ s: GGMLQuantScratch) {
        for i in 0..<blocks { block(x + 256 * i, nil, y + 210 * i, s) }
    }

    /// `quantize_row_q6_K_impl` for one row: the same with weights qw (the importance itself, not
    /// σ-scaled). x, qw: [n]; y: [n / 256 × 210].
    static func impl(_ x: UnsafePointer<Float>, _ n: Int, _ y: UnsafeMutableRawPointer, _ qw: UnsafePointer<Float>,
                     _ s: GGMLQuantScratch) {
        for i in 0..<(n / 256) { block(x + 256 * i, qw + 256 * i, y + 210 * i, s) }
    }

    static func block(_ x: UnsafePointer<Float>, _ qw: UnsafePointer<Float>?, _ o: UnsafeMutableRawPointer, _ s: GGMLQuantScratch) {
        let L = s.l8  // [256] codes in [0, 63]
        var maxScale: Float = 0, maxAbsScale: Float = 0
        for ib in 0..<16 {
            let scale = GGMLQuantMath.makeQxQuants(16, 32, x + 16 * ib, L + 16 * ib, qw.map { $0 + 16 * ib })
            s.scales[ib] = scale
            if abs(scale) > maxAbsScale { maxAbsScale = abs(scale); maxScale = scale }
        }
        if maxAbsScale < GGMLQuantMath.groupMaxEps {
            for k in 0..<210 { o.storeBytes(of: UInt8(0), toByteOffset: k, as: UInt8.self) }
            return
        }
        let iscale = -128 / maxScale
        let dBits = GGMLQuantMath.fp16(1 / iscale)
        o.storeBytes(of: dBits.littleEndian, toByteOffset: 208, as: UInt16.self)
        let d0 = GGMLQuantMath.fp32(dBits)
        for ib in 0..<16 {
            let sc = Int8(truncatingIfNeeded: Swift.min(127, GGMLQuantMath.nearestInt(iscale * s.scales[ib])))
            o.storeBytes(of: sc, toByteOffset: 192 + ib, as: Int8.self)
        }
        for j in 0..<16 {
            let d = d0 * Float(o.load(fromByteOffset: 192 + j, as: Int8.self))
            if d == 0 { continue }
            for ii in 0..<16 {
                let l = GGMLQuantMath.nearestInt(x[16 * j + ii] / d)
                L[16 * j + ii] = Int8(truncatingIfNeeded: Swift.max(-32, Swift.min(31, l)) + 32)
            }
        }
        for j in stride(from: 0, to: 256, by: 128) {
            for l in 0..<32 {
                @inline(__always) func c(_ k: Int) -> UInt8 { UInt8(bitPattern: L[j + l + k]) }
                o.storeBytes(of: (c(0) & 0xF) | ((c(64) & 0xF) << 4), toByteOffset: j / 2 + l, as: UInt8.self)
                o.storeBytes(of: (c(32) & 0xF) | ((c(96) & 0xF) << 4), toByteOffset: j / 2 + l + 32, as: UInt8.self)
                let h = (c(0) >> 4) | ((c(32) >> 4) << 2) | ((c(64) >> 4) << 4) | ((c(96) >> 4) << 6)
                o.storeBytes(of: h, toByteOffset: 128 + j / 4 + l, as: UInt8.self)
            }
        }
    }
}
