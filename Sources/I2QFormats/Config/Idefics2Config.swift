import Foundation
import I2QCore

/// Idefics2VisionConfig (transformers 5.24 defaults).
public struct Idefics2VisionConfig: Sendable, Equatable {
    public var hiddenSize = 768
    public var intermediateSize = 3072
    public var numHiddenLayers = 12
    public var numAttentionHeads = 12
    public var numChannels = 3
    public var imageSize = 224
    public var patchSize = 32
    public var hiddenAct = "gelu_pytorch_tanh"
    public var layerNormEps = 1e-6

    init(decoding c: KeyedDecodingContainer<AnyKey>, defaults: Idefics2VisionConfig = Idefics2VisionConfig()) throws {
        self = defaults
        hiddenSize = try c.value("hidden_size", default: hiddenSize)
        intermediateSize = try c.value("intermediate_size", default: intermediateSize)
        numHiddenLayers = try c.value("num_hidden_layers", default: numHiddenLayers)
        numAttentionHeads = try c.value("num_attention_heads", default: numAttentionHeads)
        numChannels = try c.value("num_channels", default: numChannels)
        imageSize = try c.value("image_size", default: imageSize)
        patchSize = try c.value("patch_size", default: patchSize)
        hiddenAct = try c.value("hidden_act", default: hiddenAct)
        layerNormEps = try c.value("layer_norm_eps", default: layerNormEps)
    }
    init() {}

    func validate(path: String) throws {
        let r = ConfigRanges(path: path, key: "vision_config.")
        try r.check("hidden_size", hiddenSize, 1...ConfigRanges.maxWidth)
        try r.check("intermediate_size", intermediateSize, 1...ConfigRanges.maxWidth * 8)
        try r.check("num_hidden_layers", numHiddenLayers, 1...ConfigRanges.maxLayers)
        try r.check("num_attention_heads", numAttentionHeads, 1...ConfigRanges.maxHeads)
        guard hiddenSize % numAttentionHeads == 0 else {
            throw r.bad("vision_config.hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(numAttentionHeads)")
        }
        try r.check("num_channels", numChannels, 1...4)
        try r.check("image_size", imageSize, 1...ProcessorConfig.maxEdge)
        try r.check("patch_size", patchSize, 1...imageSize)
        guard layerNormEps.isFinite, layerNormEps >= 0 else { throw r.bad("vision_config.layer_norm_eps \(layerNormEps) must be finite and ≥ 0") }
    }
}

/// Idefics2PerceiverConfig (transformers 5.24 defaults).
public struct Idefics2PerceiverConfig: Sendable, Equatable {
    public var hiddenAct = "silu"
    public var hiddenSize = 4096
    public var rmsNormEps = 1e-6
    public var resamplerNLatents = 64
    public var resamplerDepth = 3
    public var resamplerNHeads = 16
    public var resamplerHeadDim = 96
    public var numKeyValueHeads = 4

    init(decoding c: KeyedDecodingContainer<AnyKey>) throws {
        hiddenAct = try c.value("hidden_act", default: hiddenAct)
        hiddenSize = try c.value("hidden_size", default: hiddenSize)
        rmsNormEps = try c.value("rms_norm_eps", default: rmsNormEps)
        resamplerNLatents = try c.value("resampler_n_latents", default: resamplerNLatents)
        resamplerDepth = try c.value("resampler_depth", default: resamplerDepth)
        resamplerNHeads = try c.value("resampler_n_heads", default: resamplerNHeads)
        resamplerHeadDim = try c.value("resampler_head_dim", default: resamplerHeadDim)
        numKeyValueHeads = try c.value("num_key_value_heads", default: numKeyValueHeads)
    }
    init() {}

