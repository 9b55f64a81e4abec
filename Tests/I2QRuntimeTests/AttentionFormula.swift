import Foundation

/// transformers' eager attention (scores · scale, masked keys at −∞, softmax, · v) evaluated in double
/// precision — the spec the runtime's attention kernels are checked against. `round` is applied to
/// q, k, v and the probabilities first (identity for float32 attention; torch's bf16 rounding for
/// `--bf16-attention`). q: [tq, heads·d], k/v: [tk, kvHeads·d]; head h reads kv head h / (heads / kvHeads).
/// Returns out [tq, heads·d] and, per element, Σ|p·v| (the scale of its rounding error).
enum AttentionFormula {
    static func evaluate(q: [Float], k: [Float], v: [Float], mask: [Bool], tq: Int, tk: Int, heads: Int, kvHeads: Int,
                         d: Int, scale: Double, round: (Float) -> Double = { Double($0) }) -> (out: [Double], magnitude: [Double]) {
        var out = [Double](repeating: 0, count: tq * heads * d), mag = out
        for h in 0..<heads { for i in 0..<tq {
            let g = h / (heads / kvHeads)
            var s = [Double](repeating: -.infinity, count: tk)
            for j in 0..<tk where mask[j] {
                var dot = 0.0
                for e in 0..<d { dot += round(q[i * heads * d + h * d + e]) * round(k[j * kvHeads * d + g * d + e]) }
                s[j] = scale * dot
            }
            let mx = s.max()!, z = s.reduce(0) { $0 + exp($1 - mx) }
            for e in 0..<d {
                var o = 0.0, m = 0.0
                for j in 0..<tk {
                    let term = round(Float(exp(s[j] - mx) / z)) * round(v[j * kvHeads * d + g * d + e])
                    o += term; m += abs(term)
                }
                out[i * heads * d + h * d + e] = o; mag[i * heads * d + h * d + e] = m
            }
        } }
        return (out, mag)
    }

    /// torch's `.to(torch.bfloat16)` (round to nearest even), widened.
    static func bf16(_ x: Float) -> Double {
        let u = x.bitPattern
        return Double(Float(bitPattern: ((u &+ 0x7fff &+ ((u >> 16) & 1)) >> 16) << 16))
    }
}
