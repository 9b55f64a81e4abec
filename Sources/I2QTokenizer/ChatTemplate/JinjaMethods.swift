import Foundation
#if canImport(Glibc)
import Glibc
private let cStrftime = Glibc.strftime
#elseif canImport(Darwin)
import Darwin
private let cStrftime = Darwin.strftime
#endif

/// Python methods a template may call on strings and dicts (`message['role'].capitalize()`,
/// `content.strip()`, `message.items()`), as Jinja2's `ImmutableSandboxedEnvironment` allows them:
/// methods that modify a list or dict are refused with the sandbox's message.
enum JinjaMethods {
    static let stringMethods: Set<String> = [
        "capitalize", "endswith", "find", "isalnum", "isalpha", "isdigit", "islower", "isspace", "isupper", "join",
        "lower", "lstrip", "replace", "rstrip", "split", "splitlines", "startswith", "strip", "title", "upper",
    ]
    static let dictMethods: Set<String> = ["get", "items", "keys", "values"]
    /// Python methods not implemented here: calling one is an "unsupported" error, not a missing attribute.
    static let unimplemented: [String: Set<String>] = [
        "str": ["casefold", "center", "count", "encode", "expandtabs", "format", "format_map", "index", "isascii",
                "isdecimal", "isidentifier", "isnumeric", "isprintable", "istitle", "ljust", "partition", "removeprefix",
                "removesuffix", "rfind", "rindex", "rjust", "rpartition", "rsplit", "swapcase", "translate", "zfill"],
        "dict": ["copy", "fromkeys"],
        "list": ["copy", "count", "index"],
    ]
    /// Mutating methods: the immutable sandbox refuses to call them.
    static let unsafe: [String: Set<String>] = [
        "dict": ["clear", "pop", "popitem", "setdefault", "update"],
        "list": ["append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort"],
    ]

    static func has(_ v: JinjaValue, _ name: String) -> Bool {
        if unimplemented[v.typeName]?.contains(name) ?? false { return true }
        switch v {
        case .string: return stringMethods.contains(name)
        case .object: return dictMethods.contains(name) || unsafe["dict"]!.contains(name)
        case .array: return unsafe["list"]!.contains(name)
        default: return false
        }
    }

    static func call(_ receiver: JinjaValue, _ name: String, _ args: JinjaArgs) throws -> JinjaValue {
        if unsafe[receiver.typeName]?.contains(name) ?? false {
            throw JinjaFailure("access to attribute '\(name)' of '\(receiver.typeName)' object is unsafe.")
        }
        if unimplemented[receiver.typeName]?.contains(name) ?? false {
            throw JinjaFailure("unsupported: method \(receiver.typeName).\(name)()")
        }
        switch receiver {
        case let .string(s): return try stringMethod(s, name, args)
        case let .object(o):
            switch name {
            case "items": _ = try args.bind(name, []); return .array(o.entries.map { .array([.string($0.key), $0.value]) })
            case "keys": _ = try args.bind(name, []); return .array(o.keys.map { .string($0) })
            case "values": _ = try args.bind(name, []); return .array(o.entries.map(\.value))
            case "get":
                let a = try args.bind(name, ["key", "default"])
                guard case let .string(k)? = a[0] else { return a[1] ?? .none }
                return o[k] ?? a[1] ?? .none
            default: break
            }
        default: break
        }
        throw JinjaFailure("'\(receiver.typeName)' object has no attribute '\(name)'")
    }

