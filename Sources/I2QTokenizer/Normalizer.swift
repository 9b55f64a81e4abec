import Foundation
import I2QCore

/// A normalizer rewrites the text of every piece that is not an added token
/// (huggingface/tokenizers' `Normalizer`).
protocol Normalizer: Sendable {
    func normalize(_ s: [UInt8]) -> [UInt8]
}

struct SequenceNormalizer: Normalizer {
    let normalizers: [any Normalizer]
    func normalize(_ s: [UInt8]) -> [UInt8] { normalizers.reduce(s) { $1.normalize($0) } }
}

/// Prepends a string to non-empty text (the legacy SentencePiece "▁" prefix).
struct PrependNormalizer: Normalizer {
    let prepend: [UInt8]
    func normalize(_ s: [UInt8]) -> [UInt8] { s.isEmpty ? s : prepend + s }
}

/// Replaces every occurrence of a literal string.
struct ReplaceNormalizer: Normalizer {
    let pattern: [UInt8]
    let content: [UInt8]
    func normalize(_ s: [UInt8]) -> [UInt8] { replaceAll(s, pattern, content) }
}

func replaceAll(_ s: [UInt8], _ pattern: [UInt8], _ content: [UInt8]) -> [UInt8] {
    let found = occurrences(of: pattern, in: s)
    if found.isEmpty { return s }
    var out: [UInt8] = []
    out.reserveCapacity(s.count + found.count * max(0, content.count - pattern.count))
    var last = 0
    for r in found {
        out.append(contentsOf: s[last..<r.lowerBound])
        out.append(contentsOf: content)
        last = r.upperBound
    }
    out.append(contentsOf: s[last...])
    return out
}

/// Lowercases scalar by scalar (Rust's `char::to_lowercase`, no context such as final sigma).
struct LowercaseNormalizer: Normalizer {
    func normalize(_ s: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(s.count)
        for c in scalars(s) {
            if c < 0x80 {
                out.append(c >= 0x41 && c <= 0x5A ? UInt8(c + 32) : UInt8(c))
            } else if let u = Unicode.Scalar(c) {
                out.append(contentsOf: Array(u.properties.lowercaseMapping.utf8))
            }
        }
        return out
    }
}

/// Strips White_Space characters from the left and/or right.
struct StripNormalizer: Normalizer {
    let left: Bool
    let right: Bool
    func normalize(_ s: [UInt8]) -> [UInt8] {
        let cs = scalars(s)
        var a = 0, b = cs.count
        if left { while a < b, UnicodeClass.isWhitespace(cs[a]) { a += 1 } }
        if right { while b > a, UnicodeClass.isWhitespace(cs[b - 1]) { b -= 1 } }
        if a == 0 && b == cs.count { return s }
        var out: [UInt8] = []
        for c in cs[a..<b] { appendUTF8(c, to: &out) }
        return out
    }
}

/// Unicode normalization forms.
struct UnicodeNormalizer: Normalizer {
    enum Form: String { case nfc = "NFC", nfd = "NFD", nfkc = "NFKC", nfkd = "NFKD" }
    let form: Form
    func normalize(_ s: [UInt8]) -> [UInt8] {
        let str = String(decoding: s, as: UTF8.self)
        let r: String
        switch form {
        case .nfc: r = str.precomposedStringWithCanonicalMapping
        case .nfd: r = str.decomposedStringWithCanonicalMapping
        case .nfkc: r = str.precomposedStringWithCompatibilityMapping
        case .nfkd: r = str.decomposedStringWithCompatibilityMapping
        }
        return Array(r.utf8)
    }
}

/// Maps every byte to its GPT-2 byte-level character.
struct ByteLevelNormalizer: Normalizer {
    func normalize(_ s: [UInt8]) -> [UInt8] { ByteLevelTables.shared.map(s) }
}

func makeNormalizer(_ v: JSONValue, _ path: String, _ r: JSONReader) throws -> any Normalizer {
    let type = try r.type(v, path)
    switch type {
    case "Sequence":
        let items = try r.array(try r.required(v, "normalizers", path), r.join(path, "normalizers"))
        return SequenceNormalizer(normalizers: try items.enumerated().map {
            try makeNormalizer($0.element, "\(path).normalizers[\($0.offset)]", r)
        })
    case "Prepend":
        return PrependNormalizer(prepend: Array(try r.string(try r.required(v, "prepend", path), r.join(path, "prepend")).utf8))
    case "Replace":
        let (pattern, content) = try replacePattern(v, path, r)
        return ReplaceNormalizer(pattern: pattern, content: content)
    case "Lowercase":
        return LowercaseNormalizer()
    case "Strip":
        return StripNormalizer(left: try r.optionalBool(v, "strip_left", path) ?? true,
                               right: try r.optionalBool(v, "strip_right", path) ?? true)
    case "NFC", "NFD", "NFKC", "NFKD":
        return UnicodeNormalizer(form: UnicodeNormalizer.Form(rawValue: type)!)
    case "ByteLevel":
        return ByteLevelNormalizer()
    default:
        throw TokenizerError.unsupported(file: r.file, path: r.join(path, "type"), what: "normalizer type \(debugQuoted(type))")
    }
}

/// The `{"String": ...}` pattern and `content` of a Replace normalizer or decoder.
func replacePattern(_ v: JSONValue, _ path: String, _ r: JSONReader) throws -> ([UInt8], [UInt8]) {
    let pattern = try r.required(v, "pattern", path)
    let content = try r.string(try r.required(v, "content", path), r.join(path, "content"))
    if let s = r.field(pattern, "String") {
        return (Array(try r.string(s, r.join(path, "pattern.String")).utf8), Array(content.utf8))
    }
    if r.field(pattern, "Regex") != nil {
        throw TokenizerError.unsupported(file: r.file, path: r.join(path, "pattern"), what: "Replace with a Regex pattern (only String patterns are implemented)")
    }
    throw TokenizerError.invalidField(file: r.file, path: r.join(path, "pattern"), expected: "{\"String\": ...}")
}
