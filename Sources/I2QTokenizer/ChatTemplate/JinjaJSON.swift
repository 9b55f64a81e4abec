import I2QCore

/// transformers' `tojson` filter: Python's `json.dumps` with `ensure_ascii=False` by default, no HTML
/// escaping (unlike Jinja's own tojson), `indent`, `separators` and `sort_keys` passed through.
extension Py {
    /// `json.dumps(value, ensure_ascii=, indent=, separators=, sort_keys=)` (transformers' `tojson`).
    static func jsonDumps(_ v: JinjaValue, ensureASCII: Bool, indent: String?, separators: (item: String, key: String)?,
                          sortKeys: Bool) throws -> String {
        let seps = separators ?? (indent == nil ? (", ", ": ") : (",", ": "))
        var out = ""
        func string(_ s: String) { JSONWriter.writeString(s, into: &out, ascii: ensureASCII) }
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
