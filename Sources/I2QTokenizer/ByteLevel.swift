/// GPT-2's byte-to-unicode table (openai/gpt-2 encoder.py `bytes_to_unicode`): printable bytes map
/// to themselves, the other 68 to U+0100 and up, so every byte string becomes a printable string.
struct ByteLevelTables: Sendable {
    static let shared = ByteLevelTables()

    /// byte -> scalar
    let byteToScalar: [UInt32]
    /// byte -> UTF-8 of its scalar
    let byteToUTF8: [[UInt8]]
    /// scalar (< 0x200) -> byte + 1, 0 where the scalar is not a byte-level character
    let scalarToByte: [UInt16]

    private init() {
        var bs: [Int] = Array(0x21...0x7E) + Array(0xA1...0xAC) + Array(0xAE...0xFF)
        var cs: [UInt32] = bs.map { UInt32($0) }
        var n: UInt32 = 0
        for b in 0..<256 where !bs.contains(b) {
            bs.append(b)
            cs.append(256 + n)
            n += 1
        }
        var toScalar = [UInt32](repeating: 0, count: 256)
        for (b, c) in zip(bs, cs) { toScalar[b] = c }
        byteToScalar = toScalar
        byteToUTF8 = toScalar.map { utf8Bytes($0) }
        var back = [UInt16](repeating: 0, count: 0x200)
        for (b, c) in toScalar.enumerated() { back[Int(c)] = UInt16(b + 1) }
        scalarToByte = back
    }

    /// The byte-level string of `bytes`.
    func map(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out.append(contentsOf: byteToUTF8[Int(b)]) }
        return out
    }

    /// The bytes a byte-level token stands for, or nil when one of its characters is not a
    /// byte-level character (tokenizers' ByteLevel decoder then keeps the token's own bytes).
    func unmap(_ token: [UInt8]) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.count)
        for c in scalars(token) {
            guard c < 0x200, scalarToByte[Int(c)] != 0 else { return nil }
            out.append(UInt8(scalarToByte[Int(c)] - 1))
        }
        return out
    }
}

/// GPT-2's pre-tokenization pattern, implemented by hand with Oniguruma's semantics
/// (leftmost alternative first, greedy, backtracking for the lookahead):
///
///     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
///
/// on Unicode scalars. Returns the match ranges (they cover the whole input).
enum GPT2Pattern {
    static let source = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    private enum Kind { case letter, number, space, other }

    @inline(__always)
    private static func kind(_ c: UInt32) -> Kind {
        if UnicodeClass.isLetter(c) { return .letter }
        if UnicodeClass.isNumber(c) { return .number }
        if UnicodeClass.isWhitespace(c) { return .space }
        return .other
    }

    static func matches(_ bytes: [UInt8]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        out.reserveCapacity(bytes.count / 3 + 1)
        bytes.withUnsafeBufferPointer { b in
            let n = b.count
            var i = 0
            while i < n {
                // 's 't 're 've 'm 'll 'd
                if b[i] == 0x27, i + 1 < n {
                    let c1 = b[i + 1]
                    if c1 == 0x73 || c1 == 0x74 || c1 == 0x6D || c1 == 0x64 {  // s t m d
                        out.append(i..<(i + 2)); i += 2; continue
                    }
                    if i + 2 < n {
                        let c2 = b[i + 2]
                        if (c1 == 0x72 && c2 == 0x65) || (c1 == 0x76 && c2 == 0x65) || (c1 == 0x6C && c2 == 0x6C) {  // re ve ll
                            out.append(i..<(i + 3)); i += 3; continue
                        }
                    }
                }
                // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: the optional space, then a run of one class.
                let start = b[i] == 0x20 ? i + 1 : i
                if start < n {
                    let (c, l) = decodeScalar(b, start)
                    let k = kind(c)
                    if k != .space {
                        var j = start + l
                        while j < n {
                            let (c2, l2) = decodeScalar(b, j)
                            if kind(c2) != k { break }
                            j += l2
                        }
                        out.append(i..<j); i = j; continue
                    }
                }
                // Here the scalar at i is whitespace. `\s+(?!\S)`: the whole run when it ends the
                // text, else the run minus its last scalar; `\s+` when that leaves nothing.
                var j = i
                var last = i
                while j < n {
                    let (c2, l2) = decodeScalar(b, j)
                    if !UnicodeClass.isWhitespace(c2) { break }
                    last = j
                    j += l2
                }
                if j < n && last > i { j = last }
                out.append(i..<j); i = j
            }
        }
        return out
    }
}
