/// The names of importance-matrix entries: the GGUF tensor name llama-quantize looks the weight up by.
///
/// - Decoder (Llama/Mistral, Idefics2's text model): llama.cpp's names, `blk.N.attn_q.weight` …
///   `output.weight` (`GGUFNames`, the table the GGUF exporter uses).
/// - Idefics2 vision tower (SigLIP): the names llama.cpp's mmproj files give a SigLIP encoder
///   (gguf-py `MODEL_TENSOR.V_ENC_*`): `v.blk.N.attn_{q,k,v,out}.weight`, `v.blk.N.ffn_up.weight`
///   (fc1), `v.blk.N.ffn_down.weight` (fc2), `v.patch_embd.weight`.
/// - Idefics2 connector: llama.cpp has no Idefics2 projector, so no GGUF names exist, and the HF names
///   (up to 71 bytes + `.in_sum2`) exceed GGUF's 63-byte tensor names. Short names in the same style:
///   `mm.ffn_{gate,up,down}.weight` (modality_projection) and `resampler.blk.N.attn_{q,k,v,out}.weight`,
///   `resampler.blk.N.ffn_{gate,up,down}.weight` (perceiver_resampler layers).
/// - Anything else keeps its checkpoint name.
public enum ImatrixNames {
    public static func name(checkpoint n: String, textPrefix: String) -> String {
        if n == GGUFNames.output.1 { return GGUFNames.output.0 }
        if n == textPrefix + GGUFNames.embedding.1 { return GGUFNames.embedding.0 }
        if let (i, rest) = layer(n, textPrefix + "layers."), let m = GGUFNames.llamaLayer.first(where: { $0.hf == rest }) {
            return "blk.\(i).\(m.gguf)"
        }
        if n == "model.vision_model.embeddings.patch_embedding.weight" { return "v.patch_embd.weight" }
        if let (i, rest) = layer(n, "model.vision_model.encoder.layers."), let m = vision[rest] { return "v.blk.\(i).\(m)" }
        if n.hasPrefix("model.connector.modality_projection."), let m = mlp[String(n.dropFirst("model.connector.modality_projection.".count))] {
            return "mm.\(m)"
        }
        if let (i, rest) = layer(n, "model.connector.perceiver_resampler.layers."), let m = resampler[rest] { return "resampler.blk.\(i).\(m)" }
        return n
    }

    static let vision = ["self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
                         "self_attn.v_proj.weight": "attn_v.weight", "self_attn.out_proj.weight": "attn_out.weight",
                         "mlp.fc1.weight": "ffn_up.weight", "mlp.fc2.weight": "ffn_down.weight"]
    static let mlp = ["gate_proj.weight": "ffn_gate.weight", "up_proj.weight": "ffn_up.weight", "down_proj.weight": "ffn_down.weight"]
    static let resampler = ["self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
                            "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_out.weight",
                            "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
                            "mlp.down_proj.weight": "ffn_down.weight"]

    /// "PREFIX N.rest" → (N, rest).
    static func layer(_ n: String, _ prefix: String) -> (Int, String)? {
        guard n.hasPrefix(prefix) else { return nil }
        let tail = n.dropFirst(prefix.count)
        guard let dot = tail.firstIndex(of: "."), let i = Int(tail[..<dot]) else { return nil }
        return (i, String(tail[tail.index(after: dot)...]))
    }
}
