import Foundation

/// Renders a parsed template with Jinja2 3.1's runtime semantics:
/// - scopes: each frame (a `for` iteration, a loop's else, a macro call, a `with`, block `set`,
///   `filter` or `generation` body) has its own scope, so `{% set %}` inside a loop is not seen after
///   it (hence `namespace()`); `if` blocks share the enclosing scope; names are looked up innermost
///   first, with the names JinjaScopes finds starting as Undefined in their frame; a macro sees the
///   scopes around its definition;
/// - `and`/`or` return an operand, `a if b` without `else` is Undefined;
/// - printing Undefined gives "", using it in arithmetic, calls or lookups raises its UndefinedError;
/// - `loop.index/index0/revindex/revindex0/first/last/length/previtem/nextitem/cycle()`,
///   `{% break %}`/`{% continue %}` (transformers enables `jinja2.ext.loopcontrols`).
final class JinjaInterpreter {
    private var scopes: [[String: JinjaValue]]
    private var output = ""
    private let now: Date
    private var callDepth = 0

    private enum Flow { case normal, breakLoop, continueLoop }

    /// `variables` are the render arguments (messages, bos_token, ...); globals sit beneath them.
    init(variables: [String: JinjaValue], now: Date) {
        var base: [String: JinjaValue] = [:]
        for g in JinjaGlobals.names { base[g] = .callable(JinjaCallable(kind: .global(g))) }
        base.merge(variables) { $1 }
        scopes = [base, [:]]
        self.now = now
    }

    func render(_ root: Frame) throws -> String {
        for n in root.undefinedAtStart { scopes[1][n] = Self.undefined(n) }
        do { _ = try execute(root.body) } catch let f as JinjaFailure {
            // Every builtin runs inside `at`, which adds the position; this is a safety net.
            throw ChatTemplateError.runtime(line: 0, column: 0, message: f.message)
        }
        return output
    }

    // MARK: statements

    private func execute(_ body: [Stmt]) throws -> Flow {
        for stmt in body {
            switch stmt {
            case let .data(s): output += s
            case let .output(e): output += Py.str(try eval(e))
            case let .conditional(branches, otherwise):
                var taken: [Stmt]? = nil
                for b in branches { if try eval(b.test).truthy { taken = b.body; break } }
                let flow = try execute(taken ?? otherwise)
                if flow != .normal { return flow }
            case let .forLoop(loop): try runFor(loop)
            case let .assign(target, e, loc):
                // Jinja checks a namespace target before it evaluates the value.
                if case let .namespaceAttribute(ns, _) = target, !lookup(ns).isNamespace {
                    throw runtime(loc, "cannot assign attribute on non-namespace object")
                }
                try assign(target, try eval(e), loc)
            case let .assignBlock(target, filters, body, loc):
                try assign(target, try applyFilters(filters, .string(try capture(body))), loc)
            case let .loopControl(isBreak): return isBreak ? .breakLoop : .continueLoop
            case let .macro(m): scopes[scopes.count - 1][m.name] = .callable(JinjaCallable(kind: .macro(m, depth: scopes.count)))
            case let .with(assignments, body):
                var values: [JinjaValue] = []
                for a in assignments { values.append(try eval(a.value)) }
                enter(body)
                defer { scopes.removeLast() }
                for (a, v) in zip(assignments, values) { try assign(a.target, v, a.value.loc) }
                let flow = try execute(body.body)
                if flow != .normal { return flow }
            case let .filterBlock(filters, body):
                output += Py.str(try applyFilters(filters, .string(try capture(body))))
            case let .generation(body):
                enter(body)
                defer { scopes.removeLast() }
                let flow = try execute(body.body)
                if flow != .normal { return flow }
            }
        }
        return .normal
    }

    private static func undefined(_ name: String) -> JinjaValue { .undefined(message: "'\(name)' is undefined") }

    /// Pushes the scope of a frame, with the names Jinja starts as Undefined (see JinjaScopes).
    private func enter(_ frame: Frame, _ initial: [String: JinjaValue] = [:]) {
        var scope = initial
        for n in frame.undefinedAtStart { scope[n] = Self.undefined(n) }
        scopes.append(scope)
    }

    /// Renders a frame into a string of its own (block `set`, `filter`, macro calls).
    private func capture(_ frame: Frame) throws -> String {
        let saved = output
        output = ""
        defer { output = saved }
        enter(frame)
        defer { scopes.removeLast() }
        _ = try execute(frame.body)
        return output
    }

