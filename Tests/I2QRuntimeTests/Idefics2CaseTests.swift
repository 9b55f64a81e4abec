import XCTest
import I2QCore
import I2QFormats
import I2QImage
import I2QTestSupport
@testable import I2QRuntime

/// Every case of Tests/Fixtures/golden/idefics2-cases.json (scripts/fixtures/make_idefics2_goldens.py): two
/// more tiny random Idefics2 configs (A: GQA perceiver, image splitting, sliding window; B: the
/// perceiver takes the text model's hidden size and eps) on 6 real PNG/JPEG images of several sizes
/// and aspect ratios, against transformers 5.24 (float32, eager): pixel_values ≤ 1e-6, input_ids,
/// connector outputs, last-4 logits ≤ 1e-4·std, every position's argmax, 8 greedy tokens.
final class Idefics2CaseTests: XCTestCase {
    func testAllGoldenCases() throws {
        let manifest = try JSONParser.parse(FileSystem.readFile(fixturesDir + "/golden/idefics2-cases.json"), source: "cases")
        let cases = try XCTUnwrap(manifest["cases"]?.arrayValue ?? manifest.arrayValue)
        XCTAssertGreaterThanOrEqual(cases.count, 16)
        var sessions: [String: Idefics2Session] = [:]
        var worstPixel: Float = 0, worstLogits: Float = 0
        for c in cases {
            let file = try XCTUnwrap(c["file"]?.stringValue)
            let dir = try XCTUnwrap(c["model"]?.stringValue ?? c["model_dir"]?.stringValue)
            let prompt = try XCTUnwrap(c["prompt"]?.stringValue)
            let images = (c["images"]?.arrayValue ?? []).compactMap(\.stringValue).map { fixturesDir + "/" + $0 }
            let session = try sessions[dir] ?? Idefics2Session(source: try openModel(fixturesDir + "/" + dir))
            sessions[dir] = session
            let g = try SafetensorsFile(path: fixturesDir + "/" + (file.hasPrefix("golden/") ? file : "golden/" + file))
            let name = URL(fileURLWithPath: file).lastPathComponent

            let processed = try session.process(try images.map { try ImageDecoder.decodeRGB(path: $0) })
            XCTAssertEqual(processed.pixelValuesShape, g.info("pixel_values")!.shape, name)
            let pd = maxDiff(processed.pixelValues, floats(g, "pixel_values"))
            worstPixel = max(worstPixel, pd)
            XCTAssertLessThanOrEqual(pd, 1e-6, "\(name): pixel_values max|Δ| \(pd)")
            XCTAssertEqual(processed.pixelAttentionMask.map(Int.init), ints(g, "pixel_attention_mask"), name)

            let ids = session.inputIds(prompt: prompt)
            XCTAssertEqual(ids, ints(g, "input_ids"), name)
            let inputs = Idefics2Session.inputs(processed)
            let feats = try session.model.imageFeatures(inputs)
            let want = floats(g, "image_hidden_states")
            XCTAssertEqual(feats.count, want.count, name)
            XCTAssertLessThanOrEqual(maxDiff(feats, want), 1e-4 * max(1, standardDeviation(want)), "\(name): connector")

            let emb = try session.model.embeddings(ids: ids, images: inputs)
            let hidden = try session.model.text.forward(embeddings: emb, cache: session.model.text.makeCache(capacity: ids.count + 1))
            let v = session.model.config.text.vocabSize
            let logits = try session.model.text.logits(hidden, rows: 0..<ids.count)
            let last4 = Array(logits[((ids.count - 4) * v)...]), w4 = floats(g, "logits_last4")
            let ld = maxDiff(last4, w4) / standardDeviation(w4)
            worstLogits = max(worstLogits, ld)
            XCTAssertLessThanOrEqual(ld, 1e-4, "\(name): logits max|Δ|/std \(ld)")
            var argmax: [Int] = []
            for r in 0..<ids.count {
                let row = Array(logits[(r * v)..<((r + 1) * v)])
                argmax.append(row.withUnsafeBufferPointer { Greedy.argmax($0, banned: []) })
            }
            XCTAssertEqual(argmax, ints(g, "logits_argmax"), name)
            let r = try session.run(prompt: prompt, images: images, maxNewTokens: 8, wantLogits: false)
            XCTAssertEqual(r.generatedIds, ints(g, "generated_ids"), "\(name): greedy tokens")
        }
        print("Idefics2 golden cases: \(cases.count); worst pixel_values max|Δ| \(worstPixel); worst logits max|Δ|/std \(worstLogits)")
    }
}
