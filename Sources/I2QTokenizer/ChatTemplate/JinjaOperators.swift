import Foundation

/// Operators, lookups and iteration with the semantics of Python 3 objects inside Jinja2 3.1's
/// `ImmutableSandboxedEnvironment` (`Environment.getattr`/`getitem`, Python's `+ - * / // % **`,
/// comparisons, `in`). Errors carry Python's messages (`can only concatenate str (not "int") to str`).
enum JinjaOps {
    // MARK: lookups

    /// Jinja's `Undefined` for a failed lookup, with the message its use raises.
    static func missing(_ obj: JinjaValue, _ key: JinjaValue) -> JinjaValue {
        let type: String
        switch obj {
        case .none: type = "None"
        default: type = "\(obj.typeName) object"
        }
        if case let .string(name) = key { return .undefined(message: "'\(type)' has no attribute \(Py.stringRepr(name))") }
        return .undefined(message: "\(type) has no element \(Py.repr(key))")
    }

    /// `obj.name`: the attribute (a method, a namespace attribute), else the item.
    static func getattr(_ obj: JinjaValue, _ name: String) throws -> JinjaValue {
        switch obj {
        case .undefined: return try obj.defined()
        case let .namespace(ns): return ns.attributes[name] ?? missing(obj, .string(name))
        case let .object(o):
            if JinjaMethods.has(obj, name) { return .callable(JinjaCallable(kind: .method(receiver: obj, name: name))) }
            return o[name] ?? missing(obj, .string(name))
        default:
            if JinjaMethods.has(obj, name) { return .callable(JinjaCallable(kind: .method(receiver: obj, name: name))) }
            return missing(obj, .string(name))
        }
    }

    /// `obj[key]`: the item, else (for a string key) the attribute.
    static func getitem(_ obj: JinjaValue, _ key: JinjaValue) throws -> JinjaValue {
        switch (obj, key) {
        case (.undefined, _): return try obj.defined()
        case let (.array(a), _):
            guard let i = index(key), let j = normalize(i, a.count) else { return fallback(obj, key) }
            return a[j]
        case let (.string(s), _):
            let u = Py.scalars(s)
            guard let i = index(key), let j = normalize(i, u.count) else { return fallback(obj, key) }
            return .string(String(u[j]))
        case let (.object(o), .string(k)):
            return o[k] ?? fallback(obj, key)
        case let (.namespace(ns), .string(k)):
            return ns.attributes[k] ?? missing(obj, key)
        default:
            return fallback(obj, key)
        }
    }

    private static func fallback(_ obj: JinjaValue, _ key: JinjaValue) -> JinjaValue {
        if case let .string(name) = key, JinjaMethods.has(obj, name) {
            return .callable(JinjaCallable(kind: .method(receiver: obj, name: name)))
        }
        return missing(obj, key)
    }

    private static func index(_ v: JinjaValue) -> Int? {
        switch v { case let .int(i): return i; case let .bool(b): return b ? 1 : 0; default: return nil }
    }

    private static func normalize(_ i: Int, _ count: Int) -> Int? {
        let j = i < 0 ? i + count : i
        return j >= 0 && j < count ? j : nil
    }

    /// `obj[start:stop:step]` for lists and strings (Python's `slice.indices`).
    static func slice(_ obj: JinjaValue, _ start: JinjaValue?, _ stop: JinjaValue?, _ step: JinjaValue?) throws -> JinjaValue {
        func bound(_ v: JinjaValue?) throws -> Int? {
            guard let v, !v.isNone else { return nil }
            guard let i = index(try v.defined()) else { throw JinjaFailure("slice indices must be integers or None") }
            return i
        }
        let st = try bound(step) ?? 1
        if st == 0 { throw JinjaFailure("slice step cannot be zero") }
        func picks(_ n: Int) throws -> [Int] {
            var lo = try bound(start), hi = try bound(stop)
            if st > 0 {
                lo = lo.map { $0 < 0 ? max($0 + n, 0) : min($0, n) } ?? 0
                hi = hi.map { $0 < 0 ? max($0 + n, 0) : min($0, n) } ?? n
                return Array(stride(from: lo!, to: hi!, by: st))
            }
            lo = lo.map { $0 < 0 ? max($0 + n, -1) : min($0, n - 1) } ?? n - 1
            hi = hi.map { $0 < 0 ? max($0 + n, -1) : min($0, n - 1) } ?? -1
            return Array(stride(from: lo!, to: hi!, by: st))
        }
        switch obj {
        case let .array(a): return .array(try picks(a.count).map { a[$0] })
        case let .string(s): let u = Py.scalars(s); return .string(Py.string(try picks(u.count).map { u[$0] }))
        case .undefined: return try obj.defined()
        // Jinja compiles a slice to a plain Python subscript: no Undefined fallback.
        case .object: throw JinjaFailure("unhashable type: 'slice'")
        default: throw JinjaFailure("'\(obj.typeName)' object is not subscriptable")
        }
    }

