import Foundation
import I2QCore

/// One part of a multimodal message, as transformers passes it to templates:
/// `{"type": "text", "text": ...}` or `{"type": "image"}`.
public enum ChatPart: Sendable {
    case text(String)
    case image
}

/// A message's content: a plain string, or a list of parts (Idefics2/SmolVLM style).
public enum ChatContent: Sendable {
    case text(String)
    case parts([ChatPart])
}

/// One chat message; templates see it as the dict `{"role": ..., "content": ..., **extraFields}`.
public struct ChatMessage: Sendable {
    public var role: String
    public var content: ChatContent
    /// Further keys of the message dict after role and content (e.g. `tool_calls`), in order.
    public var extraFields: JinjaObject

    public init(role: String, content: ChatContent, extraFields: JinjaObject = [:]) {
        self.role = role; self.content = content; self.extraFields = extraFields
    }
    public init(role: String, text: String) { self.init(role: role, content: .text(text)) }
    public init(role: String, parts: [ChatPart]) { self.init(role: role, content: .parts(parts)) }

    public static func system(_ text: String) -> ChatMessage { ChatMessage(role: "system", text: text) }
    public static func user(_ text: String) -> ChatMessage { ChatMessage(role: "user", text: text) }
    public static func assistant(_ text: String) -> ChatMessage { ChatMessage(role: "assistant", text: text) }

    /// The dict transformers hands the template.
    var jinjaValue: JinjaValue {
        var o: JinjaObject = ["role": .string(role)]
        switch content {
        case let .text(s): o["content"] = .string(s)
        case let .parts(parts):
            o["content"] = .array(parts.map { p in
                switch p {
                case let .text(s): return ["type": "text", "text": .string(s)]
                case .image: return ["type": "image"]
                }
            })
        }
        for e in extraFields.entries { o[e.key] = e.value }
        return .object(o)
    }
}

/// A model's chat template (a Jinja2 template), rendered as transformers'
/// `tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...)` renders it:
/// Jinja2 3.1 in an immutable sandbox with `trim_blocks` and `lstrip_blocks`, the globals
/// `raise_exception`, `strftime_now`, `namespace`, `range`, `dict`, and transformers' `tojson`.
/// See the files beside this one for the supported subset; anything else is a clear error.
public struct ChatTemplate: Sendable {
    /// The template text.
    public let source: String
    let body: Frame
    /// The time `strftime_now` reads (tests fix it).
    var clock: @Sendable () -> Date = { Date() }

    /// Parses `source` once. Syntax errors and unsupported constructs name the line and column.
    public init(source: String) throws {
        self.source = source
        body = try JinjaParser.parse(source)
    }

    /// The prompt text for `messages` (at least one, as transformers requires). The template sees `messages`, `add_generation_prompt`,
    /// `bos_token`/`eos_token` (undefined when nil, as for a tokenizer without them), `tools` and
    /// `documents` (None), and every entry of `extra` (e.g. `date_string`, `tools`).
    public func render(messages: [ChatMessage], addGenerationPrompt: Bool,
                       bosToken: String?, eosToken: String?, extra: [String: JinjaValue] = [:]) throws -> String {
        if messages.isEmpty {
            throw ChatTemplateError.invalidInput("Cannot apply chat template to an empty conversation. Provide at least one message.")
        }
        var vars: [String: JinjaValue] = ["tools": .none, "documents": .none]
        if let bosToken { vars["bos_token"] = .string(bosToken) }
        if let eosToken { vars["eos_token"] = .string(eosToken) }
        for (k, v) in extra {
            if k == "messages" || k == "add_generation_prompt" {
                throw ChatTemplateError.invalidInput("extra variable '\(k)' would replace the \(k) argument")
            }
            vars[k] = v
        }
        vars["messages"] = .array(messages.map(\.jinjaValue))
        vars["add_generation_prompt"] = .bool(addGenerationPrompt)
        return try JinjaInterpreter(variables: vars, now: clock()).render(body)
    }

    /// The template of a model directory, found where transformers looks: `chat_template.jinja`,
    /// then `chat_template.json` (`{"chat_template": ...}`), then `tokenizer_config.json`'s
    /// `chat_template` (a string, or a list of `{"name", "template"}` of which "default" is taken).
    /// nil when the directory has none.
    public static func load(modelDirectory: String) throws -> ChatTemplate? {
        let dir = URL(fileURLWithPath: modelDirectory)
        return try load(origin: modelDirectory) { name in
            let path = dir.appendingPathComponent(name).path
            guard FileManager.default.fileExists(atPath: path) else { return nil }
            guard let data = FileManager.default.contents(atPath: path) else { throw ChatTemplateError.file(path: path, reason: "cannot read the file") }
            return [UInt8](data)
        }
    }

    /// The same lookup over a model's small files by name (an .i2q's embedded files, a GGUF's
    /// synthesized ones): `file(name)` returns the bytes or nil. `origin` prefixes the names in errors.
    public static func load(origin: String, file: (String) throws -> [UInt8]?) throws -> ChatTemplate? {
        func path(_ n: String) -> String { origin + "/" + n }
        func text(_ n: String, _ b: [UInt8]) throws -> String {
            guard let s = String(validating: b, as: UTF8.self) else { throw ChatTemplateError.file(path: path(n), reason: "not valid UTF-8") }
            return s
        }
        func json(_ n: String, _ b: [UInt8]) throws -> JSONValue {
            do { return try JSONParser.parse(b, source: path(n)) } catch let e as JSONError {
                throw ChatTemplateError.file(path: path(n), reason: "not valid JSON: \(e.message) at byte \(e.offset)")
            }
        }
        if let b = try file("chat_template.jinja") { return try parse(try text("chat_template.jinja", b), from: path("chat_template.jinja")) }
        if let b = try file("chat_template.json") {
            guard case let .string(s)? = try json("chat_template.json", b)["chat_template"] else {
                throw ChatTemplateError.file(path: path("chat_template.json"), reason: "expected {\"chat_template\": \"...\"} with a string")
            }
            return try parse(s, from: path("chat_template.json"))
        }
        guard let b = try file("tokenizer_config.json") else { return nil }
        let config = path("tokenizer_config.json")
        switch try json("tokenizer_config.json", b)["chat_template"] {
        case nil, .null?: return nil
        case let .string(s)?: return try parse(s, from: config)
        case let .array(list)?:
            var names: [String] = []
            for item in list {
                guard case let .string(name)? = item["name"], case let .string(template)? = item["template"] else {
                    throw ChatTemplateError.file(path: config, reason: "chat_template list entries must be {\"name\": ..., \"template\": ...}")
                }
                if name == "default" { return try parse(template, from: config) }
                names.append(name)
            }
            throw ChatTemplateError.file(path: config, reason: "several chat templates and none named \"default\" (found: \(names.joined(separator: ", ")))")
        default:
            throw ChatTemplateError.file(path: config, reason: "chat_template must be a string or a list of {\"name\", \"template\"}")
        }
    }

    private static func parse(_ text: String, from path: String) throws -> ChatTemplate {
        do { return try ChatTemplate(source: text) } catch let e as ChatTemplateError {
            throw ChatTemplateError.file(path: path, reason: e.description)
        }
    }
}
