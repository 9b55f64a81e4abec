import I2QCore
import I2QFormats

/// Idefics2's connector (transformers 5.24 `Idefics2Connector`, float32): the modality projection
/// MLP (vision hidden → text intermediate → text hidden, SiLU-gated) and the perceiver resampler
/// (latents attend to [RMSNorm(context); RMSNorm(latents)] — context first —, GQA, padded patches
/// masked as keys, RMSNorm with perceiver_config.rms_norm_eps, MLP of 4·hidden; final RMSNorm).
public final class Connector: @unchecked Sendable {
    struct Layer {
        let latNorm, ctxNorm, postNorm: Weight
        /// q reads the latents only; k and v read [context; latents]: k/v form one group
        /// (`kv_proj` when fused), gate/up another (`gate_up_proj`). See FusedWeights.swift.
        let q, o: Weight
        let kv: ProjectionGroup
        let gateUp: ProjectionGroup
        let down: Weight
    }

    let projGateUp: ProjectionGroup
    let projDown: Weight
    let latents, norm: Weight
    let layers: [Layer]
    let p: Idefics2PerceiverConfig
    let visionHidden, textHidden, textInter: Int
    let ws = Workspace()

    init(_ w: WeightLoader, config c: Idefics2Config) throws {
        p = c.perceiver
        visionHidden = c.vision.hiddenSize; textHidden = c.text.hiddenSize; textInter = c.text.intermediateSize
        let pre = "model.connector."
        projGateUp = try w.group([pre + "modality_projection.gate_proj.weight", pre + "modality_projection.up_proj.weight"],
                                 widths: [textInter, textInter], inDim: visionHidden, bias: false)
        projDown = try w.weight(pre + "modality_projection.down_proj.weight", [textHidden, textInter])
        let h = p.hiddenSize, qd = p.resamplerNHeads * p.resamplerHeadDim, kd = p.numKeyValueHeads * p.resamplerHeadDim
        latents = try w.weight(pre + "perceiver_resampler.latents", [p.resamplerNLatents, h])
        norm = try w.weight(pre + "perceiver_resampler.norm.weight", [h])
        layers = try (0..<p.resamplerDepth).map { i in
            let l = pre + "perceiver_resampler.layers.\(i)."
            return Layer(latNorm: try w.weight(l + "input_latents_norm.weight", [h]),
                         ctxNorm: try w.weight(l + "input_context_norm.weight", [h]),
                         postNorm: try w.weight(l + "post_attention_layernorm.weight", [h]),
                         q: try w.weight(l + "self_attn.q_proj.weight", [qd, h]), o: try w.weight(l + "self_attn.o_proj.weight", [h, qd]),
                         kv: try w.group([l + "self_attn.k_proj.weight", l + "self_attn.v_proj.weight"], widths: [kd, kd], inDim: h, bias: false),
                         gateUp: try w.group([l + "mlp.gate_proj.weight", l + "mlp.up_proj.weight"], widths: [4 * h, 4 * h], inDim: h, bias: false),
                         down: try w.weight(l + "mlp.down_proj.weight", [h, 4 * h]))
        }
    }

    /// What `observe` sees: the modality projection's output [n, textHidden] (padded patches
    /// included when the vision encoder kept them), then the latents [latents, textHidden] after
    /// each perceiver layer (before the final norm). Buffers are valid only during the call.
    public enum Stage: Equatable, Sendable {
        case projection
        case layer(Int)
    }

    /// image: vision last hidden state [n, visionHidden] with its patch mask → [latents, textHidden].
    public func callAsFunction(_ image: [Float], patchMask: [Bool],
                               observe: ((Stage, UnsafeBufferPointer<Float>) throws -> Void)? = nil) throws -> [Float] {
        let n = patchMask.count, h = textHidden, inter = textInter
        let nl = p.resamplerNLatents, heads = p.resamplerNHeads, kvh = p.numKeyValueHeads, d = p.resamplerHeadDim
        let qd = heads * d, kd = kvh * d
        var context = [Float](repeating: 0, count: n * h)  // [n, h]
        var lat = [Float](repeating: 0, count: nl * h)     // [latents, h]
        try context.withUnsafeMutableBufferPointer { cp in
            try image.withUnsafeBufferPointer { ip in
                let g = ws.gate(n * inter), u = ws.up(n * inter)  // [n, inter]
                try projGateUp(ip.baseAddress!, m: n, outputs: [g, u], ws: ws)
                Kernels.siluMul(g, u, g, n: n * inter)
                try projDown.linear(x: g, y: cp.baseAddress!, m: n, scratch: ws.scratch)
            }
            try observe?(.projection, UnsafeBufferPointer(cp))
        }
        try lat.withUnsafeMutableBufferPointer { lp in try latents.rows(0, nl, into: lp.baseAddress!) }
        let keyMask = patchMask + [Bool](repeating: true, count: nl)
        let eps = Float(p.rmsNormEps)
        let kvIn = ws.normed((n + nl) * h)   // [n + latents, h]: normalised context, then normalised latents
        let q = ws.q(nl * qd), k = ws.gate((n + nl) * kd), v = ws.up((n + nl) * kd)
        let attn = ws.attn(nl * qd), tmp = ws.row(nl * h)
        let mg = ws.stackedQ(nl * 4 * h), mu = ws.stackedOut(nl * 4 * h)
        try context.withUnsafeBufferPointer { cp in
            try lat.withUnsafeMutableBufferPointer { lp in
                let x = lp.baseAddress!
                for (li, l) in layers.enumerated() {
                    try l.ctxNorm.withF32(ws.scratch) { Kernels.rmsNorm(cp.baseAddress!, $0, kvIn, rows: n, n: h, eps: eps) }
                    try l.latNorm.withF32(ws.scratch) { Kernels.rmsNorm(x, $0, kvIn + n * h, rows: nl, n: h, eps: eps) }
                    try l.q.linear(x: kvIn + n * h, y: q, m: nl, scratch: ws.scratch)
                    try l.kv(kvIn, m: n + nl, outputs: [k, v], ws: ws)
                    Kernels.attention(q: q, ldq: qd, k: k, v: v, ldk: kd, out: attn, ldo: qd, tq: nl, tk: n + nl, heads: heads,
                                      kvHeads: kvh, headDim: d, keyMask: keyMask, scale: 1 / Float(d).squareRoot())
                    try l.o.linear(x: attn, y: x, m: nl, accumulate: true, scratch: ws.scratch)
                    try l.postNorm.withF32(ws.scratch) { Kernels.rmsNorm(x, $0, tmp, rows: nl, n: h, eps: eps) }
                    try l.gateUp(tmp, m: nl, outputs: [mg, mu], ws: ws)
                    Kernels.siluMul(mg, mu, mg, n: nl * 4 * h)
                    try l.down.linear(x: mg, y: x, m: nl, accumulate: true, scratch: ws.scratch)
                    try observe?(.layer(li), UnsafeBufferPointer(start: x, count: nl * h))
                }
                try norm.withF32(ws.scratch) { Kernels.rmsNorm(x, $0, x, rows: nl, n: h, eps: eps) }
            }
        }
        return lat
    }
}
