import CI2QKernels
import I2QCore
import I2QFormats

/// Grouped-query self-attention of Llama/Mistral (transformers 5.24 `LlamaAttention` /
/// `MistralAttention`, eager path): q/k/v projections (+ optional bias), RoPE, causal mask — with
/// Mistral's sliding window (key j visible to query i iff i − W < j ≤ i) —, softmax in float32,
/// output projection. Query head h reads kv head h / (heads / kvHeads).
struct Attention {
    /// q, k, v: one fused `qkv_proj` product when the file holds it (FusedWeights.swift).
    let qkv: ProjectionGroup
    let o: Weight
    let heads, kvHeads, headDim, hidden: Int
    let window: Int?
    let rope: RoPE
    var q: Weight { qkv.parts[0] }
    var k: Weight { qkv.parts[1] }
    var v: Weight { qkv.parts[2] }
    var qBias: Weight? { qkv.biases[0] }
    var kBias: Weight? { qkv.biases[1] }
    var vBias: Weight? { qkv.biases[2] }

    init(_ w: WeightLoader, prefix: String, config c: TextConfig) throws {
        heads = c.numAttentionHeads; kvHeads = c.numKeyValueHeads; headDim = c.headDim; hidden = c.hiddenSize
        window = c.slidingWindow
        rope = RoPE(headDim: c.headDim, parameters: c.rope)
        qkv = try w.group([prefix + "q_proj.weight", prefix + "k_proj.weight", prefix + "v_proj.weight"],
                          widths: [heads * headDim, kvHeads * headDim, kvHeads * headDim], inDim: hidden, bias: true)
        o = try w.weight(prefix + "o_proj.weight", [hidden, heads * headDim])
    }

    /// x: [t, hidden] (normalised input) at positions start..<start+t; adds the attention output
    /// into `residual` [t, hidden]. keys/values: this layer's cache, [capacity, kvHeads·headDim].
    /// `angles`: RoPE's cos/sin of those positions (`rope.angles`, shared by the layers).
    func callAsFunction(_ x: UnsafePointer<Float>, t: Int, start: Int, keys: UnsafeMutablePointer<Float>,
                        values: UnsafeMutablePointer<Float>, residual: UnsafeMutablePointer<Float>, angles: RoPE.Angles,
                        ws: Workspace) throws {
        let qw = heads * headDim, kw = kvHeads * headDim
        let qb = ws.q(t * qw)            // [t, heads·headDim]
        let kRows = keys + start * kw    // new keys go straight into the cache: [t, kw]
        let vRows = values + start * kw
        try qkv(x, m: t, outputs: [qb, kRows, vRows], ws: ws)
        let rb = UnsafeSendable((qb, kRows)), rope = rope, heads = heads, kvHeads = kvHeads
        Kernels.parallelRows(t, cost: t * (heads + kvHeads) * headDim * 4) { range in
            for i in range { rope.apply(rb.p.0 + i * qw, heads: heads, and: rb.p.1 + i * kw, heads: kvHeads, pos: start + i, angles: angles) }
        }
        let s = start + t
        let out = ws.attn(t * qw)         // [t, heads·headDim]
        let scale = 1 / Float(headDim).squareRoot()
        let group = heads / kvHeads
        if t == 1 {
            let scores = ws.scores(heads * s)  // [heads, s]
            // Decoding one token: per head, q·k over the cache (`i2q_gemv_ld`, dispatched C),
            // softmax, Σ p·v; heads split over the worker pool when the cache is large enough to pay.
            let pos = start
            let lo = window.map { max(0, pos - $0 + 1) } ?? 0
            let hd = headDim
            let box = UnsafeSendable((UnsafePointer(qb), UnsafePointer(keys), UnsafePointer(values), scores, out))
            let parts = (s - lo) * heads * hd >= 1 << 15 ? min(Gemv.threads, heads) : 1
            WorkerPool.run(parts) { part in
                let (qb, keys, values, scores, out) = box.p
                for h in stride(from: part, to: heads, by: parts) {
                    let g = h / group
                    let qh = qb + h * hd, sh = scores + h * s
                    // q·k for every cached key of kv head g in one strided GEMV (rows kw floats apart),
                    // the same kernel and order as `QuantGemv.dot` per key; then the scale.
                    i2q_gemv_ld(keys + g * hd, Int32(I2Q_W_F32), Int64(kw), qh, sh, Int64(hd), Int64(lo), Int64(s), 0, Int32(I2Q_IMPL_AUTO))
                    for j in lo..<s { sh[j] *= scale }
                    Kernels.softmax(sh + lo, n: s - lo)
                    // Σ p·v over the cache (dispatched C; the same per-element order as a plain loop).
                    i2q_weighted_sum(sh + lo, values + lo * kw + g * hd, Int64(kw), Int64(s - lo), Int64(hd), out + h * hd, Int32(I2Q_IMPL_AUTO))
                }
            }
            try o.linear(x: out, y: residual, m: t, accumulate: true, scratch: ws.scratch)
            return
        }
        CausalAttention.prefill(q: qb, t: t, start: start, keys: keys, values: values, out: out,
                                heads: heads, kvHeads: kvHeads, headDim: headDim, window: window, ws: ws)
        try o.linear(x: out, y: residual, m: t, accumulate: true, scratch: ws.scratch)
    }
}


