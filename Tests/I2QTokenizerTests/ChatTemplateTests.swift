import Foundation
import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QTokenizer

/// Chat templates against transformers 5.24.0 / jinja2 3.1.6: every expected text and error message
/// in Tests/Fixtures/chat-templates/goldens.json was rendered by transformers
/// (scripts/fixtures/make_chat_template_goldens.py), for the real templates of SmolLM2, Idefics2,
/// SmolVLM, Llama 3 / 3.1 / 3.2-Vision, Mistral, Mixtral and ChatML, and for small templates that
/// exercise one Jinja feature each.
final class ChatTemplateTests: XCTestCase {
    static let dir = fixturesDir + "/chat-templates"

    static let goldens: JSONValue = {
        guard let data = FileManager.default.contents(atPath: dir + "/goldens.json"),
              let v = try? JSONParser.parse([UInt8](data), source: "goldens.json") else { return .null }
        return v
    }()

    /// transformers' strftime_now read this (local) time when the goldens were made.
    static let clock: @Sendable () -> Date = {
        let n = goldens["now"]?.arrayValue?.compactMap(\.intValue) ?? []
        var c = DateComponents()
        (c.year, c.month, c.day, c.hour, c.minute, c.second) = (n[0], n[1], n[2], n[3], n[4], n[5])
        c.nanosecond = n[6] * 1000
        let date = Calendar(identifier: .gregorian).date(from: c)!
        return { date }
    }()

    static func same(_ a: String, _ b: String) -> Bool { Array(a.utf8) == Array(b.utf8) }

    /// A golden message dict as a ChatMessage: string or parts content, other keys as extra fields.
    static func message(_ v: JSONValue) -> ChatMessage {
        var content = ChatContent.text("")
        switch v["content"] {
        case let .string(s)?: content = .text(s)
        case let .array(parts)?:
            content = .parts(parts.map { $0["type"]?.stringValue == "image" ? .image : .text($0["text"]?.stringValue ?? "") })
        default: break
        }
        var extra = JinjaObject()
        for (k, x) in v.objectEntries ?? [] where k != "role" && k != "content" { extra[k] = JinjaValue(json: x) }
        return ChatMessage(role: v["role"]?.stringValue ?? "", content: content, extraFields: extra)
    }

    static func extra(_ v: JSONValue?) -> [String: JinjaValue] {
        var out: [String: JinjaValue] = [:]
        for (k, x) in v?.objectEntries ?? [] { out[k] = JinjaValue(json: x) }
        return out
    }

    static func load(_ file: String) throws -> ChatTemplate {
        let source = try String(contentsOfFile: dir + "/" + file, encoding: .utf8)
        var t = try ChatTemplate(source: source)
        t.clock = clock
        return t
    }

    /// Checks a golden's expected text, or that the same error is thrown.
    func check(_ name: String, _ golden: JSONValue, file: StaticString = #filePath, line: UInt = #line,
               _ render: () throws -> String) {
        let expected = golden["expected"]?.stringValue
        do {
            let got = try render()
            guard let expected else {
                return XCTFail("\(name): rendered \(got.debugDescription), transformers raised \(golden["error"]?.stringValue ?? "?")", file: file, line: line)
            }
            XCTAssertTrue(Self.same(got, expected), "\(name):\n got      \(got.debugDescription)\n expected \(expected.debugDescription)", file: file, line: line)
        } catch let e as ChatTemplateError {
            guard expected == nil, let type = golden["error_type"]?.stringValue, let message = golden["error"]?.stringValue else {
                return XCTFail("\(name): unexpected error \(e)", file: file, line: line)
            }
            switch (type, e) {
            case let ("TemplateError", .raised(m)): XCTAssertEqual(m, message, name, file: file, line: line)
            case let ("ValueError", .invalidInput(m)): XCTAssertEqual(m, message, name, file: file, line: line)
            case let (_, .runtime(_, _, m)) where !type.hasSuffix("SyntaxError"): XCTAssertEqual(m, message, name, file: file, line: line)
            case let ("TemplateSyntaxError", .syntax(l, _, _)), let ("TemplateSyntaxError", .unsupported(l, _, _)):
                XCTAssertEqual(l, golden["error_line"]?.intValue, "\(name): \(e)", file: file, line: line)
            case ("SyntaxError", .syntax): break
            default: XCTFail("\(name): got \(e), transformers raised \(type): \(message)", file: file, line: line)
            }
        } catch {
            XCTFail("\(name): non-template error \(error)", file: file, line: line)
        }
    }

