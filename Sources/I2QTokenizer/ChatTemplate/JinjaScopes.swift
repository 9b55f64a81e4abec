/// Jinja2 3.1's symbol analysis (`jinja2/idtracking.py`), reduced to the one thing rendering needs
/// beyond a chain of scopes: which names each frame starts as Undefined.
///
/// Jinja compiles every frame's variables to locals initialised at frame entry: a name whose first
/// use in the frame is a read is resolved from the render variables (or aliased to an enclosing
/// frame's variable); a name assigned inside an `if` is resolved too; but a name whose first use is
/// an unconditional assignment, unknown to every enclosing frame, starts Undefined. Nested frames
/// (loops, macros, ...) that run before that assignment therefore see Undefined, e.g.
/// `{% for m in messages %}{{ x }}{% endfor %}{% set x = 1 %}` prints nothing even when `x` is
/// passed to render. With the frames' scopes looked up innermost first, pre-setting those names to
/// Undefined at frame entry reproduces Jinja's results.
enum JinjaScopes {
    static func analyze(_ root: Frame) { analyze(root, outer: [], parameters: []) }

    private enum Load { case resolve, alias, undefined, parameter }

    private struct Symbols {
        var refs: [String: Load] = [:]
        var stores: Set<String> = []
        /// Every name an enclosing frame refers to.
        let outer: Set<String>

        mutating func load(_ n: String) { if refs[n] == nil && !outer.contains(n) { refs[n] = .resolve } }
        mutating func store(_ n: String) {
            stores.insert(n)
            if refs[n] == nil { refs[n] = outer.contains(n) ? .alias : .undefined }
        }
        mutating func parameter(_ n: String) { stores.insert(n); refs[n] = .parameter }

        /// `Symbols.branch_update`: after an `if`, names first assigned in a branch are resolved.
        mutating func merge(_ branches: [Symbols]) {
            let newStores = branches.reduce(into: Set<String>()) { $0.formUnion($1.stores) }.subtracting(stores)
            for b in branches {
                refs.merge(b.refs) { _, branch in branch }
                stores.formUnion(b.stores)
            }
            for n in newStores { refs[n] = outer.contains(n) ? .alias : .resolve }
        }
    }

    private static func analyze(_ frame: Frame, outer: Set<String>, parameters: [String], loads: [Expr] = []) {
        var s = Symbols(outer: outer)
        for p in parameters { s.parameter(p) }
        for e in loads { visit(e, &s) }
        for stmt in frame.body { visit(stmt, &s) }
        frame.undefinedAtStart = s.refs.filter { $0.value == .undefined }.map(\.key).sorted()
        let inner = outer.union(s.refs.keys)
        for stmt in frame.body { analyzeChildren(stmt, inner) }
    }

    /// The frame's own statements, as Jinja's FrameSymbolVisitor sees them.
    private static func visit(_ stmt: Stmt, _ s: inout Symbols) {
        switch stmt {
        case .data, .loopControl, .generation: break
        case let .output(e): visit(e, &s)
        case let .conditional(branches, otherwise):
            for b in branches { visit(b.test, &s) }
            var copies: [Symbols] = []
            for body in branches.map(\.body) + [otherwise] {
                var c = s
                for x in body { visit(x, &c) }
                copies.append(c)
            }
            s.merge(copies)
        case let .forLoop(loop): visit(loop.iterable, &s)
        case let .assign(target, e, _):
            visit(e, &s)
            if case let .namespaceAttribute(ns, _) = target { s.load(ns) }
            for n in target.names { s.store(n) }
        case let .assignBlock(target, filters, _, _):
            for n in target.names { s.store(n) }
            for f in filters { visit(f.args, &s) }
        case let .macro(m): s.store(m.name)
        case let .with(assignments, _): for a in assignments { visit(a.value, &s) }
        case let .filterBlock(filters, _): for f in filters { visit(f.args, &s) }
        }
    }

    /// The frames nested in a frame's statements (through `if` branches, which are not frames).
    private static func analyzeChildren(_ stmt: Stmt, _ outer: Set<String>) {
        switch stmt {
        case let .conditional(branches, otherwise):
            for body in branches.map(\.body) + [otherwise] { for x in body { analyzeChildren(x, outer) } }
        case let .forLoop(loop):
            analyze(loop.body, outer: outer, parameters: loop.target.names + ["loop"])
            analyze(loop.otherwise, outer: outer, parameters: [])
        case let .macro(m):
            analyze(m.body, outer: outer, parameters: m.parameters.map(\.name), loads: m.parameters.compactMap(\.defaultValue))
        case let .with(assignments, body):
            analyze(body, outer: outer, parameters: assignments.flatMap { $0.target.names })
        case let .assignBlock(_, _, body, _), let .filterBlock(_, body), let .generation(body):
            analyze(body, outer: outer, parameters: [])
        default: break
        }
    }

    private static func visit(_ e: Expr, _ s: inout Symbols) {
        if case let .name(n) = e.kind { s.load(n) }
        for c in e.kind.children { visit(c, &s) }
    }

    private static func visit(_ args: CallArgs, _ s: inout Symbols) {
        for e in args.positional + args.keywords.map(\.value) { visit(e, &s) }
    }
}
