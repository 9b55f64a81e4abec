import I2QCore

/// Tensor encodings of ggml (`enum ggml_type` in ggml.h; gguf-py `GGMLQuantizationType`), with the
/// block geometry of `GGML_QUANT_SIZES`: `blockSize` elements are stored in `typeSize` bytes.
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15
    case iq2_xxs = 16, iq2_xs = 17, iq3_xxs = 18, iq1_s = 19, iq4_nl = 20, iq3_s = 21, iq2_s = 22, iq4_xs = 23
    case i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, iq1_m = 29, bf16 = 30
    case tq1_0 = 34, tq2_0 = 35, mxfp4 = 39, nvfp4 = 40, q1_0 = 41

    /// QK_K of ggml: the super-block of the K-quants.
    static let qk_K = 256

    /// Elements per block and bytes per block.
    public var blockSize: Int { geometry.0 }
    public var typeSize: Int { geometry.1 }

    private var geometry: (Int, Int) {
        let k = GGMLType.qk_K
        switch self {
        case .f32: return (1, 4)
        case .f16: return (1, 2)
        case .q4_0: return (32, 2 + 16)
        case .q4_1: return (32, 2 + 2 + 16)
        case .q5_0: return (32, 2 + 4 + 16)
        case .q5_1: return (32, 2 + 2 + 4 + 16)
        case .q8_0: return (32, 2 + 32)
        case .q8_1: return (32, 4 + 4 + 32)
        case .q2_K: return (k, 2 + 2 + k / 16 + k / 4)
        case .q3_K: return (k, 2 + k / 4 + k / 8 + 12)
        case .q4_K: return (k, 2 + 2 + k / 2 + 12)
        case .q5_K: return (k, 2 + 2 + k / 2 + k / 8 + 12)
        case .q6_K: return (k, 2 + k / 2 + k / 4 + k / 16)
        case .q8_K: return (k, 4 + k + k / 8)
        case .iq2_xxs: return (k, 2 + k / 4)
        case .iq2_xs: return (k, 2 + k / 4 + k / 32)
        case .iq3_xxs: return (k, 2 + k / 4 + k / 8)
        case .iq1_s: return (k, 2 + k / 8 + k / 16)
        case .iq4_nl: return (32, 2 + 16)
        case .iq3_s: return (k, 2 + k / 4 + k / 8 + k / 32 + 4)
        case .iq2_s: return (k, 2 + k / 4 + k / 16)
        case .iq4_xs: return (k, 2 + 2 + k / 2 + k / 64)
        case .i8: return (1, 1)
        case .i16: return (1, 2)
        case .i32: return (1, 4)
        case .i64: return (1, 8)
        case .f64: return (1, 8)
        case .iq1_m: return (k, k / 8 + k / 16 + k / 32)
        case .bf16: return (1, 2)
        case .tq1_0: return (k, 2 + 4 * 13)
        case .tq2_0: return (k, 2 + 64)
        case .mxfp4: return (32, 1 + 16)
        case .nvfp4: return (64, 4 + 32)
        case .q1_0: return (128, 2 + 16)
        }
    }

    /// The name gguf-py and llama.cpp print (`Q4_1`, `BF16`, `IQ2_XXS`…).
    public var name: String {
        switch self {
        case .q2_K: return "Q2_K"
        case .q3_K: return "Q3_K"
        case .q4_K: return "Q4_K"
        case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"
        case .q8_K: return "Q8_K"
        default: return String(describing: self).uppercased()
        }
    }

    /// Types i2q dequantizes to float32 (bit-exact to gguf-py's `quants.dequantize`).
    public static let dequantizable: [GGMLType] = [.f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0,
                                                   .q2_K, .q3_K, .q4_K, .q5_K, .q6_K]
    public var isDequantizable: Bool { GGMLType.dequantizable.contains(self) }
}
