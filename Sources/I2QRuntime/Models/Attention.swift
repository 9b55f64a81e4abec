import I2QCore
import I2QFormats

/// Grouped-query self-attention of Llama/Mistral (transformers 5.24 `LlamaAttention` /
/// `MistralAttention`, eager path): q/k/v projections (+ optional bias), RoPE, causal mask — with
/// Mistral's sliding window (key j visible to query i iff i − W < j ≤ i) —, softmax in float32,
/// output projection. Query head h reads kv head h / (heads / kvHeads).
struct Attention {
    let q, k, v, o: Weight
    let qBias, kBias, vBias: Weight?
    let heads, kvHeads, headDim, hidden: Int
    let window: Int?
    let rope: RoPE

    init(_ w: WeightLoader, prefix: String, config c: TextConfig) throws {
        heads = c.numAttentionHeads; kvHeads = c.numKeyValueHeads; headDim = c.headDim; hidden = c.hiddenSize
        window = c.slidingWindow
        rope = RoPE(headDim: c.headDim, theta: c.rope.theta)
        q = try w.weight(prefix + "q_proj.weight", [heads * headDim, hidden])
        k = try w.weight(prefix + "k_proj.weight", [kvHeads * headDim, hidden])
        v = try w.weight(prefix + "v_proj.weight", [kvHeads * headDim, hidden])
        o = try w.weight(prefix + "o_proj.weight", [hidden, heads * headDim])
        qBias = try w.optional(prefix + "q_proj.bias", [heads * headDim])
        kBias = try w.optional(prefix + "k_proj.bias", [kvHeads * headDim])
        vBias = try w.optional(prefix + "v_proj.bias", [kvHeads * headDim])
    }

    /// x: [t, hidden] (normalised input) at positions start..<start+t; adds the attention output
    /// into `residual` [t, hidden]. keys/values: this layer's cache, [capacity, kvHeads·headDim].
    func callAsFunction(_ x: UnsafePointer<Float>, t: Int, start: Int, keys: UnsafeMutablePointer<Float>,
                        values: UnsafeMutablePointer<Float>, residual: UnsafeMutablePointer<Float>, ws: Workspace) throws {
        let qw = heads * headDim, kw = kvHeads * headDim
        let qb = ws.q(t * qw)            // [t, heads·headDim]
        let kRows = keys + start * kw    // new keys go straight into the cache: [t, kw]
        let vRows = values + start * kw
        if t == 1, let qd = q.direct, let kd = k.direct, let vd = v.direct {
            // Decoding with float32 weights: the three projections in one dispatch.
            Gemv.runMany([(qd, qb, qw), (kd, kRows, kw), (vd, vRows, kw)], x: x, k: hidden)
            if let b = qBias { try b.withF32(ws.scratch) { Kernels.add(qb, $0, n: qw) } }
            if let b = kBias { try b.withF32(ws.scratch) { Kernels.add(kRows, $0, n: kw) } }
            if let b = vBias { try b.withF32(ws.scratch) { Kernels.add(vRows, $0, n: kw) } }
        } else {
            try project(x, t, q, qBias, qb, ws)
            try project(x, t, k, kBias, kRows, ws)
            try project(x, t, v, vBias, vRows, ws)
        }
        for i in 0..<t {
            rope.apply(qb + i * qw, heads: heads, pos: start + i)
            rope.apply(kRows + i * kw, heads: kvHeads, pos: start + i)
        }
        let s = start + t
        let out = ws.attn(t * qw)         // [t, heads·headDim]
        let scale = 1 / Float(headDim).squareRoot()
        let group = heads / kvHeads
        if t == 1 {
            let scores = ws.scores(s)     // [s]
            // Decoding one token: dot products against the cache (no BLAS call overhead per head).
            let pos = start
            let lo = window.map { max(0, pos - $0 + 1) } ?? 0
            for h in 0..<heads {
                let g = h / group
                let qh = qb + h * headDim
                for j in lo..<s {
                    let kj = keys + j * kw + g * headDim
                    var d: Float = 0
                    for c in 0..<headDim { d += qh[c] * kj[c] }
                    scores[j] = d * scale
                }
                for j in 0..<lo { scores[j] = -.infinity }
                Kernels.softmax(scores + lo, n: s - lo)
                let oh = out + h * headDim
                for c in 0..<headDim { oh[c] = 0 }
                for j in lo..<s {
                    let p = scores[j], vj = values + j * kw + g * headDim
                    for c in 0..<headDim { oh[c] += p * vj[c] }
                }
            }
            try o.linear(x: out, y: residual, m: t, accumulate: true, scratch: ws.scratch)
            return
        }
        // Prefill: the `group` query heads that share a kv head are stacked into one [group·t, headDim]
        // matrix (row r = head-in-group r / t, position r % t), so each kv head costs two GEMMs.
        let rowsPerGroup = group * t
        let qg = ws.stackedQ(rowsPerGroup * headDim)  // [group·t, headDim]
        let og = ws.stackedOut(rowsPerGroup * headDim)  // [group·t, headDim]
        let scores = ws.scores(rowsPerGroup * s)        // [group·t, s]
        for g in 0..<kvHeads {
            for hi in 0..<group {
                let h = g * group + hi
                for i in 0..<t { (qg + (hi * t + i) * headDim).update(from: qb + i * qw + h * headDim, count: headDim) }
            }
            // scores = Q_g · K_gᵀ · scale
            Matmul.gemm(transB: true, m: rowsPerGroup, n: s, k: headDim, alpha: scale,
                        a: qg, lda: headDim, b: keys + g * headDim, ldb: kw, c: scores, ldc: s)
            let sc = UnsafeSendable(scores), win = window
            Kernels.parallelRows(rowsPerGroup, cost: rowsPerGroup * s) { range in
                for r in range {
                    let row = sc.p + r * s
                    let pos = start + r % t
                    let lo = win.map { max(0, pos - $0 + 1) } ?? 0
                    for j in 0..<lo { row[j] = -.infinity }
                    if pos + 1 < s { for j in (pos + 1)..<s { row[j] = -.infinity } }
                    Kernels.softmax(row, n: s)
                }
            }
            // out = P · V_g
            Matmul.gemm(transB: false, m: rowsPerGroup, n: headDim, k: s, alpha: 1,
                        a: scores, lda: s, b: values + g * headDim, ldb: kw, c: og, ldc: headDim)
            for hi in 0..<group {
                let h = g * group + hi
                for i in 0..<t { (out + i * qw + h * headDim).update(from: og + (hi * t + i) * headDim, count: headDim) }
            }
        }
        try o.linear(x: out, y: residual, m: t, accumulate: true, scratch: ws.scratch)
    }

    private func project(_ x: UnsafePointer<Float>, _ t: Int, _ w: Weight, _ b: Weight?, _ y: UnsafeMutablePointer<Float>, _ ws: Workspace) throws {
        let n = w.shape[0]
        try w.linear(x: x, y: y, m: t, scratch: ws.scratch)
        if let b {
            try b.withF32(ws.scratch) { bp in for i in 0..<t { Kernels.add(y + i * n, bp, n: n) } }
        }
    }
}
