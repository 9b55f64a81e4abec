import Foundation
import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QTokenizer

/// Stage-level checks and errors, on small hand-written tokenizer.json files.
final class TokenizerUnitTests: XCTestCase {
    /// Splits of the hand-written GPT-2 pattern (expected values from Python's `regex` module).
    func testGPT2Pattern() {
        func split(_ s: String) -> [String] {
            let b = Array(s.utf8)
            return GPT2Pattern.matches(b).map { String(decoding: b[$0], as: UTF8.self) }
        }
        XCTAssertEqual(split("Hello  world\n\n  x's"), ["Hello", " ", " world", "\n\n ", " x", "'s"])
        XCTAssertEqual(split("I'm DON'T ''s you'LL"), ["I", "'m", " DON", "'", "T", " ''", "s", " you", "'", "LL"])
        XCTAssertEqual(split("  \t foo 123abc\u{e9}\u{301} !! \n").map { Array($0.unicodeScalars) },
                       ["  \t", " foo", " 123", "abc\u{e9}", "\u{301}", " !!", " \n"].map { Array($0.unicodeScalars) })
        XCTAssertEqual(split("a\u{3000}b  \u{a0}c"), ["a", "\u{3000}", "b", "  ", "\u{a0}", "c"])
        XCTAssertEqual(split("👍🏽 ok? "), ["👍🏽", " ok", "?", " "])
        XCTAssertEqual(split(""), [])
    }

    func testByteLevelTableRoundTrips() {
        let t = ByteLevelTables.shared
        let all = (0..<256).map { UInt8($0) }
        XCTAssertEqual(t.unmap(t.map(all)), all)
        XCTAssertEqual(String(decoding: t.map(Array(" \n".utf8)), as: UTF8.self), "ĠĊ")
    }

