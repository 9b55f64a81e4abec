import Foundation
import I2QCore
import I2QFormats

/// Idefics2's SigLIP vision encoder (transformers 5.24 `Idefics2VisionTransformer`, float32):
/// patch embedding (a 14×14 conv = a linear over each patch flattened (c, y, x)), variable-resolution
/// position ids, pre-LayerNorm layers (attention with padded patches masked as keys; MLP with
/// gelu_pytorch_tanh), post-layernorm.
public final class VisionTransformer: @unchecked Sendable {
    struct Layer {
        let ln1w, ln1b, ln2w, ln2b: Weight
        /// q, k, v (+ biases): one fused `qkv_proj` product when the file holds it (FusedWeights.swift).
        let qkv: ProjectionGroup
        let o, ob: Weight
        let fc1, fc1b, fc2, fc2b: Weight
    }

    public let config: Idefics2VisionConfig
    let patchW, patchB, posEmbed, postW, postB: Weight
    let layers: [Layer]
    let ws = Workspace()
    /// Patches per side of the position grid (image_size / patch_size: 70 for idefics2-8b).
    public let side: Int

    init(_ w: WeightLoader, config c: Idefics2VisionConfig) throws {
        config = c
        let h = c.hiddenSize, p = c.patchSize, inter = c.intermediateSize
        side = c.imageSize / c.patchSize
        let pre = "model.vision_model."
        patchW = try w.weight(pre + "embeddings.patch_embedding.weight", [h, c.numChannels, p, p])
        patchB = try w.weight(pre + "embeddings.patch_embedding.bias", [h])
        posEmbed = try w.weight(pre + "embeddings.position_embedding.weight", [side * side, h])
        postW = try w.weight(pre + "post_layernorm.weight", [h])
        postB = try w.weight(pre + "post_layernorm.bias", [h])
        layers = try (0..<c.numHiddenLayers).map { i in
            let l = pre + "encoder.layers.\(i)."
            return Layer(ln1w: try w.weight(l + "layer_norm1.weight", [h]), ln1b: try w.weight(l + "layer_norm1.bias", [h]),
                         ln2w: try w.weight(l + "layer_norm2.weight", [h]), ln2b: try w.weight(l + "layer_norm2.bias", [h]),
                         qkv: try Self.qkvGroup(w, l + "self_attn.", h),
                         o: try w.weight(l + "self_attn.out_proj.weight", [h, h]), ob: try w.weight(l + "self_attn.out_proj.bias", [h]),
                         fc1: try w.weight(l + "mlp.fc1.weight", [inter, h]), fc1b: try w.weight(l + "mlp.fc1.bias", [inter]),
                         fc2: try w.weight(l + "mlp.fc2.weight", [h, inter]), fc2b: try w.weight(l + "mlp.fc2.bias", [h]))
        }
    }

    /// q/k/v of a vision layer: [h, h] weights, each with its [h] bias (all required).
    private static func qkvGroup(_ w: WeightLoader, _ prefix: String, _ h: Int) throws -> ProjectionGroup {
        let g = try w.group(["q_proj", "k_proj", "v_proj"].map { prefix + $0 + ".weight" }, widths: [h, h, h], inDim: h, bias: true)
        for (b, name) in zip(g.biases, ["q_proj", "k_proj", "v_proj"]) where b == nil {
            throw RuntimeError.missingWeight(model: w.source.path, name: prefix + name + ".bias")
        }
        return g
    }

    /// Position bucket of each of `nb` real patches along one side, with transformers' float32
    /// arithmetic: frac = float32(i) · float32(1/nb), clamped to 1 − 1e-6, bucketized (right=True)
    /// against float32 arange(1/side, 1, 1/side) (values start + i·step in double, then rounded).
    public static func buckets(nb: Int, side: Int) -> [Int] {
        let step = 1.0 / Double(side)
        let count = Int((((1.0 - step) / step)).rounded(.up))
        let boundaries = (0..<count).map { Float(step + Double($0) * step) }
        let s = Float(1) / Float(nb)
        let maxFrac = Float(1.0 - 1e-6)
        return (0..<nb).map { i in
            let frac = min(Float(i) * s, maxFrac)
            var b = 0
            while b < boundaries.count && boundaries[b] <= frac { b += 1 }
            return b
        }
    }