    private static func stringMethod(_ s: String, _ name: String, _ args: JinjaArgs) throws -> JinjaValue {
        func str(_ v: JinjaValue?, _ what: String) throws -> String {
            guard case let .string(x)? = v else { throw JinjaFailure("\(name)() argument must be str, not \(v?.typeName ?? "nothing") (\(what))") }
            return x
        }
        func all(_ test: (Unicode.Scalar) -> Bool) -> JinjaValue { .bool(!s.isEmpty && s.unicodeScalars.allSatisfy(test)) }
        switch name {
        case "upper": _ = try args.bind(name, []); return .string(Py.upper(s))
        case "lower": _ = try args.bind(name, []); return .string(Py.lower(s))
        case "capitalize": _ = try args.bind(name, []); return .string(Py.capitalize(s))
        case "title": _ = try args.bind(name, []); return .string(Py.title(s))
        case "strip", "lstrip", "rstrip":
            let a = try args.bind(name, ["chars"])
            return .string(Py.strip(s, try JinjaFilters.optionalString(a[0]), leading: name != "rstrip", trailing: name != "lstrip"))
        case "startswith", "endswith":
            let a = try args.bind(name, ["prefix", "start", "end"])
            guard case let .string(window) = try JinjaOps.slice(.string(s), a[1], a[2], nil) else { return .bool(false) }
            let candidates: [JinjaValue] = if case let .array(xs)? = a[0] { xs } else { [a[0] ?? .none] }
            for c in candidates {
                let p = Py.scalars(try str(c, "prefix"))
                let w = Py.scalars(window)
                if p.count <= w.count && (name == "startswith" ? Array(w.prefix(p.count)) == p : Array(w.suffix(p.count)) == p) {
                    return .bool(true)
                }
            }
            return .bool(false)
        case "split":
            let a = try args.bind(name, ["sep", "maxsplit"])
            let sep: String? = a[0].flatMap { $0.isNone ? nil : $0 }.map { Py.str($0) }
            return .array(try Py.split(s, sep, try a[1].map { try JinjaFilters.int($0) } ?? -1).map { .string($0) })
        case "splitlines":
            let a = try args.bind(name, ["keepends"])
            return .array(Py.splitLines(s, keepEnds: a[0]?.truthy ?? false).map { .string($0) })
        case "replace":
            let a = try args.bind(name, ["old", "new", "count"])
            return .string(JinjaFilters.replace(s, try str(a[0], "old"), try str(a[1], "new"), try a[2].map { try JinjaFilters.int($0) } ?? -1))
        case "join":
            let a = try args.bind(name, ["iterable"])
            let items = try JinjaOps.iterate(a[0] ?? .array([]))
            return .string(try items.enumerated().map { i, v in
                guard case let .string(x) = v else { throw JinjaFailure("sequence item \(i): expected str instance, \(v.typeName) found") }
                return x
            }.joined(separator: s))
        case "find":
            let a = try args.bind(name, ["sub", "start"])
            let h = Py.scalars(s), n = Py.scalars(try str(a[0], "sub"))
            var i = try a[1].map { try JinjaFilters.int($0) } ?? 0
            if i < 0 { i = max(0, i + h.count) }
            while i + n.count <= h.count { if Array(h[i..<(i + n.count)]) == n { return .int(i) }; i += 1 }
            return .int(-1)
        case "isspace": _ = try args.bind(name, []); return all(Py.isSpace)
        case "isdigit": _ = try args.bind(name, []); return all { [.digit, .decimal].contains($0.properties.numericType) }
        case "isalpha": _ = try args.bind(name, []); return all { $0.properties.generalCategory.isLetter }
        case "isalnum":
            _ = try args.bind(name, [])
            return all { $0.properties.generalCategory.isLetter || $0.properties.numericType != nil }
        case "islower", "isupper": return .bool(try JinjaTests.apply(name == "islower" ? "lower" : "upper", .string(s), JinjaArgs()))
        default: throw JinjaFailure("'str' object has no attribute '\(name)'")
        }
    }
}

private extension Unicode.GeneralCategory {
    var isLetter: Bool {
        switch self { case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true; default: return false }
    }
}

/// The globals transformers gives chat templates: Jinja's `range`, `dict`, `namespace` (transformers'
/// `TemplateNamespace`, refusing `_`-prefixed names) and transformers' `raise_exception`, `strftime_now`.
enum JinjaGlobals {
    static let names = ["raise_exception", "strftime_now", "namespace", "range", "dict", "cycler", "joiner", "lipsum"]

