import Foundation

/// Jinja2 3.1's builtin filters (`jinja2/filters.py`) that chat templates use, with transformers'
/// `tojson` (`json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`,
/// no HTML escaping). Other Jinja filters are rejected when the template is parsed.
enum JinjaFilters {
    static let names: Set<String> = [
        "abs", "capitalize", "count", "d", "default", "first", "float", "indent", "int", "items", "join", "last",
        "length", "list", "lower", "map", "reject", "rejectattr", "replace", "reverse", "safe", "select",
        "selectattr", "string", "title", "tojson", "trim", "upper",
    ]

    static func apply(_ name: String, _ value: JinjaValue, _ args: JinjaArgs) throws -> JinjaValue {
        switch name {
        case "safe": _ = try args.bind(name, []); return value
        case "string": _ = try args.bind(name, []); return .string(Py.str(value))
        case "upper": _ = try args.bind(name, []); return .string(Py.upper(Py.str(value)))
        case "lower": _ = try args.bind(name, []); return .string(Py.lower(Py.str(value)))
        case "capitalize": _ = try args.bind(name, []); return .string(Py.capitalize(Py.str(value)))
        case "title": _ = try args.bind(name, []); return .string(title(Py.str(value)))
        case "trim":
            let a = try args.bind(name, ["chars"])
            return .string(Py.strip(Py.str(value), try optionalString(a[0])))
        case "length", "count": _ = try args.bind(name, []); return .int(try length(value))
        case "default", "d":
            let a = try args.bind(name, ["default_value", "boolean"])
            let useDefault = value.isUndefined || ((a[1]?.truthy ?? false) && !value.truthy)
            return useDefault ? (a[0] ?? .string("")) : value
        case "abs":
            _ = try args.bind(name, [])
            switch value.number {
            case let .int(i)?:
                if i == .min { throw JinjaFailure("unsupported: integer result beyond 64 bits") }
                return .int(Swift.abs(i))
            case let .double(d)?: return .double(Swift.abs(d))
            case nil: throw JinjaFailure("bad operand type for abs(): '\(value.typeName)'")
            }
        case "first", "last":
            _ = try args.bind(name, [])
            if name == "last", value.number != nil || value.isNone { throw JinjaFailure("'\(value.typeName)' object is not reversible") }
            let items = try JinjaOps.iterate(value)
            return (name == "first" ? items.first : items.last) ?? .undefined(message: "No \(name) item, sequence was empty.")
        case "list": _ = try args.bind(name, []); return .array(try JinjaOps.iterate(value))
        case "reverse":
            _ = try args.bind(name, [])
            if case let .string(s) = value { return .string(Py.string(s.unicodeScalars.reversed())) }
            guard let items = try? JinjaOps.iterate(value) else { throw JinjaFailure("argument must be iterable") }  // rethrown as Jinja's own message
            return .array(items.reversed())
        case "items":
            _ = try args.bind(name, [])
            switch value {
            case .undefined: return .array([])
            case let .object(o): return .array(o.entries.map { .array([.string($0.key), $0.value]) })
            default: throw JinjaFailure("Can only get item pairs from a mapping.")
            }
        case "join":
            let a = try args.bind(name, ["d", "attribute"])
            var items = try JinjaOps.iterate(value)
            if let attr = a[1] { items = try items.map { try attribute($0, attr) } }
            return .string(items.map(Py.str).joined(separator: Py.str(a[0] ?? .string(""))))
        case "replace":
            let a = try args.bind(name, ["old", "new", "count"])
            guard let old = a[0], let new = a[1] else { throw JinjaFailure("replace() missing required arguments 'old' and 'new'") }
            let count = try a[2].map { try int($0) } ?? -1
            return .string(replace(Py.str(value), Py.str(old), Py.str(new), count))
        case "int":
            let a = try args.bind(name, ["default", "base"])
            _ = try value.defined()
            // Python's ints are unbounded: a float or numeric text beyond Int64 has no Swift equivalent.
            if toInt(value, base: 10) == nil, let d = toFloat(value), d.isFinite, Swift.abs(d) >= 9.2e18 {
                throw JinjaFailure("unsupported: integer result beyond 64 bits")
            }
            return toInt(value, base: try a[1].map { try int($0) } ?? 10) ?? (a[0] ?? .int(0))
        case "float":
            let a = try args.bind(name, ["default"])
            _ = try value.defined()
            return toFloat(value).map { .double($0) } ?? (a[0] ?? .double(0))
        case "indent": return try indent(value, args)
        case "tojson":
            let a = try args.bind(name, ["ensure_ascii", "indent", "separators", "sort_keys"])
            var indent: String? = nil
            switch a[1] {
            case nil, .none?: break
            case let .string(s)?: indent = s
            case let v?: indent = String(repeating: " ", count: max(0, try int(v)))
            }
            var separators: (String, String)? = nil
            if let s = a[2], !s.isNone {
                let parts = try JinjaOps.iterate(s)
                guard parts.count == 2, case let .string(item) = parts[0], case let .string(key) = parts[1] else {
                    throw JinjaFailure("tojson separators must be a pair of strings")
                }
                separators = (item, key)
            }
            return .string(try Py.jsonDumps(value, ensureASCII: a[0]?.truthy ?? false, indent: indent, separators: separators,
                                            sortKeys: a[3]?.truthy ?? false))
        case "select", "reject":
            // Jinja's select/reject/selectattr/rejectattr/map iterate only a truthy value (`if seq:`).
            if !value.truthy { return .array([]) }
            guard let test = args.positional.first else {
                return .array(try JinjaOps.iterate(value).filter { $0.truthy == (name == "select") })
            }
            let rest = JinjaArgs(positional: Array(args.positional.dropFirst()), keywords: args.keywords)
            let testName = Py.str(test)
            guard JinjaTests.names.contains(testName) else { throw JinjaFailure("unsupported: test '\(testName)'") }
            return .array(try JinjaOps.iterate(value).filter { try JinjaTests.apply(testName, $0, rest) == (name == "select") })
        case "selectattr", "rejectattr":
            if !value.truthy { return .array([]) }
            guard let attr = args.positional.first else { throw JinjaFailure("\(name)() missing the attribute argument") }
            let rest = JinjaArgs(positional: Array(args.positional.dropFirst(2)), keywords: args.keywords)
            let testName = args.positional.count > 1 ? Py.str(args.positional[1]) : nil
            if let testName, !JinjaTests.names.contains(testName) { throw JinjaFailure("unsupported: test '\(testName)'") }
            return .array(try JinjaOps.iterate(value).filter { item in
                let v = try attribute(item, attr)
                let ok = try testName.map { try JinjaTests.apply($0, v, rest) } ?? v.truthy
                return ok == (name == "selectattr")
            })
        case "map":
            let items = value.truthy ? try JinjaOps.iterate(value) : []
            if let i = args.keywords.firstIndex(where: { $0.name == "attribute" }) {
                let dflt = args.keywords.first(where: { $0.name == "default" })?.value
                return .array(try items.map { item in
                    let v = try attribute(item, args.keywords[i].value)
                    return v.isUndefined ? (dflt ?? v) : v
                })
            }
            guard let f = args.positional.first else { throw JinjaFailure("map() needs a filter name or attribute=") }
            let fname = Py.str(f)
            guard names.contains(fname) else { throw JinjaFailure("unsupported: filter '\(fname)'") }
            let rest = JinjaArgs(positional: Array(args.positional.dropFirst()), keywords: args.keywords)
            return .array(try items.map { try apply(fname, $0, rest) })
        default:
            throw JinjaFailure("unsupported: filter '\(name)'")
        }
    }

