import Foundation

/// Idefics3 and SmolVLM/SmolVLM2 (HuggingFaceM4/Idefics3-8B-Llama3, HuggingFaceTB/SmolVLM-*):
/// the SigLIP vision tower of Idefics2, a pixel-shuffle connector with one linear
/// (`model.connector.modality_projection.proj`), a Llama decoder under `model.text_model.`.
extension ModelArchitecture {
    public static let idefics3 = ModelArchitecture(
        modelTypes: ["idefics3", "smolvlm"],
        decode: { .family(try Idefics3Config.decode($0, path: $1)) },
        textPrefixes: ["model.text_model.", "model.language_model."],
        otherModules: [("model.vision_model.", .vision), ("model.connector.", .connector)],
        visionLinear: { name in
            // SigLIP encoder layers' attention q/k/v/out and MLP fc1/fc2 (not the patch embedding).
            guard name.hasPrefix("model.vision_model.encoder.layers.") else { return false }
            return ["q_proj", "k_proj", "v_proj", "out_proj"].contains { name.hasSuffix(".self_attn.\($0).weight") }
                || name.hasSuffix(".mlp.fc1.weight") || name.hasSuffix(".mlp.fc2.weight")
        },
        describe: { config in
            guard let c = config.as(Idefics3Config.self) else { return [] }
            return [
                ("vision", "\(c.vision.numHiddenLayers) layers, hidden \(c.vision.hiddenSize), \(c.vision.numAttentionHeads) heads, patch \(c.vision.patchSize), image \(c.vision.imageSize)"),
                ("connector", "pixel shuffle ×\(c.scaleFactor) + linear \(c.vision.hiddenSize * c.scaleFactor * c.scaleFactor) → \(c.text.hiddenSize); \(c.imageSeqLen) tokens per tile"),
                ("image_token_id", "\(c.imageTokenId)"),
            ]
        },
        topLevelDType: { config in config.as(Idefics3Config.self)?.dtype },
        otherGGUFName: Idefics3GGUFNames.name)
}

/// GGUF names of Idefics3's vision and connector linears: llama.cpp's idefics3 projector
/// (convert_hf_to_gguf.py `Idefics3VisionModel`): the SigLIP names of Idefics2 and `mm.model.fc.weight`
/// for `model.connector.modality_projection.proj.weight`.
enum Idefics3GGUFNames {
    @Sendable static func name(_ n: String) -> String? {
        if n == "model.connector.modality_projection.proj.weight" { return "mm.model.fc.weight" }
        if n.hasPrefix("model.connector.") { return nil }
        return Idefics2GGUFNames.name(n)
    }
}
