import I2QCore

/// A post-processor adds the special tokens around an encoded sequence (huggingface/tokenizers'
/// `PostProcessor`, single sequences only).
protocol PostProcessor: Sendable {
    func process(_ ids: [Int], addSpecialTokens: Bool) -> [Int]
}

/// `single`: a list of special tokens (each possibly several ids) and the sequence `$A`.
struct TemplateProcessor: PostProcessor {
    enum Item: Sendable { case special([Int]), sequence }
    let single: [Item]

    func process(_ ids: [Int], addSpecialTokens: Bool) -> [Int] {
        if !addSpecialTokens { return ids }
        var out: [Int] = []
        out.reserveCapacity(ids.count + single.count)
        for item in single {
            switch item {
            case let .special(s): out += s
            case .sequence: out += ids
            }
        }
        return out
    }
}

struct SequenceProcessor: PostProcessor {
    let processors: [any PostProcessor]
    func process(_ ids: [Int], addSpecialTokens: Bool) -> [Int] {
        processors.reduce(ids) { $1.process($0, addSpecialTokens: addSpecialTokens) }
    }
}

/// ByteLevel only trims offsets: ids pass through.
struct IdentityProcessor: PostProcessor {
    func process(_ ids: [Int], addSpecialTokens: Bool) -> [Int] { ids }
}

func makePostProcessor(_ v: JSONValue, _ path: String, _ r: JSONReader) throws -> any PostProcessor {
    let type = try r.type(v, path)
    switch type {
    case "TemplateProcessing":
        var specials: [String: [Int]] = [:]
        if let st = r.field(v, "special_tokens") {
            for (name, spec) in try r.object(st, r.join(path, "special_tokens")) {
                let p = "\(path).special_tokens[\(debugQuoted(name))]"
                let ids = try r.array(try r.required(spec, "ids", p), r.join(p, "ids")).enumerated().map {
                    try r.int($0.element, "\(p).ids[\($0.offset)]")
                }
                specials[name] = ids
            }
        }
        let single = try r.array(try r.required(v, "single", path), r.join(path, "single"))
        var items: [TemplateProcessor.Item] = []
        for (i, piece) in single.enumerated() {
            let p = "\(path).single[\(i)]"
            if let s = r.field(piece, "SpecialToken") {
                let name = try r.string(try r.required(s, "id", p + ".SpecialToken"), p + ".SpecialToken.id")
                guard let ids = specials[name] else {
                    throw TokenizerError.unknownToken(file: r.file, path: p, token: name)
                }
                items.append(.special(ids))
            } else if let s = r.field(piece, "Sequence") {
                let id = try r.string(try r.required(s, "id", p + ".Sequence"), p + ".Sequence.id")
                guard id == "A" else {
                    throw TokenizerError.unsupported(file: r.file, path: p, what: "sequence \(debugQuoted(id)) in the single template")
                }
                items.append(.sequence)
            } else {
                throw TokenizerError.invalidField(file: r.file, path: p, expected: "{\"SpecialToken\": ...} or {\"Sequence\": ...}")
            }
        }
        return TemplateProcessor(single: items)
    case "Sequence":
        let items = try r.array(try r.required(v, "processors", path), r.join(path, "processors"))
        return SequenceProcessor(processors: try items.enumerated().map {
            try makePostProcessor($0.element, "\(path).processors[\($0.offset)]", r)
        })
    case "ByteLevel":
        return IdentityProcessor()
    case "BertProcessing", "RobertaProcessing":
        // {"sep": ["[SEP]", 102], "cls": ["[CLS]", 101]}: single = cls $A sep
        func pair(_ key: String) throws -> Int {
            let a = try r.array(try r.required(v, key, path), r.join(path, key))
            guard a.count == 2, let id = a[1].intValue else {
                throw TokenizerError.invalidField(file: r.file, path: r.join(path, key), expected: "[token, id]")
            }
            return id
        }
        return TemplateProcessor(single: [.special([try pair("cls")]), .sequence, .special([try pair("sep")])])
    default:
        throw TokenizerError.unsupported(file: r.file, path: r.join(path, "type"), what: "post-processor type \(debugQuoted(type))")
    }
}
