import Foundation
import I2QCore
import I2QRuntime

/// What GPTQ did to one decoder layer.
struct GPTQLayerResult {
    /// Quantized linears by short name ("q" … "down").
    var tensors: [String: GPTQTensorResult]
    /// The layer's output on the batch computed with the quantized weights: the next layer's input.
    var output: [Float]
    var seconds = 0.0
}

/// One Llama/Mistral decoder layer through GPTQ, "true sequential" as GPTQModel 7.7 runs a layer
/// (its llama `module_tree`): the sub-module groups [q, k, v] → [o] → [gate, up] → [down] are
/// quantized in order, each group's Hessian taken from its inputs computed with the groups before
/// it already quantized; the output passed to the next layer is the quantized layer's (GPTQModel,
/// llm-compressor and the paper's llama.py all feed quantized outputs forward). Hessians are taken
/// over every calibration token (image tokens included for Idefics2: the batch holds the merged
/// embeddings). Memory: the batch's activations of one layer and one Hessian [in, in] per linear.
enum GPTQLayer {
    static func run(_ w0: DecoderLayerWeights, input x: [Float], forward fwd: DecoderLayerForward, quantized: Set<String>,
                    settings st: GPTQSettings, names: DecoderLayerWeights.Names) throws -> GPTQLayerResult {
        let t0 = ProgressBar.now()
        let c = fwd.config
        let h = c.hiddenSize, im = c.intermediateSize, qw = c.numAttentionHeads * c.headDim
        let n = fwd.batch.tokens
        var w = w0
        var out: [String: GPTQTensorResult] = [:]
        func name(_ s: String) -> String { ["gate", "up", "down"].contains(s) ? names.mlp(s) : names.attn(s) }
        func quantize(_ s: String, _ kp: WritableKeyPath<DecoderLayerWeights, [Float]>, cols: Int, factor F: GPTQ.Factor) throws {
            guard quantized.contains(s) else { return }
            let rows = w[keyPath: kp].count / cols
            let r = try GPTQ.quantize(tensor: name(s), weight: w[keyPath: kp], rows: rows, cols: cols, factor: F, tokens: n, settings: st)
            w[keyPath: kp] = r.dequantized
            out[s] = r
        }
        // [q, k, v]: input_layernorm output.
        let normed1 = fwd.rmsNorm(x, w.inputNorm)
        if !quantized.isDisjoint(with: ["q", "k", "v"]) {
            // One Hessian, one Cholesky factor for the three (they read the same input).
            let F = try GPTQ.factor(tensor: name("q") + " (q/k/v input)", hessian: GPTQ.hessian(normed1, cols: h), cols: h, settings: st)
            try quantize("q", \.q, cols: h, factor: F)
            try quantize("k", \.k, cols: h, factor: F)
            try quantize("v", \.v, cols: h, factor: F)
        }
        // [o]: the attention context with the quantized q/k/v.
        let ctx = fwd.attentionContext(normed1, q: w.q, k: w.k, v: w.v, qBias: w.qBias, kBias: w.kBias, vBias: w.vBias)
        if quantized.contains("o") {
            try quantize("o", \.o, cols: qw, factor: GPTQ.factor(tensor: name("o"), hessian: GPTQ.hessian(ctx, cols: qw), cols: qw, settings: st))
        }
        // [gate, up]: post_attention_layernorm of the residual with the quantized attention.
        let attnOut = DecoderLayerForward.linear(ctx, w.o, rows: n, inDim: qw, outDim: h)
        var h2 = x
        for i in 0..<h2.count { h2[i] += attnOut[i] }
        let normed2 = fwd.rmsNorm(h2, w.postNorm)
        if !quantized.isDisjoint(with: ["gate", "up"]) {
            let F = try GPTQ.factor(tensor: name("gate") + " (gate/up input)", hessian: GPTQ.hessian(normed2, cols: h), cols: h, settings: st)
            try quantize("gate", \.gate, cols: h, factor: F)
            try quantize("up", \.up, cols: h, factor: F)
        }
        // [down]: silu(gate)·up with the quantized gate/up, its Hessian accumulated chunk by chunk; the
        // activations are kept ([n, intermediate], as the forward computes them chunk by chunk) for
        // the layer's output below, so gate/up run once.
        var acts: [[Float]] = []  // per chunk of mlpChunkRows: [m, intermediate]
        normed2.withUnsafeBufferPointer { xp in
            var r = 0
            while r < n {
                let m = min(DecoderLayerForward.mlpChunkRows, n - r)
                acts.append(fwd.mlpActivation(xp.baseAddress! + r * h, rows: m, gate: w.gate, up: w.up))
                r += m
            }
        }
        if quantized.contains("down") {
            var H = [Float](repeating: 0, count: im * im)  // [intermediate, intermediate]
            H.withUnsafeMutableBufferPointer { hp in
                for act in acts {
                    act.withUnsafeBufferPointer { ap in
                        Cholesky.accumulateGram(ap.baseAddress!, rows: act.count / im, cols: im, alpha: 2 / Float(max(n, 1)), into: hp.baseAddress!)
                    }
                }
                Cholesky.mirrorUpper(hp.baseAddress!, n: im)
            }
            try quantize("down", \.down, cols: im, factor: GPTQ.factor(tensor: name("down"), hessian: H, cols: im, settings: st))
        }
        // The quantized layer's output (what DecoderLayerForward.mlpChunks computes with these weights).
        var y = h2
        var r0 = 0
        for act in acts {
            let m = act.count / im
            let part = DecoderLayerForward.linear(act, w.down, rows: m, inDim: im, outDim: h)
            for i in 0..<(m * h) { y[r0 * h + i] += part[i] }
            r0 += m
        }
        return GPTQLayerResult(tensors: out, output: y, seconds: ProgressBar.now() - t0)
    }
}
