import Foundation
import XCTest
import I2QCore
import I2QTestSupport
import I2QTokenizer
@testable import I2QFormats
@testable import I2QPasses

/// The tokenizer files i2q builds from a GGUF's `tokenizer.ggml.*` metadata (GGUFTokenizer) against
/// transformers 5.24's tokenizer for the same file (`AutoTokenizer.from_pretrained(dir, gguf_file=…)`):
/// Tests/Fixtures/gguf-tokenizer (made by its make_gguf_tokenizer_fixtures.py) and the SmolLM2
/// tokenizer saved by transformers from the real GGUF (Tests/Fixtures/tokenizer/smollm2).
final class GGUFTokenizerTests: XCTestCase {
    let dir = fixturesDir + "/gguf-tokenizer"

    // MARK: Fixture helpers

    func readJSON(_ path: String) throws -> JSONValue {
        try JSONParser.parse(try FileSystem.readFile(path), source: path)
    }

    func ints(_ v: JSONValue?) -> [Int] { (v?.arrayValue ?? []).map { $0.intValue ?? -1 } }

    /// [(name, text)] of texts.json.
    func texts() throws -> [String: String] {
        var out: [String: String] = [:]
        for t in try readJSON(dir + "/texts.json").arrayValue ?? [] { out[t["name"]!.stringValue!] = t["text"]!.stringValue! }
        return out
    }

    func tokenizer(_ files: [(name: String, bytes: [UInt8])], _ source: String) throws -> Tokenizer {
        func file(_ n: String) -> [UInt8]? { files.first { $0.name == n }?.bytes }
        return try Tokenizer(tokenizerJSON: try XCTUnwrap(file("tokenizer.json")), tokenizerConfigJSON: file("tokenizer_config.json"), source: source)
    }

    /// Every entry of `expected["texts"]`: ids and decode equal transformers'.
    func checkTexts(_ tok: Tokenizer, _ expected: JSONValue, _ label: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let texts = try texts()
        let entries = expected["texts"]?.arrayValue ?? []
        XCTAssertFalse(entries.isEmpty, label, file: file, line: line)
        for e in entries {
            let name = e["name"]!.stringValue!
            let text = try XCTUnwrap(texts[name])
            let want = ints(e["ids"])
            let got = tok.encode(text)
            XCTAssertEqual(got, want, "\(label) \(name): ids", file: file, line: line)
            XCTAssertEqual(tok.decode(want), e["dec"]?.stringValue, "\(label) \(name): decode", file: file, line: line)
        }
    }

    var smolGGUF: String? {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let f32 = ProcessInfo.processInfo.environment["I2Q_SMOLLM2"] ?? root + "/.cache/smollm2/SmolLM2-135M-Instruct-f32"
        let path = FileSystem.dirname(f32) + "/SmolLM2-135M-Instruct.Q4_1.gguf"
        guard FileSystem.exists(path) else {
            XCTFail("SmolLM2's GGUF is not at \(path): run `bash scripts/get_smollm2.sh` (scripts/test.sh does) or set I2Q_SMOLLM2")
            return nil
        }
        return path
    }

    // MARK: SmolLM2 (the real GGUF)

    /// tokenizer.json is byte-identical to the one transformers saves for this GGUF; the config names
    /// the same special tokens; the model's auxiliary files carry it (with the chat template).
    func testSmolLM2FilesAreTransformers() throws {
        guard let path = smolGGUF else { return }
        let model = try GGUFModel(path: path)
        let files = try model.auxiliaryFiles()
        XCTAssertEqual(files.map(\.name).sorted(), ["chat_template.jinja", "generation_config.json", "tokenizer.json", "tokenizer_config.json"])
        let ref = fixturesDir + "/tokenizer/smollm2"
        let tj = try XCTUnwrap(files.first { $0.name == "tokenizer.json" }?.bytes)
        XCTAssertEqual(tj.count, try FileSystem.readFile(ref + "/tokenizer.json").count)
        XCTAssertTrue(tj == (try FileSystem.readFile(ref + "/tokenizer.json")), "tokenizer.json differs from transformers'")
        XCTAssertEqual(files.first { $0.name == "chat_template.jinja" }?.bytes, try FileSystem.readFile(ref + "/chat_template.jinja"))
        let cfg = try JSONParser.parse(try XCTUnwrap(files.first { $0.name == "tokenizer_config.json" }?.bytes), source: "cfg")
        let want = try readJSON(ref + "/tokenizer_config.json")
        for k in ["bos_token", "eos_token", "unk_token", "pad_token", "tokenizer_class", "backend", "model_max_length"] {
            XCTAssertEqual(cfg[k], want[k], k)
        }
        XCTAssertEqual(cfg["add_bos_token"], .bool(false))
        XCTAssertEqual(cfg["add_eos_token"], .bool(false))
        // The problems no longer say "no tokenizer", but do say where llama.cpp differs.
        XCTAssertFalse(model.problems.contains { $0.contains("no tokenizer") }, "\(model.problems)")
        XCTAssertTrue(model.problems.contains { $0.contains("\"smollm\"") && $0.contains("digit") }, "\(model.problems)")
        XCTAssertEqual(try model.tokenizer()?.kind, .gpt2)
    }

