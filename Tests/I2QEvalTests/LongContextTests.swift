import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport
@testable import I2QEval
@testable import I2QRuntime

/// Issue 17, "no bound on sequence length", on the real SmolLM2 (max_position_embeddings 8192):
/// long inputs are refused or truncated before anything big is allocated, and prefill in blocks
/// (positions in 1024-blocks, queries in score-bounded blocks) keeps memory linear in the length.
final class LongContextTests: XCTestCase {
    func session() throws -> TextSession {
        let root = URL(fileURLWithPath: fixturesDir).deletingLastPathComponent().deletingLastPathComponent().path
        let path = ProcessInfo.processInfo.environment["I2Q_SMOLLM2"] ?? root + "/.cache/smollm2/SmolLM2-135M-Instruct-f32"
        guard FileSystem.exists(path + "/model.safetensors") else {
            XCTFail("SmolLM2 is not at \(path): run `bash scripts/get_smollm2.sh` (scripts/test.sh does) or set I2Q_SMOLLM2")
            throw XCTSkip("no model")
        }
        return try TextSession(source: try openModel(path))
    }

    /// A 1 M-character document: the prompt is cut to fit the context (the question kept), with a
    /// warning, as transformers' question-answering pipeline truncates the context only.
    func testALongDocumentTextIsTruncatedToFitWithAWarning() throws {
        let s = try session()
        let doc = String(repeating: "Invoice number INV-7042, total due $884.49. ", count: 23_000)  // ≈1 M characters
        var kept: Int?
        let prompt = try Verifier.fittedDocumentPrompt(question: "What is the total due?", documentText: doc, session: s,
                                                       maxNewTokens: 16) { kept = $0 }
        let n = s.tokenizer.encode(prompt).count
        XCTAssertLessThanOrEqual(n, 8192 - 16 - 1)
        XCTAssertGreaterThan(n, 8192 / 2, "cut far more than needed")
        let k = try XCTUnwrap(kept, "no truncation warning")
        XCTAssertLessThan(k, doc.count)
        XCTAssertTrue(prompt.contains("Question: What is the total due?"), "the question was cut")
        // A short document is left alone.
        kept = nil
        _ = try Verifier.fittedDocumentPrompt(question: "q?", documentText: "short", session: s, maxNewTokens: 16) { kept = $0 }
        XCTAssertNil(kept)
    }

    func testPromptsBeyondMaxPositionsAreRefusedBeforeTheForward() throws {
        let s = try session()
        let long = String(repeating: "the quick brown fox ", count: 10_000)  // ≈ 40k tokens
        assertThrowsMentioning(["max_position_embeddings", "8192"]) {
            _ = try s.run(prompt: long, maxNewTokens: 4, wantLogits: false)
        }
        XCTAssertEqual(s.decoder.maxContext, min(8192, MemoryBudget.bytes / s.decoder.cacheBytesPerToken))
    }

    /// Blocked prefill gives the logits of the one-block prefill (the path the transformers goldens
    /// check): 1,300 positions in blocks of 512, queries in blocks of ≤ 40, against one block.
    func testBlockedPrefillEqualsOneBlock() throws {
        let s = try session()
        let dec = s.decoder
        let ids = Array(s.tokenizer.encode(String(repeating: "A long context keeps memory linear. ", count: 200)).prefix(1300))
        XCTAssertEqual(ids.count, 1300)
        func lastLogits() throws -> [Float] {
            let cache = try dec.makeCache(capacity: ids.count)
            let h = try dec.forward(embeddings: try dec.embed(ids), cache: cache)
            return try dec.logits(h, rows: (ids.count - 1)..<ids.count)
        }
        let (block, scores) = (TextDecoder.prefillBlock, CausalAttention.maxScores)
        defer { TextDecoder.prefillBlock = block; CausalAttention.maxScores = scores }
        TextDecoder.prefillBlock = 4096; CausalAttention.maxScores = 1 << 26
        let one = try lastLogits()
        TextDecoder.prefillBlock = 512; CausalAttention.maxScores = 3 * 40 * 1300
        let blocked = try lastLogits()
        let mean = one.reduce(0, +) / Float(one.count)
        let std = (one.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(one.count)).squareRoot()
        let d = zip(one, blocked).map { abs($0 - $1) }.max()!
        print("blocked prefill: max|Δ| \(d), std \(std)")
        XCTAssertLessThanOrEqual(d, 1e-4 * std)
        XCTAssertEqual(one.firstIndex(of: one.max()!), blocked.firstIndex(of: blocked.max()!))
    }
}
