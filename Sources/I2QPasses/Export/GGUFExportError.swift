import I2QCore
import I2QFormats

public enum GGUFExportError: I2QError {
    case unsupportedModel(path: String, detail: String)
    case tokenizer(path: String, detail: String)
    /// An .i2q holding 4-bit (AWQ int4 / NF4 / FP4) tensors: GGUF cannot take them as they are.
    case quantizedInput(path: String, schemes: [String], first: String, source: String?)
    case importance(tensor: String, detail: String)
    /// A `quantize --target-bpw` output with affine int4 tensors: no GGUF type holds them.
    case mixedInt4(path: String, tensor: String, scheme: String, count: Int)
    /// `--type` (or `--tensor-type` / an importance matrix) given for an .i2q whose weights are
    /// already ggml blocks, asking for other bytes than the stored ones.
    case requantize(path: String, stored: String, recorded: Bool, requested: String, source: String?)

    public var description: String {
        switch self {
        case let .unsupportedModel(p, d): return "\(p): cannot export to GGUF: \(d)"
        case let .tokenizer(p, d): return "\(p): cannot build the GGUF vocabulary: \(d)"
        case let .quantizedInput(p, schemes, first, src):
            let from = src.map { "the unquantized model it was made from (\($0))" } ?? "the unquantized (f32/f16/bf16) model it was made from"
            var alt: [String] = []
            if schemes.contains(where: { $0 == "affine_int4" }) { alt.append("--to hf-awq (AutoAWQ GEMM: transformers, vLLM)") }
            if schemes.contains(where: { $0.contains("nf4") || $0.contains("fp4") }) { alt.append("--to hf-bnb (transformers + bitsandbytes)") }
            return "\(p): its weights are stored as \(schemes.joined(separator: ", ")) (first: \(first)), which no GGUF block type holds, and i2q does not re-quantize 4-bit weights (a second rounding on top of the first). Instead, export \(from) with `i2q export MODEL --to gguf --type q4_k_m` (or q4_0, q5_k_m, q6_k, q8_0)" + (alt.isEmpty ? "." : ", or export this file with " + alt.joined(separator: " or ") + ".")
        case let .importance(t, d): return "importance matrix for \(t): \(d)"
        case let .mixedInt4(p, t, g, n):
            return "\(p): \(n) tensor(s) of this mixed-precision file are not ggml blocks (first: \(t), affine \(g)), which no GGUF block type holds (q4_1 is affine but with blocks of 32 and other scales), and i2q does not re-quantize them. For GGUF, quantize again with candidates GGUF can hold, e.g. `i2q quantize MODEL --target-bpw X --candidates q4_0,q4_1,q5_0,q5_1,q8_0,q4_k,q5_k,q6_k,bf16 …`; the ggml and float tensors of a mixed file are written as they are."
        case let .requantize(p, stored, recorded, requested, src):
            let how = recorded ? "as \(stored) (recorded by `i2q quantize`)" : "in ggml blocks (mostly \(stored))"
            let from = src ?? "MODEL"
            return "\(p): its weights are already quantized \(how), and \(requested) asks for other bytes. i2q writes a quantized model's blocks to GGUF as they are and does not convert them: re-quantizing adds a second rounding on top of the first (quality lost), and dequantizing cannot restore what the first dropped. Export this file as it is with `i2q export \(p) --to gguf` (no --type), or export the unquantized model it was made from with `i2q export \(from) --to gguf --type TYPE` (--tensor-type and --imatrix apply there too)."
        }
    }
}
