import I2QCore

/// Everything that can go wrong while reading a tokenizer. Each message names the file and the
/// part of it (a JSON path such as `pre_tokenizer.pretokenizers[1].type`) that is at fault.
public enum TokenizerError: I2QError, Equatable {
    /// The file could not be read.
    case unreadable(file: String, reason: String)
    /// The file is not valid JSON (the parser's message).
    case invalidJSON(file: String, message: String)
    /// A field that must be there is missing.
    case missingField(file: String, path: String)
    /// A field has the wrong JSON type or an invalid value.
    case invalidField(file: String, path: String, expected: String)
    /// A component type (normalizer, pre-tokenizer, model, post-processor, decoder) or an option
    /// of one that this tokenizer does not implement.
    case unsupported(file: String, path: String, what: String)
    /// A merge names a token that is not in the vocabulary.
    case mergeTokenNotInVocabulary(file: String, index: Int, token: String)
    /// A token named by the post-processor or the config is unknown.
    case unknownToken(file: String, path: String, token: String)

    public var description: String {
        switch self {
        case let .unreadable(f, r): return "\(f): cannot read the tokenizer file: \(r)"
        case let .invalidJSON(f, m): return "\(f): not a valid tokenizer file: \(m)"
        case let .missingField(f, p): return "\(f): missing field \(p)"
        case let .invalidField(f, p, e): return "\(f): field \(p) is invalid: expected \(e)"
        case let .unsupported(f, p, w): return "\(f): \(p): unsupported \(w)"
        case let .mergeTokenNotInVocabulary(f, i, t):
            return "\(f): model.merges[\(i)]: token \(debugQuoted(t)) is not in the vocabulary"
        case let .unknownToken(f, p, t): return "\(f): \(p): token \(debugQuoted(t)) is not in the vocabulary"
        }
    }
}

func debugQuoted(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 || u.value == 0x7F { out += "\\u{\(String(u.value, radix: 16))}" } else { out.unicodeScalars.append(u) }
        }
    }
    return out + "\""
}

/// Typed access to one JSON file's values, with errors that name the file and the path.
struct JSONReader {
    let file: String

    func object(_ v: JSONValue, _ path: String) throws -> [(String, JSONValue)] {
        guard let e = v.objectEntries else { throw TokenizerError.invalidField(file: file, path: path, expected: "an object") }
        return e
    }

    func array(_ v: JSONValue, _ path: String) throws -> [JSONValue] {
        guard let a = v.arrayValue else { throw TokenizerError.invalidField(file: file, path: path, expected: "an array") }
        return a
    }

    func string(_ v: JSONValue, _ path: String) throws -> String {
        guard let s = v.stringValue else { throw TokenizerError.invalidField(file: file, path: path, expected: "a string") }
        return s
    }

    func int(_ v: JSONValue, _ path: String) throws -> Int {
        guard let i = v.intValue else { throw TokenizerError.invalidField(file: file, path: path, expected: "an integer") }
        return i
    }

    func bool(_ v: JSONValue, _ path: String) throws -> Bool {
        guard let b = v.boolValue else { throw TokenizerError.invalidField(file: file, path: path, expected: "true or false") }
        return b
    }

    /// The value of `key` in `obj`, or nil when absent or null.
    func field(_ obj: JSONValue, _ key: String) -> JSONValue? {
        guard let v = obj[key] else { return nil }
        if case .null = v { return nil }
        return v
    }

    func required(_ obj: JSONValue, _ key: String, _ path: String) throws -> JSONValue {
        guard let v = field(obj, key) else { throw TokenizerError.missingField(file: file, path: join(path, key)) }
        return v
    }

    func optionalBool(_ obj: JSONValue, _ key: String, _ path: String) throws -> Bool? {
        guard let v = field(obj, key) else { return nil }
        return try bool(v, join(path, key))
    }

    func optionalString(_ obj: JSONValue, _ key: String, _ path: String) throws -> String? {
        guard let v = field(obj, key) else { return nil }
        return try string(v, join(path, key))
    }

    func optionalInt(_ obj: JSONValue, _ key: String, _ path: String) throws -> Int? {
        guard let v = field(obj, key) else { return nil }
        return try int(v, join(path, key))
    }

    /// The `type` field of a component.
    func type(_ obj: JSONValue, _ path: String) throws -> String {
        guard obj.objectEntries != nil else { throw TokenizerError.invalidField(file: file, path: path, expected: "an object") }
        return try string(try required(obj, "type", path), join(path, "type"))
    }

    /// A single character field (Metaspace's replacement, Strip's content).
    func character(_ obj: JSONValue, _ key: String, _ path: String) throws -> Unicode.Scalar {
        let s = try string(try required(obj, key, path), join(path, key))
        let scalars = Array(s.unicodeScalars)
        guard scalars.count == 1 else { throw TokenizerError.invalidField(file: file, path: join(path, key), expected: "a single character") }
        return scalars[0]
    }

    func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
}