    /// `iter(x)` as a `for` loop sees it: list items, string characters, dict keys; Undefined is empty.
    static func iterate(_ v: JinjaValue) throws -> [JinjaValue] {
        switch v {
        case let .array(a): return a
        case let .string(s): return s.unicodeScalars.map { .string(String($0)) }
        case let .object(o): return o.keys.map { .string($0) }
        case .undefined: return []
        default: throw JinjaFailure("'\(v.typeName)' object is not iterable")
        }
    }

    // MARK: arithmetic

    static func binary(_ op: BinaryOp, _ a: JinjaValue, _ b: JinjaValue) throws -> JinjaValue {
        _ = try a.defined(); _ = try b.defined()
        if let x = a.number, let y = b.number { return try arithmetic(op, x, y) }
        switch (op, a, b) {
        case let (.add, .string(x), .string(y)): return .string(x + y)
        case let (.add, .array(x), .array(y)): return .array(x + y)
        case (.add, .string, _): throw JinjaFailure("can only concatenate str (not \"\(b.typeName)\") to str")
        case (.add, .array, _): throw JinjaFailure("can only concatenate list (not \"\(b.typeName)\") to list")
        case (.mul, .string, _), (.mul, .array, _), (.mul, _, .string), (.mul, _, .array):
            // Sequence repetition; bool counts as an int.
            let (seq, times): (JinjaValue, JinjaValue) = { switch a { case .string, .array: return (a, b); default: return (b, a) } }()
            guard case let .int(n)? = times.number else { throw JinjaFailure("can't multiply sequence by non-int of type '\(times.typeName)'") }
            if case let .string(s) = seq { return .string(String(repeating: s, count: max(0, n))) }
            if case let .array(x) = seq { return .array(Array([[JinjaValue]](repeating: x, count: max(0, n)).joined())) }
            throw JinjaFailure("unsupported operand type(s) for *: '\(a.typeName)' and '\(b.typeName)'")
        case (.mod, .string, _): throw JinjaFailure("unsupported: printf-style string formatting with %")
        default:
            let name = op == .pow ? "** or pow()" : op.rawValue
            throw JinjaFailure("unsupported operand type(s) for \(name): '\(a.typeName)' and '\(b.typeName)'")
        }
    }

    private static func arithmetic(_ op: BinaryOp, _ x: PyNumber, _ y: PyNumber) throws -> JinjaValue {
        if case let .int(i) = x, case let .int(j) = y {
            func checked(_ r: (Int, Bool)) throws -> JinjaValue {
                if r.1 { throw JinjaFailure("unsupported: integer result beyond 64 bits") }
                return .int(r.0)
            }
            switch op {
            case .add: return try checked(i.addingReportingOverflow(j))
            case .sub: return try checked(i.subtractingReportingOverflow(j))
            case .mul: return try checked(i.multipliedReportingOverflow(by: j))
            case .div:
                if j == 0 { throw JinjaFailure("division by zero") }
                return .double(Double(i) / Double(j))
            case .floorDiv, .mod:
                if j == 0 { throw JinjaFailure(op == .mod ? "integer modulo by zero" : "integer division or modulo by zero") }
                if i == .min && j == -1 { throw JinjaFailure("unsupported: integer result beyond 64 bits") }
                var q = i / j, r = i % j
                if r != 0 && ((r < 0) != (j < 0)) { q -= 1; r += j }
                return .int(op == .mod ? r : q)
            case .pow:
                if j < 0 {
                    if i == 0 { throw JinjaFailure("0.0 cannot be raised to a negative power") }
                    return .double(pow(Double(i), Double(j)))
                }
                var result = 1, base = i, e = j
                while e > 0 {
                    if e & 1 == 1 { result = try checked(result.multipliedReportingOverflow(by: base)).intValue }
                    e >>= 1
                    if e > 0 { base = try checked(base.multipliedReportingOverflow(by: base)).intValue }
                }
                return .int(result)
            }
        }
        let a = x.asDouble, b = y.asDouble
        switch op {
        case .add: return .double(a + b)
        case .sub: return .double(a - b)
        case .mul: return .double(a * b)
        case .div:
            if b == 0 { throw JinjaFailure("float division by zero") }
            return .double(a / b)
        case .floorDiv, .mod:
            if b == 0 { throw JinjaFailure(op == .mod ? "float modulo" : "float floor division by zero") }
            // CPython float_divmod.
            var m = fmod(a, b)
            var div = (a - m) / b
            if m != 0 { if (b < 0) != (m < 0) { m += b; div -= 1 } } else { m = copysign(0, b) }
            var fl: Double
            if div != 0 { fl = div.rounded(.down); if div - fl > 0.5 { fl += 1 } } else { fl = copysign(0, a / b) }
            return .double(op == .mod ? m : fl)
        case .pow:
            if a == 0 && b < 0 { throw JinjaFailure("0.0 cannot be raised to a negative power") }
            if a < 0 && b != b.rounded() { throw JinjaFailure("unsupported: complex result of ** (negative base, fractional exponent)") }
            let r = pow(a, b)
            if r.isInfinite && a.isFinite && b.isFinite { throw JinjaFailure("(34, 'Numerical result out of range')") }
            return .double(r)
        }
    }

