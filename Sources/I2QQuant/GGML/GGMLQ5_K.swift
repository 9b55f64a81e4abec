/// Q5_K (super-block of 256 = 8 sub-blocks of 32; 176 bytes: f16 `d`, f16 `dmin`, 12 scale bytes as
/// Q4_K, `qh`[32] (bit 2k / 2k+1 of qh[l]: bit 4 of element l / l + 32 of the k-th 64-element
/// pair of sub-blocks), `qs`[128] low nibbles as Q4_K; x ≈ d·sc[g]·q − dmin·m[g]).
/// Bit-exact to ggml's `quantize_row_q5_K_ref` (no importance) and `quantize_row_q5_K_impl`
/// (importance-weighted), i.e. to `ggml_quantize_chunk(GGML_TYPE_Q5_K, …)` (Tests/Fixtures/kquant).
enum GGMLQ5_K {
    static let bytes = 176

    /// `quantize_row_q5_K_ref`: `make_qkx2_quants(32, 31, …, −0.5, 0.1, 15)`. x: [blocks × 256]; y: [blocks × 176].
    static func ref(_ x: UnsafePointer<Float>, blocks: Int, _ y: UnsafeMutableRawPointer, _ s: GGMLQuantScratch) {
        for i in 0..<blocks {
            GGMLKQuant.refScalesMins(x + 256 * i, nmax: 31, rmin: -0.5, rdelta: 0.1, nstep: 15, y + 176 * i, s)
            finish(x + 256 * i, y + 176 * i, s)
        }
    }

    /// `quantize_row_q5_K_impl` for one row (n a multiple of 256). x, qw: [n]; y: [n / 256 × 176].
    static func impl(_ x: UnsafePointer<Float>, _ n: Int, _ y: UnsafeMutableRawPointer, _ qw: UnsafePointer<Float>,
                     _ s: GGMLQuantScratch) {
        for i in 0..<(n / 256) {
            GGMLKQuant.implScalesMins(x + 256 * i, qw + 256 * i, nmax: 31, clampTo63: true, y + 176 * i, s)
            finish(x + 256 * i, y + 176 * i, s)
        }
    }

    @inline(__always)
    static func finish(_ x: UnsafePointer<Float>, _ o: UnsafeMutableRawPointer, _ s: GGMLQuantScratch) {
        GGMLKQuant.requantize(x, o, nmax: 31, s)
        // qh: [32] at 16; ql: [128] at 48.
        for j in 0..<32 { o.storeBytes(of: UInt8(0), toByteOffset: 16 + j, as: UInt8.self) }
        var m1: UInt8 = 1, m2: UInt8 = 2
        for n in stride(from: 0, to: 256, by: 64) {
            for j in 0..<32 {
                var l1 = s.L[n + j], l2 = s.L[n + j + 32]
                var qh = o.load(fromByteOffset: 16 + j, as: UInt8.self)
                if l1 > 15 { l1 -= 16; qh |= m1 }
                if l2 > 15 { l2 -= 16; qh |= m2 }
                o.storeBytes(of: qh, toByteOffset: 16 + j, as: UInt8.self)
                o.storeBytes(of: l1 | (l2 << 4), toByteOffset: 48 + n / 2 + j, as: UInt8.self)
            }
            m1 <<= 2; m2 <<= 2
        }
    }
}
