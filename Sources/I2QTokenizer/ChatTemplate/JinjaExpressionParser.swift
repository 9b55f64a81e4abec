/// Expressions, with Jinja2 3.1's precedence (`jinja2/parser.py`, `parse_expression` down to
/// `parse_primary`): `a if b else c` < `or` < `and` < `not` < comparisons, `in`, `not in` < `+ -` <
/// `~` < `* / // %` < `**` < unary `- +` < filters `|f` and tests `is t` < `.name`, `[i]`, `[a:b]`, calls.
extension JinjaParser {
    func isTupleEnd(_ extraEnd: Set<String>) -> Bool {
        switch current.kind {
        case .variableEnd, .blockEnd, .eof: return true
        case .op: return current.text == ")"
        case .name: return extraEnd.contains(current.text)
        default: return false
        }
    }

    /// Expressions separated by commas form a tuple (`{{ a, b }}`, `set a, b = 1, 2`).
    mutating func parseTuple(withCondExpr: Bool = true, extraEnd: Set<String> = [], explicitParens: Bool = false) throws -> Expr {
        let start = current.loc
        var items: [Expr] = []
        var isTuple = false
        while true {
            if !items.isEmpty { try expectOp(",") }
            if isTupleEnd(extraEnd) { break }
            items.append(withCondExpr ? try parseExpression() : try parseOr())
            if isOp(",") { isTuple = true } else { break }
        }
        if !isTuple {
            if let e = items.first { return try bounded(e) }
            if !explicitParens { throw fail("expected an expression, got \(describe(current))") }
        }
        return try bounded(Expr(kind: .tuple(items), loc: start))
    }

    /// Counts one level of parser recursion; too many is an error instead of a stack overflow.
    mutating func enter() throws {
        recursion += 1
        if recursion > Self.maxExpressionDepth { throw unsupported("expression nested more than \(Self.maxExpressionDepth) levels deep") }
    }

    /// An expression tree no deeper than the limit (long operator or filter chains build deep trees).
    func bounded(_ e: Expr) throws -> Expr {
        if e.depth > Self.maxExpressionDepth { throw unsupported("expression nested more than \(Self.maxExpressionDepth) levels deep", e.loc) }
        return e
    }

    mutating func parseExpression() throws -> Expr {
        try enter()
        defer { recursion -= 1 }
        var e = try parseOr()
        while isName("if") {
            let loc = advance().loc
            let test = try parseOr()
            let otherwise = skipName("else") ? try parseExpression() : nil
            e = Expr(kind: .conditional(test: test, then: e, otherwise: otherwise), loc: loc)
        }
        return try bounded(e)
    }

    mutating func parseOr() throws -> Expr {
        var e = try parseAnd()
        while isName("or") { let l = advance().loc; e = Expr(kind: .or(e, try parseAnd()), loc: l) }
        return e
    }

    mutating func parseAnd() throws -> Expr {
        var e = try parseNot()
        while isName("and") { let l = advance().loc; e = Expr(kind: .and(e, try parseNot()), loc: l) }
        return e
    }

    mutating func parseNot() throws -> Expr {
        if isName("not") {
            try enter()
            defer { recursion -= 1 }
            let l = advance().loc
            return Expr(kind: .not(try parseNot()), loc: l)
        }
        return try parseCompare()
    }

    mutating func parseCompare() throws -> Expr {
        let first = try parseMath1()
        var ops: [(op: CompareOp, rhs: Expr)] = []
        while true {
            if current.kind == .op, let op = CompareOp(rawValue: current.text), op != .in, op != .notIn {
                advance(); ops.append((op, try parseMath1()))
            } else if skipName("in") {
                ops.append((.in, try parseMath1()))
            } else if isName("not"), look().kind == .name, look().text == "in" {
                advance(); advance(); ops.append((.notIn, try parseMath1()))
            } else { break }
        }
        return ops.isEmpty ? first : Expr(kind: .compare(first, ops), loc: first.loc)
    }

    mutating func parseMath1() throws -> Expr {
        var e = try parseConcat()
        while current.kind == .op, current.text == "+" || current.text == "-" {
            let t = advance()
            e = Expr(kind: .binary(BinaryOp(rawValue: t.text)!, e, try parseConcat()), loc: t.loc)
        }
        return e
    }

    mutating func parseConcat() throws -> Expr {
        var items = [try parseMath2()]
        while skipOp("~") { items.append(try parseMath2()) }
        return items.count == 1 ? items[0] : Expr(kind: .concat(items), loc: items[0].loc)
    }

    mutating func parseMath2() throws -> Expr {
        var e = try parsePow()
        while current.kind == .op, ["*", "/", "//", "%"].contains(current.text) {
            let t = advance()
            e = Expr(kind: .binary(BinaryOp(rawValue: t.text)!, e, try parsePow()), loc: t.loc)
        }
        return e
    }

    mutating func parsePow() throws -> Expr {
        var e = try parseUnary()
        while isOp("**") { let l = advance().loc; e = Expr(kind: .binary(.pow, e, try parseUnary()), loc: l) }
        return e
    }

    mutating func parseUnary(withFilter: Bool = true) throws -> Expr {
        try enter()
        defer { recursion -= 1 }
        var e: Expr
        if isOp("-") {
            let l = advance().loc; e = Expr(kind: .negate(try parseUnary(withFilter: false)), loc: l)
        } else if isOp("+") {
            let l = advance().loc; e = Expr(kind: .plus(try parseUnary(withFilter: false)), loc: l)
        } else {
            e = try parsePrimary()
        }
        e = try parsePostfix(e)
        return withFilter ? try parseFilterExpr(e) : e
    }

