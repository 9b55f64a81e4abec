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
        },
        otherGGUFName: Idefics2GGUFNames.name)
}

/// GGUF-style names of Idefics2's vision and connector linears (importance-matrix entries).
/// - Vision tower (SigLIP): the names llama.cpp's mmproj files give a SigLIP encoder (gguf-py
///   `MODEL_TENSOR.V_ENC_*`): `v.blk.N.attn_{q,k,v,out}.weight`, `v.blk.N.ffn_up.weight` (fc1),
///   `v.blk.N.ffn_down.weight` (fc2), `v.patch_embd.weight`.
/// - Connector: llama.cpp has no Idefics2 projector, so no GGUF names exist, and the checkpoint names
///   (up to 71 bytes + `.in_sum2`) exceed GGUF's 63-byte tensor names: short names in the same style,
///   `mm.ffn_{gate,up,down}.weight` (modality_projection), `resampler.blk.N.attn_{q,k,v,out}.weight` and
///   `resampler.blk.N.ffn_{gate,up,down}.weight` (perceiver_resampler layers).
enum Idefics2GGUFNames {
    static let vision = ["self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
                         "self_attn.v_proj.weight": "attn_v.weight", "self_attn.out_proj.weight": "attn_out.weight",
                         "mlp.fc1.weight": "ffn_up.weight", "mlp.fc2.weight": "ffn_down.weight"]
    static let mlp = ["gate_proj.weight": "ffn_gate.weight", "up_proj.weight": "ffn_up.weight", "down_proj.weight": "ffn_down.weight"]
    static let resampler = ["self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
                            "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_out.weight",
                            "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
                            "mlp.down_proj.weight": "ffn_down.weight"]

    @Sendable static func name(_ n: String) -> String? {
        if n == "model.vision_model.embeddings.patch_embedding.weight" { return "v.patch_embd.weight" }
        if let (i, rest) = ImatrixNames.layer(n, "model.vision_model.encoder.layers."), let m = vision[rest] { return "v.blk.\(i).\(m)" }
        let proj = "model.connector.modality_projection."
        if n.hasPrefix(proj), let m = mlp[String(n.dropFirst(proj.count))] { return "mm.\(m)" }
        if let (i, rest) = ImatrixNames.layer(n, "model.connector.perceiver_resampler.layers."), let m = resampler[rest] {
            return "resampler.blk.\(i).\(m)"
        }
        return nil
    }
}
