import Dispatch
import Foundation
import I2QCore
import I2QFormats

/// Float32 weights of one Llama/Mistral decoder layer, owned and mutable: calibration passes (AWQ)
/// scale, clip and fake-quantize them. Shapes as in the checkpoint, row-major `[out, in]`.
public struct DecoderLayerWeights: Sendable {
    public var inputNorm: [Float]   // [hidden]
    public var postNorm: [Float]    // [hidden]
    public var q: [Float]           // [heads·headDim, hidden]
    public var k: [Float]           // [kvHeads·headDim, hidden]
    public var v: [Float]           // [kvHeads·headDim, hidden]
    public var o: [Float]           // [hidden, heads·headDim]
    public var qBias: [Float]?      // [heads·headDim]
    public var kBias: [Float]?      // [kvHeads·headDim]
    public var vBias: [Float]?      // [kvHeads·headDim]
    public var gate: [Float]        // [intermediate, hidden]
    public var up: [Float]          // [intermediate, hidden]
    public var down: [Float]        // [hidden, intermediate]

    /// Checkpoint names of layer `i` under `prefix` ("model." or "model.text_model.").
    public struct Names: Sendable {
        public let layer: String
        public var inputNorm: String { layer + "input_layernorm.weight" }
        public var postNorm: String { layer + "post_attention_layernorm.weight" }
        public func attn(_ p: String) -> String { layer + "self_attn.\(p)_proj.weight" }
        public func attnBias(_ p: String) -> String { layer + "self_attn.\(p)_proj.bias" }
        public func mlp(_ p: String) -> String { layer + "mlp.\(p)_proj.weight" }
        public init(prefix: String, layer i: Int) { layer = prefix + "layers.\(i)." }
    }

    /// Reads layer `layer` of `source` as float32 (16-bit weights are widened exactly).
    public static func load(source: any ModelSource, config c: TextConfig, prefix: String, layer: Int) throws -> DecoderLayerWeights {
        let w = try WeightLoader(source)
        let n = Names(prefix: prefix, layer: layer)
        let qw = c.numAttentionHeads * c.headDim, kw = c.numKeyValueHeads * c.headDim, h = c.hiddenSize, im = c.intermediateSize
        func read(_ name: String, _ shape: [Int]) throws -> [Float] {
            let wt = try w.weight(name, shape)
            var out = [Float](repeating: 0, count: wt.count)
            try out.withUnsafeMutableBufferPointer { try wt.rows(0, shape[0], into: $0.baseAddress!) }
            return out
        }
        func optional(_ name: String, _ shape: [Int]) throws -> [Float]? {
            try w.optional(name, shape) == nil ? nil : try read(name, shape)
        }
        return DecoderLayerWeights(
            inputNorm: try read(n.inputNorm, [h]), postNorm: try read(n.postNorm, [h]),
            q: try read(n.attn("q"), [qw, h]), k: try read(n.attn("k"), [kw, h]), v: try read(n.attn("v"), [kw, h]),
            o: try read(n.attn("o"), [h, qw]),
            qBias: try optional(n.attnBias("q"), [qw]), kBias: try optional(n.attnBias("k"), [kw]), vBias: try optional(n.attnBias("v"), [kw]),
            gate: try read(n.mlp("gate"), [im, h]), up: try read(n.mlp("up"), [im, h]), down: try read(n.mlp("down"), [h, im]))
    }
}

/// The inputs every linear of a layer saw on the calibration batch (AutoAWQ `_get_input_feat`),
/// and the full-precision sub-module outputs the AWQ losses compare against. Rows: tokens of the
/// batch, sequence after sequence.
public struct LayerFeatures: Sendable {
    public var attnInput: [Float]   // [N, hidden]     input of q/k/v (input_layernorm output)
    public var oInput: [Float]      // [N, heads·headDim] input of o_proj (attention context)
    public var mlpInput: [Float]    // [N, hidden]     input of gate/up (post_attention_layernorm output)
    public var downInput: [Float]   // [N, intermediate] input of down_proj (silu(gate)·up)
    public var attnOutput: [Float]  // [N, hidden]     self_attn output (o_proj output)
    public var mlpOutput: [Float]   // [N, hidden]     mlp output (down_proj output)
}

/// A calibration batch: independent sequences (each from position 0, causal), their rows stacked.
public struct CalibrationBatch: Sendable {
    public let lengths: [Int]
    public let offsets: [Int]
    public var tokens: Int { offsets.last! }
    public var maxLength: Int { lengths.max() ?? 0 }
    public init(lengths: [Int]) {
        self.lengths = lengths
        var o = [0]
        for l in lengths { o.append(o.last! + l) }
        offsets = o
    }
}

