/// Q5_1 (block of 32: f16 `d`, f16 `m`, u32 `qh`, 16 bytes of low nibbles; x ≈ d · q + m).
/// Bit-exact to ggml's `quantize_row_q5_1_ref` and `quantize_row_q5_1_impl` (importance-weighted),
/// i.e. to `ggml_quantize_chunk(GGML_TYPE_Q5_1, …)` (Tests/Fixtures/kquant).
enum GGMLQ5_1 {
    static let bytes = 24

    /// `quantize_row_q5_1_ref`: `d = (max − min) / 31`, `q = (uint8)((x − min) · (1/d) + 0.5)` (no clamp).
    /// x: [blocks × 32]; y: [blocks × 24].
    static func ref(_ x: UnsafePointer<Float>, blocks: Int, _ y: UnsafeMutableRawPointer) {
        for b in 0..<blocks {
            let xb = x + 32 * b, o = y + 24 * b
            var min = Float.greatestFiniteMagnitude, max = -Float.greatestFiniteMagnitude
            for j in 0..<32 {
                if xb[j] < min { min = xb[j] }
                if xb[j] > max { max = xb[j] }
            }
            let d = (max - min) / 31
            let id: Float = d != 0 ? 1 / d : 0
            o.storeBytes(of: GGMLQuantMath.fp16(d).littleEndian, as: UInt16.self)
            o.storeBytes(of: GGMLQuantMath.fp16(min).littleEndian, toByteOffset: 2, as: UInt16.self)
            GGMLLegacy.pack5({ j in GGMLQuantMath.lowByte((xb[j] - min) * id + 0.5) }, o + 4)
        }
    }

    /// `quantize_row_q5_1_impl` for one row: `make_qkx3_quants(32, 31, …, −0.9, 0.05, 36)`, m = −min.
    /// x, qw: [n]; y: [n / 32 × 24].
    static func impl(_ x: UnsafePointer<Float>, _ n: Int, _ y: UnsafeMutableRawPointer, _ qw: UnsafePointer<Float>,
                     _ s: GGMLQuantScratch) {
        let sigma2 = GGMLLegacy.sigma2(x, n)
        for b in 0..<(n / 32) {
            let xb = x + 32 * b, o = y + 24 * b
            GGMLLegacy.weights(xb, qw + 32 * b, sigma2, s.weights)
            var min: Float = 0
            let d = GGMLQuantMath.makeQkxQuants(32, 31, xb, s.weights, s.L, &min, s.laux, -0.9, 0.05, 36, qkx3: true)
            o.storeBytes(of: GGMLQuantMath.fp16(d).littleEndian, as: UInt16.self)
            o.storeBytes(of: GGMLQuantMath.fp16(-min).littleEndian, toByteOffset: 2, as: UInt16.self)
            GGMLLegacy.pack5({ s.L[$0] }, o + 4)
        }
    }
}
