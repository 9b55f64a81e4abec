/// A position in the template source (1-based line and column, columns counted in code points).
struct SourceLoc: Sendable, Equatable {
    var line: Int
    var column: Int
}

struct Token: Sendable {
    enum Kind: Sendable, Equatable { case data, variableBegin, variableEnd, blockBegin, blockEnd, name, string, integer, float, op, eof }
    var kind: Kind
    /// Data text, name, operator, or a string literal's decoded value.
    var text: String
    /// An integer literal's value; nil when it does not fit in 64 bits.
    var int: Int? = nil
    var double: Double = 0
    var loc: SourceLoc
}

/// Splits a template into tokens like Jinja2 3.1's `Lexer` with transformers' settings
/// (`trim_blocks=True`, `lstrip_blocks=True`, `keep_trailing_newline=False`, default delimiters):
/// - newlines (`\r\n`, `\r`, `\n`) become `\n` and one trailing newline is dropped;
/// - `{%-`/`{{-`/`{#-` strip the whitespace before the tag, `-%}`/`-}}`/`-#}` the whitespace after;
/// - a block or comment tag alone on a line loses the indentation before it (lstrip_blocks, unless `{%+`),
///   and the newline right after `%}` or `#}` (trim_blocks, unless `+%}`);
/// - `{% raw %}...{% endraw %}` is data; comments produce no tokens.
struct JinjaLexer {
    private let src: [Unicode.Scalar]
    private var lineStarts: [Int] = [0]
    private(set) var tokens: [Token] = []

    init(_ source: String) throws {
        // Jinja's tokeniter: split on \r\n|\r|\n, drop one trailing empty line, join with \n.
        var s: [Unicode.Scalar] = []
        var it = Array(source.unicodeScalars)[...]
        while let u = it.popFirst() {
            if u == "\r" { if it.first == "\n" { it.removeFirst() }; s.append("\n") } else { s.append(u) }
        }
        if s.last == "\n" { s.removeLast() }
        src = s
        for (i, u) in src.enumerated() where u == "\n" { lineStarts.append(i + 1) }
        try run()
    }

    func loc(_ pos: Int) -> SourceLoc {
        var lo = 0, hi = lineStarts.count - 1
        while lo < hi { let m = (lo + hi + 1) / 2; if lineStarts[m] <= pos { lo = m } else { hi = m - 1 } }
        return SourceLoc(line: lo + 1, column: pos - lineStarts[lo] + 1)
    }

    private func fail(_ pos: Int, _ message: String) -> ChatTemplateError {
        let l = loc(pos)
        return .syntax(line: l.line, column: l.column, message: message)
    }

    private func at(_ pos: Int, _ s: String) -> Bool {
        var i = pos
        for u in s.unicodeScalars { guard i < src.count, src[i] == u else { return false }; i += 1 }
        return true
    }

    private func skipSpace(_ pos: Int) -> Int { var i = pos; while i < src.count, Py.isSpace(src[i]) { i += 1 }; return i }

    private enum Tag { case variable, block, comment, raw(end: Int) }

    /// The tag starting at `i`, if any (Jinja tries `{% raw %}` first).
    private func tag(at i: Int) -> Tag? {
        guard i + 1 < src.count, src[i] == "{" else { return nil }
        switch src[i + 1] {
        case "{": return .variable
        case "#": return .comment
        case "%":
            var j = i + 2
            if j < src.count, src[j] == "-" || src[j] == "+" { j += 1 }
            j = skipSpace(j)
            guard at(j, "raw") else { return .block }
            j = skipSpace(j + 3)
            if at(j, "-%}") { return .raw(end: skipSpace(j + 3)) }
            if at(j, "%}") { return .raw(end: j + 2) }
            return .block
        default: return nil
        }
    }

