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

/// Metadata value types of GGUF (`enum gguf_type`; gguf-py `GGUFValueType`).
public enum GGUFValueType: UInt32, Sendable, CaseIterable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7
    case string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    /// Bytes of one value (strings: the length prefix only; arrays: type + count).
    var minimumSize: Int {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64, .string: return 8
        case .array: return 12
        }
    }

    public var name: String { String(describing: self).uppercased() }
}

/// One metadata value. Arrays hold values of one scalar type (nested arrays are rejected, as
/// llama.cpp's reader does).
public enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool)
    /// Strings keep their bytes (GGUF does not require UTF-8 for values).
    case string([UInt8])
    case array(GGUFValueType, [GGUFValue])

    public var type: GGUFValueType {
        switch self {
        case .uint8: return .uint8
        case .int8: return .int8
        case .uint16: return .uint16
        case .int16: return .int16
        case .uint32: return .uint32
        case .int32: return .int32
        case .uint64: return .uint64
        case .int64: return .int64
        case .float32: return .float32
        case .float64: return .float64
        case .bool: return .bool
        case .string: return .string
        case .array: return .array
        }
    }

    /// Any integer type whose value fits an Int.
    public var intValue: Int? {
        switch self {
        case let .uint8(v): return Int(v)
        case let .int8(v): return Int(v)
        case let .uint16(v): return Int(v)
        case let .int16(v): return Int(v)
        case let .uint32(v): return Int(v)
        case let .int32(v): return Int(v)
        case let .uint64(v): return Int(exactly: v)
        case let .int64(v): return Int(v)
        default: return nil
        }
    }

    /// float32 values widened to Double (what Python's `float(np.float32)` gives).
    public var doubleValue: Double? {
        switch self {
        case let .float32(v): return Double(v)
        case let .float64(v): return v
        default: return nil
        }
    }

    public var boolValue: Bool? { if case let .bool(b) = self { return b }; return nil }
    /// The string decoded as UTF-8 (invalid sequences replaced, as Python's `errors="replace"`).
    public var stringValue: String? { if case let .string(b) = self { return String(decoding: b, as: UTF8.self) }; return nil }
    public var arrayValue: [GGUFValue]? { if case let .array(_, a) = self { return a }; return nil }

    /// The JSON value transformers puts in a config for this metadata value (ints stay exact,
    /// floats are spelled as Python's `repr`, strings decoded).
    var json: JSONValue {
        switch self {
        case let .float32(v): return .number(pythonFloatRepr(Double(v)))
        case let .float64(v): return .number(pythonFloatRepr(v))
        case let .bool(b): return .bool(b)
        case .string: return .string(stringValue!)
        case let .array(_, a): return .array(a.map(\.json))
        case let .uint64(v): return .uint(v)
        case let .int64(v): return .number(String(v))
        default: return .int(intValue!)
        }
    }
}

/// Python's `repr(float)` (also what `json.dumps` writes): shortest round-trip digits, fixed notation
/// for decimal exponents in [-4, 16), else `d.ddde±XX`.
public func pythonFloatRepr(_ v: Double) -> String {
    if v.isNaN { return "NaN" }
    if v.isInfinite { return v < 0 ? "-Infinity" : "Infinity" }
    if v == 0 { return v.sign == .minus ? "-0.0" : "0.0" }
    // Swift's description also gives the shortest round-trip digits; re-lay them out.
    let s = "\(abs(v))"
    var mantissa = s, exp10 = 0
    if let e = s.firstIndex(where: { $0 == "e" || $0 == "E" }) {
        mantissa = String(s[..<e])
        exp10 = Int(s[s.index(after: e)...])!
    }
    let parts = mantissa.split(separator: ".", omittingEmptySubsequences: false)
    let intPart = String(parts[0]), fracPart = parts.count > 1 ? String(parts[1]) : ""
    var digits = intPart + fracPart
    var pointPos = intPart.count + exp10  // value = 0.digits × 10^pointPos
    while digits.hasPrefix("0") && digits.count > 1 { digits.removeFirst(); pointPos -= 1 }
    while digits.hasSuffix("0") && digits.count > 1 { digits.removeLast() }
    let sciExp = pointPos - 1
    var out = v < 0 ? "-" : ""
    if sciExp >= -4 && sciExp < 16 {
        if pointPos <= 0 {
            out += "0." + String(repeating: "0", count: -pointPos) + digits
        } else if pointPos >= digits.count {
            out += digits + String(repeating: "0", count: pointPos - digits.count) + ".0"
        } else {
            let i = digits.index(digits.startIndex, offsetBy: pointPos)
            out += digits[..<i] + "." + digits[i...]
        }
    } else {
        out += String(digits.first!)
        if digits.count > 1 { out += "." + digits.dropFirst() }
        let a = abs(sciExp)
        out += "e" + (sciExp < 0 ? "-" : "+") + (a < 10 ? "0" : "") + String(a)
    }
    return out
}
