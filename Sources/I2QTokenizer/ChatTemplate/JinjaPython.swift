/// Python 3.11 text semantics that Jinja2 inherits: `str()`/`repr()` of values, float repr,
/// `str.isspace`, full case mappings with the final-sigma rule, `strip`, `split`.
/// Unicode properties come from Swift's tables, which may be a newer Unicode version than
/// Python 3.11's 14.0 (only characters assigned since differ).
enum Py {
    /// `str.isspace` (and `\s` in Python's `re`): these 29 code points.
    static func isSpace(_ u: Unicode.Scalar) -> Bool {
        switch u.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }

    /// `str(x)`: what `{{ x }}`, `~` and `join` print.
    static func str(_ v: JinjaValue) -> String {
        switch v {
        case let .string(s): return s
        case .undefined: return ""
        default: return repr(v)
        }
    }

    /// `repr(x)`: how values print inside lists and dicts.
    static func repr(_ v: JinjaValue) -> String {
        switch v {
        case .none: return "None"
        case let .bool(b): return b ? "True" : "False"
        case let .int(i): return String(i)
        case let .double(d): return floatRepr(d)
        case let .string(s): return stringRepr(s)
        case let .array(a): return "[" + a.map(repr).joined(separator: ", ") + "]"
        case let .object(o): return "{" + o.entries.map { stringRepr($0.key) + ": " + repr($0.value) }.joined(separator: ", ") + "}"
        case .undefined: return "Undefined"
        case let .namespace(ns): return "<Namespace " + repr(.object(ns.attributes)) + ">"
        case let .callable(c):
            switch c.kind {
            case let .global(n): return "<function \(n)>"
            case let .method(r, n): return "<built-in method \(n) of \(r.typeName) object>"
            case .loopCycle: return "<bound method LoopContext.cycle>"
            case let .macro(m, _): return "<Macro '\(m.name)'>"
            }
        }
    }

    /// Python's `repr` of a str: single quotes unless the text has ' and no ", escapes for
    /// backslash, the quote, \t \n \r and non-printable characters.
    static func stringRepr(_ s: String) -> String {
        let hasSingle = s.unicodeScalars.contains("'"), hasDouble = s.unicodeScalars.contains("\"")
        let q: Unicode.Scalar = hasSingle && !hasDouble ? "\"" : "'"
        var out = String.UnicodeScalarView()
        out.append(q)
        func hex(_ v: UInt32, _ width: Int) -> String {
            let h = String(v, radix: 16)
            return String(repeating: "0", count: max(0, width - h.count)) + h
        }
        for u in s.unicodeScalars {
            if u == q || u == "\\" { out.append("\\"); out.append(u); continue }
            switch u {
            case "\t": out.append(contentsOf: "\\t".unicodeScalars)
            case "\n": out.append(contentsOf: "\\n".unicodeScalars)
            case "\r": out.append(contentsOf: "\\r".unicodeScalars)
            default:
                if u.value < 0x20 || u.value == 0x7F {
                    out.append(contentsOf: ("\\x" + hex(u.value, 2)).unicodeScalars)
                } else if u.value < 0x7F || isPrintable(u) {
                    out.append(u)
                } else if u.value <= 0xFF {
                    out.append(contentsOf: ("\\x" + hex(u.value, 2)).unicodeScalars)
                } else if u.value <= 0xFFFF {
                    out.append(contentsOf: ("\\u" + hex(u.value, 4)).unicodeScalars)
                } else {
                    out.append(contentsOf: ("\\U" + hex(u.value, 8)).unicodeScalars)
                }
            }
        }
        out.append(q)
        return String(out)
    }

