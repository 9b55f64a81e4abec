import XCTest
import I2QCore
import I2QFormats
import I2QImage
import I2QTestSupport
@testable import I2QRuntime

/// Every case of Tests/Fixtures/golden/idefics3-cases.json (scripts/fixtures/make_idefics3_fixtures.py):
/// tiny random Idefics3 (llama3 RoPE scaling, scale_factor 2) and SmolVLM (plain RoPE, tied, scale_factor 4)
/// checkpoints on real JPEG/PNG images, against transformers 5.24 (float32, eager; the PIL image
/// processors with LANCZOS): pixel_values ≤ 1e-6, pixel_attention_mask, input_ids (row/col and
/// global-image tokens), connector outputs and every logit ≤ 1e-4·std, every argmax, 8 greedy tokens.
final class Idefics3Tests: XCTestCase {
    func testGoldenCases() throws {
        let manifest = try JSONParser.parse(FileSystem.readFile(fixturesDir + "/golden/idefics3-cases.json"), source: "cases")
        let cases = try XCTUnwrap(manifest["cases"]?.arrayValue)
        XCTAssertEqual(cases.count, 5)
        var seenTypes: Set<String> = []
        var worstPixel: Float = 0, worstLogits: Float = 0
        for c in cases {
            let file = try XCTUnwrap(c["file"]?.stringValue)
            let dir = try XCTUnwrap(c["model"]?.stringValue)
            let prompt = try XCTUnwrap(c["prompt"]?.stringValue)
            let images = (c["images"]?.arrayValue ?? []).compactMap(\.stringValue).map { fixturesDir + "/" + $0 }
            let source = try openModel(fixturesDir + "/" + dir)
            guard case let .visionLanguage(s) = try RuntimeRegistry.open(source), let session = s as? Idefics3Session else {
                return XCTFail("\(dir) did not open as an Idefics3 session")
            }
            seenTypes.insert(source.config.modelType)
            if c["processor_overrides"]?["do_image_splitting"]?.boolValue == false { session.imageSplitting = false }
            let g = try SafetensorsFile(path: fixturesDir + "/" + file)

            let (processed, grids) = try session.process(try images.map { try ImageDecoder.decodeRGB(path: $0) })
            XCTAssertEqual(processed.pixelValuesShape, g.info("pixel_values")!.shape, file)
            let pd = maxDiff(processed.pixelValues, floats(g, "pixel_values"))
            worstPixel = max(worstPixel, pd)
            XCTAssertLessThanOrEqual(pd, 1e-6, "\(file): pixel_values max|Δ| \(pd)")
            XCTAssertEqual(processed.pixelAttentionMask.map(Int.init), ints(g, "pixel_attention_mask"), file)

            let ids = session.inputIds(prompt: prompt, grids: grids)
            XCTAssertEqual(ids, ints(g, "input_ids"), file)
            let feats = try session.model.imageFeatures(Idefics3Session.inputs(processed))
            let want = floats(g, "image_hidden_states")
            XCTAssertEqual(feats.count, want.count, file)
            XCTAssertLessThanOrEqual(maxDiff(feats, want), 1e-4 * standardDeviation(want), "\(file): connector")

            let emb = try session.model.embeddings(ids: ids, features: feats)
            let text = session.model.text
            let hidden = try text.forward(embeddings: emb, cache: text.makeCache(capacity: ids.count + 1))
            let logits = try text.logits(hidden, rows: 0..<ids.count), wl = floats(g, "logits")
            let ld = maxDiff(logits, wl) / standardDeviation(wl)
            worstLogits = max(worstLogits, ld)
            XCTAssertLessThanOrEqual(ld, 1e-4, "\(file): logits max|Δ|/std \(ld)")
            let v = text.config.vocabSize
            let argmax = (0..<ids.count).map { r in
                logits[(r * v)..<((r + 1) * v)].withContiguousStorageIfAvailable { Greedy.argmax($0, banned: []) }!
            }
            XCTAssertEqual(argmax, ints(g, "logits_argmax"), file)
            let r = try session.run(prompt: prompt, images: images, maxNewTokens: 8, wantLogits: false)
            XCTAssertEqual(r.inputIds, ints(g, "input_ids"), file)
            XCTAssertEqual(r.generatedIds, ints(g, "generated_ids"), "\(file): greedy tokens")
        }
        XCTAssertEqual(seenTypes, ["idefics3", "smolvlm"])
        print("Idefics3/SmolVLM golden cases: \(cases.count); worst pixel_values max|Δ| \(worstPixel); worst logits max|Δ|/std \(worstLogits)")
    }

    /// The prompt expansion against the strings transformers 5.24's `Idefics3Processor.replace_image_token`
    /// and smolvlm's `get_image_prompt_string` build (copied from their code, for 2×3 and unsplit images).
    func testPromptExpansion() {
        let tok = "<image><image>"
        let split = "<fake_token_around_image><row_1_col_1>\(tok)<fake_token_around_image><row_1_col_2>\(tok)<fake_token_around_image><row_1_col_3>\(tok)\n"
            + "<fake_token_around_image><row_2_col_1>\(tok)<fake_token_around_image><row_2_col_2>\(tok)<fake_token_around_image><row_2_col_3>\(tok)\n"
            + "\n<fake_token_around_image><global-img>\(tok)<fake_token_around_image>"
        XCTAssertEqual(Idefics3Prompt.replacement(rows: 2, cols: 3, imageSeqLen: 2), split)
        XCTAssertEqual(Idefics3Prompt.expand("A<image>B<image>C", grids: [(2, 3), (0, 0)], imageSeqLen: 2),
                       "A" + split + "B<fake_token_around_image><global-img>\(tok)<fake_token_around_image>C")
    }

    /// llama3 RoPE scaling against transformers 5.24 `_compute_llama3_parameters` (head_dim 8, theta
    /// 500000, factor 8, low 1, high 4, original 8192; float32 values printed by torch).
    func testLlama3InvFreq() {
        var p = RopeParameters(ropeType: "llama3", theta: 500000)
        p.factor = 8; p.lowFreqFactor = 1; p.highFreqFactor = 4; p.originalMaxPositionEmbeddings = 8192
        let r = RoPE(headDim: 8, parameters: p)
        XCTAssertEqual(r.invFreq.map(\.bitPattern), [0x3f80_0000, 0x3d1a_08c8, 0x3a09_95d2, 0x36df_10c4])
    }
}
