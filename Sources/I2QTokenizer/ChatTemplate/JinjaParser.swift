/// Recursive-descent parser with Jinja2 3.1's grammar (`jinja2/parser.py`): statements and their end
/// tags here, expressions in JinjaExpressionParser.swift. Unknown filters, tests and tags are rejected
/// here, as Jinja rejects unknown filters when it compiles; Jinja tags outside the subset (include,
/// extends, block, import, call, ...) are "unsupported" errors naming the tag.
struct JinjaParser {
    var tokens: [Token]
    var i = 0
    /// Open block tags, innermost last, for end-tag and end-of-template messages.
    var open: [(name: String, loc: SourceLoc)] = []
    var loopDepth = 0
    /// Parser recursion (parentheses, `not`, unary signs) and the limits on nesting, so that neither
    /// parsing nor rendering a hostile template can exhaust the stack.
    var recursion = 0
    static let maxExpressionDepth = 100
    static let maxBlockDepth = 64

    /// The template as a frame, with Jinja's scope analysis done.
    static func parse(_ source: String) throws -> Frame {
        var p = JinjaParser(tokens: try JinjaLexer(source).tokens)
        let (body, _) = try p.subparse(until: [])
        let root = Frame(body)
        JinjaScopes.analyze(root)
        return root
    }

    private init(tokens: [Token]) { self.tokens = tokens }

    // MARK: token helpers

    var current: Token { tokens[i] }
    func look(_ n: Int = 1) -> Token { tokens[min(i + n, tokens.count - 1)] }
    @discardableResult mutating func advance() -> Token { let t = tokens[i]; if i < tokens.count - 1 { i += 1 }; return t }
    func isOp(_ s: String) -> Bool { current.kind == .op && current.text == s }
    func isName(_ s: String) -> Bool { current.kind == .name && current.text == s }
    mutating func skipName(_ s: String) -> Bool { if isName(s) { advance(); return true }; return false }
    mutating func skipOp(_ s: String) -> Bool { if isOp(s) { advance(); return true }; return false }

    func describe(_ t: Token) -> String {
        switch t.kind {
        case .data: return "template data"
        case .variableBegin: return "'{{'"
        case .variableEnd: return "end of print statement"
        case .blockBegin: return "'{%'"
        case .blockEnd: return "end of statement block"
        case .name, .op: return "'\(t.text)'"
        case .string: return "string \(Py.stringRepr(t.text))"
        case .integer, .float: return "number \(t.text)"
        case .eof: return "end of template"
        }
    }

    func fail(_ message: String, _ loc: SourceLoc? = nil) -> ChatTemplateError {
        let l = loc ?? current.loc
        return .syntax(line: l.line, column: l.column, message: message)
    }

    func unsupported(_ what: String, _ loc: SourceLoc? = nil) -> ChatTemplateError {
        let l = loc ?? current.loc
        return .unsupported(line: l.line, column: l.column, what: what)
    }

    mutating func expectOp(_ s: String) throws {
        guard isOp(s) else { throw fail("expected '\(s)', got \(describe(current))") }
        advance()
    }

    mutating func expectName() throws -> Token {
        guard current.kind == .name else { throw fail("expected a name, got \(describe(current))") }
        return advance()
    }

    mutating func expect(_ kind: Token.Kind) throws {
        guard current.kind == kind else { throw fail("expected \(describe(Token(kind: kind, text: "", loc: current.loc))), got \(describe(current))") }
        advance()
    }

    // MARK: statements

    /// Template data, `{{ }}` and statements until a block tag named in `end`; returns the body and
    /// that tag's name (consumed). At the top level `end` is empty and parsing runs to the end.
    private mutating func subparse(until end: Set<String>) throws -> ([Stmt], String?) {
        var body: [Stmt] = []
        while true {
            switch current.kind {
            case .data:
                body.append(.data(advance().text))
            case .variableBegin:
                advance()
                body.append(.output(try parseTuple()))
                try expect(.variableEnd)
            case .blockBegin:
                advance()
                if current.kind == .name, end.contains(current.text) { return (body, advance().text) }
                body.append(try parseStatement())
                try expect(.blockEnd)
            case .eof:
                if let innermost = open.last {
                    throw fail("unexpected end of template: the '\(innermost.name)' at line \(innermost.loc.line):\(innermost.loc.column) is never closed (expected \(end.sorted().map { "'\($0)'" }.joined(separator: " or ")))")
                }
                return (body, nil)
            default:
                throw fail("unexpected \(describe(current))")
            }
        }
    }

    /// `%}` then the body up to one of `end`.
    private mutating func block(_ name: String, _ loc: SourceLoc, until end: Set<String>) throws -> ([Stmt], String) {
        try expect(.blockEnd)
        if open.count >= Self.maxBlockDepth { throw unsupported("nesting of more than \(Self.maxBlockDepth) blocks", loc) }
        open.append((name, loc))
        defer { open.removeLast() }
        let (body, tag) = try subparse(until: end)
        return (body, tag!)
    }