    /// GPL-3 whole, a multilingual / emoji / digits text, chat prompts: transformers' ids and decodes;
    /// and every line of the 7,438-line tokenizer corpus (Tests/Fixtures/tokenizer/smollm2.jsonl).
    func testSmolLM2EncodesLikeTransformers() throws {
        guard let path = smolGGUF else { return }
        let model = try GGUFModel(path: path)
        let tok = try tokenizer(try model.auxiliaryFiles(), path)
        let expected = try readJSON(dir + "/smollm2.json")
        XCTAssertEqual(tok.vocabSize, expected["len"]?.intValue)
        XCTAssertEqual(tok.bosTokenId, expected["bos"]?.intValue)
        XCTAssertEqual(tok.eosTokenId, expected["eos"]?.intValue)
        try checkTexts(tok, expected, "smollm2")
        let gpl = try XCTUnwrap(expected["texts"]?.arrayValue?.first { $0["name"] == .string("gpl-3") })
        XCTAssertEqual(ints(gpl["ids"]).count, 7658)

        let corpus = try String(decoding: FileSystem.readFile(fixturesDir + "/tokenizer/corpus.jsonl"), as: UTF8.self).split(separator: "\n")
        let golden = try String(decoding: FileSystem.readFile(fixturesDir + "/tokenizer/smollm2.jsonl"), as: UTF8.self).split(separator: "\n")
        XCTAssertEqual(corpus.count, golden.count)
        var mismatches = 0
        for (c, g) in zip(corpus, golden) {
            let text = try XCTUnwrap(try JSONParser.parse(Array(c.utf8), source: "corpus").stringValue)
            let want = try JSONParser.parse(Array(g.utf8), source: "golden")
            if tok.encode(text) != ints(want["ids"]) || tok.decode(ints(want["ids"])) != want["dec"]?.stringValue {
                mismatches += 1
                if mismatches <= 3 { XCTFail("corpus line differs: \(text.prefix(80).debugDescription)") }
            }
        }
        XCTAssertEqual(mismatches, 0)
    }

    // MARK: llama (SentencePiece-style) vocabularies

    /// llama.cpp's own converter output for tiny-mistral (no merges, every score -1000: transformers
    /// rebuilds merges from equal scores): transformers' ids for the texts and every 10th corpus line.
    func testTinyMistralReferenceGGUF() throws {
        let g = try GGUFFile(path: fixturesDir + "/gguf-export/tiny-mistral.q8_0.reference.gguf")
        let t = try GGUFTokenizer(file: g)
        XCTAssertEqual(t.kind, .llama)
        XCTAssertEqual(t.tokenizerJSON["model"]?["merges"]?.arrayValue?.count, 58980)
        let tok = try tokenizer(t.files, g.path)
        let expected = try readJSON(dir + "/tiny-mistral-ref.json")
        XCTAssertEqual(tok.vocabSize, expected["len"]?.intValue)
        XCTAssertEqual(tok.bosTokenId, 1)
        try checkTexts(tok, expected, "tiny-mistral-ref")
        let corpus = try String(decoding: FileSystem.readFile(fixturesDir + "/tokenizer/corpus.jsonl"), as: UTF8.self).split(separator: "\n")
        let entries = expected["corpus"]?.arrayValue ?? []
        XCTAssertEqual(entries.count, (corpus.count + 9) / 10)
        for e in entries {
            let text = try XCTUnwrap(try JSONParser.parse(Array(corpus[e["line"]!.intValue!].utf8), source: "corpus").stringValue)
            XCTAssertEqual(tok.encode(text), ints(e["ids"]), "line \(e["line"]!.intValue!)")
            XCTAssertEqual(tok.decode(ints(e["ids"])), e["dec"]?.stringValue, "line \(e["line"]!.intValue!)")
        }
    }