    mutating func parsePrimary() throws -> Expr {
        let t = current
        switch t.kind {
        case .name:
            advance()
            switch t.text {
            case "true", "True": return Expr(kind: .literal(.bool(true)), loc: t.loc)
            case "false", "False": return Expr(kind: .literal(.bool(false)), loc: t.loc)
            case "none", "None": return Expr(kind: .literal(.none), loc: t.loc)
            default: return Expr(kind: .name(t.text), loc: t.loc)
            }
        case .string:
            var s = advance().text
            while current.kind == .string { s += advance().text }
            return Expr(kind: .literal(.string(s)), loc: t.loc)
        case .integer:
            guard let v = t.int else { throw unsupported("integer literal beyond 64 bits") }
            advance(); return Expr(kind: .literal(.int(v)), loc: t.loc)
        case .float:
            advance(); return Expr(kind: .literal(.double(t.double)), loc: t.loc)
        case .op where t.text == "(":
            advance()
            let e = try parseTuple(explicitParens: true)
            try expectOp(")")
            return e
        case .op where t.text == "[":
            advance()
            var items: [Expr] = []
            while !isOp("]") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("]") { break }
                items.append(try parseExpression())
            }
            try expectOp("]")
            return Expr(kind: .list(items), loc: t.loc)
        case .op where t.text == "{":
            advance()
            var items: [(key: Expr, value: Expr)] = []
            while !isOp("}") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("}") { break }
                let k = try parseExpression()
                try expectOp(":")
                items.append((k, try parseExpression()))
            }
            try expectOp("}")
            return Expr(kind: .dict(items), loc: t.loc)
        default:
            throw fail("unexpected \(describe(t))")
        }
    }

    mutating func parsePostfix(_ base: Expr) throws -> Expr {
        var e = base
        while true {
            if isOp(".") {
                let l = advance().loc
                let t = advance()
                switch t.kind {
                case .name: e = Expr(kind: .getattr(e, t.text), loc: l)
                case .integer:
                    guard let v = t.int else { throw unsupported("integer literal beyond 64 bits", t.loc) }
                    e = Expr(kind: .getitem(e, Expr(kind: .literal(.int(v)), loc: t.loc)), loc: l)
                default: throw fail("expected name or number after '.'", t.loc)
                }
            } else if isOp("[") {
                e = try parseSubscript(e)
            } else if isOp("(") {
                let l = current.loc
                e = Expr(kind: .call(e, try parseCallArgs()), loc: l)
            } else {
                return e
            }
        }
    }

    /// `a[i]`, `a[start:stop:step]` (each part optional).
    mutating func parseSubscript(_ base: Expr) throws -> Expr {
        let l = advance().loc
        let first = try subscriptPart()
        if !isOp(":") {
            guard let first else { throw fail("expected a subscript expression") }
            if isOp(",") { throw unsupported("tuple subscript") }
            try expectOp("]")
            return Expr(kind: .getitem(base, first), loc: l)
        }
        advance()
        let stop = try subscriptPart()
        var step: Expr? = nil
        if skipOp(":") { step = try subscriptPart() }
        if isOp(",") { throw unsupported("tuple subscript") }
        try expectOp("]")
        return Expr(kind: .slice(base, start: first, stop: stop, step: step), loc: l)
    }

    /// One part of a slice: absent before `:` or `]`.
    mutating func subscriptPart() throws -> Expr? { isOp(":") || isOp("]") ? nil : try parseExpression() }

    mutating func parseCallArgs() throws -> CallArgs {
        let open = current.loc
        try expectOp("(")
        var args = CallArgs()
        var needComma = false
        while !isOp(")") {
            if needComma {
                try expectOp(",")
                if isOp(")") { break }
            }
            if isOp("*") || isOp("**") { throw unsupported("*args/**kwargs in a call") }
            if current.kind == .name, look().kind == .op, look().text == "=" {
                let name = advance().text
                advance()
                args.keywords.append((name, try parseExpression()))
            } else {
                if !args.keywords.isEmpty { throw fail("invalid syntax for function call expression", open) }
                args.positional.append(try parseExpression())
            }
            needComma = true
        }
        try expectOp(")")
        return args
    }

    mutating func parseFilterExpr(_ base: Expr) throws -> Expr {
        var e = base
        while true {
            if isOp("|") {
                for f in try parseFilterChain(afterPipe: false) { e = Expr(kind: .filter(e, name: f.name, f.args), loc: f.loc) }
            } else if isName("is") {
                e = try parseTest(e)
            } else if isOp("(") {
                let l = current.loc
                e = Expr(kind: .call(e, try parseCallArgs()), loc: l)
            } else {
                return e
            }
        }
    }

    mutating func parseTest(_ base: Expr) throws -> Expr {
        let l = advance().loc
        let negated = skipName("not")
        let name = try expectName()
        guard JinjaTests.names.contains(name.text) else { throw unsupported("test '\(name.text)'", name.loc) }
        var args = CallArgs()
        if isOp("(") {
            args = try parseCallArgs()
        } else if [.name, .string, .integer, .float].contains(current.kind) || isOp("(") || isOp("[") || isOp("{"),
                  !isName("else"), !isName("or"), !isName("and") {
            if isName("is") { throw fail("you cannot chain multiple tests with is") }
            args.positional = [try parsePostfix(try parsePrimary())]
        }
        let test = Expr(kind: .test(base, name: name.text, args), loc: l)
        return negated ? Expr(kind: .not(test), loc: l) : test
    }
}
