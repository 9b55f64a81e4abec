/// Per-tensor importance vectors for the imatrix-weighted ggml quantizers (llama.cpp's importance
/// matrix: for each weight, the mean squared activation of each input column). The imatrix file
/// reader conforms to it; tests build one in memory.
public protocol ImportanceSource {
    /// The vector for a GGUF tensor (`blk.0.attn_q.weight`): one value per column (ne0), or nil when
    /// the source has none for it (that tensor is then quantized without importance, as llama.cpp does).
    func values(for ggufTensorName: String) -> [Float]?
}