    /// Every golden conversation of one template file.
    func checkTemplate(_ file: String, expectCases: Int, _ sourceLine: UInt = #line) throws {
        let cases = (Self.goldens["cases"]?.arrayValue ?? []).filter { $0["template"]?.stringValue == file }
        XCTAssertEqual(cases.count, expectCases, "golden cases for \(file)", line: sourceLine)
        let template = try Self.load(file)
        for c in cases {
            check(c["name"]?.stringValue ?? "?", c, line: sourceLine) {
                try template.render(messages: (c["messages"]?.arrayValue ?? []).map(Self.message),
                                    addGenerationPrompt: c["add_generation_prompt"]?.boolValue ?? false,
                                    bosToken: c["bos_token"]?.stringValue, eosToken: c["eos_token"]?.stringValue,
                                    extra: Self.extra(c["extra"]))
            }
        }
    }

    func testSmolLM2() throws { try checkTemplate("smollm2-135m-instruct.jinja", expectCases: 9) }
    func testIdefics2() throws { try checkTemplate("idefics2-8b.jinja", expectCases: 6) }
    func testSmolVLMDefault() throws { try checkTemplate("smolvlm-default.jinja", expectCases: 6) }
    func testLlama3() throws { try checkTemplate("llama3-instruct.jinja", expectCases: 9) }
    func testLlama31WithTools() throws { try checkTemplate("llama-3.1-instruct.jinja", expectCases: 16) }
    func testLlama32VisionWithStrftimeAndNamespace() throws { try checkTemplate("llama-3.2-vision-instruct.jinja", expectCases: 7) }
    func testMistral() throws { try checkTemplate("mistral-instruct.jinja", expectCases: 8) }
    func testMixtral() throws { try checkTemplate("mixtral-instruct.jinja", expectCases: 8) }
    func testChatML() throws { try checkTemplate("chatml.jinja", expectCases: 9) }

    /// The small feature templates: rendered text, runtime error messages and syntax error lines.
    func testFeatureSnippets() throws {
        let g = Self.goldens
        let snippets = g["snippets"]?.arrayValue ?? []
        XCTAssertGreaterThanOrEqual(snippets.count, 100)
        let defaultMessages = (g["snippet_messages"]?.arrayValue ?? []).map(Self.message)
        for s in snippets {
            let name = s["name"]?.stringValue ?? "?"
            check(name, s) {
                var t = try ChatTemplate(source: s["source"]?.stringValue ?? "")
                t.clock = Self.clock
                let messages = s["messages"]?.arrayValue.map { $0.map(Self.message) } ?? defaultMessages
                return try t.render(messages: messages, addGenerationPrompt: true, bosToken: g["snippet_bos_token"]?.stringValue,
                                    eosToken: g["snippet_eos_token"]?.stringValue, extra: Self.extra(s["variables"]))
            }
        }
    }

    /// 800 generated templates (nested tags with random whitespace control, scoping, macros; random
    /// expressions): transformers' text, or an error where transformers raised one (with its message,
    /// unless i2q names the construct unsupported).
    func testRandomTemplates() throws {
        let g = Self.goldens
        let cases = g["random"]?.arrayValue ?? []
        XCTAssertEqual(cases.count, 800)
        let vars = Self.extra(g["random_variables"])
        let messages = (g["random_messages"]?.arrayValue ?? []).map(Self.message)
        var unsupported = 0
        for (i, c) in cases.enumerated() {
            let source = c["source"]?.stringValue ?? ""
            let expected = c["expected"]?.stringValue
            do {
                let got = try ChatTemplate(source: source).render(messages: messages, addGenerationPrompt: false,
                                                                  bosToken: nil, eosToken: nil, extra: vars)
                XCTAssertTrue(expected.map { Self.same(got, $0) } ?? false,
                              "random[\(i)] \(source.debugDescription):\n got      \(got.debugDescription)\n expected \((expected ?? c["error"]?.stringValue ?? "").debugDescription)")
            } catch let e as ChatTemplateError {
                guard expected == nil, let message = c["error"]?.stringValue else {
                    XCTFail("random[\(i)] \(source.debugDescription): \(e)"); continue
                }
                switch e {
                case .unsupported: unsupported += 1
                case .syntax: XCTAssertEqual(c["error_type"]?.stringValue, "TemplateSyntaxError", "random[\(i)]")
                case let .runtime(_, _, m), let .raised(m): XCTAssertEqual(m, message, "random[\(i)] \(source.debugDescription)")
                default: XCTFail("random[\(i)]: \(e)")
                }
            }
        }
        XCTAssertLessThan(unsupported, 20, "printf-style % and the like")
    }

