import Foundation

/// Idefics2 (HuggingFaceM4/idefics2-8b and fine-tunes): SigLIP vision tower, perceiver connector,
/// Mistral text decoder. transformers 4.x checkpoints keep the decoder under `model.text_model.`,
/// some conversions under `model.language_model.`.
extension ModelArchitecture {
    public static let idefics2 = ModelArchitecture(
        modelTypes: ["idefics2"],
        decode: { .idefics2(try Idefics2Config.decode($0, path: $1)) },
        textPrefixes: ["model.text_model.", "model.language_model."],
        otherModules: [("model.vision_model.", .vision), ("model.connector.", .connector)],
        visionLinear: { name in
            // Encoder layers' attention q/k/v/out and MLP fc1/fc2 (not the patch embedding, not the head).
            guard name.hasPrefix("model.vision_model.encoder.layers.") else { return false }
            return ["q_proj", "k_proj", "v_proj", "out_proj"].contains { name.hasSuffix(".self_attn.\($0).weight") }
                || name.hasSuffix(".mlp.fc1.weight") || name.hasSuffix(".mlp.fc2.weight")
        },
        describe: { config in
            guard case let .idefics2(c) = config else { return [] }
            return [
                ("vision", "\(c.vision.numHiddenLayers) layers, hidden \(c.vision.hiddenSize), \(c.vision.numAttentionHeads) heads, patch \(c.vision.patchSize), image \(c.vision.imageSize)"),
                ("perceiver", "\(c.perceiver.resamplerDepth) layers, \(c.perceiver.resamplerNLatents) latents, \(c.perceiver.resamplerNHeads) heads × \(c.perceiver.resamplerHeadDim), \(c.perceiver.numKeyValueHeads) kv heads, eps \(c.perceiver.rmsNormEps)"),
                ("image_token_id", "\(c.imageTokenId)"),
            ]
        },
        topLevelDType: { config in
            if case let .idefics2(c) = config { return c.dtype }
            return nil
        })
}