    /// `i2q export --to gguf` of tiny-mistral (scores = merge ranks) read back: the vocabulary round-trips
    /// and the rebuilt tokenizer encodes the whole corpus exactly like the original tokenizer.json
    /// (transformers' ids of Tests/Fixtures/tokenizer/idefics2.jsonl: same tokenizer).
    func testExportedMistralRoundTrips() throws {
        let out = try makeTempDir("gguf-tok") + "/m.gguf"
        var s = OutputSettings()
        s.showProgress = false
        _ = try GGUFExportPass(source: try openModel(fixturesDir + "/tiny-mistral"), output: out, type: .f32, settings: s).run()
        let model = try GGUFModel(path: out)
        let tok = try tokenizer(try model.auxiliaryFiles(), out)
        let original = try Tokenizer(directory: fixturesDir + "/tiny-mistral")
        XCTAssertEqual(tok.vocabSize, original.vocabSize)
        XCTAssertEqual(tok.bosTokenId, original.bosTokenId)
        XCTAssertEqual(tok.eosTokenId, original.eosTokenId)
        for id in 0..<original.vocabSize {
            XCTAssertEqual(tok.idToToken(id), original.idToToken(id), "id \(id)")
            XCTAssertEqual(tok.isSpecial(id), original.isSpecial(id), "id \(id)")
        }
        let corpus = try String(decoding: FileSystem.readFile(fixturesDir + "/tokenizer/corpus.jsonl"), as: UTF8.self).split(separator: "\n")
        let golden = try String(decoding: FileSystem.readFile(fixturesDir + "/tokenizer/idefics2.jsonl"), as: UTF8.self).split(separator: "\n")
        var mismatches = 0
        for (c, g) in zip(corpus, golden) {
            let text = try XCTUnwrap(try JSONParser.parse(Array(c.utf8), source: "corpus").stringValue)
            let want = try JSONParser.parse(Array(g.utf8), source: "golden")
            if tok.encode(text) != ints(want["ids"]) || tok.decode(ints(want["ids"])) != want["dec"]?.stringValue {
                mismatches += 1
                if mismatches <= 3 { XCTFail("corpus line differs: \(text.prefix(80).debugDescription)") }
            }
        }
        XCTAssertEqual(mismatches, 0)
    }

    // MARK: Small variants (tokenizer-only GGUFs)

    /// gpt2 with a user-defined token, a control token outside the byte alphabet, no <|endoftext|>,
    /// BOS and EOS added; llama with merges rebuilt from rank scores, default BOS, EOS added;
    /// llama with the file's merges and add_bos_token false: tokenizer.json byte-identical to
    /// transformers', ids and decodes equal.
    func testVariantsMatchTransformers() throws {
        for name in ["gpt2-small", "llama-small", "llama-merges"] {
            let g = try GGUFFile(path: dir + "/\(name).gguf")
            let t = try GGUFTokenizer(file: g)
            let ref = dir + "/" + name
            let tj = t.files.first { $0.name == "tokenizer.json" }!.bytes
            let want = try FileSystem.readFile(ref + "/tokenizer.json")
            XCTAssertTrue(tj == want, "\(name): tokenizer.json differs from transformers'")
            if tj != want {  // say where
                XCTAssertEqual(try JSONParser.parse(tj, source: "i2q")["added_tokens"], try readJSON(ref + "/tokenizer.json")["added_tokens"], name)
                XCTAssertEqual(try JSONParser.parse(tj, source: "i2q")["post_processor"], try readJSON(ref + "/tokenizer.json")["post_processor"], name)
            }
            let cfgWant = try readJSON(ref + "/tokenizer_config.json")
            for k in ["bos_token", "eos_token", "unk_token", "pad_token", "tokenizer_class", "backend", "model_max_length"] {
                XCTAssertEqual(t.tokenizerConfig[k], cfgWant[k], "\(name) \(k)")
            }
            let tok = try tokenizer(t.files, g.path)
            let expected = try readJSON(ref + "/ids.json")
            XCTAssertEqual(tok.vocabSize, expected["len"]?.intValue, name)
            XCTAssertEqual(tok.bosTokenId, expected["bos"]?.intValue, name)
            XCTAssertEqual(tok.eosTokenId, expected["eos"]?.intValue, name)
            try checkTexts(tok, expected, name)
        }
        let gpt2 = try GGUFTokenizer(file: try GGUFFile(path: dir + "/gpt2-small.gguf"))
        XCTAssertTrue(gpt2.notes.contains { $0.contains("not spelled in the byte alphabet") }, "\(gpt2.notes)")
    }

