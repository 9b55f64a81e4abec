/// Element types as the safetensors specification names them.
///
/// Reference: huggingface/safetensors `Dtype` (safetensors/src/tensor.rs). Names are the on-disk
/// strings; `size` is the byte width of one element. Unknown names are rejected by the readers with
/// an error naming the tensor (see `DType.parse`).
public enum DType: String, CaseIterable, Sendable, Codable {
    case bool = "BOOL"
    case u8 = "U8"
    case i8 = "I8"
    case f8e5m2 = "F8_E5M2"
    case f8e4m3 = "F8_E4M3"
    case i16 = "I16"
    case u16 = "U16"
    case f16 = "F16"
    case bf16 = "BF16"
    case i32 = "I32"
    case u32 = "U32"
    case f32 = "F32"
    case f64 = "F64"
    case i64 = "I64"
    case u64 = "U64"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .bool, .u8, .i8, .f8e5m2, .f8e4m3: return 1
        case .i16, .u16, .f16, .bf16: return 2
        case .i32, .u32, .f32: return 4
        case .f64, .i64, .u64: return 8
        }
    }

    /// Floating-point types that a dtype cast converts (torch's `is_floating_point`, minus the fp8
    /// types, which i2q passes through unchanged).
    public var isCastableFloat: Bool {
        switch self {
        case .f16, .bf16, .f32, .f64: return true
        default: return false
        }
    }

    /// The spelling torch uses in `config.json` (`torch_dtype` / `dtype`).
    public var torchName: String? {
        switch self {
        case .f16: return "float16"
        case .bf16: return "bfloat16"
        case .f32: return "float32"
        case .f64: return "float64"
        default: return nil
        }
    }

    /// Accepts the CLI spellings `f16`, `fp16`, `float16`, `bf16`, `bfloat16`, `f32`, `fp32`, `float32`.
    public init?(userSpelling s: String) {
        switch s.lowercased() {
        case "f16", "fp16", "float16", "half": self = .f16
        case "bf16", "bfloat16": self = .bf16
        case "f32", "fp32", "float32", "float": self = .f32
        default: return nil
        }
    }
}
