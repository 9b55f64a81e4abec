/// Q4_1 (block of 32: f16 `d`, f16 `m`, 16 bytes of nibbles as Q4_0; x ≈ d · q + m).
/// Bit-exact to ggml's `quantize_row_q4_1_ref` and `quantize_row_q4_1_impl` (importance-weighted),
/// i.e. to `ggml_quantize_chunk(GGML_TYPE_Q4_1, …)` (checked against Tests/Fixtures/kquant).
enum GGMLQ4_1 {
    static let bytes = 20

    /// `quantize_row_q4_1_ref`: `d = (max − min) / 15`, `q = min(15, (int8)((x − min) · (1/d) + 0.5))`.
    /// x: [blocks × 32]; y: [blocks × 20].
    static func ref(_ x: UnsafePointer<Float>, blocks: Int, _ y: UnsafeMutableRawPointer) {
        for b in 0..<blocks {
            let xb = x + 32 * b, o = y + 20 * b
            var min = Float.greatestFiniteMagnitude, max = -Float.greatestFiniteMagnitude
            for j in 0..<32 {
                if xb[j] < min { min = xb[j] }
                if xb[j] > max { max = xb[j] }
            }
            let d = (max - min) / 15
            let id: Float = d != 0 ? 1 / d : 0
            o.storeBytes(of: GGMLQuantMath.fp16(d).littleEndian, as: UInt16.self)
            o.storeBytes(of: GGMLQuantMath.fp16(min).littleEndian, toByteOffset: 2, as: UInt16.self)
            @inline(__always) func q(_ v: Float) -> UInt8 {
                UInt8(bitPattern: Swift.min(15, Int8(bitPattern: GGMLQuantMath.lowByte((v - min) * id + 0.5))))
            }
            for j in 0..<16 { o.storeBytes(of: q(xb[j]) | (q(xb[j + 16]) << 4), toByteOffset: 4 + j, as: UInt8.self) }
        }
    }

    /// `quantize_row_q4_1_impl` for one row: weights as Q4_0's, `make_qkx3_quants(32, 15, …, −0.9, 0.05, 36)`,
    /// m = −min. x, qw: [n]; y: [n / 32 × 20].
    static func impl(_ x: UnsafePointer<Float>, _ n: Int, _ y: UnsafeMutableRawPointer, _ qw: UnsafePointer<Float>,
                     _ s: GGMLQuantScratch) {
        let sigma2 = GGMLLegacy.sigma2(x, n)
        for b in 0..<(n / 32) {
            let xb = x + 32 * b, o = y + 20 * b
            GGMLLegacy.weights(xb, qw + 32 * b, sigma2, s.weights)
            var min: Float = 0
            let d = GGMLQuantMath.makeQkxQuants(32, 15, xb, s.weights, s.L, &min, s.laux, -0.9, 0.05, 36, qkx3: true)
            o.storeBytes(of: GGMLQuantMath.fp16(d).littleEndian, as: UInt16.self)
            o.storeBytes(of: GGMLQuantMath.fp16(-min).littleEndian, toByteOffset: 2, as: UInt16.self)
            for j in 0..<16 { o.storeBytes(of: s.L[j] | (s.L[j + 16] << 4), toByteOffset: 4 + j, as: UInt8.self) }
        }
    }
}