    /// transformers' `generate_merges` on a hand-made vocabulary: every split into two vocabulary
    /// tokens, by score, then left and right lengths (code points), ties in token order.
    func testGenerateMerges() {
        let tokens = ["a", "b", "c", "ab", "bc", "abc", "é", "éa", "aé"].map { Array($0.utf8) }
        var vocab: [[UInt8]: Int] = [:]
        for (i, t) in tokens.enumerated() { vocab[t] = i }
        let scores: [Double] = [0, 0, 0, -1, -2, -3, 0, -1, -1]
        let got = GGUFTokenizer.generateMerges(tokens: tokens, vocab: vocab, scores: scores).map { String(decoding: $0.0, as: UTF8.self) + " " + String(decoding: $0.1, as: UTF8.self) }
        // Python: generate_merges({t: i}, dict(zip(tokens, scores))) with transformers 5.24.
        XCTAssertEqual(got, ["a b", "é a", "a é", "b c", "ab c", "a bc"])
    }

    // MARK: Errors

    /// A tokenizer-only GGUF with `keys` over a valid small gpt2 vocabulary (nil removes a key).
    func gguf(_ name: String, _ keys: [(String, GGUFValue?)]) throws -> GGUFFile {
        let path = try makeTempDir("gguf-tok-err") + "/\(name).gguf"
        var kv: [(String, GGUFValue)] = [
            ("general.architecture", .text("llama")),
            ("tokenizer.ggml.model", .text("gpt2")), ("tokenizer.ggml.pre", .text("gpt-2")),
            ("tokenizer.ggml.tokens", .strings(["<|endoftext|>", "a", "b", "ab"].map { Array($0.utf8) })),
            ("tokenizer.ggml.token_type", .array(.int32, [.int32(3), .int32(1), .int32(1), .int32(1)])),
            ("tokenizer.ggml.merges", .strings([Array("a b".utf8)])),
            ("tokenizer.ggml.bos_token_id", .uint32(0)),
        ]
        for (k, v) in keys {
            if let i = kv.firstIndex(where: { $0.0 == k }) { kv.remove(at: i) }
            if let v { kv.append((k, v)) }
        }
        let w = try GGUFWriter(path: path)
        for (k, v) in kv { try w.add(k, v) }
        try w.writeHeader()
        try w.finish()
        return try GGUFFile(path: path)
    }

    func testErrors() throws {
        // The base file is fine.
        let ok = try GGUFTokenizer(file: try gguf("ok", []))
        XCTAssertEqual(try tokenizer(ok.files, "ok").encode("abab"), [3, 3])

        func expect(_ name: String, _ keys: [(String, GGUFValue?)], _ mentions: [String], line: UInt = #line) throws {
            let g = try gguf(name, keys)
            assertThrowsMentioning([g.path] + mentions, line: line) { _ = try GGUFTokenizer(file: g) }
        }
        try expect("missing", [("tokenizer.ggml.model", nil)], ["no tokenizer.ggml.model", "tokenizer.json"])
        try expect("bert", [("tokenizer.ggml.model", .text("bert"))], ["\"tokenizer.ggml.model\" is \"bert\"", "\"gpt2\"", "\"llama\""])
        try expect("llama3", [("tokenizer.ggml.pre", .text("llama-bpe"))], ["\"llama-bpe\"", "GPT-2's split", "weights still convert"])
        try expect("unknown-pre", [("tokenizer.ggml.pre", .text("my-own"))], ["\"my-own\"", "unknown pre-tokenizer", "\"smollm\""])
        try expect("model-type", [("tokenizer.ggml.model", .uint32(2))], ["tokenizer.ggml.model", "must be a STRING, found UINT32", "corrupt"])
        try expect("no-tokens", [("tokenizer.ggml.tokens", nil)], ["tokenizer.ggml.tokens", "is missing"])
        try expect("empty-tokens", [("tokenizer.ggml.tokens", .strings([]))], ["tokenizer.ggml.tokens", "is empty"])
        try expect("int-tokens", [("tokenizer.ggml.tokens", .array(.int32, [.int32(1)]))], ["tokenizer.ggml.tokens", "ARRAY of STRING", "ARRAY of INT32"])
        try expect("utf8", [("tokenizer.ggml.tokens", .strings([[0x61], [0xFF, 0x62], [0x62], [0x61, 0x62]]))], ["tokenizer.ggml.tokens", "entry 1 is not valid UTF-8"])
        try expect("types", [("tokenizer.ggml.token_type", .array(.int32, [.int32(1)]))], ["tokenizer.ggml.token_type", "has 1 entries", "has 4"])
        try expect("bos-range", [("tokenizer.ggml.bos_token_id", .uint32(4))], ["tokenizer.ggml.bos_token_id", "is 4, outside the 4-token vocabulary"])
        try expect("bos-type", [("tokenizer.ggml.eos_token_id", .text("1"))], ["tokenizer.ggml.eos_token_id", "must be an integer, found STRING"])
        try expect("add-bos", [("tokenizer.ggml.add_bos_token", .uint8(1))], ["tokenizer.ggml.add_bos_token", "must be a BOOL, found UINT8"])
        try expect("merge-3", [("tokenizer.ggml.merges", .strings([Array("a b c".utf8)]))], ["tokenizer.ggml.merges", "entry 0 \"a b c\"", "two tokens"])
        try expect("merge-oov", [("tokenizer.ggml.merges", .strings([Array("a x".utf8)]))], ["tokenizer.ggml.merges", "\"x\"", "not in tokenizer.ggml.tokens"])
        try expect("merge-result", [("tokenizer.ggml.merges", .strings([Array("b a".utf8)]))], ["tokenizer.ggml.merges", "\"ba\"", "not in tokenizer.ggml.tokens"])
        try expect("no-merges", [("tokenizer.ggml.merges", nil)], ["tokenizer.ggml.merges", "tokenizer.ggml.scores", "cannot be rebuilt"])
        try expect("scores-count", [("tokenizer.ggml.model", .text("llama")), ("tokenizer.ggml.scores", .array(.float32, [.float32(0)]))],
                   ["tokenizer.ggml.scores", "has 1 entries"])
        try expect("scores-nan", [("tokenizer.ggml.merges", nil), ("tokenizer.ggml.scores", .array(.float32, [.float32(0), .float32(.nan), .float32(0), .float32(0)]))],
                   ["tokenizer.ggml.scores", "entry 1 is NaN"])
        try expect("scores-type", [("tokenizer.ggml.scores", .strings([[0x61]]))], ["tokenizer.ggml.scores", "ARRAY of FLOAT32", "ARRAY of STRING"])
    }

