/// Q4_0 (block of 32: f16 `d`, 16 bytes; byte j = q[j] | q[j + 16] << 4; x ≈ d · (q − 8)).
/// Bit-exact to ggml's `quantize_row_q4_0_ref` (no importance) and `quantize_row_q4_0_impl`
/// (importance-weighted), i.e. to `ggml_quantize_chunk(GGML_TYPE_Q4_0, …)` — checked byte for byte
/// against Tests/Fixtures/kquant (scripts/fixtures/make_kquant_fixtures.py).
enum GGMLQ4_0 {
    static let bytes = 18

    /// `quantize_row_q4_0_ref`: `max` = the first value of largest |x| (+0 when all are ±0),
    /// `d = max / −8`, `q = min(15, (int8)(x · (1/d) + 8.5))`. x: [blocks × 32]; y: [blocks × 18].
    static func ref(_ x: UnsafePointer<Float>, blocks: Int, _ y: UnsafeMutableRawPointer) {
        for b in 0..<blocks {
            let xb = x + 32 * b, o = y + 18 * b
            var amax: Float = 0, max: Float = 0
            for j in 0..<32 where amax < abs(xb[j]) { amax = abs(xb[j]); max = xb[j] }
            let d = max / -8
            let id: Float = d != 0 ? 1 / d : 0
            o.storeBytes(of: GGMLQuantMath.fp16(d).littleEndian, as: UInt16.self)
            @inline(__always) func q(_ v: Float) -> UInt8 {
                UInt8(bitPattern: Swift.min(15, Int8(bitPattern: GGMLQuantMath.lowByte(v * id + 8.5))))
            }
            for j in 0..<16 { o.storeBytes(of: q(xb[j]) | (q(xb[j + 16]) << 4), toByteOffset: 2 + j, as: UInt8.self) }
        }
    }

    /// `quantize_row_q4_0_impl` for one row: σ² = Σx²/n over the row, weights qw · √(σ² + x²),
    /// `d = make_qx_quants(32, 8, …)`. x, qw: [n]; y: [n / 32 × 18].
    static func impl(_ x: UnsafePointer<Float>, _ n: Int, _ y: UnsafeMutableRawPointer, _ qw: UnsafePointer<Float>,
                     _ s: GGMLQuantScratch) {
        let sigma2 = GGMLLegacy.sigma2(x, n)
        for b in 0..<(n / 32) {
            let xb = x + 32 * b, o = y + 18 * b
            GGMLLegacy.weights(xb, qw + 32 * b, sigma2, s.weights)
            let d = GGMLQuantMath.makeQxQuants(32, 8, xb, s.l8, s.weights)
            o.storeBytes(of: GGMLQuantMath.fp16(d).littleEndian, as: UInt16.self)
            for j in 0..<16 {
                o.storeBytes(of: UInt8(bitPattern: s.l8[j]) | (UInt8(bitPattern: s.l8[j + 16]) << 4), toByteOffset: 2 + j, as: UInt8.self)
            }
        }
    }
}

/// What the imatrix paths of the 32-element types share (`quantize_row_q4_0_impl` … `q5_1_impl`).
enum GGMLLegacy {
    /// σ² = (Σ x²) / n, summed in order over the whole row.
    @inline(__always)
    static func sigma2(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var s: Float = 0
        for j in 0..<n { s += x[j] * x[j] }
        return s / Float(n)
    }

    /// weight[j] = qw[j] · √(σ² + x[j]²). x, qw: [32]; w: [32] (written).
    @inline(__always)
    static func weights(_ x: UnsafePointer<Float>, _ qw: UnsafePointer<Float>, _ sigma2: Float, _ w: UnsafeMutablePointer<Float>) {
        for j in 0..<32 { w[j] = qw[j] * (sigma2 + x[j] * x[j]).squareRoot() }
    }

    /// The 5th bits of 32 codes as Q5_0/Q5_1's `qh` (bit j = bit 4 of code j) and the low nibbles
    /// as `qs` (byte j = q[j] & 15 | (q[j + 16] & 15) << 4). q: [32]; o: qh (u32 LE) then qs[16].
    @inline(__always)
    static func pack5(_ q: (Int) -> UInt8, _ o: UnsafeMutableRawPointer) {
        var qh: UInt32 = 0
        for j in 0..<16 {
            let a = q(j), b = q(j + 16)
            o.storeBytes(of: (a & 0x0F) | ((b & 0x0F) << 4), toByteOffset: 4 + j, as: UInt8.self)
            qh |= UInt32((a & 0x10) >> 4) << UInt32(j)
            qh |= UInt32((b & 0x10) >> 4) << UInt32(j + 16)
        }
        o.storeBytes(of: qh.littleEndian, as: UInt32.self)
    }
}
