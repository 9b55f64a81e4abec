/// The syntax tree of a template, shaped like Jinja2 3.1's `jinja2.nodes` (only the node types
/// chat templates use). Every node keeps the position of its first token for error messages.

struct Expr: Sendable {
    let kind: ExprKind
    let loc: SourceLoc
    /// Nesting depth of the tree below (1 for a leaf); the parser bounds it so that evaluation,
    /// which recurses once per level, cannot exhaust the stack.
    let depth: Int

    init(kind: ExprKind, loc: SourceLoc) {
        self.kind = kind
        self.loc = loc
        depth = 1 + kind.children.reduce(0) { max($0, $1.depth) }
    }
}

/// Positional and keyword arguments of a call, filter or test.
struct CallArgs: Sendable {
    var positional: [Expr] = []
    var keywords: [(name: String, value: Expr)] = []
}

enum BinaryOp: String, Sendable { case add = "+", sub = "-", mul = "*", div = "/", floorDiv = "//", mod = "%", pow = "**" }
enum CompareOp: String, Sendable { case eq = "==", ne = "!=", lt = "<", le = "<=", gt = ">", ge = ">=", `in` = "in", notIn = "not in" }

indirect enum ExprKind: Sendable {
    case literal(JinjaValue)
    case name(String)
    case list([Expr])
    case tuple([Expr])
    case dict([(key: Expr, value: Expr)])
    /// `a.b` (attribute first, then item, as Jinja's `getattr`).
    case getattr(Expr, String)
    /// `a[b]` (item first, then attribute, as Jinja's `getitem`).
    case getitem(Expr, Expr)
    /// `a[start:stop:step]`.
    case slice(Expr, start: Expr?, stop: Expr?, step: Expr?)
    case call(Expr, CallArgs)
    case filter(Expr, name: String, CallArgs)
    /// `a is name(args)`; `is not` is a `not` around it.
    case test(Expr, name: String, CallArgs)
    case not(Expr)
    case negate(Expr)
    case plus(Expr)
    case binary(BinaryOp, Expr, Expr)
    case and(Expr, Expr)
    case or(Expr, Expr)
    /// `a ~ b ~ c`: the `str()` of each, joined.
    case concat([Expr])
    /// `a < b <= c`: Python's chained comparison.
    case compare(Expr, [(op: CompareOp, rhs: Expr)])
    /// `a if test else b`; without `else` the result is Undefined when the test fails.
    case conditional(test: Expr, then: Expr, otherwise: Expr?)
}

extension ExprKind {
    var children: [Expr] {
        switch self {
        case .literal, .name: return []
        case let .list(items), let .tuple(items), let .concat(items): return items
        case let .dict(pairs): return pairs.flatMap { [$0.key, $0.value] }
        case let .getattr(e, _), let .not(e), let .negate(e), let .plus(e): return [e]
        case let .getitem(a, b), let .binary(_, a, b), let .and(a, b), let .or(a, b): return [a, b]
        case let .slice(e, a, b, c): return [e] + [a, b, c].compactMap { $0 }
        case let .call(e, args), let .filter(e, _, args), let .test(e, _, args):
            return [e] + args.positional + args.keywords.map(\.value)
        case let .compare(first, ops): return [first] + ops.map(\.rhs)
        case let .conditional(test, then, otherwise): return [test, then] + (otherwise.map { [$0] } ?? [])
        }
    }
}

/// What `set`, `for` and `with` assign to.
enum AssignTarget: Sendable {
    case name(String)
    /// `a, b` unpacking.
    case tuple([String])
    /// `ns.attr` on a namespace object.
    case namespaceAttribute(String, String)
}

extension AssignTarget {
    var names: [String] {
        switch self {
        case let .name(n): return [n]
        case let .tuple(ns): return ns
        case .namespaceAttribute: return []
        }
    }
}

/// One filter of a chain in `{% filter %}` or `{% set x | f %}`.
struct FilterCall: Sendable {
    var name: String
    var args: CallArgs
    var loc: SourceLoc
}

/// The statements of one Jinja scope ("frame"): the template itself, a loop body or else block, a
/// macro body, a `with`, block `set`, `filter` or `generation` body. Each runs in a scope of its own.
final class Frame: @unchecked Sendable {
    let body: [Stmt]
    /// Names this frame assigns before any read and that no enclosing frame knows: Jinja starts them
    /// as Undefined at frame entry, so nested frames that run before the assignment see Undefined,
    /// not a render variable of the same name. Set once by `JinjaScopes.analyze` (hence the
    /// unchecked Sendable: never mutated after the template is built).
    var undefinedAtStart: [String] = []
    init(_ body: [Stmt]) { self.body = body }
}

struct ForLoop: Sendable {
    var target: AssignTarget
    var iterable: Expr
    /// `{% for x in xs if cond %}`: items are filtered before the loop (loop.length counts the kept ones).
    var condition: Expr?
    var body: Frame
    /// Rendered when no item was iterated.
    var otherwise: Frame
    var loc: SourceLoc
}

/// A `{% macro name(params) %}` definition. Defaults are evaluated at each call, as in Jinja.
final class MacroDefinition: Sendable {
    let name: String
    let parameters: [(name: String, defaultValue: Expr?)]
    let body: Frame
    let loc: SourceLoc
    init(name: String, parameters: [(name: String, defaultValue: Expr?)], body: Frame, loc: SourceLoc) {
        self.name = name; self.parameters = parameters; self.body = body; self.loc = loc
    }
}

indirect enum Stmt: Sendable {
    /// Template text outside tags.
    case data(String)
    /// `{{ expr }}` or `{% print expr %}`.
    case output(Expr)
    /// `if`/`elif` branches, then `else`.
    case conditional([(test: Expr, body: [Stmt])], otherwise: [Stmt])
    case forLoop(ForLoop)
    case assign(AssignTarget, Expr, SourceLoc)
    /// `{% set x %}...{% endset %}`, optionally through filters.
    case assignBlock(AssignTarget, [FilterCall], Frame, SourceLoc)
    case loopControl(isBreak: Bool)
    case macro(MacroDefinition)
    /// `{% with a = 1 %}...{% endwith %}`.
    case with([(target: AssignTarget, value: Expr)], Frame)
    /// `{% filter f %}...{% endfilter %}`.
    case filterBlock([FilterCall], Frame)
    /// transformers' `{% generation %}...{% endgeneration %}`: renders its body unchanged.
    case generation(Frame)
}