    static func call(_ name: String, _ args: JinjaArgs, now: Date) throws -> JinjaValue {
        switch name {
        case "raise_exception":
            guard let message = try args.bind(name, ["message"])[0] else {
                throw JinjaFailure("raise_exception() missing 1 required positional argument: 'message'")
            }
            throw ChatTemplateError.raised(message: Py.str(message))
        case "strftime_now":
            let a = try args.bind(name, ["format"])
            guard case let .string(f)? = a[0] else { throw JinjaFailure("strftime() argument 1 must be str") }
            return .string(strftime(f, now))
        case "range":
            guard args.keywords.isEmpty, (1...3).contains(args.positional.count) else { throw JinjaFailure("range expected 1 to 3 integer arguments") }
            let n = try args.positional.map(JinjaFilters.int)
            let (start, stop, step) = n.count == 1 ? (0, n[0], 1) : (n[0], n[1], n.count == 3 ? n[2] : 1)
            if step == 0 { throw JinjaFailure("range() arg 3 must not be zero") }
            // The length without overflow: the span as a Double is exact enough to compare with the limit.
            let span = step > 0 ? Double(stop) - Double(start) : Double(start) - Double(stop)
            if span / Swift.abs(Double(step)) > 100_000 { throw JinjaFailure("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).") }
            var out: [JinjaValue] = []
            var v = start
            while step > 0 ? v < stop : v > stop {
                out.append(.int(v))
                let (next, overflow) = v.addingReportingOverflow(step)
                if overflow { break }
                v = next
            }
            return .array(out)
        case "dict", "namespace":
            guard args.positional.count <= 1 else { throw JinjaFailure("\(name) expected at most 1 positional argument") }
            var o = JinjaObject()
            if let first = args.positional.first {
                switch first {
                case let .object(x): o = x
                case let .namespace(ns): o = ns.attributes
                default:
                    for pair in try JinjaOps.iterate(first) {
                        let kv = try JinjaOps.iterate(pair)
                        guard kv.count == 2, case let .string(k) = kv[0] else { throw JinjaFailure("\(name) needs (key, value) pairs with string keys") }
                        o[k] = kv[1]
                    }
                }
            }
            for (k, v) in args.keywords { o[k] = v }
            if name == "dict" { return .object(o) }
            for k in o.keys { try checkNamespaceName(k) }
            return .namespace(JinjaNamespace(o))
        default:
            throw JinjaFailure("unsupported: global \(name)()")
        }
    }

    /// transformers' `TemplateNamespace._check_name`.
    static func checkNamespaceName(_ name: String) throws {
        if name.hasPrefix("_") {
            throw JinjaFailure("Chat templates cannot store underscore-prefixed attributes on a namespace, but got \(Py.stringRepr(name)). Please rename the attribute.")
        }
    }

    /// Python's `datetime.now().strftime(format)` on Linux: %f is microseconds, %z and %Z are empty
    /// (a naive datetime), everything else goes to the C library's strftime, as CPython does.
    static func strftime(_ format: String, _ date: Date) -> String {
        let seconds = date.timeIntervalSince1970
        var t = time_t(seconds.rounded(.down))
        var tm = tm()
        localtime_r(&t, &tm)
        tm.tm_isdst = -1
        let micro = Int(((seconds - seconds.rounded(.down)) * 1_000_000).rounded(.down))
        var f = "", it = format.unicodeScalars.makeIterator()
        while let u = it.next() {
            guard u == "%" else { f.unicodeScalars.append(u); continue }
            guard let c = it.next() else { f += "%"; break }
            switch c {
            case "f": f += String(format: "%06d", micro)
            case "z", "Z": break
            default: f += "%"; f.unicodeScalars.append(c)
            }
        }
        if f.isEmpty { return "" }
        var size = 256
        while size <= 1 << 20 {
            var buf = [CChar](repeating: 0, count: size)
            let n = buf.withUnsafeMutableBufferPointer { cStrftime($0.baseAddress!, size, f, &tm) }
            if n > 0 { return String(decoding: buf[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
            size *= 4
        }
        return ""
    }
}
