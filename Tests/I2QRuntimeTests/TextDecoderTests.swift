import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport
@testable import I2QRuntime

/// The decoder against transformers 5.24 (float32, eager attention): logits of every prompt
/// position and 8 greedy tokens recorded by scripts/make_fixtures.py for tiny random checkpoints.
final class TextDecoderTests: XCTestCase {
    struct Golden { let ids: [Int]; let logits: [Float]; let generated: [Int] }

    func golden(_ path: String) throws -> Golden {
        let f = try SafetensorsFile(path: path)
        func i64(_ n: String) -> [Int] { f.withData(f.info(n)!) { b in (0..<(b.count / 8)).map { Int(b.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) } } }
        let logits: [Float] = f.withData(f.info("logits")!) { b in (0..<(b.count / 4)).map { b.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
        return Golden(ids: i64("input_ids"), logits: logits, generated: i64("generated_ids"))
    }

    func check(model: String, golden g: Golden, file: StaticString = #filePath, line: UInt = #line) throws {
        let source = try openModel(fixturesDir + "/" + model)
        let dec = try TextDecoder(source: source)
        let cache = dec.makeCache(capacity: 64)
        let hidden = try dec.forward(embeddings: try dec.embed(g.ids), cache: cache)
        let logits = try dec.logits(hidden, rows: 0..<g.ids.count)
        XCTAssertEqual(logits.count, g.logits.count, file: file, line: line)
        let mean = g.logits.reduce(0, +) / Float(g.logits.count)
        let std = (g.logits.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(g.logits.count)).squareRoot()
        var maxDiff: Float = 0
        for (a, b) in zip(logits, g.logits) { maxDiff = max(maxDiff, abs(a - b)) }
        XCTAssertLessThanOrEqual(maxDiff, 1e-4 * std, "\(model): max|Δ| \(maxDiff) vs 1e-4·std \(1e-4 * std)", file: file, line: line)
        print("\(model): logits max|Δ| = \(maxDiff), std = \(std), ratio \(maxDiff / std)")

        var opts = GreedyOptions()
        opts.maxNewTokens = g.generated.count
        opts.stopTokens = [2]
        cache.reset()
        let gen = try Greedy.generate(dec, promptEmbeddings: try dec.embed(g.ids), options: opts, cache: cache)
        XCTAssertEqual(gen, g.generated, "\(model): greedy tokens", file: file, line: line)
    }

    func testTinyMistralWithSlidingWindowShorterThanPrompt() throws {
        let g = try golden(fixturesDir + "/tiny-mistral/golden.safetensors")
        XCTAssertGreaterThan(g.ids.count, 8, "the prompt must be longer than the sliding window (8)")
        try check(model: "tiny-mistral", golden: g)
    }

    func testTinyLlama() throws {
        try check(model: "tiny-llama", golden: try golden(fixturesDir + "/tiny-llama/golden.safetensors"))
    }

    func testPromptInPiecesEqualsWholePrompt() throws {
        // KV cache: feeding the prompt in two parts gives the same last logits as in one.
        let g = try golden(fixturesDir + "/tiny-mistral/golden.safetensors")
        let dec = try TextDecoder(source: try openModel(fixturesDir + "/tiny-mistral"))
        let c1 = dec.makeCache(capacity: 64), c2 = dec.makeCache(capacity: 64)
        let whole = try dec.forward(embeddings: try dec.embed(g.ids), cache: c1)
        _ = try dec.forward(embeddings: try dec.embed(Array(g.ids.prefix(11))), cache: c2)
        let tail = try dec.forward(embeddings: try dec.embed(Array(g.ids.dropFirst(11))), cache: c2)
        let a = try dec.logits(whole, rows: (g.ids.count - 1)..<g.ids.count)
        let b = try dec.logits(tail, rows: (tail.count / 32 - 1)..<(tail.count / 32))
        for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-5) }
    }
}
