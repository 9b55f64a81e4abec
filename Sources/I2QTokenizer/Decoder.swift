import I2QCore

/// A decoder turns the tokens of ids back into text (huggingface/tokenizers' `Decoder`); the
/// result of the chain is concatenated. Tokens are UTF-8 bytes; the chain may produce bytes that
/// are not valid UTF-8 (ByteLevel), which the final conversion repairs with U+FFFD.
protocol TokenDecoder: Sendable {
    func decodeChain(_ tokens: [[UInt8]]) -> [[UInt8]]
}

struct SequenceDecoder: TokenDecoder {
    let decoders: [any TokenDecoder]
    func decodeChain(_ tokens: [[UInt8]]) -> [[UInt8]] { decoders.reduce(tokens) { $1.decodeChain($0) } }
}

/// Replaces a literal string in every token ("▁" -> " ").
struct ReplaceDecoder: TokenDecoder {
    let pattern: [UInt8]
    let content: [UInt8]
    func decodeChain(_ tokens: [[UInt8]]) -> [[UInt8]] { tokens.map { replaceAll($0, pattern, content) } }
}

/// Runs of `<0xNN>` tokens become the UTF-8 text they spell, or one U+FFFD per byte when they
/// are not valid UTF-8.
struct ByteFallbackDecoder: TokenDecoder {
    static let replacement: [UInt8] = [0xEF, 0xBF, 0xBD]

    /// The byte of a `<0xNN>` token (Rust's `u8::from_str_radix` on the two characters, which
    /// also accepts a leading `+`).
    static func byteValue(_ t: [UInt8]) -> UInt8? {
        guard t.count == 6, t[0] == 0x3C, t[1] == 0x30, t[2] == 0x78, t[5] == 0x3E else { return nil }
        func hex(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x41...0x46: return c - 0x41 + 10
            case 0x61...0x66: return c - 0x61 + 10
            default: return nil
            }
        }
        if t[3] == 0x2B { return hex(t[4]) }  // "+N"
        guard let h = hex(t[3]), let l = hex(t[4]) else { return nil }
        return h << 4 | l
    }

    func decodeChain(_ tokens: [[UInt8]]) -> [[UInt8]] {
        var out: [[UInt8]] = []
        out.reserveCapacity(tokens.count)
        var pending: [UInt8] = []
        func flush() {
            if pending.isEmpty { return }
            if String(validating: pending, as: UTF8.self) != nil {
                out.append(pending)
            } else {
                for _ in pending { out.append(Self.replacement) }
            }
            pending.removeAll()
        }
        for t in tokens {
            if let b = Self.byteValue(t) { pending.append(b); continue }
            flush()
            out.append(t)
        }
        flush()
        return out
    }
}

/// Joins all tokens into one.
struct FuseDecoder: TokenDecoder {
    func decodeChain(_ tokens: [[UInt8]]) -> [[UInt8]] { [Array(tokens.joined())] }
}

/// Removes up to `start` leading and `stop` trailing `content` characters from every token.
struct StripDecoder: TokenDecoder {
    let content: UInt32
    let start: Int
    let stop: Int
    func decodeChain(_ tokens: [[UInt8]]) -> [[UInt8]] {
        tokens.map { t in
            let cs = scalars(t)
            var a = 0
            for i in 0..<min(start, cs.count) { if cs[i] == content { a = i + 1 } else { break } }
            var b = cs.count
            for i in 0..<stop {
                let index = cs.count - i - 1
                if index < 0 { break }
                if cs[index] == content { b = index } else { break }
            }
            if a == 0 && b == cs.count { return t }
            var out: [UInt8] = []
            if a < b { for c in cs[a..<b] { appendUTF8(c, to: &out) } }
            return out
        }
    }
}

/// GPT-2 byte-level characters back to bytes, all tokens joined.
struct ByteLevelDecoder: TokenDecoder {
    func decodeChain(_ tokens: [[UInt8]]) -> [[UInt8]] {
        var out: [UInt8] = []
        let table = ByteLevelTables.shared
        for t in tokens { out += table.unmap(t) ?? t }
        return [out]
    }
}

/// Metaspace: "▁" becomes a space, except in the first token where it is removed (unless the
/// prepend scheme is `never`).
struct MetaspaceDecoder: TokenDecoder {
    let replacement: UInt32
    let prependScheme: PrependScheme
    func decodeChain(_ tokens: [[UInt8]]) -> [[UInt8]] {
        tokens.enumerated().map { i, t in
            var out: [UInt8] = []
            out.reserveCapacity(t.count)
            for c in scalars(t) {
                if c == replacement {
                    if i == 0 && prependScheme != .never { continue }
                    out.append(0x20)
                } else {
                    appendUTF8(c, to: &out)
                }
            }
            return out
        }
    }
}

/// Classic BPE end-of-word suffix: replaced by a space, by nothing in the last token.
struct BPESuffixDecoder: TokenDecoder {
    let suffix: [UInt8]
    func decodeChain(_ tokens: [[UInt8]]) -> [[UInt8]] {
        tokens.enumerated().map { i, t in replaceAll(t, suffix, i == tokens.count - 1 ? [] : [0x20]) }
    }
}

func makeDecoder(_ v: JSONValue, _ path: String, _ r: JSONReader) throws -> any TokenDecoder {
    let type = try r.type(v, path)
    switch type {
    case "Sequence":
        let items = try r.array(try r.required(v, "decoders", path), r.join(path, "decoders"))
        return SequenceDecoder(decoders: try items.enumerated().map {
            try makeDecoder($0.element, "\(path).decoders[\($0.offset)]", r)
        })
    case "Replace":
        let (pattern, content) = try replacePattern(v, path, r)
        return ReplaceDecoder(pattern: pattern, content: content)
    case "ByteFallback":
        return ByteFallbackDecoder()
    case "Fuse":
        return FuseDecoder()
    case "Strip":
        let start = try r.optionalInt(v, "start", path) ?? 0
        let stop = try r.optionalInt(v, "stop", path) ?? 0
        guard start >= 0, stop >= 0 else { throw TokenizerError.invalidField(file: r.file, path: path, expected: "non-negative start and stop") }
        return StripDecoder(content: try r.character(v, "content", path).value, start: start, stop: stop)
    case "ByteLevel":
        return ByteLevelDecoder()
    case "Metaspace":
        let replacement = try r.character(v, "replacement", path)
        var scheme = PrependScheme.always
        if let s = try r.optionalString(v, "prepend_scheme", path) {
            guard let p = PrependScheme(rawValue: s) else {
                throw TokenizerError.invalidField(file: r.file, path: r.join(path, "prepend_scheme"), expected: "first, never or always")
            }
            scheme = p
        }
        if try r.optionalBool(v, "add_prefix_space", path) == false { scheme = .never }
        return MetaspaceDecoder(replacement: replacement.value, prependScheme: scheme)
    case "BPEDecoder":
        return BPESuffixDecoder(suffix: Array((try r.optionalString(v, "suffix", path) ?? "</w>").utf8))
    default:
        throw TokenizerError.unsupported(file: r.file, path: r.join(path, "type"), what: "decoder type \(debugQuoted(type))")
    }
}