    private mutating func emitData(_ text: ArraySlice<Unicode.Scalar>, sign: Unicode.Scalar?, lstrip: Bool, lineStarting: Bool, pos: Int) {
        var text = text
        if sign == "-" {
            while let l = text.last, Py.isSpace(l) { text.removeLast() }
        } else if sign != "+" && lstrip {
            // lstrip_blocks: drop the indentation between the last newline and the tag.
            let lPos = (text.lastIndex(of: "\n").map { $0 + 1 }) ?? text.startIndex
            if (lPos > text.startIndex || lineStarting) && lPos < text.endIndex && text[lPos...].allSatisfy(Py.isSpace) {
                text = text[..<lPos]
            }
        }
        if !text.isEmpty { tokens.append(Token(kind: .data, text: Py.string(text), loc: loc(pos))) }
    }

    private mutating func run() throws {
        var pos = 0
        var lineStarting = true
        while pos < src.count {
            var i = pos
            var found: Tag? = nil
            while i < src.count { if let t = tag(at: i) { found = t; break }; i += 1 }
            guard let tag = found else {
                tokens.append(Token(kind: .data, text: Py.string(src[pos...]), loc: loc(pos)))
                break
            }
            var start = i + 2
            var sign: Unicode.Scalar? = nil
            if start < src.count, src[start] == "-" || src[start] == "+" { sign = src[start]; start += 1 }
            let isVariable: Bool = { if case .variable = tag { return true }; return false }()
            emitData(src[pos..<i], sign: sign, lstrip: !isVariable, lineStarting: lineStarting, pos: pos)
            switch tag {
            case .comment:
                var j = start
                while true {
                    guard j < src.count else { throw fail(i, "missing end of comment tag") }
                    if at(j, "+#}") { pos = j + 3; break }
                    if at(j, "-#}") { pos = skipSpace(j + 3); break }
                    if at(j, "#}") { pos = j + 2; if pos < src.count, src[pos] == "\n" { pos += 1 }; break }
                    j += 1
                }
            case let .raw(end):
                pos = try raw(from: end, opened: i)
            case .variable, .block:
                tokens.append(Token(kind: isVariable ? .variableBegin : .blockBegin, text: "", loc: loc(i)))
                pos = try insideTag(from: start, variable: isVariable, opened: i)
            }
            lineStarting = pos > 0 && src[pos - 1] == "\n"
        }
        tokens.append(Token(kind: .eof, text: "", loc: loc(src.count)))
    }

    /// `{% raw %}` body up to `{% endraw %}`, emitted as data (with the usual stripping before the end tag).
    private mutating func raw(from start: Int, opened: Int) throws -> Int {
        var j = start
        while j < src.count {
            if at(j, "{%") {
                var k = j + 2
                var sign: Unicode.Scalar? = nil
                if k < src.count, src[k] == "-" || src[k] == "+" { sign = src[k]; k += 1 }
                k = skipSpace(k)
                if at(k, "endraw") {
                    k = skipSpace(k + 6)
                    var end: Int? = nil
                    if at(k, "+%}") { end = k + 3 } else if at(k, "-%}") { end = skipSpace(k + 3) } else if at(k, "%}") {
                        end = k + 2; if end! < src.count, src[end!] == "\n" { end! += 1 }
                    }
                    if let end {
                        emitData(src[start..<j], sign: sign, lstrip: true, lineStarting: start > 0 && src[start - 1] == "\n", pos: start)
                        return end
                    }
                }
            }
            j += 1
        }
        throw fail(opened, "missing end of raw directive")
    }

