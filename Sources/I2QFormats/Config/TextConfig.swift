import Foundation
import I2QCore

/// A Llama-family decoder's configuration (MistralConfig and LlamaConfig of transformers 5.24).
/// Missing keys take the defaults of the transformers class for `modelType`.
public struct TextConfig: Sendable, Equatable {
    public var modelType: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var headDim: Int
    public var hiddenAct: String
    public var maxPositionEmbeddings: Int
    public var rmsNormEps: Double
    public var rope: RopeParameters
    /// Mistral only; nil = full attention.
    public var slidingWindow: Int?
    public var tieWordEmbeddings: Bool
    public var attentionBias: Bool
    public var mlpBias: Bool
    public var bosTokenId: Int?
    public var eosTokenIds: [Int]
    public var padTokenId: Int?
    public var dtype: String?

    /// Defaults per model type (transformers 5.24 MistralConfig / LlamaConfig).
    struct Defaults {
        var vocab = 32000, hidden = 4096, intermediate = 14336, layers = 32, heads = 32
        var kvHeads: Int? = 8
        var maxPos = 4096 * 32
        var eps = 1e-6
        var slidingWindow: Int? = 4096
        var padTokenId: Int? = nil
    }

    static func defaults(for modelType: String) -> Defaults {
        switch modelType {
        case "llama":
            return Defaults(vocab: 32000, hidden: 4096, intermediate: 11008, layers: 32, heads: 32, kvHeads: nil,
                            maxPos: 2048, eps: 1e-6, slidingWindow: nil)
        default:  // mistral
            return Defaults()
        }
    }

    init(decoding c: KeyedDecodingContainer<AnyKey>, modelType: String, defaults d: Defaults) throws {
        self.modelType = modelType
        vocabSize = try c.value("vocab_size", default: d.vocab)
        hiddenSize = try c.value("hidden_size", default: d.hidden)
        intermediateSize = try c.value("intermediate_size", default: d.intermediate)
        numHiddenLayers = try c.value("num_hidden_layers", default: d.layers)
        numAttentionHeads = try c.value("num_attention_heads", default: d.heads)
        numKeyValueHeads = try c.optional("num_key_value_heads") ?? d.kvHeads ?? numAttentionHeads
        headDim = try c.optional("head_dim") ?? (hiddenSize / max(numAttentionHeads, 1))
        hiddenAct = try c.value("hidden_act", default: "silu")
        maxPositionEmbeddings = try c.value("max_position_embeddings", default: d.maxPos)
        rmsNormEps = try c.value("rms_norm_eps", default: d.eps)
        rope = try RopeParameters.decode(c, defaultTheta: 10000)
        if modelType == "mistral" {
            // An explicit null means full attention; a missing key means the default window.
            slidingWindow = c.has("sliding_window") ? try c.optional("sliding_window") : d.slidingWindow
        } else {
            slidingWindow = nil
        }
        tieWordEmbeddings = try c.value("tie_word_embeddings", default: false)
        attentionBias = try c.value("attention_bias", default: false)
        mlpBias = try c.value("mlp_bias", default: false)
        bosTokenId = c.has("bos_token_id") ? try c.optional("bos_token_id") : 1
        eosTokenIds = c.has("eos_token_id") ? (try c.optional("eos_token_id") as IntOrList?)?.values ?? [] : [2]
        padTokenId = c.has("pad_token_id") ? try c.optional("pad_token_id") : d.padTokenId
        dtype = try decodeTorchDType(c)
    }

    /// Range checks before any size is used for arithmetic or allocation (`key` names the JSON object:
    /// "" for a stand-alone config, "text_config." inside Idefics2's).
    func validate(path: String, key: String = "") throws {
        let r = ConfigRanges(path: path, key: key)
        try r.check("vocab_size", vocabSize, 1...ConfigRanges.maxVocab)
        try r.check("hidden_size", hiddenSize, 1...ConfigRanges.maxWidth)
        try r.check("intermediate_size", intermediateSize, 1...ConfigRanges.maxWidth * 8)
        try r.check("num_hidden_layers", numHiddenLayers, 1...ConfigRanges.maxLayers)
        try r.check("num_attention_heads", numAttentionHeads, 1...ConfigRanges.maxHeads)
        try r.check("num_key_value_heads", numKeyValueHeads, 1...numAttentionHeads)
        guard numAttentionHeads % numKeyValueHeads == 0 else {
            throw r.bad("num_attention_heads (\(numAttentionHeads)) must be a multiple of num_key_value_heads (\(numKeyValueHeads))")
        }
        try r.check("head_dim", headDim, 1...ConfigRanges.maxHeadDim)
        try r.check("max_position_embeddings", maxPositionEmbeddings, 1...ConfigRanges.maxPositions)
        if let w = slidingWindow { try r.check("sliding_window", w, 1...ConfigRanges.maxPositions) }
        guard rmsNormEps.isFinite, rmsNormEps >= 0 else { throw r.bad("rms_norm_eps \(rmsNormEps) must be finite and ≥ 0") }
        guard rope.theta.isFinite, rope.theta > 0 else { throw r.bad("rope_theta \(rope.theta) must be finite and > 0") }
        try rope.validate(r)
    }

    /// Decodes a stand-alone `config.json` of a mistral or llama model.
    public static func decode(_ data: Data, path: String) throws -> TextConfig {
        let t = try withConfigObject(data, path: path) { c in
            let t: String = try c.value("model_type", default: "mistral")
            return try TextConfig(decoding: c, modelType: t, defaults: TextConfig.defaults(for: t))
        }
        try t.validate(path: path)
        return t
    }
}

/// Bounds on config sizes: far above any released model (Llama-3.1-405B: hidden 16384, 126 layers,
/// vocab 128256, 131072 positions), low enough that products of them cannot overflow and a typo
/// (or a hostile file) is refused before it becomes an allocation.
struct ConfigRanges {
    static let maxVocab = 1 << 24, maxWidth = 1 << 16, maxLayers = 1024, maxHeads = 1024, maxHeadDim = 2048
    static let maxPositions = 1 << 24
    let path: String
    let key: String

    func bad(_ detail: String) -> ConfigError {
        .invalid(path: path, detail: detail + "; fix config.json (every released Idefics2/Mistral/Llama config is within these bounds)")
    }

    func check(_ name: String, _ v: Int, _ range: ClosedRange<Int>) throws {
        guard range.contains(v) else { throw bad("\(key)\(name) \(v) is outside \(range.lowerBound)…\(range.upperBound)") }
    }
}
