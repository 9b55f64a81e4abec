/// transformers' `tojson` filter: Python's `json.dumps` with `ensure_ascii=False` by default, no HTML
/// escaping (unlike Jinja's own tojson), `indent`, `separators` and `sort_keys` passed through.
extension Py {
    /// `json.dumps(value, ensure_ascii=, indent=, separators=, sort_keys=)` (transformers' `tojson`).
    static func jsonDumps(_ v: JinjaValue, ensureASCII: Bool, indent: String?, separators: (item: String, key: String)?,
                          sortKeys: Bool) throws -> String {
        let seps = separators ?? (indent == nil ? (", ", ": ") : (",", ": "))
        var out = ""
        func string(_ s: String) {
            out += "\""
            for u in s.unicodeScalars {
                switch u {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                case "\u{08}": out += "\\b"
                case "\u{0C}": out += "\\f"
                default:
                    if u.value < 0x20 || (ensureASCII && u.value > 0x7E) {
                        func hex4(_ v: UInt32) -> String { let h = String(v, radix: 16); return "\\u" + String(repeating: "0", count: 4 - h.count) + h }
                        if u.value > 0xFFFF {
                            let v = u.value - 0x10000
                            out += hex4(0xD800 + (v >> 10)) + hex4(0xDC00 + (v & 0x3FF))
                        } else { out += hex4(u.value) }
                    } else { out.unicodeScalars.append(u) }
                }
            }
            out += "\""
        }
        func value(_ v: JinjaValue, _ level: Int) throws {
            func newline(_ l: Int) { if let indent { out += "\n" + String(repeating: indent, count: l) } }
            switch v {
            case .none: out += "null"
            case let .bool(b): out += b ? "true" : "false"
            case let .int(i): out += String(i)
            case let .double(d): out += d.isNaN ? "NaN" : d.isInfinite ? (d < 0 ? "-Infinity" : "Infinity") : floatRepr(d)
            case let .string(s): string(s)
            case let .array(a):
                if a.isEmpty { out += "[]"; return }
                out += "["
                for (i, x) in a.enumerated() {
                    if i > 0 { out += seps.item }
                    newline(level + 1)
                    try value(x, level + 1)
                }
                newline(level)
                out += "]"
            case let .object(o):
                if o.count == 0 { out += "{}"; return }
                out += "{"
                let entries = sortKeys ? o.entries.sorted { less($0.key, $1.key) } : o.entries
                for (i, e) in entries.enumerated() {
                    if i > 0 { out += seps.item }
                    newline(level + 1)
                    string(e.key)
                    out += seps.key
                    try value(e.value, level + 1)
                }
                newline(level)
                out += "}"
            default:
                throw JinjaFailure("Object of type \(v.typeName) is not JSON serializable")
            }
        }
        try value(v, 0)
        return out
    }
}
