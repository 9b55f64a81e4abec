import I2QCore

/// A value as a chat template sees it: the Python objects transformers passes to Jinja2 3.1
/// (`str`, `int`, `float`, `bool`, `None`, `list`, `dict`), plus Jinja's own `Undefined`,
/// `namespace()` objects and callables (globals, macros, bound methods).
///
/// Strings are compared and measured as Python does: by Unicode code points, never by Swift's
/// canonical equivalence (`"é" != "e\u{301}"`, `len("👍🏽") == 2`).
public enum JinjaValue: Sendable {
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    /// A Python list (tuples are lists here too).
    case array([JinjaValue])
    /// A Python dict with string keys, in insertion order.
    case object(JinjaObject)
    /// Jinja2's default `Undefined`: prints as "", is falsy and iterates as empty; `message` is the
    /// `UndefinedError` raised when it is used where a value is required (`'x' is undefined`).
    case undefined(message: String)
    /// A `namespace()` object: shared by reference, so `{% set ns.x = ... %}` inside a loop is seen outside.
    case namespace(JinjaNamespace)
    /// Something callable: a global (`raise_exception`, `namespace`, ...), a macro or a bound method.
    case callable(JinjaCallable)
}

/// A Python dict with string keys, insertion-ordered like Python's. Keys match by code points.
public struct JinjaObject: Sendable, ExpressibleByDictionaryLiteral {
    public var entries: [(key: String, value: JinjaValue)]

    public init(_ entries: [(key: String, value: JinjaValue)] = []) { self.entries = entries }
    public init(dictionaryLiteral elements: (String, JinjaValue)...) {
        entries = []
        for (k, v) in elements { self[k] = v }
    }

    public var count: Int { entries.count }
    public var keys: [String] { entries.map(\.key) }

    public subscript(key: String) -> JinjaValue? {
        get { entries.first(where: { sameText($0.key, key) })?.value }
        set {
            let i = entries.firstIndex(where: { sameText($0.key, key) })
            switch (i, newValue) {
            case let (i?, v?): entries[i].value = v
            case let (i?, nil): entries.remove(at: i)
            case let (nil, v?): entries.append((key, v))
            case (nil, nil): break
            }
        }
    }
}

/// A Jinja2 `namespace()` (transformers' `TemplateNamespace`): attributes set with
/// `{% set ns.attr = value %}`, shared by reference across scopes.
public final class JinjaNamespace: @unchecked Sendable {
    var attributes: JinjaObject
    init(_ attributes: JinjaObject) { self.attributes = attributes }
}

/// Something a template can call. Built by the interpreter only.
public struct JinjaCallable: Sendable {
    indirect enum Kind: Sendable {
        /// A global function: raise_exception, strftime_now, namespace, range, dict.
        case global(String)
        /// `receiver.name`, e.g. `'abc'.upper` or `message.items`.
        case method(receiver: JinjaValue, name: String)
        /// `loop.cycle` of an iteration.
        case loopCycle(index0: Int)
        /// A `{% macro %}` defined by the template; `depth` is how many scopes were open where it
        /// was defined (its body sees those, as a Jinja macro is a closure over its frame).
        case macro(MacroDefinition, depth: Int)
    }
    let kind: Kind
}

/// Both equal by Python's rules: same code points (Swift's == would accept canonical equivalents).
@inline(__always) func sameText(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }

extension JinjaValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByFloatLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(arrayLiteral elements: JinjaValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JinjaValue)...) {
        var o = JinjaObject()
        for (k, v) in elements { o[k] = v }
        self = .object(o)
    }
}

extension JinjaValue {
    /// The value Python's `json.loads` would give for `json` (integers that fit in Int stay ints).
    public init(json: JSONValue) {
        switch json {
        case .null: self = .none
        case let .bool(b): self = .bool(b)
        case let .number(s):
            if let i = Int(s) { self = .int(i) } else { self = .double(Double(s) ?? .nan) }
        case let .string(s): self = .string(s)
        case let .array(a): self = .array(a.map(JinjaValue.init(json:)))
        case let .object(e): self = .object(JinjaObject(e.map { (key: $0.0, value: JinjaValue(json: $0.1)) }))
        }
    }

    var isUndefined: Bool { if case .undefined = self { return true }; return false }
    var isNone: Bool { if case .none = self { return true }; return false }
    var isNamespace: Bool { if case .namespace = self { return true }; return false }

    /// Python truthiness (`bool(x)`); Undefined is false.
    var truthy: Bool {
        switch self {
        case .none, .undefined: return false
        case let .bool(b): return b
        case let .int(i): return i != 0
        case let .double(d): return d != 0
        case let .string(s): return !s.isEmpty
        case let .array(a): return !a.isEmpty
        case let .object(o): return o.count > 0
        case .namespace, .callable: return true
        }
    }

    /// Python's type name, for error messages (`'int' object is not iterable`).
    var typeName: String {
        switch self {
        case .none: return "NoneType"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .array: return "list"
        case .object: return "dict"
        case .undefined: return "Undefined"
        case .namespace: return "Namespace"
        case .callable: return "function"
        }
    }

    /// The number as Python sees it in arithmetic (bool is an int subclass).
    var number: PyNumber? {
        switch self {
        case let .bool(b): return .int(b ? 1 : 0)
        case let .int(i): return .int(i)
        case let .double(d): return .double(d)
        default: return nil
        }
    }
}

/// An int or float operand, after bools became ints.
enum PyNumber {
    case int(Int)
    case double(Double)
    var asDouble: Double {
        switch self { case let .int(i): return Double(i); case let .double(d): return d }
    }
}

/// An error inside a builtin (filter, method, operator) without a location yet: the interpreter
/// adds the line and column of the expression that called it.
struct JinjaFailure: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

extension JinjaValue {
    /// Throws the UndefinedError when an Undefined is used where a value is needed.
    func defined() throws -> JinjaValue {
        if case let .undefined(m) = self { throw JinjaFailure(m) }
        return self
    }
}
