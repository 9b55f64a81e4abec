import I2QCore

/// Per-tensor importance vectors for the imatrix-weighted ggml quantizers (llama.cpp's importance
/// matrix: for each weight, the mean squared activation of each input column). The imatrix file
/// reader conforms to it; tests build one in memory.
public protocol ImportanceSource {
    /// The vector for a GGUF tensor (`blk.0.attn_q.weight`): one value per column (ne0), or nil when
    /// the source has none for it (that tensor is then quantized without importance, as llama.cpp does).
    func values(for ggufTensorName: String) -> [Float]?
}

/// llama-quantize's use of an importance vector, shared by `quantize --type` and `export --to gguf --type`.
public enum LlamaImportance {
    /// The vector for GGUF tensor `tensor` (rows of `columns`) quantized to `type`: nil when the source has
    /// none; a wrong length is an error except for token_embd, whose vector llama.cpp ignores
    /// (llama-imatrix cannot measure it); negative or non-finite values are errors; nil for types that
    /// use none (Q8_0, plain floats) after those checks, as llama-quantize checks every tensor it converts.
    public static func vector(_ src: (any ImportanceSource)?, tensor: String, columns: Int, type: GGMLType) throws -> [Float]? {
        guard let src, let v = src.values(for: tensor) else { return nil }
        guard v.count == columns else {
            if tensor == "token_embd.weight" { return nil }
            throw ImportanceVectorError(tensor: tensor, detail: "it has \(v.count) values but the tensor's rows have \(columns); it was computed for another model.")
        }
        if let i = v.firstIndex(where: { !$0.isFinite || $0 < 0 }) {
            throw ImportanceVectorError(tensor: tensor, detail: "value \(i) is \(v[i]); importance values are finite and ≥ 0. Recompute the importance matrix.")
        }
        return GGMLQuantize.blockTypes.contains(type) && type != .q8_0 ? v : nil
    }
}

/// An importance vector that does not fit its tensor.
public struct ImportanceVectorError: I2QError {
    public let tensor: String
    public let detail: String
    public var description: String { "importance matrix for \(tensor): \(detail)" }
}