    static func negate(_ v: JinjaValue) throws -> JinjaValue {
        switch try v.defined().number {
        case let .int(i)?:
            if i == .min { throw JinjaFailure("unsupported: integer result beyond 64 bits") }
            return .int(-i)
        case let .double(d)?: return .double(-d)
        case nil: throw JinjaFailure("bad operand type for unary -: '\(v.typeName)'")
        }
    }

    // MARK: comparison

    /// Python `==` (1 == 1.0 == True; dicts compare without order; Undefined equals Undefined).
    static func equals(_ a: JinjaValue, _ b: JinjaValue) -> Bool {
        if let x = a.number, let y = b.number {
            if case let .int(i) = x, case let .int(j) = y { return i == j }
            return x.asDouble == y.asDouble
        }
        switch (a, b) {
        case (.none, .none), (.undefined, .undefined): return true
        case let (.string(x), .string(y)): return sameText(x, y)
        case let (.array(x), .array(y)): return x.count == y.count && zip(x, y).allSatisfy { equals($0, $1) }
        case let (.object(x), .object(y)):
            return x.count == y.count && x.entries.allSatisfy { e in y[e.key].map { equals(e.value, $0) } ?? false }
        case let (.namespace(x), .namespace(y)): return x === y
        default: return false
        }
    }

    static func compare(_ op: CompareOp, _ a: JinjaValue, _ b: JinjaValue) throws -> Bool {
        switch op {
        case .eq: return equals(a, b)
        case .ne: return !equals(a, b)
        case .in: return try contains(b, a)
        case .notIn: return try !contains(b, a)
        case .lt, .gt, .le, .ge: return try ordered(op, a, b)
        }
    }

    /// Python's `<`, `>`, `<=`, `>=` for numbers, strings (code points) and lists (the first unequal
    /// items decide, else the lengths).
    private static func ordered(_ op: CompareOp, _ a: JinjaValue, _ b: JinjaValue) throws -> Bool {
        _ = try a.defined(); _ = try b.defined()
        func apply<T: Comparable>(_ x: T, _ y: T) -> Bool {
            switch op { case .lt: return x < y; case .gt: return x > y; case .le: return x <= y; default: return x >= y }
        }
        if let x = a.number, let y = b.number {
            if case let .int(i) = x, case let .int(j) = y { return apply(i, j) }
            return apply(x.asDouble, y.asDouble)
        }
        switch (a, b) {
        case let (.string(x), .string(y)): return apply(sameText(x, y) ? 0 : Py.less(x, y) ? -1 : 1, 0)
        case let (.array(x), .array(y)):
            for (p, q) in zip(x, y) where !equals(p, q) { return try ordered(op, p, q) }
            return apply(x.count, y.count)
        default:
            throw JinjaFailure("'\(op.rawValue)' not supported between instances of '\(a.typeName)' and '\(b.typeName)'")
        }
    }

    /// `item in container`.
    static func contains(_ container: JinjaValue, _ item: JinjaValue) throws -> Bool {
        switch container {
        case let .string(s):
            guard case let .string(n) = item else {
                throw JinjaFailure("'in <string>' requires string as left operand, not \(item.typeName)")
            }
            return Py.contains(s, n)
        case let .array(a): return a.contains { equals($0, item) }
        case let .object(o):
            switch item {
            case let .string(k): return o[k] != nil
            case .array, .object: throw JinjaFailure("unhashable type: '\(item.typeName)'")
            default: return false
            }
        case .undefined: return false
        default: throw JinjaFailure("argument of type '\(container.typeName)' is not iterable")
        }
    }
}

private extension JinjaValue {
    var intValue: Int { if case let .int(i) = self { return i }; return 0 }
}
