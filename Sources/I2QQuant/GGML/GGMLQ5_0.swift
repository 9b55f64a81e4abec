/// Q5_0 (block of 32: f16 `d`, u32 `qh` (bit j = bit 4 of code j), 16 bytes of low nibbles;
/// x ≈ d · (q − 16)). Bit-exact to ggml's `quantize_row_q5_0_ref` and `quantize_row_q5_0_impl`
/// (importance-weighted), i.e. to `ggml_quantize_chunk(GGML_TYPE_Q5_0, …)` (Tests/Fixtures/kquant).
enum GGMLQ5_0 {
    static let bytes = 22

    /// `quantize_row_q5_0_ref`: as Q4_0 with `d = max / −16`, `q = min(31, (int8)(x · (1/d) + 16.5))`.
    /// x: [blocks × 32]; y: [blocks × 22].
    static func ref(_ x: UnsafePointer<Float>, blocks: Int, _ y: UnsafeMutableRawPointer) {
        for b in 0..<blocks {
            let xb = x + 32 * b, o = y + 22 * b
            var amax: Float = 0, max: Float = 0
            for j in 0..<32 where amax < abs(xb[j]) { amax = abs(xb[j]); max = xb[j] }
            let d = max / -16
            let id: Float = d != 0 ? 1 / d : 0
            o.storeBytes(of: GGMLQuantMath.fp16(d).littleEndian, as: UInt16.self)
            GGMLLegacy.pack5({ j in
                UInt8(bitPattern: Swift.min(31, Int8(bitPattern: GGMLQuantMath.lowByte(xb[j] * id + 16.5))))
            }, o + 2)
        }
    }

    /// `quantize_row_q5_0_impl` for one row: weights as Q4_0's, `make_qx_quants(32, 16, …)`.
    /// x, qw: [n]; y: [n / 32 × 22].
    static func impl(_ x: UnsafePointer<Float>, _ n: Int, _ y: UnsafeMutableRawPointer, _ qw: UnsafePointer<Float>,
                     _ s: GGMLQuantScratch) {
        let sigma2 = GGMLLegacy.sigma2(x, n)
        for b in 0..<(n / 32) {
            let xb = x + 32 * b, o = y + 22 * b
            GGMLLegacy.weights(xb, qw + 32 * b, sigma2, s.weights)
            let d = GGMLQuantMath.makeQxQuants(32, 16, xb, s.l8, s.weights)
            o.storeBytes(of: GGMLQuantMath.fp16(d).littleEndian, as: UInt16.self)
            GGMLLegacy.pack5({ UInt8(bitPattern: s.l8[$0]) }, o + 2)
        }
    }
}