    /// Mutated tokenizer GGUFs (random bytes of the metadata overwritten, ±1 on length/count fields):
    /// every one is rejected with an I2QError or gives files the tokenizer reads or rejects, and that
    /// tokenizer encodes and decodes; never a crash.
    func testMutatedVocabulariesNeverCrash() throws {
        let tmp = try makeTempDir("gguf-tok-fuzz")
        var rng = SplitMix64(seed: 20261129)
        var counts = (rejected: 0, built: 0, tokenizerRejected: 0)
        for name in ["gpt2-small", "llama-small"] {
            let original = try FileSystem.readFile(dir + "/\(name).gguf")
            for i in 0..<400 {
                var bytes = original
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    let at = Int(rng.next() % UInt64(bytes.count))
                    if rng.next() % 2 == 0 { bytes[at] = UInt8(truncatingIfNeeded: rng.next()) } else { bytes[at] &+= rng.next() % 2 == 0 ? 1 : 255 }
                }
                let path = tmp + "/m\(i).gguf"
                try write(bytes, to: path)
                do {
                    let t = try GGUFTokenizer(file: try GGUFFile(path: path))
                    counts.built += 1
                    do {
                        let tok = try tokenizer(t.files, path)
                        let ids = tok.encode("Hello wörld 123 <|im_end|> <s> 🙂")
                        _ = tok.decode(ids)
                    } catch is I2QError { counts.tokenizerRejected += 1 }
                } catch is I2QError { counts.rejected += 1 }
                FileSystem.removeTree(path)
            }
        }
        print("gguf tokenizer mutations: 800 inputs, \(counts.rejected) rejected by the reader or GGUFTokenizer, \(counts.built) built (\(counts.tokenizerRejected) then rejected by the tokenizer), 0 crashes")
        XCTAssertGreaterThan(counts.built, 0)
        XCTAssertGreaterThan(counts.rejected, 0)
    }

    /// A GGUF model without a usable tokenizer still converts; `problems` says why there is none.
    func testModelWithoutTokenizer() throws {
        // Tests/Fixtures/gguf/tiny-llama.gguf names a gpt2 vocabulary but holds no tokens.
        let m = try GGUFModel(path: fixturesDir + "/gguf/tiny-llama.gguf")
        XCTAssertFalse(m.hasTokenizer)
        XCTAssertNil(try m.tokenizer())
        XCTAssertTrue(m.problems.contains { $0.hasPrefix("no tokenizer.json") && $0.contains("tokenizer.ggml.tokens") && $0.contains("is missing") }, "\(m.problems)")
        XCTAssertEqual(try m.auxiliaryFiles().map(\.name), ["generation_config.json", "chat_template.jinja"])
    }
}