    /// `str.isprintable` for one character: not Other (Cc Cf Cs Co Cn) nor Separator, except space.
    static func isPrintable(_ u: Unicode.Scalar) -> Bool {
        if u == " " { return true }
        switch u.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned, .lineSeparator, .paragraphSeparator, .spaceSeparator:
            return false
        default: return true
        }
    }

    /// `float.__repr__`: the shortest round-trip digits, positional when the decimal exponent is
    /// in [-4, 16), else scientific with a signed two-digit exponent (`1e-05`, `1e+16`).
    static func floatRepr(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        let sign = d.sign == .minus ? "-" : ""
        // Swift's description also gives the shortest round-trip digits; only the layout differs.
        let text = Swift.abs(d).description
        let parts = text.split(separator: "e", maxSplits: 1)
        let exp = parts.count == 2 ? Int(parts[1])! : 0
        let mantissa = parts[0].split(separator: ".", omittingEmptySubsequences: false)
        let intPart = String(mantissa[0]), frac = mantissa.count > 1 ? String(mantissa[1]) : ""
        var digits = Array(intPart + frac)
        var point = intPart.count + exp
        while let f = digits.first, f == "0" { digits.removeFirst(); point -= 1 }
        while let l = digits.last, l == "0" { digits.removeLast() }
        if digits.isEmpty { return sign + "0.0" }
        let ds = String(digits)
        if point <= -4 || point > 16 {
            let e = point - 1
            let mant = digits.count > 1 ? String(digits[0]) + "." + String(digits[1...]) : String(digits[0])
            let ea = String(Swift.abs(e))
            return sign + mant + "e" + (e < 0 ? "-" : "+") + (ea.count < 2 ? "0" + ea : ea)
        }
        if point <= 0 { return sign + "0." + String(repeating: "0", count: -point) + ds }
        if point >= digits.count { return sign + ds + String(repeating: "0", count: point - digits.count) + ".0" }
        return sign + String(digits[..<point]) + "." + String(digits[point...])
    }

    // MARK: case mappings (full mappings, as CPython's unicodeobject.c)

    static func upper(_ s: String) -> String {
        var out = String.UnicodeScalarView()
        for u in s.unicodeScalars { out.append(contentsOf: u.properties.uppercaseMapping.unicodeScalars) }
        return String(out)
    }

    static func lower(_ s: String) -> String {
        let a = Array(s.unicodeScalars)
        var out = String.UnicodeScalarView()
        for i in a.indices { appendLower(a, i, &out) }
        return String(out)
    }

    /// `str.capitalize` (3.8+): the first character in title case, the rest lower case.
    static func capitalize(_ s: String) -> String {
        let a = Array(s.unicodeScalars)
        var out = String.UnicodeScalarView()
        for i in a.indices {
            if i == 0 { out.append(contentsOf: a[0].properties.titlecaseMapping.unicodeScalars) } else { appendLower(a, i, &out) }
        }
        return String(out)
    }

    /// `str.title`: title case after an uncased character, lower case after a cased one.
    static func title(_ s: String) -> String {
        let a = Array(s.unicodeScalars)
        var out = String.UnicodeScalarView()
        var previousCased = false
        for i in a.indices {
            if previousCased { appendLower(a, i, &out) } else { out.append(contentsOf: a[i].properties.titlecaseMapping.unicodeScalars) }
            previousCased = a[i].properties.isCased
        }
        return String(out)
    }

    /// Lower case of `a[i]`; capital sigma becomes final sigma (U+03C2) at the end of a word.
    private static func appendLower(_ a: [Unicode.Scalar], _ i: Int, _ out: inout String.UnicodeScalarView) {
        guard a[i].value == 0x3A3 else { out.append(contentsOf: a[i].properties.lowercaseMapping.unicodeScalars); return }
        var j = i - 1
        while j >= 0, a[j].properties.isCaseIgnorable { j -= 1 }
        var final = j >= 0 && a[j].properties.isCased
        if final && i + 1 < a.count {
            j = i + 1
            while j < a.count, a[j].properties.isCaseIgnorable { j += 1 }
            final = j == a.count || !a[j].properties.isCased
        }
        out.append(Unicode.Scalar(final ? 0x3C2 : 0x3C3)!)
    }

    // MARK: strip / split

    /// `str.strip(chars)` / `lstrip` / `rstrip`; `chars == nil` strips whitespace.
    static func strip(_ s: String, _ chars: String?, leading: Bool = true, trailing: Bool = true) -> String {
        let set = chars.map { Set($0.unicodeScalars) }
        func drop(_ u: Unicode.Scalar) -> Bool { set.map { $0.contains(u) } ?? isSpace(u) }
        let a = Array(s.unicodeScalars)
        var lo = 0, hi = a.count
        if leading { while lo < hi, drop(a[lo]) { lo += 1 } }
        if trailing { while hi > lo, drop(a[hi - 1]) { hi -= 1 } }
        var v = String.UnicodeScalarView()
        v.append(contentsOf: a[lo..<hi])
        return String(v)
    }

    /// `str.split(sep, maxsplit)`.
    static func split(_ s: String, _ sep: String?, _ maxSplit: Int) throws -> [String] {
        let a = Array(s.unicodeScalars)
        func text(_ r: Range<Int>) -> String { var v = String.UnicodeScalarView(); v.append(contentsOf: a[r]); return String(v) }
        var out: [String] = []
        guard let sep else {
            var i = 0
            while i < a.count {
                while i < a.count, isSpace(a[i]) { i += 1 }
                if i == a.count { break }
                // Past maxsplit the rest is one item, trailing whitespace kept (CPython split_whitespace).
                if maxSplit >= 0 && out.count == maxSplit { out.append(text(i..<a.count)); return out }
                let start = i
                while i < a.count, !isSpace(a[i]) { i += 1 }
                out.append(text(start..<i))
            }
            return out
        }
        let p = Array(sep.unicodeScalars)
        if p.isEmpty { throw JinjaFailure("empty separator") }
        var start = 0, i = 0
        while i + p.count <= a.count {
            if (maxSplit < 0 || out.count < maxSplit) && Array(a[i..<(i + p.count)]) == p {
                out.append(text(start..<i)); i += p.count; start = i
            } else { i += 1 }
        }
        out.append(text(start..<a.count))
        return out
    }

    /// Code-point order, as Python compares strings.
    static func less(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }

    /// `needle in haystack` for strings (code points; UTF-8 byte search is equivalent).
    static func contains(_ haystack: String, _ needle: String) -> Bool {
        let h = Array(haystack.utf8), n = Array(needle.utf8)
        if n.isEmpty { return true }
        if n.count > h.count { return false }
        for i in 0...(h.count - n.count) where h[i] == n[0] && Array(h[i..<(i + n.count)]) == n { return true }
        return false
    }

    static func scalars(_ s: String) -> [Unicode.Scalar] { Array(s.unicodeScalars) }
    static func string(_ a: some Sequence<Unicode.Scalar>) -> String {
        var v = String.UnicodeScalarView(); v.append(contentsOf: a); return String(v)
    }
}

extension Py {
    /// `str.splitlines()`: splits on \n \r \r\n \v \f \x1c \x1d \x1e \x85 \u2028 \u2029.
    static func splitLines(_ s: String, keepEnds: Bool = false) -> [String] {
        let a = scalars(s)
        var out: [String] = []
        var start = 0, i = 0
        while i < a.count {
            switch a[i].value {
            case 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029:
                var end = i + 1
                if a[i] == "\r", end < a.count, a[end] == "\n" { end += 1 }
                out.append(string(a[start..<(keepEnds ? end : i)]))
                start = end; i = end
            default: i += 1
            }
        }
        if start < a.count { out.append(string(a[start...])) }
        return out
    }
}
