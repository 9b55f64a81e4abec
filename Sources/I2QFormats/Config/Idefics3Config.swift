import Foundation
import I2QCore

/// Idefics3Config / SmolVLMConfig (transformers 5.24; the two classes have the same fields and
/// defaults): a SigLIP vision tower (`Idefics3VisionConfig` has Idefics2VisionConfig's fields and
/// defaults), a pixel-shuffle connector (`scale_factor`) and a Llama text model.
///
/// As `__post_init__`/`sub_configs_defaults`: a missing text_config is LlamaConfig with rms_norm_eps
/// 1e-5; a present one is the config of its `model_type` (default llama) with that class's defaults.
/// SmolVLM-256M/500M (4.x) say `model_type: "idefics3"`; SmolVLM2 says `"smolvlm"`.
public struct Idefics3Config: Sendable, Equatable, FamilyConfig {
    public var modelType: String
    public var vision: Idefics2VisionConfig
    public var text: TextConfig
    public var scaleFactor: Int
    public var imageTokenId: Int
    public var tieWordEmbeddings: Bool
    public var dtype: String?

    public var textConfig: TextConfig { text }

    /// Patches per side of one tile and image tokens per tile after the pixel shuffle.
    public var patchesPerSide: Int { vision.imageSize / vision.patchSize }
    public var imageSeqLen: Int { patchesPerSide * patchesPerSide / (scaleFactor * scaleFactor) }

    public static func decode(_ data: Data, path: String) throws -> Idefics3Config {
        let cfg = try withConfigObject(data, path: path) { c in
            func sub(_ key: String) throws -> KeyedDecodingContainer<AnyKey>? {
                guard c.has(key), try !c.decodeNil(forKey: AnyKey(key)) else { return nil }
                return try c.nestedContainer(keyedBy: AnyKey.self, forKey: AnyKey(key))
            }
            var vision = Idefics2VisionConfig()
            vision.hiddenSize = 1152; vision.numAttentionHeads = 16  // Idefics3VisionConfig defaults
            if let v = try sub("vision_config") { vision = try Idefics2VisionConfig(decoding: v, defaults: vision) }
            let text: TextConfig
            if let tc = try sub("text_config") {
                let t: String = try tc.value("model_type", default: "llama")
                text = try TextConfig(decoding: tc, modelType: t, defaults: TextConfig.defaults(for: t))
            } else {
                var d = TextConfig.defaults(for: "llama")
                d.eps = 1e-5
                let empty = try JSONDecoder().decode(CapturedObject.self, from: Data("{}".utf8)).c
                text = try TextConfig(decoding: empty, modelType: "llama", defaults: d)
            }
            return Idefics3Config(modelType: try c.value("model_type", default: "idefics3"), vision: vision, text: text,
                                  scaleFactor: try c.value("scale_factor", default: 2),
                                  imageTokenId: try c.value("image_token_id", default: 128257),
                                  tieWordEmbeddings: try c.value("tie_word_embeddings", default: false),
                                  dtype: try decodeTorchDType(c))
        }
        try cfg.vision.validate(path: path)
        try cfg.text.validate(path: path, key: "text_config.")
        let r = ConfigRanges(path: path, key: "")
        try r.check("scale_factor", cfg.scaleFactor, 1...64)
        guard cfg.patchesPerSide % cfg.scaleFactor == 0 else {
            throw r.bad("vision_config image_size/patch_size = \(cfg.patchesPerSide) patches per side is not a multiple of scale_factor \(cfg.scaleFactor) (the pixel shuffle needs it)")
        }
        try r.check("image_token_id", cfg.imageTokenId, 0...(cfg.text.vocabSize - 1))
        return cfg
    }
}