/// The causal grouped-query attention core shared by the runtime's prefill (`Attention`) and AWQ
/// calibration (`DecoderLayerForward`): one implementation of masks, softmax and the GQA stacking.
/// Reference: transformers 5.24 `eager_attention_forward` (float32 softmax; Mistral's sliding window:
/// key j visible to query i iff i − W < j ≤ i).
enum CausalAttention {
    /// Most attention scores held at once (floats: 64 MB). Tests lower it to force blocks.
    nonisolated(unsafe) static var maxScores = 1 << 24

    /// q: [t, heads·headDim] rotated queries at positions start..<start+t; keys/values: [start+t,
    /// kvHeads·headDim] (rotated keys); out: [t, heads·headDim]. Query head h reads kv head
    /// h / (heads / kvHeads).
    static func prefill(q qb: UnsafePointer<Float>, t: Int, start: Int, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                        out: UnsafeMutablePointer<Float>, heads: Int, kvHeads: Int, headDim: Int, window: Int?, ws: Workspace) {
        let qw = heads * headDim, kw = kvHeads * headDim
        let s = start + t
        let scale = 1 / Float(headDim).squareRoot()
        let group = heads / kvHeads
        // Prefill: the `group` query heads that share a kv head are stacked into one [group·n, headDim]
        // matrix (row r = head-in-group r / n, position r % n), so each kv head costs two GEMMs. The
        // queries go in blocks of at most 128 positions, each multiplied only with the keys it may
        // see (the first start + i0 + n: causal, so about half the products of a full [t, s] score
        // matrix), and so that the scores never exceed `maxScores` floats (memory linear in the
        // context length). Each row's softmax covers its visible keys [lo, pos] (i2q_softmax; the rest
        // of the row is 0) and does not depend on the blocking. The (block, kv head) units are
        // independent — each writes its own rows and heads of `out` — and run on the worker pool,
        // largest first, each with its own buffers (issue 19: attention was single-threaded GEMMs).
        let units = min(max(1, Gemv.threads), kvHeads * ((t + 127) / 128))
        let block = min(t, 128, max(1, maxScores / (units * group * s)))
        let starts = Array(stride(from: 0, to: t, by: block)).reversed()  // later blocks see more keys
        let work = starts.flatMap { i0 in (0..<kvHeads).map { (i0, $0) } }
        let box = UnsafeSendable((qb, keys, values, out))
        let parts = t * s * headDim * heads >= 1 << 18 ? work.count : 1
        // bf16 inputs to both products (--bf16-attention): q, k, probabilities and v rounded (BF16Attention)
        let ops = BF16Attention.enabled
            ? BF16Attention.Operands(q: nil, tq: 0, ldq: 0, k: keys, v: values, tk: s, ldk: kw, kvHeads: kvHeads, d: headDim) : nil
        defer { ops?.free() }
        WorkerPool.run(parts) { part in
            let (qb, keys, values, out) = box.p
            for (i0, g) in parts == 1 ? work : [work[part]] {
                let n = min(block, t - i0), rows = group * n
                let sv = start + i0 + n, first = start + i0  // keys visible to this block
                let qg = UnsafeMutablePointer<Float>.allocate(capacity: rows * headDim)      // [group·n, headDim]
                let og = UnsafeMutablePointer<Float>.allocate(capacity: rows * headDim)      // [group·n, headDim]
                defer { qg.deallocate(); og.deallocate() }
                for hi in 0..<group {
                    let h = g * group + hi
                    for i in 0..<n { (qg + (hi * n + i) * headDim).update(from: qb + (i0 + i) * qw + h * headDim, count: headDim) }
                }
                // Row r of the scores: query position first + r % n sees keys [lo, pos].
                func softmax(_ r: Int, _ row: UnsafeMutablePointer<Float>) {
                    let pos = first + r % n
                    let lo = window.map { max(0, pos - $0 + 1) } ?? 0
                    i2q_softmax(row, Int64(sv), Int64(lo), Int64(pos + 1), Int32(I2Q_IMPL_AUTO))
                }
                if let ops {
                    let q16 = UnsafeMutablePointer<UInt16>.allocate(capacity: rows * headDim)  // qg in bf16
                    defer { q16.deallocate() }
                    i2q_f32_to_bf16(qg, q16, Int64(rows * headDim), Int32(I2Q_IMPL_AUTO))
                    BF16Attention.unit(ops, q16: q16, ldq: headDim, m: rows, d: headDim, g: g, ldk: kw, sv: sv, scale: scale,
                                       out: og, ldo: headDim, probabilities: softmax)
                } else {
                    let scores = UnsafeMutablePointer<Float>.allocate(capacity: rows * sv)  // [group·n, sv]
                    defer { scores.deallocate() }
                    // scores = Q_g · K_g[0..<sv]ᵀ · scale
                    Matmul.gemm(transB: true, m: rows, n: sv, k: headDim, alpha: scale,
                                a: qg, lda: headDim, b: keys + g * headDim, ldb: kw, c: scores, ldc: sv)
                    for r in 0..<rows { softmax(r, scores + r * sv) }
                    // out = P · V_g[0..<sv]
                    Matmul.gemm(transB: false, m: rows, n: headDim, k: sv, alpha: 1,
                                a: scores, lda: sv, b: values + g * headDim, ldb: kw, c: og, ldc: headDim)
                }
                for hi in 0..<group {
                    let h = g * group + hi
                    for i in 0..<n { (out + (i0 + i) * qw + h * headDim).update(from: og + (hi * n + i) * headDim, count: headDim) }
                }
            }
        }
    }
}