    func validate(path: String) throws {
        let r = ConfigRanges(path: path, key: "perceiver_config.")
        try r.check("resampler_n_latents", resamplerNLatents, 1...ProcessorConfig.maxImageSeqLen)
        try r.check("resampler_depth", resamplerDepth, 1...ConfigRanges.maxLayers)
        try r.check("resampler_n_heads", resamplerNHeads, 1...ConfigRanges.maxHeads)
        try r.check("resampler_head_dim", resamplerHeadDim, 1...ConfigRanges.maxHeadDim)
        try r.check("num_key_value_heads", numKeyValueHeads, 1...resamplerNHeads)
        guard resamplerNHeads % numKeyValueHeads == 0 else {
            throw r.bad("perceiver_config.resampler_n_heads \(resamplerNHeads) is not a multiple of num_key_value_heads \(numKeyValueHeads)")
        }
        guard rmsNormEps.isFinite, rmsNormEps >= 0 else { throw r.bad("perceiver_config.rms_norm_eps \(rmsNormEps) must be finite and ≥ 0") }
    }
}

/// Idefics2Config: vision tower, perceiver connector, Mistral text model.
///
/// Matches transformers 5.24 `Idefics2Config.__post_init__`: a missing text_config gets MistralConfig
/// with max_position_embeddings 32768, rms_norm_eps 1e-5, pad_token_id 0; a present one is a
/// MistralConfig of its keys (missing keys = MistralConfig defaults). If the perceiver's hidden size
/// differs from the text model's, both its hidden_size and rms_norm_eps are copied from the text config.
public struct Idefics2Config: Sendable, Equatable {
    public var vision: Idefics2VisionConfig
    public var perceiver: Idefics2PerceiverConfig
    public var text: TextConfig
    public var imageTokenId: Int
    public var tieWordEmbeddings: Bool
    public var dtype: String?

    public static func decode(_ data: Data, path: String) throws -> Idefics2Config {
        let cfg = try decodeFields(data, path: path)
        try cfg.vision.validate(path: path)
        try cfg.perceiver.validate(path: path)
        try cfg.text.validate(path: path, key: "text_config.")
        // (transformers' own defaults put image_token_id 32001 past vocab_size 32000: only the sign is checked.)
        guard (0...ConfigRanges.maxVocab).contains(cfg.imageTokenId) else {
            throw ConfigError.invalid(path: path, detail: "image_token_id \(cfg.imageTokenId) is outside 0…\(ConfigRanges.maxVocab); fix config.json (Idefics2-8B: 32001)")
        }
        return cfg
    }

    static func decodeFields(_ data: Data, path: String) throws -> Idefics2Config {
        try withConfigObject(data, path: path) { c in
            func sub(_ key: String) throws -> KeyedDecodingContainer<AnyKey>? {
                guard c.has(key), try !c.decodeNil(forKey: AnyKey(key)) else { return nil }
                return try c.nestedContainer(keyedBy: AnyKey.self, forKey: AnyKey(key))
            }
            let vision = try sub("vision_config").map { try Idefics2VisionConfig(decoding: $0) } ?? Idefics2VisionConfig()
            var perceiver = try sub("perceiver_config").map(Idefics2PerceiverConfig.init(decoding:)) ?? Idefics2PerceiverConfig()
            let text: TextConfig
            if let tc = try sub("text_config") {
                let t: String = try tc.value("model_type", default: "mistral")
                text = try TextConfig(decoding: tc, modelType: t, defaults: TextConfig.defaults(for: t))
            } else {
                var d = TextConfig.defaults(for: "mistral")
                d.maxPos = 4096 * 8; d.eps = 1e-5; d.padTokenId = 0
                let empty = try JSONDecoder().decode(CapturedObject.self, from: Data("{}".utf8)).c
                text = try TextConfig(decoding: empty, modelType: "mistral", defaults: d)
            }
            if text.hiddenSize != perceiver.hiddenSize {
                perceiver.hiddenSize = text.hiddenSize
                perceiver.rmsNormEps = text.rmsNormEps
            }
            return Idefics2Config(vision: vision, perceiver: perceiver, text: text,
                                  imageTokenId: try c.value("image_token_id", default: 32001),
                                  tieWordEmbeddings: try c.value("tie_word_embeddings", default: false),
                                  dtype: try decodeTorchDType(c))
        }
    }
}
