/// A token added on top of the model's vocabulary (special tokens such as `<s>`, `<image>`).
struct AddedToken: Sendable, Equatable {
    var content: [UInt8]
    var id: Int
    var singleWord = false
    var lstrip = false
    var rstrip = false
    var normalized = false
    var special = false
}

/// A byte trie over token contents, searched leftmost-longest (daachorse's `LeftmostLongest`).
struct TokenTrie: Sendable {
    private var children: [[UInt8: Int32]] = [[:]]
    private var terminal: [Int32] = [-1]  // index into the token list, or -1

    var isEmpty: Bool { children.count == 1 }

    mutating func insert(_ bytes: [UInt8], value: Int) {
        var node = 0
        for b in bytes {
            if let nx = children[node][b] {
                node = Int(nx)
            } else {
                children.append([:]); terminal.append(-1)
                children[node][b] = Int32(children.count - 1)
                node = children.count - 1
            }
        }
        terminal[node] = Int32(value)
    }

    /// Non-overlapping matches: at each position the longest token starting there, the search
    /// resuming after it.
    func matches(_ s: [UInt8]) -> [(range: Range<Int>, value: Int)] {
        var out: [(Range<Int>, Int)] = []
        var i = 0
        while i < s.count {
            var node = 0
            var best: (Int, Int)? = nil
            var j = i
            while j < s.count, let nx = children[node][s[j]] {
                node = Int(nx)
                j += 1
                if terminal[node] >= 0 { best = (j, Int(terminal[node])) }
            }
            if let (end, v) = best {
                out.append((i..<end, v))
                i = end
            } else {
                i += 1
            }
        }
        return out
    }
}

/// Added tokens are found in the text before the model sees it (huggingface/tokenizers'
/// `AddedVocabulary`): tokens with `normalized: false` in the raw text, then those with
/// `normalized: true` in the normalized remainder, honouring `single_word`, `lstrip` and `rstrip`.
struct AddedVocabulary: Sendable {
    let tokens: [AddedToken]
    /// content -> id
    let byContent: [[UInt8]: Int]
    /// id -> token index
    let byId: [Int: Int]
    /// The normalized form of `normalized: true` tokens whose form differs from the content
    /// (matched in normalized text, and what decoding returns for them).
    let normalizedForm: [Int: [UInt8]]
    let specialContents: Set<[UInt8]>
    private let rawTrie: TokenTrie
    private let normalizedTrie: TokenTrie

    init(_ tokens: [AddedToken], normalizer: (any Normalizer)?) {
        self.tokens = tokens
        var byContent: [[UInt8]: Int] = [:]
        var byId: [Int: Int] = [:]
        var forms: [Int: [UInt8]] = [:]
        var special = Set<[UInt8]>()
        var raw = TokenTrie(), norm = TokenTrie()
        for (i, t) in tokens.enumerated() {
            byContent[t.content] = t.id
            byId[t.id] = i
            if t.special { special.insert(t.content) }
            if t.normalized {
                var pattern = t.content
                if let n = normalizer {
                    pattern = n.normalize(t.content)
                    if pattern != t.content { forms[t.id] = pattern }
                }
                norm.insert(pattern, value: i)
            } else {
                raw.insert(t.content, value: i)
            }
        }
        self.byContent = byContent
        self.byId = byId
        self.normalizedForm = forms
        self.specialContents = special
        self.rawTrie = raw
        self.normalizedTrie = norm
    }

    /// The string decoding uses for an added token's id.
    func decodingForm(_ id: Int) -> [UInt8]? {
        guard let i = byId[id] else { return nil }
        return normalizedForm[id] ?? tokens[i].content
    }

    /// The pieces of `text`: added tokens (with their ids) and normalized text between them.
    func extractAndNormalize(_ text: [UInt8], normalizer: (any Normalizer)?) -> [Piece] {
        var pieces: [Piece] = []
        for p in split(Piece(text, originalStart: 0), rawTrie) where !p.bytes.isEmpty { pieces.append(p) }
        var out: [Piece] = []
        out.reserveCapacity(pieces.count)
        for var p in pieces {
            if p.tokenId != nil { out.append(p); continue }
            if let n = normalizer { p.bytes = n.normalize(p.bytes) }
            for q in split(p, normalizedTrie) where !q.bytes.isEmpty { out.append(q) }
        }
        return out
    }

    /// tokenizers' `find_matches` + `split_with_indices`.
    private func split(_ piece: Piece, _ trie: TokenTrie) -> [Piece] {
        let s = piece.bytes
        if s.isEmpty || trie.isEmpty { return [piece] }
        var out: [Piece] = []
        var startOffset = 0
        func emit(_ a: Int, _ b: Int, _ id: Int?) {
            out.append(Piece(Array(s[a..<b]), originalStart: piece.originalStart + a, tokenId: id))
        }
        for (range, index) in trie.matches(s) {
            var start = range.lowerBound, stop = range.upperBound
            let t = tokens[index]
            if t.singleWord {
                let startSpace = start == 0 || !endsWithWordCharacter(s, start)
                let stopSpace = stop == s.count || !startsWithWordCharacter(s, stop)
                if !startSpace || !stopSpace { continue }
            }
            if t.lstrip { start = max(leadingSpaceStart(s, before: start), startOffset) }
            if t.rstrip { stop = trailingSpaceEnd(s, from: stop) }
            if startOffset < start { emit(startOffset, start, nil) }
            emit(start, stop, t.id)
            startOffset = stop
        }
        if startOffset != s.count { emit(startOffset, s.count, nil) }
        return out
    }
}

/// Whether the scalar that ends at `end` is a `\w` character.
private func endsWithWordCharacter(_ s: [UInt8], _ end: Int) -> Bool {
    var i = end - 1
    while i > 0 && s[i] & 0xC0 == 0x80 { i -= 1 }
    return s.withUnsafeBufferPointer { UnicodeClass.isWordCharacter(decodeScalar($0, i).0) }
}

private func startsWithWordCharacter(_ s: [UInt8], _ start: Int) -> Bool {
    s.withUnsafeBufferPointer { UnicodeClass.isWordCharacter(decodeScalar($0, start).0) }
}

/// Start of the White_Space run that ends at `before` (`\s*$` on the prefix).
private func leadingSpaceStart(_ s: [UInt8], before: Int) -> Int {
    var i = before
    while i > 0 {
        var j = i - 1
        while j > 0 && s[j] & 0xC0 == 0x80 { j -= 1 }
        let c = s.withUnsafeBufferPointer { decodeScalar($0, j).0 }
        if !UnicodeClass.isWhitespace(c) { break }
        i = j
    }
    return i
}

/// End of the White_Space run that starts at `from` (`^\s*` on the suffix).
private func trailingSpaceEnd(_ s: [UInt8], from: Int) -> Int {
    var i = from
    s.withUnsafeBufferPointer { b in
        while i < b.count {
            let (c, l) = decodeScalar(b, i)
            if !UnicodeClass.isWhitespace(c) { break }
            i += l
        }
    }
    return i
}
