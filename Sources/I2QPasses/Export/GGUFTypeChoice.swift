import I2QCore
import I2QFormats
import I2QQuant

/// `--type` of `export --to gguf`: the encoding of the 2-D weights (norms always stay F32).
/// f32/f16/bf16/q8_0 are convert_hf_to_gguf's `--outtype` (every 2-D weight that type, quantized
/// from the source precision); the others are llama-quantize's file types (`LlamaFileType`: per-tensor
/// types by llama.cpp's recipe, quantized from the values of i2q's default GGUF export — f16, or bf16
/// for bf16 models — exactly as llama-quantize quantizes that file).
public enum GGUFExportType: String, CaseIterable, Sendable {
    case f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k

    /// The llama-quantize file type this is, or nil for convert_hf_to_gguf's outtypes.
    public var llama: LlamaFileType? { self == .q8_0 ? nil : LlamaFileType(rawValue: rawValue) }

    /// `general.file_type` (llama.cpp `enum llama_ftype`, gguf-py `LlamaFileType`).
    public var fileType: UInt32 {
        switch self {
        case .f32: return 0
        case .f16: return 1
        case .q8_0: return 7
        case .bf16: return 32
        default: return llama!.ftype
        }
    }

    /// The type of an ordinary 2-D weight.
    public var ggml: GGMLType {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        case .q8_0: return .q8_0
        default: return llama!.defaultType
        }
    }

    /// convert_hf_to_gguf's `--outtype auto`: bf16 when the first ≥2-D tensor is bf16, else f16.
    public static func auto(for source: any ModelSource) -> GGUFExportType {
        source.tensors.first(where: { $0.shape.count >= 2 })?.dtype == .bf16 ? .bf16 : .f16
    }
}

/// Each tensor's GGUF type under an export type, and what the user should be told about it.
struct GGUFTypeChoice {
    var types: [String: GGMLType] = [:]
    var notes: [String] = []

    /// tensors: (GGUF name, HF shape) in plan order; intermediate: the default export (f16 or bf16)
    /// a llama-quantize type starts from — tensors llama-quantize leaves alone keep its types.
    init(_ type: GGUFExportType, tensors: [(name: String, shape: [Int])], intermediate: GGUFExportType, text t: TextConfig,
         overrides: [TensorTypeOverride], hasImatrix: Bool) throws {
        if let llama = type.llama {
            let recipe = LlamaQuantRecipe(fileType: llama, model: .init(layers: t.numHiddenLayers, heads: t.numAttentionHeads, kvHeads: t.numKeyValueHeads),
                                          overrides: overrides, hasImatrix: hasImatrix)
            // ggml_n_dims: a [1, n] matrix is 1-D to llama.cpp.
            let chosen = try recipe.choose(tensors.map { .init(name: $0.name, columns: $0.shape.last!, dims: $0.shape.count == 2 && $0.shape[0] == 1 ? 1 : $0.shape.count) })
            for (name, shape) in tensors {
                let c = chosen[name]!
                types[name] = c.type ?? (shape.count <= 1 || name.hasSuffix("_norm.weight") ? .f32 : intermediate.ggml)
                if let n = c.note { notes.append("\(name): \(n)") }
            }
            return
        }
        guard overrides.isEmpty else {
            throw LlamaQuantRecipeError.badOverride(overrides[0].pattern, "--tensor-type applies to llama-quantize's types (\(GGUFExportType.allCases.filter { $0.llama != nil }.map(\.rawValue).joined(separator: ", "))), not to --type \(type.rawValue)")
        }
        var fallbacks: [String] = []
        for (g, shape) in tensors {
            // convert_hf_to_gguf: 1-D tensors and *_norm.weight are F32; every other .weight gets the
            // file type (Q8_0 falls back to F16 when the rows do not split into 32-blocks).
            var ty: GGMLType = shape.count <= 1 || g.hasSuffix("_norm.weight") ? .f32 : type.ggml
            if shape.last! % ty.blockSize != 0 { fallbacks.append(g); ty = .f16 }
            types[g] = ty
        }
        if !fallbacks.isEmpty {
            notes.append("\(fallbacks.count) tensor(s) have rows that are not a multiple of 32 and are stored as F16 (first: \(fallbacks[0])), as llama.cpp's converter does.")
        }
    }
}
