/// Arguments of a filter, test, method or global call, bound to parameter names as Python binds them.
struct JinjaArgs {
    var positional: [JinjaValue] = []
    var keywords: [(name: String, value: JinjaValue)] = []

    func bind(_ function: String, _ names: [String]) throws -> [JinjaValue?] {
        if positional.count > names.count {
            throw JinjaFailure("\(function)() takes at most \(names.count) argument(s) (\(positional.count) given)")
        }
        var out = [JinjaValue?](repeating: nil, count: names.count)
        for (i, v) in positional.enumerated() { out[i] = v }
        for (k, v) in keywords {
            guard let i = names.firstIndex(of: k) else { throw JinjaFailure("\(function)() got an unexpected keyword argument '\(k)'") }
            if out[i] != nil { throw JinjaFailure("\(function)() got multiple values for argument '\(k)'") }
            out[i] = v
        }
        return out
    }
}

/// Jinja2 3.1's builtin tests (`jinja2/tests.py`) used as `x is name(args)`.
enum JinjaTests {
    static let names: Set<String> = [
        "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "even", "false", "float", "ge", "greaterthan",
        "gt", "in", "integer", "iterable", "le", "lessthan", "lower", "lt", "mapping", "ne", "none", "number", "odd",
        "sequence", "string", "true", "undefined", "upper", "==", "!=", "<", "<=", ">", ">=",
    ]

    static func apply(_ name: String, _ v: JinjaValue, _ args: JinjaArgs) throws -> Bool {
        func other() throws -> JinjaValue {
            guard let o = try args.bind(name, ["other"])[0] else { throw JinjaFailure("test '\(name)' needs an argument") }
            return o
        }
        switch name {
        case "defined": return !v.isUndefined
        case "undefined": return v.isUndefined
        case "none": return v.isNone
        case "boolean": if case .bool = v { return true }; return false
        case "true": if case .bool(true) = v { return true }; return false
        case "false": if case .bool(false) = v { return true }; return false
        case "integer": if case .int = v { return true }; return false
        case "float": if case .double = v { return true }; return false
        case "number": return v.number != nil
        case "string": if case .string = v { return true }; return false
        case "mapping": if case .object = v { return true }; return false
        case "callable": if case .callable = v { return true }; return false
        case "iterable", "sequence":
            switch v { case .string, .array, .object, .undefined: return true; default: return false }
        case "odd": return JinjaOps.equals(try JinjaOps.binary(.mod, v, .int(2)), .int(1))
        case "even": return JinjaOps.equals(try JinjaOps.binary(.mod, v, .int(2)), .int(0))
        case "divisibleby": return JinjaOps.equals(try JinjaOps.binary(.mod, v, other()), .int(0))
        case "lower", "upper":
            var cased = false
            for u in Py.str(v).unicodeScalars {
                let p = u.properties
                let wrong = name == "lower" ? (p.isUppercase || p.generalCategory == .titlecaseLetter) : (p.isLowercase || p.generalCategory == .titlecaseLetter)
                if wrong { return false }
                if name == "lower" ? p.isLowercase : p.isUppercase { cased = true }
            }
            return cased
        case "eq", "equalto", "==": return try JinjaOps.compare(.eq, v, other())
        case "ne", "!=": return try JinjaOps.compare(.ne, v, other())
        case "lt", "lessthan", "<": return try JinjaOps.compare(.lt, v, other())
        case "le", "<=": return try JinjaOps.compare(.le, v, other())
        case "gt", "greaterthan", ">": return try JinjaOps.compare(.gt, v, other())
        case "ge", ">=": return try JinjaOps.compare(.ge, v, other())
        case "in": return try JinjaOps.contains(other(), v)
        default: throw JinjaFailure("unsupported: test '\(name)'")
        }
    }
}
