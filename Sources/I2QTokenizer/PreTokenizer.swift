import I2QCore

/// A pre-tokenizer splits the pieces that are not added tokens into words for the model, and may
/// rewrite them (huggingface/tokenizers' `PreTokenizer`). Pieces that carry a token pass through.
protocol PreTokenizer: Sendable {
    /// Splits one piece (never an added token). Empty results are dropped by the caller.
    func split(_ piece: Piece) -> [Piece]
}

extension PreTokenizer {
    func preTokenize(_ pieces: [Piece]) -> [Piece] {
        var out: [Piece] = []
        out.reserveCapacity(pieces.count * 4)
        for p in pieces {
            if p.tokenId != nil { out.append(p); continue }
            for q in split(p) where !q.bytes.isEmpty { out.append(q) }
        }
        return out
    }
}

struct SequencePreTokenizer: PreTokenizer {
    let preTokenizers: [any PreTokenizer]
    func split(_ piece: Piece) -> [Piece] {
        var pieces = [piece]
        for p in preTokenizers { pieces = p.preTokenize(pieces) }
        return pieces
    }
}

enum PrependScheme: String, Sendable { case first, never, always }

/// SentencePiece's metaspace: spaces become "▁", a "▁" is prepended (always, or only to the piece
/// that starts the text: `first`, the `legacy: false` behaviour), optionally split before each "▁".
struct MetaspacePreTokenizer: PreTokenizer {
    let replacement: [UInt8]
    let replacementScalar: UInt32
    let prependScheme: PrependScheme
    let splitOnReplacement: Bool

    init(replacement: Unicode.Scalar, prependScheme: PrependScheme, split: Bool) {
        self.replacement = Array(String(replacement).utf8)
        self.replacementScalar = replacement.value
        self.prependScheme = prependScheme
        self.splitOnReplacement = split
    }

    func split(_ piece: Piece) -> [Piece] {
        var p = piece
        p.bytes = replaceAll(p.bytes, [0x20], replacement)
        let startsWithReplacement = p.bytes.starts(with: replacement)
        switch prependScheme {
        case .always: if !startsWithReplacement { p.bytes = replacement + p.bytes }
        case .first: if !startsWithReplacement && p.originalStart == 0 { p.bytes = replacement + p.bytes }
        case .never: break
        }
        if !splitOnReplacement { return [p] }
        let r = replacementScalar
        return I2QTokenizer.split(p, segments(p.bytes, where: { $0 == r }), .mergedWithNext)
    }
}

/// GPT-2's byte-level pre-tokenizer: optional prefix space, the GPT-2 regex split, then every byte
/// mapped to its printable character.
struct ByteLevelPreTokenizer: PreTokenizer {
    let addPrefixSpace: Bool
    let useRegex: Bool

    func split(_ piece: Piece) -> [Piece] {
        var p = piece
        if addPrefixSpace && p.bytes.first != 0x20 { p.bytes.insert(0x20, at: 0) }
        var parts = useRegex ? I2QTokenizer.split(p, segments(count: p.bytes.count, matches: GPT2Pattern.matches(p.bytes)), .isolated) : [p]
        let table = ByteLevelTables.shared
        for i in parts.indices { parts[i].bytes = table.map(parts[i].bytes) }
        return parts
    }
}

/// Splits out numbers (Unicode N), each digit alone or runs of them.
struct DigitsPreTokenizer: PreTokenizer {
    let individualDigits: Bool
    func split(_ piece: Piece) -> [Piece] {
        I2QTokenizer.split(piece, segments(piece.bytes, where: UnicodeClass.isNumber), individualDigits ? .isolated : .contiguous)
    }
}

/// Splits on White_Space, dropping it.
struct WhitespaceSplitPreTokenizer: PreTokenizer {
    func split(_ piece: Piece) -> [Piece] {
        I2QTokenizer.split(piece, segments(piece.bytes, where: UnicodeClass.isWhitespace), .removed)
    }
}