    /// Mistral's template rejects a conversation whose roles do not alternate with transformers' message.
    func testRaiseExceptionCarriesTheTemplatesMessage() throws {
        let t = try Self.load("mistral-instruct.jinja")
        let golden = (Self.goldens["cases"]?.arrayValue ?? []).first { $0["name"]?.stringValue == "mistral-instruct/not-alternating" }
        let expected = try XCTUnwrap(golden?["error"]?.stringValue)
        XCTAssertEqual(expected, "Conversation roles must alternate user/assistant/user/assistant/...")
        XCTAssertThrowsError(try t.render(messages: [.user("a"), .user("b")], addGenerationPrompt: true, bosToken: "<s>", eosToken: "</s>")) { e in
            XCTAssertEqual(e as? ChatTemplateError, .raised(message: expected))
            XCTAssertEqual((e as? ChatTemplateError)?.description, "chat template raised an error: " + expected)
        }
    }

    func testSyntaxErrorsNameLineAndColumn() {
        func error(_ source: String) -> ChatTemplateError? {
            do { _ = try ChatTemplate(source: source); return nil } catch { return error as? ChatTemplateError }
        }
        XCTAssertEqual(error("Hello\n{% if x %}\n  {{ a + }}\n{% endif %}"),
                       .syntax(line: 3, column: 10, message: "unexpected end of print statement"))
        XCTAssertEqual(error("a\n  {{ x ! y }}"), .syntax(line: 2, column: 8, message: "unexpected char '!'"))
        XCTAssertEqual(error("{% for m in messages %}\n{% endif %}")?.description,
                       "chat template line 2:4: unexpected tag 'endif'; the innermost open block is the 'for' at line 1:4")
        XCTAssertEqual(error("x\r\n{% if true %}\r\nno end")?.description,
                       "chat template line 3:7: unexpected end of template: the 'if' at line 2:4 is never closed (expected 'elif' or 'else' or 'endif')")
        XCTAssertEqual(error("{{ 'abc }}"), .syntax(line: 1, column: 4, message: "unterminated string literal"))
        XCTAssertEqual(error("{# open"), .syntax(line: 1, column: 1, message: "missing end of comment tag"))
        XCTAssertEqual(error("{{ (1 ] }}"), .syntax(line: 1, column: 7, message: "unexpected ']', expected ')'"))
    }

    /// Valid Jinja beyond the subset fails with "unsupported X" and its position, never a crash.
    func testUnsupportedConstructsAreNamed() throws {
        let cases: [(String, String)] = [
            ("{% include 'other.jinja' %}", "chat template line 1:4: unsupported tag 'include'"),
            ("{% extends 'base' %}", "chat template line 1:4: unsupported tag 'extends'"),
            ("x\n{{ items | sort }}", "chat template line 2:12: unsupported filter 'sort'"),
            ("{{ x is sameas y }}", "chat template line 1:9: unsupported test 'sameas'"),
            ("{% for x in y recursive %}{% endfor %}", "chat template line 1:15: unsupported recursive for loop"),
            ("{% call m() %}{% endcall %}", "chat template line 1:4: unsupported tag 'call'"),
            ("{{ f(*args) }}", "chat template line 1:6: unsupported *args/**kwargs in a call"),
            ("{{ '\\N{BULLET}' }}", "chat template line 1:4: unsupported \\N{...} escape in a string literal"),
            ("{{ 99999999999999999999 }}", "chat template line 1:4: unsupported integer literal beyond 64 bits"),
        ]
        for (source, message) in cases {
            XCTAssertThrowsError(try ChatTemplate(source: source), source) { e in
                XCTAssertEqual((e as? ChatTemplateError)?.description, message)
            }
        }
        // Limits that keep a hostile template from exhausting the stack.
        let deep: [(String, String)] = [
            ("{{ " + String(repeating: "(", count: 200) + "1" + String(repeating: ")", count: 200) + " }}", "expression nested more than 100 levels deep"),
            ("{{ " + String(repeating: "not ", count: 500) + "x }}", "expression nested more than 100 levels deep"),
            ("{{ 1" + String(repeating: " + 1", count: 150) + " }}", "expression nested more than 100 levels deep"),
            ("{{ x" + String(repeating: "|trim", count: 150) + " }}", "expression nested more than 100 levels deep"),
            (String(repeating: "{% if true %}", count: 100) + String(repeating: "{% endif %}", count: 100), "nesting of more than 64 blocks"),
        ]
        for (source, message) in deep {
            XCTAssertThrowsError(try ChatTemplate(source: source)) { e in
                XCTAssertTrue((e as? ChatTemplateError)?.description.hasSuffix("unsupported " + message) ?? false, "\(e)")
            }
        }
        XCTAssertEqual(try ChatTemplate(source: "{{ 1" + String(repeating: " + 1", count: 90) + " }}")
                        .render(messages: [.user("x")], addGenerationPrompt: false, bosToken: nil, eosToken: nil), "91")
        let recursive = try ChatTemplate(source: "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}")
        XCTAssertThrowsError(try recursive.render(messages: [.user("x")], addGenerationPrompt: false, bosToken: nil, eosToken: nil)) { e in
            XCTAssertEqual((e as? ChatTemplateError)?.description, "chat template line 1:20: macro 'f' recursion is too deep")
        }

        // Found while rendering.
        let runtime: [(String, String)] = [
            ("\n  {{ '%s!' % 'x' }}", "chat template line 2:12: unsupported printf-style string formatting with %"),
            ("{{ {1: 'a'} }}", "chat template line 1:5: unsupported non-string dict key"),
            ("{{ 2 ** 70 }}", "chat template line 1:6: unsupported integer result beyond 64 bits"),
            ("{{ 'a-b'.rsplit('-') }}", "chat template line 1:16: unsupported method str.rsplit()"),
            ("{{ cycler('a') }}", "chat template line 1:10: unsupported global cycler()"),
        ]
        for (source, message) in runtime {
            let t = try ChatTemplate(source: source)
            XCTAssertThrowsError(try t.render(messages: [.user("x")], addGenerationPrompt: false, bosToken: nil, eosToken: nil), source) { e in
                XCTAssertEqual((e as? ChatTemplateError)?.description, message)
            }
        }
    }

