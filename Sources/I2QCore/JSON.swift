/// A strict JSON value that keeps object key order and number spelling.
///
/// Why not Foundation's JSONSerialization: safetensors headers must reject duplicate keys (the
/// reference rejects them; JSONSerialization silently keeps one), integers up to 2^64 must stay
/// exact, and rewritten config files should keep their key order and number spelling.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// The number exactly as written in the source (re-emitted unchanged).
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.number(x), .number(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    public subscript(key: String) -> JSONValue? {
        guard case let .object(entries) = self else { return nil }
        return entries.first(where: { $0.0 == key })?.1
    }

    public var stringValue: String? { if case let .string(s) = self { return s }; return nil }
    public var objectEntries: [(String, JSONValue)]? { if case let .object(e) = self { return e }; return nil }
    public var arrayValue: [JSONValue]? { if case let .array(a) = self { return a }; return nil }
    public var boolValue: Bool? { if case let .bool(b) = self { return b }; return nil }

    /// An integer written without fraction or exponent that fits in Int64/UInt64 (as Int when it fits).
    public var uint64Value: UInt64? {
        guard case let .number(s) = self else { return nil }
        return UInt64(s)
    }
    public var intValue: Int? {
        guard case let .number(s) = self else { return nil }
        return Int(s)
    }
    public var doubleValue: Double? {
        guard case let .number(s) = self else { return nil }
        return Double(s)
    }

    /// Returns a copy with `key` set (replacing in place, or appended).
    public func setting(_ key: String, _ value: JSONValue) -> JSONValue {
        guard case var .object(entries) = self else { return self }
        if let i = entries.firstIndex(where: { $0.0 == key }) { entries[i].1 = value } else { entries.append((key, value)) }
        return .object(entries)
    }

    public static func int(_ v: Int) -> JSONValue { .number(String(v)) }
    public static func uint(_ v: UInt64) -> JSONValue { .number(String(v)) }
}

public struct JSONError: I2QError {
    public let source: String
    public let offset: Int
    public let message: String
    /// Set when the error is a duplicate object key: the key and the object's nesting depth (1 = top level).
    public var duplicateKey: String? = nil
    public var depth: Int = 0
    public init(source: String, offset: Int, message: String, duplicateKey: String? = nil, depth: Int = 0) {
        self.source = source; self.offset = offset; self.message = message; self.duplicateKey = duplicateKey; self.depth = depth
    }
    public var description: String { "\(source): invalid JSON at byte \(offset): \(message)" }
}

/// Strict RFC 8259 parser over UTF-8 bytes. Duplicate keys in an object are an error.
public struct JSONParser {
    private let b: UnsafeRawBufferPointer
    private var i = 0
    private let source: String
    private var depth = 0

    public static func parse(_ bytes: [UInt8], source: String) throws -> JSONValue {
        try bytes.withUnsafeBytes { try parse($0, source: source) }
    }

    public static func parse(_ bytes: UnsafeRawBufferPointer, source: String) throws -> JSONValue {
        var p = JSONParser(b: bytes, source: source)
        p.skipWS()
        let v = try p.value()
        p.skipWS()
        if p.i != bytes.count { throw p.err("unexpected data after the JSON value") }
        return v
    }

    private init(b: UnsafeRawBufferPointer, source: String) { self.b = b; self.source = source }

    private func err(_ m: String) -> JSONError { JSONError(source: source, offset: i, message: m) }