    /// Tokens of a `{{ }}` or `{% %}` tag; returns the position after its end delimiter.
    private mutating func insideTag(from start: Int, variable: Bool, opened: Int) throws -> Int {
        var p = start
        var brackets: [Unicode.Scalar] = []
        while true {
            guard p < src.count else {
                throw fail(opened, "unexpected end of template: \(variable ? "'{{'" : "'{%'") is never closed")
            }
            if brackets.isEmpty {
                if variable {
                    if at(p, "-}}") { tokens.append(Token(kind: .variableEnd, text: "", loc: loc(p))); return skipSpace(p + 3) }
                    if at(p, "}}") { tokens.append(Token(kind: .variableEnd, text: "", loc: loc(p))); return p + 2 }
                } else {
                    if at(p, "+%}") { tokens.append(Token(kind: .blockEnd, text: "", loc: loc(p))); return p + 3 }
                    if at(p, "-%}") { tokens.append(Token(kind: .blockEnd, text: "", loc: loc(p))); return skipSpace(p + 3) }
                    if at(p, "%}") {
                        tokens.append(Token(kind: .blockEnd, text: "", loc: loc(p)))
                        return p + 2 < src.count && src[p + 2] == "\n" ? p + 3 : p + 2
                    }
                }
            }
            let u = src[p]
            if Py.isSpace(u) { p += 1; continue }
            if let end = number(at: p) { p = end; continue }
            if isNameChar(u) {
                var e = p
                while e < src.count, isNameChar(src[e]) { e += 1 }
                tokens.append(Token(kind: .name, text: Py.string(src[p..<e]), loc: loc(p)))
                p = e; continue
            }
            if u == "'" || u == "\"" { p = try string(at: p); continue }
            let op = ["**", "//", "==", "!=", ">=", "<="].first(where: { at(p, $0) })
                ?? ["+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"].first(where: { at(p, $0) })
            guard let op else { throw fail(p, "unexpected char \(Py.stringRepr(String(u)))") }
            switch op {
            case "(": brackets.append(")")
            case "[": brackets.append("]")
            case "{": brackets.append("}")
            case ")", "]", "}":
                guard let expected = brackets.popLast() else { throw fail(p, "unexpected '\(op)'") }
                if String(expected) != op { throw fail(p, "unexpected '\(op)', expected '\(expected)'") }
            default: break
            }
            tokens.append(Token(kind: .op, text: op, loc: loc(p)))
            p += op.unicodeScalars.count
        }
    }

    private func isNameChar(_ u: Unicode.Scalar) -> Bool {
        u == "_" || u.properties.isAlphabetic || u.properties.numericType != nil
            || [.nonspacingMark, .spacingMark, .connectorPunctuation].contains(u.properties.generalCategory)
    }

    private func isDigit(_ i: Int) -> Bool { i < src.count && ("0"..."9").contains(src[i]) }

    /// Digits with single underscores between them, from `i`; returns the end.
    private func digits(_ i: Int, _ ok: (Unicode.Scalar) -> Bool = { ("0"..."9").contains($0) }) -> Int? {
        guard i < src.count, ok(src[i]) else { return nil }
        var e = i + 1
        while e < src.count {
            if ok(src[e]) { e += 1 } else if src[e] == "_", e + 1 < src.count, ok(src[e + 1]) { e += 2 } else { break }
        }
        return e
    }

    /// Jinja's float_re, then integer_re (binary, octal, hex, decimal; `_` separators).
    private mutating func number(at p: Int) -> Int? {
        guard isDigit(p) else { return nil }
        let l = loc(p)
        func clean(_ r: Range<Int>) -> String { Py.string(src[r].filter { $0 != "_" }) }
        if p == 0 || src[p - 1] != ".", let intEnd = digits(p) {
            var e = intEnd
            var isFloat = false
            if e < src.count, src[e] == ".", let f = digits(e + 1) { e = f; isFloat = true }
            if e < src.count, src[e] == "e" || src[e] == "E" {
                var k = e + 1
                if k < src.count, src[k] == "+" || src[k] == "-" { k += 1 }
                if let x = digits(k) { e = x; isFloat = true }
            }
            if isFloat {
                tokens.append(Token(kind: .float, text: clean(p..<e), double: Double(clean(p..<e)) ?? .infinity, loc: l))
                return e
            }
        }
        if src[p] == "0", p + 1 < src.count, let radix = ["b": 2, "B": 2, "o": 8, "O": 8, "x": 16, "X": 16][String(src[p + 1])] {
            var k = p + 2
            if k < src.count, src[k] == "_" { k += 1 }
            if let e = digits(k, { $0.isASCII && Int(String($0), radix: radix) != nil }) {
                appendInt(clean(k..<e), radix: radix, l)
                return e
            }
        }
        if src[p] == "0" {
            var e = p + 1
            while e < src.count, src[e] == "0" || (src[e] == "_" && e + 1 < src.count && src[e + 1] == "0") { e += src[e] == "_" ? 2 : 1 }
            appendInt("0", radix: 10, l)
            return e
        }
        let e = digits(p)!
        appendInt(clean(p..<e), radix: 10, l)
        return e
    }