    func testRenderArgumentChecks() throws {
        let t = try ChatTemplate(source: "{{ messages|length }}{{ bos_token is defined }}{{ answer }}")
        XCTAssertEqual(try t.render(messages: [.user("x")], addGenerationPrompt: false, bosToken: nil, eosToken: nil, extra: ["answer": 42]), "1False42")
        XCTAssertThrowsError(try t.render(messages: [], addGenerationPrompt: false, bosToken: nil, eosToken: nil)) { e in
            XCTAssertEqual(e as? ChatTemplateError, .invalidInput("Cannot apply chat template to an empty conversation. Provide at least one message."))
        }
        XCTAssertThrowsError(try t.render(messages: [.user("x")], addGenerationPrompt: false, bosToken: nil, eosToken: nil,
                                          extra: ["messages": []]))
    }

    // MARK: load(modelDirectory:)

    func write(_ text: String, _ path: String) throws { try Data(text.utf8).write(to: URL(fileURLWithPath: path)) }

    func loaded(_ dir: String) throws -> String? {
        try ChatTemplate.load(modelDirectory: dir)?.render(messages: [.user("u")], addGenerationPrompt: false, bosToken: nil, eosToken: nil)
    }

    func testLoadPrecedence() throws {
        let dir = try makeTempDir("chat-load")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertNil(try ChatTemplate.load(modelDirectory: dir), "no files")
        try write(#"{"bos_token": "<s>"}"#, dir + "/tokenizer_config.json")
        XCTAssertNil(try ChatTemplate.load(modelDirectory: dir), "config without chat_template")
        try write(#"{"chat_template": null}"#, dir + "/tokenizer_config.json")
        XCTAssertNil(try ChatTemplate.load(modelDirectory: dir), "null chat_template")
        try write(#"{"chat_template": "config {{ messages[0].content }}"}"#, dir + "/tokenizer_config.json")
        XCTAssertEqual(try loaded(dir), "config u")
        try write(#"{"chat_template": "legacy json"}"#, dir + "/chat_template.json")
        XCTAssertEqual(try loaded(dir), "legacy json", "chat_template.json wins over tokenizer_config.json")
        try write("jinja file\n", dir + "/chat_template.jinja")
        XCTAssertEqual(try loaded(dir), "jinja file", "chat_template.jinja wins over both (its final newline dropped, as Jinja does)")
    }

    func testLoadTemplateListAndErrors() throws {
        let dir = try makeTempDir("chat-list")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = dir + "/tokenizer_config.json"
        try write(#"{"chat_template": [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "default one"}]}"#, config)
        XCTAssertEqual(try loaded(dir), "default one")
        try write(#"{"chat_template": [{"name": "tool_use", "template": "tools"}, {"name": "rag", "template": "r"}]}"#, config)
        assertThrowsMentioning([config, "none named \"default\"", "tool_use, rag"]) { _ = try ChatTemplate.load(modelDirectory: dir) }
        try write(#"{"chat_template": 5}"#, config)
        assertThrowsMentioning([config, "must be a string"]) { _ = try ChatTemplate.load(modelDirectory: dir) }
        try write(#"{"chat_template": "x", "#, config)
        assertThrowsMentioning([config, "not valid JSON"]) { _ = try ChatTemplate.load(modelDirectory: dir) }
        try write(#"{"template": "x"}"#, dir + "/chat_template.json")
        assertThrowsMentioning([dir + "/chat_template.json", "chat_template"]) { _ = try ChatTemplate.load(modelDirectory: dir) }
        try write("ok\n{% if %}", dir + "/chat_template.jinja")
        assertThrowsMentioning([dir + "/chat_template.jinja", "chat template line 2:7"]) { _ = try ChatTemplate.load(modelDirectory: dir) }
    }

    /// The fixture model directories give the templates the goldens were made from.
    func testLoadFixtureModelDirectories() throws {
        let idefics2 = try String(contentsOfFile: Self.dir + "/idefics2-8b.jinja", encoding: .utf8)
        XCTAssertEqual(try ChatTemplate.load(modelDirectory: fixturesDir + "/easy-vqa-idefics2")?.source, idefics2, "chat_template.jinja")
        XCTAssertEqual(try ChatTemplate.load(modelDirectory: fixturesDir + "/tiny-idefics2-v4")?.source, idefics2, "tokenizer_config.json")
        let smollm2 = try String(contentsOfFile: Self.dir + "/smollm2-135m-instruct.jinja", encoding: .utf8)
        XCTAssertEqual(try ChatTemplate.load(modelDirectory: fixturesDir + "/tokenizer/smollm2")?.source, smollm2)
        XCTAssertNil(try ChatTemplate.load(modelDirectory: fixturesDir + "/tiny-llama"))

        let t = try XCTUnwrap(try ChatTemplate.load(modelDirectory: fixturesDir + "/easy-vqa-idefics2"))
        let prompt = try t.render(messages: [ChatMessage(role: "user", parts: [.image, .text("What shape is in the image?")])],
                                  addGenerationPrompt: true, bosToken: "<s>", eosToken: "</s>")
        XCTAssertEqual(prompt, "User:<image>What shape is in the image?<end_of_utterance>\nAssistant:")
    }

    /// Random edits of every fixture template parse and render or throw ChatTemplateError; never crash.
    func testMutatedTemplatesNeverCrash() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: Self.dir).filter { $0.hasSuffix(".jinja") }.sorted()
        XCTAssertEqual(files.count, 9)
        let pieces = ["{%", "%}", "{{", "}}", "{#", "#}", "-", "+", "(", ")", "[", "]", "'", "\"", "|", ".", ",", "=", "\n",
                      " is ", " not ", " in ", "loop.", "endfor", "endif", "else", "\\", "{% raw %}", "0", "messages[1:]"]
        var rng = SplitMix64(seed: 20)
        var rendered = 0, failed = 0
        for f in files {
            let source = Array(try String(contentsOfFile: Self.dir + "/" + f, encoding: .utf8).unicodeScalars)
            for _ in 0..<150 {
                var s = source
                for _ in 0..<(1 + Int(rng.next() % 3)) {
                    let at = Int(rng.next() % UInt64(s.count + 1))
                    switch rng.next() % 3 {
                    case 0: if at < s.count { s.removeSubrange(at..<min(s.count, at + 1 + Int(rng.next() % 4))) }
                    case 1: s.insert(contentsOf: pieces[Int(rng.next() % UInt64(pieces.count))].unicodeScalars, at: at)
                    default: if at < s.count { s[at] = Unicode.Scalar(UInt8(32 + rng.next() % 95)) }
                    }
                }
                do {
                    let t = try ChatTemplate(source: Py.string(s))
                    _ = try t.render(messages: [.system("s"), .user("u"), ChatMessage(role: "user", parts: [.image, .text("t")])],
                                     addGenerationPrompt: true, bosToken: "<s>", eosToken: "</s>")
                    rendered += 1
                } catch is ChatTemplateError {
                    failed += 1
                }
            }
        }
        XCTAssertGreaterThan(rendered, 100)
        XCTAssertGreaterThan(failed, 100)
    }
}
