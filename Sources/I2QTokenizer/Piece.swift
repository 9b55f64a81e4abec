/// One split of the input while it goes through the pipeline (huggingface/tokenizers' `Split`
/// of a `PreTokenizedString`): the current (normalized) UTF-8 bytes, where it starts in the
/// original text, and the id when an added token already claimed it.
struct Piece {
    var bytes: [UInt8]
    /// Byte offset of the piece's start in the original text (Metaspace's `prepend_scheme: first`
    /// prepends only to the piece that starts the text).
    var originalStart: Int
    /// Set when the piece is an added token; such pieces skip every later stage.
    var tokenId: Int?

    init(_ bytes: [UInt8], originalStart: Int, tokenId: Int? = nil) {
        self.bytes = bytes
        self.originalStart = originalStart
        self.tokenId = tokenId
    }
}

/// How a split keeps its delimiters (huggingface/tokenizers' `SplitDelimiterBehavior`).
enum SplitBehavior: String, Sendable {
    case removed = "Removed"
    case isolated = "Isolated"
    case mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext"
    case contiguous = "Contiguous"
}

/// A segment of a string found by a pattern: a match or the text between matches.
struct Segment {
    var start: Int
    var end: Int
    var isMatch: Bool
}

/// Segments covering `count` bytes from sorted, non-overlapping match ranges
/// (tokenizers' `Pattern::find_matches`: an empty input gives one empty non-match).
func segments(count: Int, matches: [Range<Int>]) -> [Segment] {
    if count == 0 { return [Segment(start: 0, end: 0, isMatch: false)] }
    var out: [Segment] = []
    out.reserveCapacity(matches.count * 2 + 1)
    var prev = 0
    for m in matches {
        if prev != m.lowerBound { out.append(Segment(start: prev, end: m.lowerBound, isMatch: false)) }
        out.append(Segment(start: m.lowerBound, end: m.upperBound, isMatch: true))
        prev = m.upperBound
    }
    if prev != count { out.append(Segment(start: prev, end: count, isMatch: false)) }
    return out
}

/// Segments for a per-scalar predicate: every matching scalar is its own match
/// (tokenizers' `Pattern for Fn(char) -> bool`).
func segments(_ bytes: [UInt8], where predicate: (UInt32) -> Bool) -> [Segment] {
    if bytes.isEmpty { return [Segment(start: 0, end: 0, isMatch: false)] }
    var out: [Segment] = []
    bytes.withUnsafeBufferPointer { b in
        var last = 0
        var i = 0
        while i < b.count {
            let (c, l) = decodeScalar(b, i)
            if predicate(c) {
                if last < i { out.append(Segment(start: last, end: i, isMatch: false)) }
                out.append(Segment(start: i, end: i + l, isMatch: true))
                last = i + l
            }
            i += l
        }
        if b.count > last { out.append(Segment(start: last, end: b.count, isMatch: false)) }
    }
    return out
}

/// Byte ranges of every non-overlapping occurrence of `needle`, leftmost first.
func occurrences(of needle: [UInt8], in hay: [UInt8]) -> [Range<Int>] {
    guard !needle.isEmpty, hay.count >= needle.count else { return [] }
    var out: [Range<Int>] = []
    let first = needle[0], n = needle.count
    var i = 0
    while i + n <= hay.count {
        if hay[i] == first {
            var j = 1
            while j < n && hay[i + j] == needle[j] { j += 1 }
            if j == n { out.append(i..<(i + n)); i += n; continue }
        }
        i += 1
    }
    return out
}

/// Splits `piece` at `segs` following `behavior` (tokenizers' `NormalizedString::split`), dropping
/// empty results (tokenizers' `PreTokenizedString::split` does).
func split(_ piece: Piece, _ segs: [Segment], _ behavior: SplitBehavior) -> [Piece] {
    var kept: [(Int, Int)] = []
    kept.reserveCapacity(segs.count)
    switch behavior {
    case .isolated:
        for s in segs { kept.append((s.start, s.end)) }
    case .removed:
        for s in segs where !s.isMatch { kept.append((s.start, s.end)) }
    case .contiguous:
        var previous = false
        for s in segs {
            if s.isMatch == previous, !kept.isEmpty { kept[kept.count - 1].1 = s.end } else { kept.append((s.start, s.end)) }
            previous = s.isMatch
        }
    case .mergedWithPrevious:
        var previous = false
        for s in segs {
            if s.isMatch && !previous, !kept.isEmpty { kept[kept.count - 1].1 = s.end } else { kept.append((s.start, s.end)) }
            previous = s.isMatch
        }
    case .mergedWithNext:
        var previous = false
        for s in segs.reversed() {
            if s.isMatch && !previous, !kept.isEmpty { kept[kept.count - 1].0 = s.start } else { kept.append((s.start, s.end)) }
            previous = s.isMatch
        }
        kept.reverse()
    }
    var out: [Piece] = []
    out.reserveCapacity(kept.count)
    for (a, b) in kept where b > a {
        out.append(Piece(Array(piece.bytes[a..<b]), originalStart: piece.originalStart + a))
    }
    return out
}
