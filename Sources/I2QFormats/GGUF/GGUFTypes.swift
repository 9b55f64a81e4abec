import I2QCore
import I2QQuant

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
