import Foundation

/// gguf-py's tensor map for llama.cpp's `llama` architecture (gguf-py 0.19 `MODEL_TENSORS[LLAMA]` /
/// `TensorNameMap`), one table for both directions: the GGUF reader (`GGUFModel`: GGUF → transformers
/// names) and the exporter (`GGUFExportPass`: transformers → GGUF, in convert_hf_to_gguf.py's order).
public enum GGUFNames {
    /// One decoder layer's tensors: (GGUF suffix after `blk.N.`, transformers suffix after
    /// `PREFIXlayers.N.`, whether RoPE's head permutation applies: "q" / "k" / nil), in
    /// convert_hf_to_gguf.py's write order.
    public static let llamaLayer: [(gguf: String, hf: String, permute: String?)] = [
        ("attn_norm.weight", "input_layernorm.weight", nil),
        ("attn_q.weight", "self_attn.q_proj.weight", "q"),
        ("attn_k.weight", "self_attn.k_proj.weight", "k"),
        ("attn_v.weight", "self_attn.v_proj.weight", nil),
        ("attn_output.weight", "self_attn.o_proj.weight", nil),
        ("ffn_norm.weight", "post_attention_layernorm.weight", nil),
        ("ffn_gate.weight", "mlp.gate_proj.weight", nil),
        ("ffn_up.weight", "mlp.up_proj.weight", nil),
        ("ffn_down.weight", "mlp.down_proj.weight", nil),
    ]
    /// Outside the layers: (GGUF name, transformers suffix after PREFIX, or a full name for lm_head).
    public static let embedding = ("token_embd.weight", "embed_tokens.weight")
    public static let finalNorm = ("output_norm.weight", "norm.weight")
    public static let output = ("output.weight", "lm_head.weight")

    /// The layer table in the order the reader lists a layer's tensors (projections, then norms: the
    /// tensor order GGUF-read models have always had).
    public static var llamaLayerReadOrder: [(gguf: String, hf: String, permute: String?)] {
        llamaLayer.filter { !$0.gguf.hasSuffix("_norm.weight") } + llamaLayer.filter { $0.gguf.hasSuffix("_norm.weight") }
    }
}