    private func applyFilters(_ filters: [FilterCall], _ value: JinjaValue) throws -> JinjaValue {
        var v = value
        for f in filters {
            let args = try evalArgs(f.args)
            v = try at(f.loc) { try JinjaFilters.apply(f.name, v, args) }
        }
        return v
    }

    private func runFor(_ loop: ForLoop) throws {
        let iterable = try eval(loop.iterable)
        var items = try at(loop.iterable.loc) { try JinjaOps.iterate(iterable) }
        if let condition = loop.condition {
            items = try items.filter { item in
                scopes.append([:])
                defer { scopes.removeLast() }
                try assign(loop.target, item, loop.loc)
                return try eval(condition).truthy
            }
        }
        if items.isEmpty {
            enter(loop.otherwise)
            defer { scopes.removeLast() }
            _ = try execute(loop.otherwise.body)
            return
        }
        let n = items.count
        for (i, item) in items.enumerated() {
            let info: JinjaObject = [
                "index0": .int(i), "index": .int(i + 1), "revindex0": .int(n - i - 1), "revindex": .int(n - i),
                "first": .bool(i == 0), "last": .bool(i == n - 1), "length": .int(n), "depth": 1, "depth0": 0,
                "previtem": i > 0 ? items[i - 1] : .undefined(message: "there is no previous item"),
                "nextitem": i < n - 1 ? items[i + 1] : .undefined(message: "there is no next item"),
                "cycle": .callable(JinjaCallable(kind: .loopCycle(index0: i))),
            ]
            enter(loop.body, ["loop": .object(info)])
            defer { scopes.removeLast() }
            try assign(loop.target, item, loop.loc)
            if try execute(loop.body.body) == .breakLoop { break }
        }
    }

    private func assign(_ target: AssignTarget, _ value: JinjaValue, _ loc: SourceLoc) throws {
        switch target {
        case let .name(n): scopes[scopes.count - 1][n] = value
        case let .tuple(names):
            let parts = try at(loc) {
                do { return try JinjaOps.iterate(value) } catch { throw JinjaFailure("cannot unpack non-iterable \(value.typeName) object") }
            }
            guard parts.count == names.count else {
                throw runtime(loc, parts.count > names.count ? "too many values to unpack (expected \(names.count))"
                                  : "not enough values to unpack (expected \(names.count), got \(parts.count))")
            }
            for (n, v) in zip(names, parts) { scopes[scopes.count - 1][n] = v }
        case let .namespaceAttribute(ns, attr):
            guard case let .namespace(obj) = lookup(ns) else { throw runtime(loc, "cannot assign attribute on non-namespace object") }
            try at(loc) { try JinjaGlobals.checkNamespaceName(attr) }
            obj.attributes[attr] = value
        }
    }

    private func lookup(_ name: String) -> JinjaValue {
        for scope in scopes.reversed() { if let v = scope[name] { return v } }
        return .undefined(message: "'\(name)' is undefined")
    }

    // MARK: expressions

    private func runtime(_ loc: SourceLoc, _ message: String) -> ChatTemplateError {
        .runtime(line: loc.line, column: loc.column, message: message)
    }

    /// Runs a builtin, giving its failure the position of the expression that called it.
    private func at<T>(_ loc: SourceLoc, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let f as JinjaFailure {
            if f.message.hasPrefix("unsupported: ") {
                throw ChatTemplateError.unsupported(line: loc.line, column: loc.column, what: String(f.message.dropFirst(13)))
            }
            throw runtime(loc, f.message)
        }
    }

    private func evalArgs(_ args: CallArgs) throws -> JinjaArgs {
        JinjaArgs(positional: try args.positional.map(eval), keywords: try args.keywords.map { ($0.name, try eval($0.value)) })
    }