/// Float32 forward of one Llama/Mistral decoder layer over a whole calibration batch, in pieces
/// (attention, MLP) so that a calibration pass can re-run one sub-module with changed weights.
///
/// Reference: transformers 5.24 `LlamaDecoderLayer` / `MistralDecoderLayer` in float32, eager
/// attention, each sequence on its own from position 0 (the batch AutoAWQ runs). Same arithmetic as
/// `TextDecoder.forward` (RMSNorm, RoPE angles, GQA, sliding window, softmax), blocked differently:
/// results agree with it to float32 rounding of the GEMM sums (≤ ~1e-5 relative, tested).
public final class DecoderLayerForward: @unchecked Sendable {
    public let config: TextConfig
    public let batch: CalibrationBatch
    let cosTable, sinTable: [Float]  // [maxLength, headDim/2] each

    public init(config: TextConfig, batch: CalibrationBatch) {
        self.config = config
        self.batch = batch
        // The runtime's own angles (at least one row, so the tables are never empty).
        let angles = RoPE(headDim: config.headDim, parameters: config.rope).angles(start: 0, count: max(batch.maxLength, 1))
        cosTable = angles.cos; sinTable = angles.sin
    }

    var n: Int { batch.tokens }
    var hidden: Int { config.hiddenSize }
    var qWidth: Int { config.numAttentionHeads * config.headDim }
    var kvWidth: Int { config.numKeyValueHeads * config.headDim }