    /// `len(x)`; Undefined has length 0.
    static func length(_ v: JinjaValue) throws -> Int {
        switch v {
        case let .string(s): return s.unicodeScalars.count
        case let .array(a): return a.count
        case let .object(o): return o.count
        case .undefined: return 0
        default: throw JinjaFailure("object of type '\(v.typeName)' has no len()")
        }
    }

    /// Jinja's `make_attrgetter`: a dotted path of attributes or integer indices.
    static func attribute(_ item: JinjaValue, _ path: JinjaValue) throws -> JinjaValue {
        guard case let .string(p) = path else { return try JinjaOps.getitem(item, path) }
        var v = item
        for part in p.split(separator: ".", omittingEmptySubsequences: false) {
            v = try JinjaOps.getitem(v, Int(part).map { .int($0) } ?? .string(String(part)))
        }
        return v
    }

    static func int(_ v: JinjaValue) throws -> Int {
        switch v {
        case let .int(i): return i
        case let .bool(b): return b ? 1 : 0
        default: throw JinjaFailure("'\(v.typeName)' object cannot be interpreted as an integer")
        }
    }

    static func optionalString(_ v: JinjaValue?) throws -> String? {
        switch v {
        case nil, .none?: return nil
        case let .string(s)?: return s
        case let v?: throw JinjaFailure("strip arg must be None or str, not \(v.typeName)")
        }
    }

    /// Jinja's `title`: each word (split before runs of `-`, whitespace, `(`, `{`, `[`, `<`) gets its
    /// first character upper-cased and the rest lower-cased.
    static func title(_ s: String) -> String {
        var out = "", word: [Unicode.Scalar] = [], inSeparator = false
        func flush() {
            guard let f = word.first else { return }
            out += inSeparator ? Py.string(word) : Py.upper(String(f)) + Py.lower(Py.string(word.dropFirst()))
            word = []
        }
        for u in s.unicodeScalars {
            let sep = Py.isSpace(u) || "-({[<".unicodeScalars.contains(u)
            if sep != inSeparator { flush(); inSeparator = sep }
            word.append(u)
        }
        flush()
        return out
    }

