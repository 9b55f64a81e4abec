/// UTF-8 and Unicode-property helpers. The tokenizer works on UTF-8 bytes and Unicode scalars
/// (Rust's `char`), never on Swift `Character`s (grapheme clusters) or `String` comparison (which
/// is canonical-equivalence based: "é" == "e\u{301}" would merge distinct vocabulary entries).

/// Decodes the scalar starting at `i` of valid UTF-8. Returns the scalar value and its byte length.
@inline(__always)
func decodeScalar(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> (UInt32, Int) {
    let b0 = UInt32(b[i])
    if b0 < 0x80 { return (b0, 1) }
    if b0 < 0xE0 { return ((b0 & 0x1F) << 6 | UInt32(b[i + 1] & 0x3F), 2) }
    if b0 < 0xF0 { return ((b0 & 0x0F) << 12 | UInt32(b[i + 1] & 0x3F) << 6 | UInt32(b[i + 2] & 0x3F), 3) }
    return ((b0 & 0x07) << 18 | UInt32(b[i + 1] & 0x3F) << 12 | UInt32(b[i + 2] & 0x3F) << 6 | UInt32(b[i + 3] & 0x3F), 4)
}

/// Byte length of the UTF-8 sequence that starts with `b0`.
@inline(__always)
func utf8Length(_ b0: UInt8) -> Int {
    if b0 < 0x80 { return 1 }
    if b0 < 0xE0 { return 2 }
    if b0 < 0xF0 { return 3 }
    return 4
}

func appendUTF8(_ v: UInt32, to out: inout [UInt8]) {
    if v < 0x80 {
        out.append(UInt8(v))
    } else if v < 0x800 {
        out.append(UInt8(0xC0 | (v >> 6))); out.append(UInt8(0x80 | (v & 0x3F)))
    } else if v < 0x10000 {
        out.append(UInt8(0xE0 | (v >> 12))); out.append(UInt8(0x80 | ((v >> 6) & 0x3F))); out.append(UInt8(0x80 | (v & 0x3F)))
    } else {
        out.append(UInt8(0xF0 | (v >> 18))); out.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
        out.append(UInt8(0x80 | ((v >> 6) & 0x3F))); out.append(UInt8(0x80 | (v & 0x3F)))
    }
}

func utf8Bytes(_ v: UInt32) -> [UInt8] { var o: [UInt8] = []; appendUTF8(v, to: &o); return o }

/// The scalars of valid UTF-8 bytes.
func scalars(_ bytes: [UInt8]) -> [UInt32] {
    var out: [UInt32] = []
    out.reserveCapacity(bytes.count)
    bytes.withUnsafeBufferPointer { b in
        var i = 0
        while i < b.count { let (c, l) = decodeScalar(b, i); out.append(c); i += l }
    }
    return out
}

/// Unicode character classes as the regex engines behind huggingface/tokenizers define them.
enum UnicodeClass {
    /// Class bits for ASCII, precomputed.
    private static let asciiBits: [UInt8] = (0..<128).map { v -> UInt8 in
        let s = Unicode.Scalar(UInt8(v))
        var bits: UInt8 = 0
        if s.properties.isWhitespace { bits |= 1 }
        if (0x41...0x5A).contains(v) || (0x61...0x7A).contains(v) { bits |= 2 }
        if (0x30...0x39).contains(v) { bits |= 4 }
        return bits
    }

    /// White_Space (Oniguruma's and Rust regex's `\s`, Rust's `char::is_whitespace`).
    @inline(__always)
    static func isWhitespace(_ v: UInt32) -> Bool {
        if v < 128 { return asciiBits[Int(v)] & 1 != 0 }
        switch v {
        case 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }

    /// General category L (`\p{L}`).
    @inline(__always)
    static func isLetter(_ v: UInt32) -> Bool {
        if v < 128 { return asciiBits[Int(v)] & 2 != 0 }
        guard let s = Unicode.Scalar(v) else { return false }
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    /// General category N (`\p{N}`, Rust's `char::is_numeric`).
    @inline(__always)
    static func isNumber(_ v: UInt32) -> Bool {
        if v < 128 { return asciiBits[Int(v)] & 4 != 0 }
        guard let s = Unicode.Scalar(v) else { return false }
        switch s.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    /// Rust regex's Unicode `\w`: Alphabetic, M, Nd, Pc, Join_Control.
    static func isWordCharacter(_ v: UInt32) -> Bool {
        if v < 128 { return asciiBits[Int(v)] & 6 != 0 || v == 0x5F }
        guard let s = Unicode.Scalar(v) else { return false }
        let p = s.properties
        if p.isAlphabetic || p.isJoinControl { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }
}