    private func eval(_ e: Expr) throws -> JinjaValue {
        switch e.kind {
        case let .literal(v): return v
        case let .name(n): return lookup(n)
        case let .list(items), let .tuple(items): return .array(try items.map(eval))
        case let .dict(pairs):
            var o = JinjaObject()
            for p in pairs {
                guard case let .string(k) = try eval(p.key) else { throw ChatTemplateError.unsupported(line: p.key.loc.line, column: p.key.loc.column, what: "non-string dict key") }
                o[k] = try eval(p.value)
            }
            return .object(o)
        case let .getattr(obj, name):
            let o = try eval(obj)
            return try at(e.loc) { try JinjaOps.getattr(o, name) }
        case let .getitem(obj, key):
            let o = try eval(obj), k = try eval(key)
            return try at(e.loc) { try JinjaOps.getitem(o, k) }
        case let .slice(obj, start, stop, step):
            let o = try eval(obj)
            let a = try start.map(eval), b = try stop.map(eval), c = try step.map(eval)
            return try at(e.loc) { try JinjaOps.slice(o, a, b, c) }
        case let .call(callee, args):
            let f = try eval(callee)
            return try call(f, try evalArgs(args), e.loc)
        case let .filter(value, name, args):
            let v = try eval(value), a = try evalArgs(args)
            return try at(e.loc) { try JinjaFilters.apply(name, v, a) }
        case let .test(value, name, args):
            let v = try eval(value), a = try evalArgs(args)
            return .bool(try at(e.loc) { try JinjaTests.apply(name, v, a) })
        case let .not(x): return .bool(!(try eval(x).truthy))
        case let .negate(x):
            let v = try eval(x)
            return try at(e.loc) { try JinjaOps.negate(v) }
        case let .plus(x):
            let v = try eval(x)
            return try at(e.loc) {
                guard try v.defined().number != nil else { throw JinjaFailure("bad operand type for unary +: '\(v.typeName)'") }
                return v.number.map { n -> JinjaValue in if case let .int(i) = n { return .int(i) }; return .double(n.asDouble) }!
            }
        case let .binary(op, a, b):
            let x = try eval(a), y = try eval(b)
            return try at(e.loc) { try JinjaOps.binary(op, x, y) }
        case let .and(a, b):
            let x = try eval(a)
            return x.truthy ? try eval(b) : x
        case let .or(a, b):
            let x = try eval(a)
            return x.truthy ? x : try eval(b)
        case let .concat(items): return .string(try items.map { Py.str(try eval($0)) }.joined())
        case let .compare(first, ops):
            var left = try eval(first)
            for (op, rhs) in ops {
                let right = try eval(rhs)
                let l = left
                if !(try at(rhs.loc) { try JinjaOps.compare(op, l, right) }) { return .bool(false) }
                left = right
            }
            return .bool(true)
        case let .conditional(test, then, otherwise):
            if try eval(test).truthy { return try eval(then) }
            if let otherwise { return try eval(otherwise) }
            return .undefined(message: "the inline if-expression on line \(e.loc.line) evaluated to false and no else section was defined.")
        }
    }

    private func call(_ f: JinjaValue, _ args: JinjaArgs, _ loc: SourceLoc) throws -> JinjaValue {
        guard case let .callable(c) = f else {
            return try at(loc) {
                _ = try f.defined()
                throw JinjaFailure("'\(f.typeName)' object is not callable")
            }
        }
        switch c.kind {
        case let .global(name): return try at(loc) { try JinjaGlobals.call(name, args, now: now) }
        case let .method(receiver, name): return try at(loc) { try JinjaMethods.call(receiver, name, args) }
        case let .loopCycle(i):
            guard !args.positional.isEmpty else { throw runtime(loc, "no items for cycling given") }
            return args.positional[i % args.positional.count]
        case let .macro(m, depth): return try callMacro(m, depth, args, loc)
        }
    }

    /// Calls a macro: parameters bound like Python's, defaults evaluated in the macro's scope, the
    /// body rendered with the scopes around its definition visible (not the caller's locals).
    private func callMacro(_ m: MacroDefinition, _ depth: Int, _ args: JinjaArgs, _ loc: SourceLoc) throws -> JinjaValue {
        if args.positional.count > m.parameters.count {
            throw runtime(loc, "macro '\(m.name)' takes not more than \(m.parameters.count) argument(s)")
        }
        callDepth += 1
        defer { callDepth -= 1 }
        if callDepth > 50 { throw runtime(loc, "macro '\(m.name)' recursion is too deep") }
        let savedScopes = scopes
        scopes = Array(scopes.prefix(depth))
        enter(m.body)
        defer { scopes = savedScopes }
        for (i, p) in m.parameters.enumerated() {
            var value: JinjaValue? = i < args.positional.count ? args.positional[i] : nil
            if let kw = args.keywords.first(where: { $0.name == p.name }) {
                if value != nil { throw runtime(loc, "macro '\(m.name)' got multiple values for argument '\(p.name)'") }
                value = kw.value
            }
            if value == nil, let d = p.defaultValue { value = try eval(d) }
            scopes[scopes.count - 1][p.name] = value ?? .undefined(message: "parameter '\(p.name)' was not provided")
        }
        if let extra = args.keywords.first(where: { k in !m.parameters.contains { $0.name == k.name } }) {
            throw runtime(loc, "macro '\(m.name)' takes no keyword argument '\(extra.name)'")
        }
        return .string(try capture(m.body))
    }
}
