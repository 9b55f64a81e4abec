import Foundation
import XCTest
import I2QCore
import I2QTestSupport
import Synchronization
@testable import I2QTokenizer

/// Goldens from scripts/fixtures/make_tokenizer_goldens.py (transformers 5.24 / tokenizers 0.23.3):
/// every corpus line's ids and decodes for the Idefics2 and SmolLM2 tokenizers, and edited
/// variants of both.
final class TokenizerGoldenTests: XCTestCase {
    static let dir = fixturesDir + "/tokenizer"

    struct Golden {
        var ids: [Int]
        var dec: String?
        var half: String?
        var skip: String?
        var nospec: [Int]?
    }

    static func readLines(_ path: String) throws -> [JSONValue] {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: path), "cannot read \(path)")
        var out: [JSONValue] = []
        for line in [UInt8](data).split(separator: 0x0A) where !line.isEmpty {
            out.append(try JSONParser.parse(Array(line), source: path))
        }
        return out
    }

    static func ints(_ v: JSONValue?) -> [Int]? { v?.arrayValue?.map { $0.intValue ?? -1 } }

    static func golden(_ v: JSONValue) -> Golden {
        Golden(ids: ints(v["ids"]) ?? [], dec: v["dec"]?.stringValue, half: v["half"]?.stringValue,
               skip: v["skip"]?.stringValue, nospec: ints(v["nospec"]))
    }

    static let corpus: [String] = {
        (try? readLines(dir + "/corpus.jsonl"))?.compactMap { $0.stringValue } ?? []
    }()

    /// Strings compared as bytes (Swift's == would accept canonically equivalent text).
    static func same(_ a: String, _ b: String) -> Bool { Array(a.utf8) == Array(b.utf8) }

    /// Runs every check of one tokenizer over the corpus and reports the first mismatches.
    func checkCorpus(_ tok: Tokenizer, goldenFile: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let corpus = Self.corpus
        let goldens = try Self.readLines(Self.dir + "/" + goldenFile).map(Self.golden)
        XCTAssertGreaterThanOrEqual(corpus.count, 5000, file: file, line: line)
        XCTAssertEqual(corpus.count, goldens.count, "corpus and \(goldenFile) differ in length", file: file, line: line)
        var failures: [String] = []
        var idFailures = 0, decodeFailures = 0, checks = 0
        for (i, (text, g)) in zip(corpus, goldens).enumerated() {
            let ids = tok.encode(text)
            checks += 1
            if ids != g.ids {
                idFailures += 1
                failures.append("line \(i) \(debugQuoted(text)): ids\n    expected \(g.ids)\n    got      \(ids)")
            }
            if let d = g.dec {
                checks += 1
                let got = tok.decode(g.ids)
                if !Self.same(got, d) { decodeFailures += 1; failures.append("line \(i): decode \(debugQuoted(got)) != \(debugQuoted(d))") }
            }
            if let h = g.half {
                checks += 1
                let got = tok.decode(Array(g.ids.prefix(g.ids.count / 2)))
                if !Self.same(got, h) { decodeFailures += 1; failures.append("line \(i): decode(half) \(debugQuoted(got)) != \(debugQuoted(h))") }
            }
            if let s = g.skip {
                checks += 1
                let got = tok.decode(g.ids, skipSpecialTokens: true)
                if !Self.same(got, s) { decodeFailures += 1; failures.append("line \(i): decode(skip) \(debugQuoted(got)) != \(debugQuoted(s))") }
            }
            if let n = g.nospec {
                checks += 1
                let got = tok.encode(text, addSpecialTokens: false)
                if got != n { idFailures += 1; failures.append("line \(i) \(debugQuoted(text)): ids without special tokens\n    expected \(n)\n    got      \(got)") }
            }
        }
        print("\(goldenFile): \(corpus.count) lines, \(checks) checks, \(idFailures) id mismatches, \(decodeFailures) decode mismatches")
        XCTAssertTrue(failures.isEmpty, "\(goldenFile): \(failures.count) of \(checks) checks failed; first ones:\n" +
                      failures.prefix(12).joined(separator: "\n"), file: file, line: line)
    }

    static let idefics2: Tokenizer? = try? Tokenizer(directory: fixturesDir + "/tiny-idefics2-v4")
    static let smollm2: Tokenizer? = try? Tokenizer(directory: dir + "/smollm2")

    func testIdefics2Corpus() throws {
        try checkCorpus(try XCTUnwrap(Self.idefics2), goldenFile: "idefics2.jsonl")
    }

    func testSmolLM2Corpus() throws {
        try checkCorpus(try XCTUnwrap(Self.smollm2), goldenFile: "smollm2.jsonl")
    }

    /// The 5.x-style files (no add_bos_token, extra_special_tokens) give the same ids as the 4.x ones.
    func testIdefics2V5FilesGiveTheSameIds() throws {
        let v5 = try Tokenizer(directory: fixturesDir + "/tiny-idefics2-v5")
        let goldens = try Self.readLines(Self.dir + "/idefics2.jsonl").map(Self.golden)
        var bad: [Int] = []
        for (i, (text, g)) in zip(Self.corpus, goldens).enumerated() where v5.encode(text) != g.ids { bad.append(i) }
        XCTAssertEqual(bad, [], "v5 tokenizer differs on lines \(bad.prefix(10))")
        XCTAssertEqual(v5.bosTokenId, 1)
        XCTAssertEqual(v5.eosTokenId, 2)
        XCTAssertEqual(v5.vocabSize, 32003)
    }

    /// The last corpus line is several KB of licence text with newlines, encoded whole.
    func testMultiLineDocument() throws {
        let doc = try XCTUnwrap(Self.corpus.last)
        XCTAssertGreaterThan(doc.utf8.count, 5000)
        XCTAssertGreaterThan(doc.split(separator: "\n").count, 50)
        for (name, tok) in [("idefics2", Self.idefics2), ("smollm2", Self.smollm2)] {
            let goldens = try Self.readLines(Self.dir + "/\(name).jsonl")
            let g = Self.golden(try XCTUnwrap(goldens.last))
            let ids = try XCTUnwrap(tok).encode(doc)
            XCTAssertGreaterThan(ids.count, 1000)
            XCTAssertEqual(ids, g.ids, name)
            XCTAssertTrue(Self.same(try XCTUnwrap(tok).decode(ids), try XCTUnwrap(g.dec)), name)
        }
    }

    func testSpecialTokens() throws {
        let i = try XCTUnwrap(Self.idefics2)
        XCTAssertEqual(i.tokenToId("<fake_token_around_image>"), 32000)
        XCTAssertEqual(i.tokenToId("<image>"), 32001)
        XCTAssertEqual(i.tokenToId("<end_of_utterance>"), 32002)
        XCTAssertEqual(i.idToToken(32001), "<image>")
        XCTAssertEqual(i.idToToken(28747), ":")
        XCTAssertEqual(i.bosTokenId, 1)
        XCTAssertEqual(i.eosTokenId, 2)
        XCTAssertEqual(i.vocabSize, 32003)
        XCTAssertTrue(i.isSpecial(32002))
        XCTAssertFalse(i.isSpecial(100))
        XCTAssertNil(i.idToToken(40000))
        XCTAssertEqual(i.encode("User:<image>What is this?<end_of_utterance>\nAssistant:"),
                       [1, 1247, 28747, 32001, 3195, 349, 456, 28804, 32002, 13, 7226, 11143, 28747])
        XCTAssertEqual(i.encode(""), [1])
        XCTAssertEqual(i.encode("", addSpecialTokens: false), [])

        let s = try XCTUnwrap(Self.smollm2)
        XCTAssertEqual(s.bosTokenId, 1)
        XCTAssertEqual(s.eosTokenId, 2)
        XCTAssertEqual(s.tokenToId("<|im_start|>"), 1)
        XCTAssertEqual(s.tokenToId("<|im_end|>"), 2)
        XCTAssertEqual(s.vocabSize, 49152)
        XCTAssertEqual(s.encode("<|im_start|>user\nHi<|im_end|>"), [1, 4093, 198, 26843, 2])
        XCTAssertEqual(s.decode([1, 4093, 198, 26843, 2], skipSpecialTokens: true), "user\nHi")
    }

    // MARK: Variants

    /// tokenizer.json with the variant's patch applied as the generator applied it.
    static func patched(_ base: JSONValue, _ patch: JSONValue) -> JSONValue {
        var root = base
        for (k, v) in patch.objectEntries ?? [] {
            if k == "__merges_as_strings" {
                let merges = (root["model"]?["merges"]?.arrayValue ?? []).map { m -> JSONValue in
                    let parts = (m.arrayValue ?? []).compactMap { $0.stringValue }
                    return .string(parts.joined(separator: " "))
                }
                root = root.setting("model", root["model"]!.setting("merges", .array(merges)))
            } else if k == "model" {
                var model = root["model"]!
                for (mk, mv) in v.objectEntries ?? [] { model = model.setting(mk, mv) }
                root = root.setting("model", model)
            } else {
                root = root.setting(k, v)
            }
        }
        return root
    }

    func testVariants() throws {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: Self.dir + "/variants.json"))
        let spec = try JSONParser.parse([UInt8](data), source: "variants.json")
        let lines = try XCTUnwrap(spec["lines"]?.arrayValue).compactMap { $0.intValue }
        let extra = try XCTUnwrap(spec["extra"]?.arrayValue).compactMap { $0.stringValue }
        let texts = lines.map { Self.corpus[$0] } + extra
        let bases: [String: JSONValue] = [
            "idefics2": try JSONParser.parse([UInt8](try XCTUnwrap(FileManager.default.contents(atPath: fixturesDir + "/tiny-idefics2-v4/tokenizer.json"))), source: "idefics2"),
            "smollm2": try JSONParser.parse([UInt8](try XCTUnwrap(FileManager.default.contents(atPath: Self.dir + "/smollm2/tokenizer.json"))), source: "smollm2"),
        ]
        var report: [String] = []
        var failed = 0
        for variant in try XCTUnwrap(spec["variants"]?.arrayValue) {
            let name = variant["name"]?.stringValue ?? "?"
            let base = try XCTUnwrap(bases[variant["base"]?.stringValue ?? ""])
            let tok = try Tokenizer(tokenizer: Self.patched(base, try XCTUnwrap(variant["patch"])), config: variant["config"], source: name)
            let rows = try XCTUnwrap(variant["rows"]?.arrayValue)
            XCTAssertEqual(rows.count, texts.count)
            var bad = 0, checks = 0
            for (text, row) in zip(texts, rows) {
                let g = Self.golden(row)
                let ids = tok.encode(text)
                checks += 1
                if ids != g.ids {
                    bad += 1
                    if bad <= 3 { report.append("\(name): \(debugQuoted(text))\n    expected \(g.ids)\n    got      \(ids)") }
                }
                if let d = g.dec {
                    checks += 1
                    let got = tok.decode(g.ids)
                    if !Self.same(got, d) {
                        bad += 1
                        if bad <= 3 { report.append("\(name): decode \(debugQuoted(got)) != \(debugQuoted(d))") }
                    }
                }
            }
            print("variant \(name): \(checks) checks, \(bad) mismatches")
            failed += bad
        }
        XCTAssertEqual(failed, 0, report.joined(separator: "\n"))
    }

    // MARK: Speed

    /// Encodes the whole corpus with both tokenizers (cold cache) and reports lines/s.
    func testEncodingSpeed() throws {
        let corpus = Self.corpus
        let dir = Self.dir
        for (name, path) in [("idefics2", fixturesDir + "/tiny-idefics2-v4"), ("smollm2", dir + "/smollm2")] {
            let t0 = Date()
            let tok = try Tokenizer(directory: path)
            let load = Date().timeIntervalSince(t0)
            let t1 = Date()
            var n = 0
            for text in corpus { n += tok.encode(text).count }
            let cold = Date().timeIntervalSince(t1)
            let t2 = Date()
            for text in corpus { n += tok.encode(text).count }
            let warm = Date().timeIntervalSince(t2)
            let document = corpus.joined(separator: "\n")
            let t3 = Date()
            let docIds = tok.encode(document)
            let whole = Date().timeIntervalSince(t3)
            print(String(format: "%@: load %.3f s; %d lines: cold %.0f lines/s, warm %.0f lines/s (%.0f tokens/s); "
                         + "whole corpus as one text (%d bytes): %.0f tokens/s",
                         name, load, corpus.count, Double(corpus.count) / cold, Double(corpus.count) / warm,
                         Double(n / 2) / warm, document.utf8.count, Double(docIds.count) / whole))
        }
    }

    /// One tokenizer shared by threads (its word cache is locked) gives the same ids.
    func testConcurrentEncoding() throws {
        let tok = try Tokenizer(directory: Self.dir + "/smollm2")
        let corpus = Array(Self.corpus.prefix(2000))
        let expected = try Self.readLines(Self.dir + "/smollm2.jsonl").prefix(2000).map { Self.golden($0).ids }
        let bad = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: 8) { k in
            for i in stride(from: k, to: corpus.count, by: 8) where tok.encode(corpus[i]) != expected[i] {
                bad.withLock { $0 += 1 }
            }
        }
        XCTAssertEqual(bad.withLock { $0 }, 0)
    }
}
