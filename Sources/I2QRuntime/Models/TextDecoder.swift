import I2QCore
import I2QFormats

/// The Llama/Mistral decoder (Idefics2's text model, SmolLM2, Mistral-7B): embeddings, layers of
/// pre-norm attention + SwiGLU MLP, final RMSNorm, lm_head (tied or untied).
///
/// Reference: transformers 5.24 `MistralModel` / `LlamaModel` in float32 (eager attention).
/// Tolerance on the tiny goldens: logits max|Δ| ≤ 1e-4 · std(logits) (see RuntimeTests).
public final class TextDecoder: @unchecked Sendable {
    struct Layer {
        let inputNorm, postNorm: Weight
        let attention: Attention
        let mlp: MLP
    }

    public let config: TextConfig
    let embed: Weight
    let layers: [Layer]
    let norm: Weight
    let lmHead: Weight
    let ws = Workspace()

    /// `prefix`: where the decoder's tensors are (`ModelArchitecture.textPrefix`).
    public init(source: any ModelSource, config c: TextConfig, prefix: String) throws {
        config = c
        let w = try WeightLoader(source)
        embed = try w.weight(prefix + "embed_tokens.weight", [c.vocabSize, c.hiddenSize])
        layers = try (0..<c.numHiddenLayers).map { i in
            let p = prefix + "layers.\(i)."
            return Layer(inputNorm: try w.weight(p + "input_layernorm.weight", [c.hiddenSize]),
                         postNorm: try w.weight(p + "post_attention_layernorm.weight", [c.hiddenSize]),
                         attention: try Attention(w, prefix: p + "self_attn.", config: c),
                         mlp: try MLP(w, prefix: p + "mlp.", config: c))
        }
        norm = try w.weight(prefix + "norm.weight", [c.hiddenSize])
        if let head = try w.optional("lm_head.weight", [c.vocabSize, c.hiddenSize]), !c.tieWordEmbeddings {
            lmHead = head
        } else {
            lmHead = embed  // tied (transformers ties even when lm_head.weight is absent from the file)
        }
    }

    /// Opens a Llama/Mistral model (or the text part of an Idefics2 one).
    public convenience init(source: any ModelSource) throws {
        let prefix = source.config.architecture.textPrefix
        try self.init(source: source, config: source.config.textConfig, prefix: prefix)
    }

    /// KV cache bytes per position (keys + values of every layer, f32).
    public var cacheBytesPerToken: Int { 2 * config.numHiddenLayers * config.numKeyValueHeads * config.headDim * 4 }

    /// The longest context this model runs: its max_position_embeddings, and no more positions than
    /// the KV cache can hold within the memory budget (`MemoryBudget`: I2Q_MEMORY_BUDGET, default ¾ of RAM).
    public var maxContext: Int { min(config.maxPositionEmbeddings, MemoryBudget.bytes / max(1, cacheBytesPerToken)) }

    /// Throws when `tokens` positions exceed `maxContext`, saying why and what it would need.
    public func checkContext(_ tokens: Int, what: String = "the prompt plus the new tokens") throws {
        if tokens > config.maxPositionEmbeddings {
            throw RuntimeError.contextLimit(detail: "\(what) need \(tokens) positions but the model was trained for at most \(config.maxPositionEmbeddings) (max_position_embeddings in config.json); shorten the input or lower --max-new-tokens / --ctx")
        }
        let need = Double(tokens) * Double(cacheBytesPerToken)
        if need > Double(MemoryBudget.bytes) {
            throw RuntimeError.contextLimit(detail: "\(what) need \(tokens) positions, whose KV cache needs \(formatGiB(need)) — more than the memory budget of \(formatGiB(Double(MemoryBudget.bytes))) (set I2Q_MEMORY_BUDGET to raise it); at most \(maxContext) positions fit")
        }
    }

    public func makeCache(capacity: Int) throws -> KVCache {
        try checkContext(capacity)
        return KVCache(layers: config.numHiddenLayers, capacity: capacity, width: config.numKeyValueHeads * config.headDim)
    }

    /// Prompts longer than this run through the layers in blocks of this many positions (llama.cpp's
    /// n_ubatch): activations stay [block, intermediate] however long the context. Tests lower it.
    nonisolated(unsafe) static var prefillBlock = 1024