    private mutating func parseStatement() throws -> Stmt {
        guard current.kind == .name else { throw fail("tag name expected, got \(describe(current))") }
        let tok = current
        switch tok.text {
        case "if": return try parseIf()
        case "for": return try parseFor()
        case "set": return try parseSet()
        case "macro": return try parseMacro()
        case "with": return try parseWith()
        case "filter":
            advance()
            let filters = try parseFilterChain()
            let (body, _) = try block("filter", tok.loc, until: ["endfilter"])
            return .filterBlock(filters, Frame(body))
        case "print":
            advance()
            return .output(try parseTuple())
        case "generation":
            advance()
            let (body, _) = try block("generation", tok.loc, until: ["endgeneration"])
            return .generation(Frame(body))
        case "break", "continue":
            guard loopDepth > 0 else { throw fail("'\(tok.text)' outside of a loop") }
            advance()
            return .loopControl(isBreak: tok.text == "break")
        case "block", "extends", "include", "import", "from", "call", "autoescape", "do":
            throw unsupported("tag '\(tok.text)'")
        default:
            var message = "unexpected tag '\(tok.text)'"
            if let innermost = open.last {
                message += "; the innermost open block is the '\(innermost.name)' at line \(innermost.loc.line):\(innermost.loc.column)"
            }
            throw fail(message)
        }
    }

    private mutating func parseIf() throws -> Stmt {
        let start = advance().loc
        var branches: [(test: Expr, body: [Stmt])] = []
        var otherwise: [Stmt] = []
        var test = try parseTuple(withCondExpr: false)
        while true {
            let (body, tag) = try block("if", start, until: ["elif", "else", "endif"])
            branches.append((test, body))
            if tag == "elif" { test = try parseTuple(withCondExpr: false); continue }
            if tag == "else" { otherwise = try block("if", start, until: ["endif"]).0 }
            return .conditional(branches, otherwise: otherwise)
        }
    }

    private mutating func parseFor() throws -> Stmt {
        let start = advance().loc
        let target = try parseAssignTarget(withNamespace: false, extraEnd: ["in"])
        guard skipName("in") else { throw fail("expected 'in', got \(describe(current))") }
        let iterable = try parseTuple(withCondExpr: false, extraEnd: ["recursive"])
        let condition = skipName("if") ? try parseExpression() : nil
        if isName("recursive") { throw unsupported("recursive for loop") }
        loopDepth += 1
        let (body, tag) = try block("for", start, until: ["endfor", "else"])
        loopDepth -= 1
        let otherwise = tag == "else" ? try block("for", start, until: ["endfor"]).0 : []
        return .forLoop(ForLoop(target: target, iterable: iterable, condition: condition, body: Frame(body), otherwise: Frame(otherwise), loc: start))
    }

    private mutating func parseSet() throws -> Stmt {
        let start = advance().loc
        let target = try parseAssignTarget(withNamespace: true, extraEnd: [])
        if skipOp("=") { return .assign(target, try parseTuple(), start) }
        let filters = isOp("|") ? try parseFilterChain(afterPipe: false) : []
        let (body, _) = try block("set", start, until: ["endset"])
        return .assignBlock(target, filters, Frame(body), start)
    }

    private mutating func parseMacro() throws -> Stmt {
        let start = advance().loc
        let name = try expectName().text
        try expectOp("(")
        var params: [(name: String, defaultValue: Expr?)] = []
        while !isOp(")") {
            if !params.isEmpty { try expectOp(",") }
            if isOp(")") { break }
            let p = try expectName()
            if skipOp("=") { params.append((p.text, try parseExpression())) } else {
                if params.contains(where: { $0.defaultValue != nil }) { throw fail("non-default argument follows default argument", p.loc) }
                params.append((p.text, nil))
            }
        }
        try expectOp(")")
        let depth = loopDepth
        loopDepth = 0
        defer { loopDepth = depth }
        let (body, _) = try block("macro", start, until: ["endmacro"])
        return .macro(MacroDefinition(name: name, parameters: params, body: Frame(body), loc: start))
    }

    private mutating func parseWith() throws -> Stmt {
        let start = advance().loc
        var assignments: [(target: AssignTarget, value: Expr)] = []
        while current.kind != .blockEnd {
            if !assignments.isEmpty { try expectOp(",") }
            let target = try parseAssignTarget(withNamespace: false, extraEnd: [])
            try expectOp("=")
            assignments.append((target, try parseExpression()))
        }
        let (body, _) = try block("with", start, until: ["endwith"])
        return .with(assignments, Frame(body))
    }

    /// A name, `a, b` / `(a, b)`, or (for `set`) `ns.attr`.
    private mutating func parseAssignTarget(withNamespace: Bool, extraEnd: Set<String>) throws -> AssignTarget {
        let start = current.loc
        if withNamespace, current.kind == .name, look().kind == .op, look().text == "." {
            let ns = advance().text
            advance()
            return .namespaceAttribute(ns, try expectName().text)
        }
        let parens = skipOp("(")
        var names: [String] = []
        var isTuple = parens
        while true {
            if !names.isEmpty {
                guard skipOp(",") else { break }
                isTuple = true
            }
            if current.kind == .blockEnd || (current.kind == .name && extraEnd.contains(current.text)) || isOp(")") || isOp("=") { break }
            guard current.kind == .name, !["true", "false", "none", "True", "False", "None"].contains(current.text) else {
                throw fail("can't assign to \(describe(current))")
            }
            names.append(advance().text)
        }
        if parens { try expectOp(")") }
        if names.isEmpty { throw fail("expected an assignment target", start) }
        return isTuple ? .tuple(names) : .name(names[0])
    }

    mutating func parseFilterChain(afterPipe: Bool = true) throws -> [FilterCall] {
        var out: [FilterCall] = []
        var first = afterPipe
        while first || skipOp("|") {
            first = false
            let name = try expectName()
            let args = isOp("(") ? try parseCallArgs() : CallArgs()
            guard JinjaFilters.names.contains(name.text) else { throw unsupported("filter '\(name.text)'", name.loc) }
            out.append(FilterCall(name: name.text, args: args, loc: name.loc))
        }
        return out
    }
}
