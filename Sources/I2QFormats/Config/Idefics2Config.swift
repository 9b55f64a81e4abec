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

    init(decoding c: KeyedDecodingContainer<AnyKey>) throws {
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
        try withConfigObject(data, path: path) { c in
            func sub(_ key: String) throws -> KeyedDecodingContainer<AnyKey>? {
                guard c.has(key), try !c.decodeNil(forKey: AnyKey(key)) else { return nil }
                return try c.nestedContainer(keyedBy: AnyKey.self, forKey: AnyKey(key))
            }
            let vision = try sub("vision_config").map(Idefics2VisionConfig.init(decoding:)) ?? Idefics2VisionConfig()
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