/// Splits on a literal string or on GPT-2's regex (the one regex implemented by hand).
struct SplitPreTokenizer: PreTokenizer {
    enum Pattern: Sendable { case literal([UInt8]), gpt2 }
    let pattern: Pattern
    let behavior: SplitBehavior
    let invert: Bool

    func split(_ piece: Piece) -> [Piece] {
        var segs: [Segment]
        switch pattern {
        case let .literal(s):
            if s.isEmpty {
                segs = [Segment(start: 0, end: piece.bytes.count, isMatch: false)]
            } else {
                segs = segments(count: piece.bytes.count, matches: occurrences(of: s, in: piece.bytes))
            }
        case .gpt2:
            segs = segments(count: piece.bytes.count, matches: GPT2Pattern.matches(piece.bytes))
        }
        if invert { for i in segs.indices { segs[i].isMatch.toggle() } }
        return I2QTokenizer.split(piece, segs, behavior)
    }
}

func makePreTokenizer(_ v: JSONValue, _ path: String, _ r: JSONReader) throws -> any PreTokenizer {
    let type = try r.type(v, path)
    switch type {
    case "Sequence":
        let items = try r.array(try r.required(v, "pretokenizers", path), r.join(path, "pretokenizers"))
        return SequencePreTokenizer(preTokenizers: try items.enumerated().map {
            try makePreTokenizer($0.element, "\(path).pretokenizers[\($0.offset)]", r)
        })
    case "Metaspace":
        let replacement = try r.character(v, "replacement", path)
        var scheme = PrependScheme.always
        if let s = try r.optionalString(v, "prepend_scheme", path) {
            guard let p = PrependScheme(rawValue: s) else {
                throw TokenizerError.invalidField(file: r.file, path: r.join(path, "prepend_scheme"), expected: "first, never or always")
            }
            scheme = p
        }
        if try r.optionalBool(v, "add_prefix_space", path) == false {
            guard scheme == .never || r.field(v, "prepend_scheme") == nil else {
                throw TokenizerError.invalidField(file: r.file, path: r.join(path, "add_prefix_space"), expected: "a value matching prepend_scheme")
            }
            scheme = .never
        }
        return MetaspacePreTokenizer(replacement: replacement, prependScheme: scheme, split: try r.optionalBool(v, "split", path) ?? true)
    case "ByteLevel":
        return ByteLevelPreTokenizer(addPrefixSpace: try r.optionalBool(v, "add_prefix_space", path) ?? true,
                                     useRegex: try r.optionalBool(v, "use_regex", path) ?? true)
    case "Digits":
        return DigitsPreTokenizer(individualDigits: try r.optionalBool(v, "individual_digits", path) ?? false)
    case "WhitespaceSplit":
        return WhitespaceSplitPreTokenizer()
    case "Split":
        let patternValue = try r.required(v, "pattern", path)
        let pattern: SplitPreTokenizer.Pattern
        if let s = r.field(patternValue, "String") {
            pattern = .literal(Array(try r.string(s, r.join(path, "pattern.String")).utf8))
        } else if let re = r.field(patternValue, "Regex") {
            let source = try r.string(re, r.join(path, "pattern.Regex"))
            guard source == GPT2Pattern.source else {
                throw TokenizerError.unsupported(file: r.file, path: r.join(path, "pattern.Regex"),
                                                 what: "Split regex \(debugQuoted(source)) (only GPT-2's pattern is implemented)")
            }
            pattern = .gpt2
        } else {
            throw TokenizerError.invalidField(file: r.file, path: r.join(path, "pattern"), expected: "{\"String\": ...} or {\"Regex\": ...}")
        }
        let b = try r.string(try r.required(v, "behavior", path), r.join(path, "behavior"))
        guard let behavior = SplitBehavior(rawValue: b) else {
            throw TokenizerError.invalidField(file: r.file, path: r.join(path, "behavior"), expected: "Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous")
        }
        return SplitPreTokenizer(pattern: pattern, behavior: behavior, invert: try r.optionalBool(v, "invert", path) ?? false)
    default:
        throw TokenizerError.unsupported(file: r.file, path: r.join(path, "type"), what: "pre-tokenizer type \(debugQuoted(type))")
    }
}