    /// A tiny byte-fallback BPE: merge order by rank, ties leftmost, unknown bytes as <0xNN>.
    static func tinyJSON(merges: String = #"["a b", "b c", "ab c", "c c"]"#, extra: String = "") -> [UInt8] {
        var vocab = [#""<unk>": 0"#, #""<s>": 1"#, #""</s>": 2"#]
        for b in 0..<256 { vocab.append("\"<0x\(String(format: "%02X", b))>\": \(3 + b)") }
        let tokens = ["▁", "a", "b", "c", "ab", "bc", "abc", "cc", "▁a"]
        for (i, t) in tokens.enumerated() { vocab.append("\"\(t)\": \(259 + i)") }
        return Array("""
        {"version": "1.0", "added_tokens": [{"id": 1, "content": "<s>", "single_word": false, "lstrip": false,
          "rstrip": false, "normalized": false, "special": true}],
         "normalizer": null,
         "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false},
         "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
           {"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
         "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
           {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
         \(extra)
         "model": {"type": "BPE", "byte_fallback": true, "fuse_unk": true, "vocab": {\(vocab.joined(separator: ", "))},
           "merges": \(merges)}}
        """.utf8)
    }

    func testTinyBPE() throws {
        let t = try Tokenizer(tokenizerJSON: Self.tinyJSON(), tokenizerConfigJSON: nil, source: "tiny")
        let id = { (s: String) in t.tokenToId(s)! }
        // "abc": a b -> ab (rank 0), then ab c -> abc (rank 2); "bcc": b c (rank 1) before c c (rank 3).
        XCTAssertEqual(t.encode("abc", addSpecialTokens: false), [id("▁"), id("abc")])
        XCTAssertEqual(t.encode("<s>bcc", addSpecialTokens: false), [1, id("bc"), id("c")])
        // "ccc": c c merges leftmost first.
        XCTAssertEqual(t.encode("<s>ccc", addSpecialTokens: false), [1, id("cc"), id("c")])
        // Unknown characters fall back to their UTF-8 bytes.
        XCTAssertEqual(t.encode("<s>é", addSpecialTokens: false), [1, id("<0xC3>"), id("<0xA9>")])
        XCTAssertEqual(t.decode(t.encode("a é")), "<s> a é")
        XCTAssertEqual(t.decode([id("<0xC3>")]), "\u{FFFD}")
        // The pair form of merges gives the same model.
        let pairs = try Tokenizer(tokenizerJSON: Self.tinyJSON(merges: #"[["a", "b"], ["b", "c"], ["ab", "c"], ["c", "c"]]"#),
                                  tokenizerConfigJSON: nil, source: "tiny")
        for s in ["abc", "bcc", "ccc abcabc", "a b c"] { XCTAssertEqual(pairs.encode(s), t.encode(s)) }
    }

    // MARK: Errors

    /// Issue 17: a continuing_subword_prefix glued to every piece multiplied memory by its length.
    func testOverlongSubwordAffixesAreRefused() throws {
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            let long = String(repeating: "#", count: 100_000)
            let json = #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": [], "KEY": "LONG"}}"#
                .replacingOccurrences(of: "KEY", with: key).replacingOccurrences(of: "LONG", with: long)
            assertThrowsMentioning(["bad/tokenizer.json", "model." + key, "at most 64 bytes"]) {
                _ = try Tokenizer(tokenizerJSON: Array(json.utf8), tokenizerConfigJSON: nil, source: "bad")
            }
        }
    }

    func testMalformedJSON() {
        assertThrowsMentioning(["bad/tokenizer.json", "invalid JSON"]) {
            _ = try Tokenizer(tokenizerJSON: Array(#"{"model": {"#.utf8), tokenizerConfigJSON: nil, source: "bad")
        }
        assertThrowsMentioning(["bad/tokenizer.json", "an object"]) {
            _ = try Tokenizer(tokenizerJSON: Array("[1, 2]".utf8), tokenizerConfigJSON: nil, source: "bad")
        }
        assertThrowsMentioning(["bad/tokenizer_config.json", "invalid JSON"]) {
            _ = try Tokenizer(tokenizerJSON: Self.tinyJSON(), tokenizerConfigJSON: Array("{".utf8), source: "bad")
        }
        assertThrowsMentioning(["bad/tokenizer.json", "missing field model"]) {
            _ = try Tokenizer(tokenizerJSON: Array(#"{"version": "1.0"}"#.utf8), tokenizerConfigJSON: nil, source: "bad")
        }
        assertThrowsMentioning(["bad/tokenizer.json", "model.vocab"]) {
            _ = try Tokenizer(tokenizerJSON: Array(#"{"model": {"type": "BPE", "vocab": [], "merges": []}}"#.utf8), tokenizerConfigJSON: nil, source: "bad")
        }
        assertThrowsMentioning(["no-such-dir/tokenizer.json", "no such file"]) {
            _ = try Tokenizer(directory: "/nonexistent/no-such-dir")
        }
    }

    func testUnsupportedComponents() {
        func replacing(_ old: String, _ new: String) -> [UInt8] {
            Array(String(decoding: Self.tinyJSON(), as: UTF8.self).replacingOccurrences(of: old, with: new).utf8)
        }
        assertThrowsMentioning(["x/tokenizer.json", "normalizer.type", "unsupported normalizer type \"Precompiled\""]) {
            _ = try Tokenizer(tokenizerJSON: replacing(#""normalizer": null"#, #""normalizer": {"type": "Precompiled"}"#), tokenizerConfigJSON: nil, source: "x")
        }
        assertThrowsMentioning(["pre_tokenizer.type", "unsupported pre-tokenizer type \"BertPreTokenizer\""]) {
            _ = try Tokenizer(tokenizerJSON: replacing(#""type": "Metaspace""#, #""type": "BertPreTokenizer""#), tokenizerConfigJSON: nil, source: "x")
        }
        assertThrowsMentioning(["decoder.decoders[2].type", "unsupported decoder type \"CTC\""]) {
            _ = try Tokenizer(tokenizerJSON: replacing(#"{"type": "Fuse"}"#, #"{"type": "CTC"}"#), tokenizerConfigJSON: nil, source: "x")
        }
        assertThrowsMentioning(["model.type", "Unigram"]) {
            _ = try Tokenizer(tokenizerJSON: replacing(#""type": "BPE""#, #""type": "Unigram""#), tokenizerConfigJSON: nil, source: "x")
        }
        assertThrowsMentioning(["model.dropout", "dropout"]) {
            _ = try Tokenizer(tokenizerJSON: replacing(#""type": "BPE","#, #""type": "BPE", "dropout": 0.1,"#), tokenizerConfigJSON: nil, source: "x")
        }
        assertThrowsMentioning(["post_processor.type", "unsupported post-processor type \"Weird\""]) {
            _ = try Tokenizer(tokenizerJSON: replacing(#""type": "TemplateProcessing""#, #""type": "Weird""#), tokenizerConfigJSON: nil, source: "x")
        }
        assertThrowsMentioning(["Split regex", "only GPT-2"]) {
            _ = try Tokenizer(tokenizerJSON: replacing(#"{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}"#,
                                                       #"{"type": "Split", "pattern": {"Regex": "\\d+"}, "behavior": "Isolated", "invert": false}"#),
                              tokenizerConfigJSON: nil, source: "x")
        }
        assertThrowsMentioning(["model.merges[1]", "\"zz\" is not in the vocabulary"]) {
            _ = try Tokenizer(tokenizerJSON: Self.tinyJSON(merges: #"["a b", "zz c"]"#), tokenizerConfigJSON: nil, source: "x")
        }
        assertThrowsMentioning(["model.merges[0]", "two tokens"]) {
            _ = try Tokenizer(tokenizerJSON: Self.tinyJSON(merges: #"["a b c"]"#), tokenizerConfigJSON: nil, source: "x")
        }
        assertThrowsMentioning(["model.merges[0]", "pair of strings"]) {
            _ = try Tokenizer(tokenizerJSON: Self.tinyJSON(merges: #"[["a"]]"#), tokenizerConfigJSON: nil, source: "x")
        }
        assertThrowsMentioning(["post_processor.single[0]", "\"<x>\""]) {
            _ = try Tokenizer(tokenizerJSON: replacing(#"{"SpecialToken": {"id": "<s>""#, #"{"SpecialToken": {"id": "<x>""#), tokenizerConfigJSON: nil, source: "x")
        }
        assertThrowsMentioning(["pre_tokenizer.prepend_scheme", "first, never or always"]) {
            _ = try Tokenizer(tokenizerJSON: replacing(#""prepend_scheme": "first""#, #""prepend_scheme": "sometimes""#), tokenizerConfigJSON: nil, source: "x")
        }
        assertThrowsMentioning(["x/tokenizer_config.json", "bos_token.content", "a string"]) {
            _ = try Tokenizer(tokenizerJSON: Self.tinyJSON(), tokenizerConfigJSON: Array(#"{"bos_token": {"content": 5}}"#.utf8), source: "x")
        }
    }
}