    /// Embedding rows of `ids`: [ids.count, hidden].
    public func embed(_ ids: [Int]) throws -> [Float] {
        let h = config.hiddenSize
        var out = [Float](repeating: 0, count: ids.count * h)
        try out.withUnsafeMutableBufferPointer { o in
            for (i, id) in ids.enumerated() {
                guard id >= 0 && id < config.vocabSize else { throw TokenError.outOfRange(id: id, vocab: config.vocabSize) }
                try embed.rows(id, 1, into: o.baseAddress! + i * h)
            }
        }
        return out
    }

    /// Runs `t` input embeddings ([t, hidden]) at the next positions of `cache`; returns the final
    /// normalised hidden states [t, hidden]. `onLayer(i, h)`, when given, sees the residual stream
    /// after decoder layer `i` (h: [t, hidden] f32, valid only during the call; before the final norm).
    public func forward(embeddings x: [Float], cache: KVCache,
                        onLayer: ((Int, UnsafeBufferPointer<Float>) throws -> Void)? = nil) throws -> [Float] {
        let h = config.hiddenSize
        let t = x.count / h
        guard cache.count + t <= cache.capacity else { throw RuntimeError.contextTooLong(tokens: cache.count + t, capacity: cache.capacity) }
        if t > Self.prefillBlock && onLayer == nil {
            var out: [Float] = []
            out.reserveCapacity(t * h)
            var i = 0
            while i < t {
                let n = min(Self.prefillBlock, t - i)
                out += try forward(embeddings: Array(x[(i * h)..<((i + n) * h)]), cache: cache)
                i += n
            }
            return out
        }
        var hidden = x  // [t, hidden], the residual stream
        let eps = Float(config.rmsNormEps)
        try hidden.withUnsafeMutableBufferPointer { hp in
            let xr = hp.baseAddress!
            let normed = ws.normed(t * h)  // [t, hidden]
            let angles = layers.first?.attention.rope.angles(start: cache.count, count: t)  // the same rope in every layer
            for (li, layer) in layers.enumerated() {
                try layer.inputNorm.withF32(ws.scratch) { Kernels.rmsNorm(xr, $0, normed, rows: t, n: h, eps: eps) }
                try layer.attention(normed, t: t, start: cache.count, keys: cache.keys[li], values: cache.values[li], residual: xr,
                                    angles: angles!, ws: ws)
                try layer.postNorm.withF32(ws.scratch) { Kernels.rmsNorm(xr, $0, normed, rows: t, n: h, eps: eps) }
                try layer.mlp(normed, t: t, residual: xr, ws: ws)
                try onLayer?(li, UnsafeBufferPointer(start: xr, count: t * h))
            }
            try norm.withF32(ws.scratch) { Kernels.rmsNorm(xr, $0, xr, rows: t, n: h, eps: eps) }
        }
        cache.advance(t)
        return hidden
    }

    /// Logits [rows, vocab] of the given rows of `hidden` ([*, hidden]).
    public func logits(_ hidden: [Float], rows: Range<Int>) throws -> [Float] {
        try [Float](unsafeUninitializedCapacity: rows.count * config.vocabSize) { buf, count in
            try logits(hidden, rows: rows, into: buf.baseAddress!)  // writes every element
            count = buf.count
        }
    }

    /// Logits of the given rows of `hidden` ([*, hidden]) into `out` [rows, vocab] (every element written).
    public func logits(_ hidden: [Float], rows: Range<Int>, into out: UnsafeMutablePointer<Float>) throws {
        let h = config.hiddenSize
        try hidden.withUnsafeBufferPointer { hp in
            // Weight.linear: f32 in place; one row against a 16-bit head reads it in place (GEMV).
            try lmHead.linear(x: hp.baseAddress! + rows.lowerBound * h, y: out, m: rows.count, scratch: ws.scratch)
        }
    }
}

public enum TokenError: I2QError {
    case outOfRange(id: Int, vocab: Int)
    public var description: String {
        switch self {
        case let .outOfRange(id, v): return "token id \(id) is outside the vocabulary (0..<\(v))"
        }
    }
}