    /// Encodes one image: pixels [3, H, W] (channels first), mask [H, W] (true = real pixel).
    /// Returns the last hidden state [patches, hidden] and the patch mask (true = real).
    ///
    /// When the real patches form the top-left rectangle (the processor pads bottom/right), only
    /// that rectangle is computed: padded patches are masked as keys everywhere, so they cannot
    /// change a real patch's result, and are dropped (patches = nbH·nbW, all real). Otherwise every
    /// patch is computed with the padded ones masked (patches = (H/p)·(W/p)).
    /// `onLayer(i, h, patchMask)`, when given, sees the residual stream after encoder layer `i`
    /// (h: [patches, hidden] f32, valid only during the call; before the post-layernorm).
    public func encode(pixels: [Float], mask: [Bool], height H: Int, width W: Int,
                       onLayer: ((Int, UnsafeBufferPointer<Float>, [Bool]) throws -> Void)? = nil) throws -> (hidden: [Float], patchMask: [Bool]) {
        let p = config.patchSize, h = config.hiddenSize, inter = config.intermediateSize, c = config.numChannels
        let fullH = H / p, fullW = W / p
        // A patch is real only if all p·p of its pixels are real.
        var fullMask = [Bool](repeating: false, count: fullH * fullW)
        for y in 0..<fullH { for x in 0..<fullW {
            var all = true
            for dy in 0..<p where all { for dx in 0..<p where !mask[(y * p + dy) * W + x * p + dx] { all = false; break } }
            fullMask[y * fullW + x] = all
        } }
        // nb_patches_h / _w as transformers counts them: real patches in the first column / row.
        let nbH = (0..<fullH).filter { fullMask[$0 * fullW] }.count
        let nbW = (0..<fullW).filter { fullMask[$0] }.count
        let rectangle = fullMask.indices.allSatisfy { fullMask[$0] == ($0 / fullW < nbH && $0 % fullW < nbW) }
        let ph = rectangle ? nbH : fullH, pw = rectangle ? nbW : fullW, n = ph * pw
        let patchMask = rectangle ? [Bool](repeating: true, count: n) : fullMask
        let bh = Self.buckets(nb: max(nbH, 1), side: side), bw = Self.buckets(nb: max(nbW, 1), side: side)

        let flat = c * p * p
        var patches = [Float](repeating: 0, count: n * flat)  // [n, c·p·p] in (c, y, x) order
        for y in 0..<ph { for x in 0..<pw {
            let base = (y * pw + x) * flat
            for ch in 0..<c { for dy in 0..<p { for dx in 0..<p {
                patches[base + (ch * p + dy) * p + dx] = pixels[(ch * H + y * p + dy) * W + x * p + dx]
            } } }
        } }
        var hidden = [Float](repeating: 0, count: n * h)  // [n, hidden], residual stream
        let row = ws.row(h)
        try hidden.withUnsafeMutableBufferPointer { hp in
            let x = hp.baseAddress!
            try patches.withUnsafeBufferPointer { pp in
                try patchW.linear(x: pp.baseAddress!, y: x, m: n, scratch: ws.scratch, int8: false)  // a conv in transformers
            }
            try patchB.withF32(ws.scratch) { Kernels.addBias(x, $0, rows: n, n: h) }
            for i in 0..<n {
                let yy = i / pw, xx = i % pw
                let id = patchMask[i] ? (yy < bh.count && xx < bw.count ? bh[yy] * side + bw[xx] : 0) : 0
                try posEmbed.rows(id, 1, into: row)
                Kernels.add(x + i * h, row, n: h)
            }
            let eps = Float(config.layerNormEps)
            let normed = ws.normed(n * h), q = ws.q(n * h), k = ws.gate(n * h), v = ws.up(n * h)  // [n, hidden] each
            let attn = ws.attn(n * h)
            let mlp = ws.stackedQ(n * inter)  // [n, intermediate]
            let heads = config.numAttentionHeads, d = h / heads
            for (li, l) in layers.enumerated() {
                try l.ln1w.withF32(ws.scratch) { w in try l.ln1b.withF32(Scratch()) { b in Kernels.layerNorm(x, w, b, normed, rows: n, n: h, eps: eps) } }
                try l.qkv(normed, m: n, outputs: [q, k, v], ws: ws)
                Kernels.attention(q: q, ldq: h, k: k, v: v, ldk: h, out: attn, ldo: h, tq: n, tk: n, heads: heads, kvHeads: heads,
                                  headDim: d, keyMask: rectangle ? nil : patchMask, scale: 1 / Float(d).squareRoot())
                try linear(attn, l.o, l.ob, normed, n, h, h)
                Kernels.add(x, normed, n: n * h)
                try l.ln2w.withF32(ws.scratch) { w in try l.ln2b.withF32(Scratch()) { b in Kernels.layerNorm(x, w, b, normed, rows: n, n: h, eps: eps) } }
                try linear(normed, l.fc1, l.fc1b, mlp, n, h, inter)
                Kernels.geluTanh(mlp, n: n * inter)
                try linear(mlp, l.fc2, l.fc2b, normed, n, inter, h)
                Kernels.add(x, normed, n: n * h)
                try onLayer?(li, UnsafeBufferPointer(start: x, count: n * h), patchMask)
            }
            try postW.withF32(ws.scratch) { w in try postB.withF32(Scratch()) { b in Kernels.layerNorm(x, w, b, x, rows: n, n: h, eps: eps) } }
        }
        return (hidden, patchMask)
    }

    private func linear(_ x: UnsafePointer<Float>, _ w: Weight, _ b: Weight, _ y: UnsafeMutablePointer<Float>, _ m: Int, _ k: Int, _ n: Int) throws {
        try w.linear(x: x, y: y, m: m, scratch: ws.scratch)
        try b.withF32(ws.scratch) { Kernels.addBias(y, $0, rows: m, n: n) }
    }
}