    /// `str.replace(old, new, count)`.
    static func replace(_ s: String, _ old: String, _ new: String, _ count: Int) -> String {
        let a = Py.scalars(s), o = Py.scalars(old)
        var out: [Unicode.Scalar] = [], i = 0, done = 0
        let newScalars = Py.scalars(new)
        if o.isEmpty {
            for u in a { if count < 0 || done < count { out += newScalars; done += 1 }; out.append(u) }
            if count < 0 || done < count { out += newScalars }
            return Py.string(out)
        }
        while i < a.count {
            if (count < 0 || done < count), i + o.count <= a.count, Array(a[i..<(i + o.count)]) == o {
                out += newScalars; i += o.count; done += 1
            } else { out.append(a[i]); i += 1 }
        }
        return Py.string(out)
    }

    /// Jinja's `do_int`: `int(value, base)` for strings, `int(value)` else, then `int(float(value))`.
    static func toInt(_ v: JinjaValue, base: Int) -> JinjaValue? {
        switch v {
        case let .int(i): return .int(i)
        case let .bool(b): return .int(b ? 1 : 0)
        case let .double(d): return d.isFinite && Swift.abs(d) < 9.2e18 ? .int(Int(d)) : nil
        case let .string(s):
            if let i = pyInt(s, base: base) { return .int(i) }
            if base == 10, let d = toFloat(v), d.isFinite, Swift.abs(d) < 9.2e18 { return .int(Int(d)) }
            return nil
        default: return nil
        }
    }

    /// Python's `int(text, base)`: surrounding whitespace, a sign, a 0x/0o/0b prefix matching the base
    /// (any prefix for base 0), single underscores between digits.
    static func pyInt(_ text: String, base: Int) -> Int? {
        var t = Substring(Py.strip(text, nil))
        var negative = false
        if let f = t.first, f == "+" || f == "-" { negative = f == "-"; t = t.dropFirst() }
        var radix = base
        let lower = t.lowercased()
        for (prefix, r) in [("0x", 16), ("0o", 8), ("0b", 2)] where lower.hasPrefix(prefix) && (base == r || base == 0) {
            radix = r; t = t.dropFirst(2)
            if t.first == "_" { t = t.dropFirst() }
        }
        if radix == 0 {
            radix = 10
            if t.count > 1, t.first == "0", !t.allSatisfy({ $0 == "0" || $0 == "_" }) { return nil }
        }
        guard radix >= 2, radix <= 36, !t.isEmpty, t.first != "_", t.last != "_", !t.contains("__") else { return nil }
        guard let v = Int(t.replacingOccurrences(of: "_", with: ""), radix: radix) else { return nil }
        return negative ? -v : v
    }

    /// `float(value)`, or nil where Python raises.
    static func toFloat(_ v: JinjaValue) -> Double? {
        switch v {
        case let .int(i): return Double(i)
        case let .bool(b): return b ? 1 : 0
        case let .double(d): return d
        case let .string(s):
            let t = Py.strip(s, nil).lowercased()
            switch t {
            case "inf", "+inf", "infinity", "+infinity": return .infinity
            case "-inf", "-infinity": return -.infinity
            case "nan", "+nan", "-nan": return .nan
            default:
                guard !t.isEmpty, t.unicodeScalars.allSatisfy({ "0123456789.eE+-_".unicodeScalars.contains($0) }) else { return nil }
                return Double(t.replacingOccurrences(of: "_", with: ""))
            }
        default: return nil
        }
    }

    /// Jinja 3.1's `indent(s, width=4, first=False, blank=False)`.
    static func indent(_ value: JinjaValue, _ args: JinjaArgs) throws -> JinjaValue {
        let a = try args.bind("indent", ["width", "first", "blank"])
        let pad: String
        switch a[0] {
        case nil: pad = "    "
        case let .string(s)?: pad = s
        case let v?: pad = String(repeating: " ", count: max(0, try int(v)))
        }
        let text: String
        switch try value.defined() {
        case let .string(s): text = s
        case .array: throw JinjaFailure("'list' object has no attribute 'splitlines'")
        default: throw JinjaFailure("unsupported operand type(s) for +=: '\(value.typeName)' and 'str'")
        }
        let lines = Py.splitLines(text + "\n")
        var rv: String
        if a[2]?.truthy ?? false {
            rv = lines.joined(separator: "\n" + pad)
        } else {
            rv = lines.first ?? ""
            if lines.count > 1 { rv += "\n" + lines.dropFirst().map { $0.isEmpty ? $0 : pad + $0 }.joined(separator: "\n") }
        }
        if a[1]?.truthy ?? false { rv = pad + rv }
        return .string(rv)
    }
}