    private mutating func skipWS() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
    }

    private mutating func value() throws -> JSONValue {
        guard i < b.count else { throw err("unexpected end of input") }
        switch b[i] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        // Python's json writes these for non-finite floats; configs sometimes hold them.
        case UInt8(ascii: "N"): try literal("NaN"); return .number("NaN")
        case UInt8(ascii: "I"): try literal("Infinity"); return .number("Infinity")
        default: throw err("unexpected character '\(Character(Unicode.Scalar(b[i])))'")
        }
    }

    private mutating func literal(_ s: String) throws {
        for c in s.utf8 {
            guard i < b.count, b[i] == c else { throw err("invalid literal, expected \(s)") }
            i += 1
        }
    }

    private mutating func object() throws -> JSONValue {
        depth += 1
        if depth > 512 { throw err("nesting deeper than 512") }
        defer { depth -= 1 }
        i += 1
        var entries: [(String, JSONValue)] = []
        // Keys compared by their UTF-8 bytes: Swift's String equality is canonical equivalence, which
        // would call "é" and "e\u{301}" (distinct tokens of a vocabulary) duplicates.
        var seen = Set<[UInt8]>()
        skipWS()
        if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return .object(entries) }
        while true {
            skipWS()
            guard i < b.count, b[i] == UInt8(ascii: "\"") else { throw err("expected a string key") }
            let keyStart = i
            let k = try string()
            if !seen.insert(Array(k.utf8)).inserted {
                throw JSONError(source: source, offset: keyStart, message: "duplicate key \"\(k)\"", duplicateKey: k, depth: depth)
            }
            skipWS()
            guard i < b.count, b[i] == UInt8(ascii: ":") else { throw err("expected ':' after key \"\(k)\"") }
            i += 1
            skipWS()
            let v = try value()
            entries.append((k, v))
            skipWS()
            guard i < b.count else { throw err("unexpected end of input in object") }
            if b[i] == UInt8(ascii: ",") { i += 1; continue }
            if b[i] == UInt8(ascii: "}") { i += 1; return .object(entries) }
            throw err("expected ',' or '}' in object")
        }
    }

    private mutating func array() throws -> JSONValue {
        depth += 1
        if depth > 512 { throw err("nesting deeper than 512") }
        defer { depth -= 1 }
        i += 1
        var items: [JSONValue] = []
        skipWS()
        if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
        while true {
            skipWS()
            items.append(try value())
            skipWS()
            guard i < b.count else { throw err("unexpected end of input in array") }
            if b[i] == UInt8(ascii: ",") { i += 1; continue }
            if b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            throw err("expected ',' or ']' in array")
        }
    }

    private mutating func number() throws -> JSONValue {
        let start = i
        if b[i] == UInt8(ascii: "-") {
            i += 1
            if i < b.count, b[i] == UInt8(ascii: "I") { try literal("Infinity"); return .number("-Infinity") }
        }
        func digits() -> Int { let s = i; while i < b.count, b[i] >= 0x30, b[i] <= 0x39 { i += 1 }; return i - s }
        guard i < b.count else { throw err("truncated number") }
        if b[i] == UInt8(ascii: "0") { i += 1 } else if digits() == 0 { throw err("invalid number") }
        if i < b.count, b[i] == UInt8(ascii: ".") { i += 1; if digits() == 0 { throw err("invalid number fraction") } }
        if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
            i += 1
            if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
            if digits() == 0 { throw err("invalid number exponent") }
        }
        return .number(String(decoding: UnsafeRawBufferPointer(rebasing: b[start..<i]), as: UTF8.self))
    }

    private mutating func hex4() throws -> UInt32 {
        guard i + 4 <= b.count else { throw err("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = b[i]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw err("invalid \\u escape")
            }
            v = v * 16 + d
            i += 1
        }
        return v
    }

    private mutating func string() throws -> String {
        i += 1
        var out: [UInt8] = []
        var runStart = i
        while true {
            guard i < b.count else { throw err("unterminated string") }
            let c = b[i]
            if c == UInt8(ascii: "\"") {
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: b[runStart..<i]))
                i += 1
                break
            }
            if c < 0x20 { throw err("control character in string") }
            if c == UInt8(ascii: "\\") {
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: b[runStart..<i]))
                i += 1
                guard i < b.count else { throw err("unterminated escape") }
                let e = b[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var u = try hex4()
                    if u >= 0xD800 && u < 0xDC00 {
                        guard i + 2 <= b.count, b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u") else { throw err("unpaired surrogate") }
                        i += 2
                        let lo = try hex4()
                        guard lo >= 0xDC00 && lo < 0xE000 else { throw err("invalid surrogate pair") }
                        u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)
                    } else if u >= 0xDC00 && u < 0xE000 {
                        throw err("unpaired surrogate")
                    }
                    guard let scalar = Unicode.Scalar(u) else { throw err("invalid code point") }
                    out.append(contentsOf: Array(String(Character(scalar)).utf8))
                default: throw err("invalid escape")
                }
                runStart = i
                continue
            }
            i += 1
        }
        guard let s = String(validating: out, as: UTF8.self) else { throw err("string is not valid UTF-8") }
        return s
    }
}

/// Serialises JSON. `indent: nil` gives the compact form; `indent: 2` matches Python's
/// `json.dumps(obj, indent=2)` (as transformers writes config files), with non-ASCII escaped.
public enum JSONWriter {
    public static func string(_ v: JSONValue, indent: Int? = nil, asciiOnly: Bool = true) -> String {
        var out = ""
        write(v, into: &out, indent: indent, level: 0, ascii: asciiOnly)
        return out
    }

    private static func write(_ v: JSONValue, into out: inout String, indent: Int?, level: Int, ascii: Bool) {
        switch v {
        case .null: out += "null"
        case let .bool(b): out += b ? "true" : "false"
        case let .number(s): out += s
        case let .string(s): writeString(s, into: &out, ascii: ascii)
        case let .array(items):
            if items.isEmpty { out += "[]"; return }
            out += "["
            for (k, item) in items.enumerated() {
                if k > 0 { out += indent == nil ? "," : "," }
                newline(&out, indent, level + 1)
                write(item, into: &out, indent: indent, level: level + 1, ascii: ascii)
            }
            newline(&out, indent, level)
            out += "]"
        case let .object(entries):
            if entries.isEmpty { out += "{}"; return }
            out += "{"
            for (k, (key, item)) in entries.enumerated() {
                if k > 0 { out += "," }
                newline(&out, indent, level + 1)
                writeString(key, into: &out, ascii: ascii)
                out += indent == nil ? ":" : ": "
                write(item, into: &out, indent: indent, level: level + 1, ascii: ascii)
            }
            newline(&out, indent, level)
            out += "}"
        }
    }

    private static func newline(_ out: inout String, _ indent: Int?, _ level: Int) {
        guard let indent else { return }
        out += "\n"
        out += String(repeating: " ", count: indent * level)
    }

    /// `s` as a JSON string literal (Python's `json.dumps` escapes: \" \\ \n \r \t \b \f, other
    /// controls — and with `ascii` everything above 0x7E — as \uXXXX, astral code points as pairs).
    public static func writeString(_ s: String, into out: inout String, ascii: Bool) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 || (ascii && u.value > 0x7E) {
                    if u.value > 0xFFFF {
                        let v = u.value - 0x10000
                        out += hex(0xD800 + (v >> 10)) + hex(0xDC00 + (v & 0x3FF))
                    } else {
                        out += hex(u.value)
                    }
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        out += "\""
    }

    private static func hex(_ v: UInt32) -> String {
        let h = String(v, radix: 16)
        return "\\u" + String(repeating: "0", count: 4 - h.count) + h
    }
}