    /// RMSNorm of x [N, hidden] with `w` [hidden].
    public func rmsNorm(_ x: [Float], _ w: [Float]) -> [Float] {
        var y = [Float](repeating: 0, count: x.count)  // [N, hidden]
        x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in y.withUnsafeMutableBufferPointer { yp in
            Kernels.rmsNorm(xp.baseAddress!, wp.baseAddress!, yp.baseAddress!, rows: x.count / hidden, n: hidden, eps: Float(config.rmsNormEps))
        } } }
        return y
    }

    /// y [rows, out] = x [rows, in] · wᵀ (w: [out, in]).
    public static func linear(_ x: [Float], _ w: [Float], rows: Int, inDim: Int, outDim: Int) -> [Float] {
        var y = [Float](repeating: 0, count: rows * outDim)  // [rows, out]
        x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in y.withUnsafeMutableBufferPointer { yp in
            Matmul.linear(x: xp.baseAddress!, w: wp.baseAddress!, y: yp.baseAddress!, m: rows, k: inDim, n: outDim)
        } } }
        return y
    }

    /// Attention context (the o_proj input) [N, heads·headDim] of normalised input x [N, hidden]
    /// with the given projections (q: [heads·headDim, hidden], k/v: [kvHeads·headDim, hidden]).
    public func attentionContext(_ x: [Float], q: [Float], k: [Float], v: [Float],
                                 qBias: [Float]? = nil, kBias: [Float]? = nil, vBias: [Float]? = nil) -> [Float] {
        let qw = qWidth, kw = kvWidth, h = hidden, d = config.headDim, half = d / 2
        let heads = config.numAttentionHeads, kvHeads = config.numKeyValueHeads
        let window = config.slidingWindow
        let ws = Workspace()  // per call: calibration may run several contexts at once
        var ctx = [Float](repeating: 0, count: n * qw)  // [N, heads·headDim]
        let maxT = batch.maxLength
        // Sized once for the longest sequence (CausalAttention asks for no more), as before the core was shared.
        let group = heads / kvHeads, block = min(maxT, max(1, CausalAttention.maxScores / max(1, group * maxT)))
        _ = ws.stackedQ(group * block * d); _ = ws.stackedOut(group * block * d); _ = ws.scores(group * block * maxT)
        let qb = UnsafeMutablePointer<Float>.allocate(capacity: max(maxT * qw, 1))             // [t, qw]
        let kb = UnsafeMutablePointer<Float>.allocate(capacity: max(maxT * kw, 1))             // [t, kw]
        let vb = UnsafeMutablePointer<Float>.allocate(capacity: max(maxT * kw, 1))             // [t, kw]
        defer { qb.deallocate(); kb.deallocate(); vb.deallocate() }
        x.withUnsafeBufferPointer { xp in
        q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
        cosTable.withUnsafeBufferPointer { cp in sinTable.withUnsafeBufferPointer { sp in
        ctx.withUnsafeMutableBufferPointer { cx in
            for (si, t) in batch.lengths.enumerated() where t > 0 {
                let x0 = xp.baseAddress! + batch.offsets[si] * h
                Matmul.linear(x: x0, w: qp.baseAddress!, y: qb, m: t, k: h, n: qw)
                Matmul.linear(x: x0, w: kp.baseAddress!, y: kb, m: t, k: h, n: kw)
                Matmul.linear(x: x0, w: vp.baseAddress!, y: vb, m: t, k: h, n: kw)
                if let b = qBias { for i in 0..<t { Kernels.add(qb + i * qw, b, n: qw) } }
                if let b = kBias { for i in 0..<t { Kernels.add(kb + i * kw, b, n: kw) } }
                if let b = vBias { for i in 0..<t { Kernels.add(vb + i * kw, b, n: kw) } }
                // RoPE (rotate_half layout), table rows = positions 0..<t.
                func rotate(_ rows: UnsafeMutablePointer<Float>, _ nh: Int, _ c: UnsafePointer<Float>, _ s: UnsafePointer<Float>) {
                    for hh in 0..<nh {
                        let vv = rows + hh * d
                        for j in 0..<half {
                            let a = vv[j], b = vv[j + half]
                            vv[j] = a * c[j] - b * s[j]
                            vv[j + half] = b * c[j] + a * s[j]
                        }
                    }
                }
                for i in 0..<t {
                    let c = cp.baseAddress! + i * half, s = sp.baseAddress! + i * half
                    rotate(qb + i * qw, heads, c, s)
                    rotate(kb + i * kw, kvHeads, c, s)
                }
                CausalAttention.prefill(q: qb, t: t, start: 0, keys: kb, values: vb, out: cx.baseAddress! + batch.offsets[si] * qw,
                                        heads: heads, kvHeads: kvHeads, headDim: d, window: window, ws: ws)
            }
        } } } } } } }
        return ctx
    }

    /// silu(x·gateᵀ) · (x·upᵀ) for rows `range` of x [N, hidden] → [range.count, intermediate].
    public func mlpActivation(_ x: UnsafePointer<Float>, rows: Int, gate: [Float], up: [Float]) -> [Float] {
        let im = config.intermediateSize, h = hidden
        var g = [Float](repeating: 0, count: rows * im)  // [rows, intermediate]
        var u = [Float](repeating: 0, count: rows * im)  // [rows, intermediate]
        gate.withUnsafeBufferPointer { gp in up.withUnsafeBufferPointer { upp in
        g.withUnsafeMutableBufferPointer { gb in u.withUnsafeMutableBufferPointer { ub in
            Matmul.linear(x: x, w: gp.baseAddress!, y: gb.baseAddress!, m: rows, k: h, n: im)
            Matmul.linear(x: x, w: upp.baseAddress!, y: ub.baseAddress!, m: rows, k: h, n: im)
            Kernels.siluMul(gb.baseAddress!, ub.baseAddress!, gb.baseAddress!, n: rows * im)
        } } } }
        return g
    }

    /// Rows per MLP step (bounds the [rows, intermediate] temporaries).
    public static let mlpChunkRows = 2048

    /// Calls `body(rowRange, output)` with the MLP output [rows, hidden] of x [N, hidden], chunk by chunk.
    public func mlpChunks(_ x: [Float], gate: [Float], up: [Float], down: [Float], _ body: (Range<Int>, [Float]) -> Void) {
        let h = hidden, im = config.intermediateSize
        x.withUnsafeBufferPointer { xp in
            var r = 0
            while r < n {
                let m = min(Self.mlpChunkRows, n - r)
                let act = mlpActivation(xp.baseAddress! + r * h, rows: m, gate: gate, up: up)
                body(r..<(r + m), Self.linear(act, down, rows: m, inDim: im, outDim: h))
                r += m
            }
        }
    }

    /// One decoder layer: returns the layer output [N, hidden] (hidden + attn + mlp) and, when
    /// `capture`, the inputs of every linear and the sub-module outputs.
    public func layer(_ x: [Float], _ w: DecoderLayerWeights, capture: Bool) -> (output: [Float], features: LayerFeatures?) {
        let h = hidden, im = config.intermediateSize
        let normed1 = rmsNorm(x, w.inputNorm)
        let ctx = attentionContext(normed1, q: w.q, k: w.k, v: w.v, qBias: w.qBias, kBias: w.kBias, vBias: w.vBias)
        let attnOut = Self.linear(ctx, w.o, rows: n, inDim: qWidth, outDim: h)
        var h2 = x
        for i in 0..<h2.count { h2[i] += attnOut[i] }
        let normed2 = rmsNorm(h2, w.postNorm)
        var downIn = capture ? [Float](repeating: 0, count: n * im) : []  // [N, intermediate]
        var mlpOut = capture ? [Float](repeating: 0, count: n * h) : []   // [N, hidden]
        normed2.withUnsafeBufferPointer { xp in
            var r = 0
            while r < n {
                let m = min(Self.mlpChunkRows, n - r)
                let act = mlpActivation(xp.baseAddress! + r * h, rows: m, gate: w.gate, up: w.up)
                let y = Self.linear(act, w.down, rows: m, inDim: im, outDim: h)
                for i in 0..<(m * h) { h2[r * h + i] += y[i] }
                if capture {
                    downIn.replaceSubrange((r * im)..<((r + m) * im), with: act)
                    mlpOut.replaceSubrange((r * h)..<((r + m) * h), with: y)
                }
                r += m
            }
        }
        guard capture else { return (h2, nil) }
        return (h2, LayerFeatures(attnInput: normed1, oInput: ctx, mlpInput: normed2, downInput: downIn,
                                  attnOutput: attnOut, mlpOutput: mlpOut))
    }
}