    private mutating func appendInt(_ text: String, radix: Int, _ l: SourceLoc) {
        tokens.append(Token(kind: .integer, text: text, int: Int(text, radix: radix), loc: l))
    }

    /// A quoted string: escapes decoded like Python's `unicode-escape` codec, as Jinja does.
    private mutating func string(at p: Int) throws -> Int {
        let q = src[p]
        var e = p + 1
        while e < src.count, src[e] != q { e += src[e] == "\\" ? 2 : 1 }
        guard e < src.count else { throw fail(p, "unterminated string literal") }
        let value = try unescape(src[(p + 1)..<e], p)
        tokens.append(Token(kind: .string, text: value, loc: loc(p)))
        return e + 1
    }

    /// Jinja: `value.encode("ascii", "backslashreplace").decode("unicode-escape")`. Non-ASCII
    /// characters are first written as \x/\u/\U escapes, so `\é` gives the text `\xe9`, as in Jinja.
    private func unescape(_ body: ArraySlice<Unicode.Scalar>, _ p: Int) throws -> String {
        var ascii: [Unicode.Scalar] = []
        for u in body {
            if u.value < 0x80 { ascii.append(u); continue }
            let h = String(u.value, radix: 16)
            let (prefix, width) = u.value <= 0xFF ? ("\\x", 2) : u.value <= 0xFFFF ? ("\\u", 4) : ("\\U", 8)
            ascii.append(contentsOf: (prefix + String(repeating: "0", count: width - h.count) + h).unicodeScalars)
        }
        var out = String.UnicodeScalarView()
        var i = 0
        func hex(_ n: Int, _ what: String) throws -> Unicode.Scalar {
            guard i + 1 + n <= ascii.count, ascii[(i + 1)..<(i + 1 + n)].allSatisfy({ $0.properties.isASCIIHexDigit }),
                  let v = UInt32(Py.string(ascii[(i + 1)..<(i + 1 + n)]), radix: 16) else {
                throw fail(p, "truncated \(what) escape in string literal")
            }
            guard let s = Unicode.Scalar(v) else { throw fail(p, "illegal Unicode character in string literal") }
            i += 1 + n
            return s
        }
        while i < ascii.count {
            let u = ascii[i]
            guard u == "\\" else { out.append(u); i += 1; continue }
            i += 1
            guard i < ascii.count else { throw fail(p, "\\ at end of string literal") }
            let c = ascii[i]
            switch c {
            case "\n": i += 1
            case "\\", "'", "\"": out.append(c); i += 1
            case "a": out.append("\u{07}"); i += 1
            case "b": out.append("\u{08}"); i += 1
            case "f": out.append("\u{0C}"); i += 1
            case "n": out.append("\n"); i += 1
            case "r": out.append("\r"); i += 1
            case "t": out.append("\t"); i += 1
            case "v": out.append("\u{0B}"); i += 1
            case "x": out.append(try hex(2, "\\xXX"))
            case "u": out.append(try hex(4, "\\uXXXX"))
            case "U": out.append(try hex(8, "\\UXXXXXXXX"))
            case "0"..."7":
                var v: UInt32 = 0, n = 0
                while n < 3, i < ascii.count, ("0"..."7").contains(ascii[i]) { v = v * 8 + ascii[i].value - 48; i += 1; n += 1 }
                out.append(Unicode.Scalar(v)!)
            case "N":
                let l = loc(p)
                throw ChatTemplateError.unsupported(line: l.line, column: l.column, what: "\\N{...} escape in a string literal")
            default: out.append("\\"); out.append(c); i += 1
            }
        }
        return String(out)
    }
}
