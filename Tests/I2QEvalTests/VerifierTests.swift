import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport
import I2QPasses
@testable import I2QEval
@testable import I2QRuntime
import I2QTokenizer

/// `Verifier.run` end to end on the tiny Idefics2 (text windows through its Mistral decoder, and the
/// shipped DocVQA set with images) against itself and against its bf16 cast.
final class VerifierTests: XCTestCase {
    nonisolated(unsafe) static var bf16Path: String?
    static let model = fixturesDir + "/tiny-idefics2-v5"
    static let text = "/usr/share/common-licenses/BSD"

    func bf16() throws -> String {
        if let p = Self.bf16Path { return p }
        let out = try makeTempDir("verify-bf16") + "/tiny-bf16.i2q"
        var s = OutputSettings()
        s.showProgress = false
        _ = try CastPass.make(source: try openModel(Self.model), output: out, dtype: .bf16, settings: s).run()
        Self.bf16Path = out
        return out
    }

    func options(text: Bool = true, docvqa: Bool = true) -> VerifyOptions {
        var o = VerifyOptions()
        o.textPath = text ? Self.text : nil
        o.docvqaDirectory = docvqa ? fixturesDir + "/docvqa-mini" : nil
        o.ctx = 64
        o.samples = 4
        o.seed = 3
        o.maxNewTokens = 4
        o.showProgress = false
        return o
    }

    func testModelAgainstItselfIsExactlyEqual() throws {
        let r = try Verifier.run(candidate: Self.model, reference: Self.model, options: options())
        let t = try XCTUnwrap(r.text)
        XCTAssertGreaterThan(t.windows, 1)
        XCTAssertEqual(t.stats.count, t.windows * 63)
        XCTAssertEqual(t.stats.pplRatio, 1)
        XCTAssertEqual(t.stats.kldMean, 0)
        XCTAssertEqual(t.stats.kldPercentiles.first { $0.0 == "max" }?.1, 0)
        XCTAssertEqual(t.stats.deltaPRMS, 0)
        XCTAssertEqual(t.stats.sameTop, 1)
        let layers = try XCTUnwrap(r.layers)
        XCTAssertEqual(layers.count, 2)
        XCTAssertTrue(layers.allSatisfy { $0.relError == 0 && $0.maxTokenRelError == 0 })
        XCTAssertEqual(r.layerPositions, t.windows * 64)
        let d = try XCTUnwrap(r.docvqa)
        XCTAssertEqual(d.items.count, 4)
        XCTAssertEqual(d.mode, "idefics2")
        XCTAssertEqual(d.anlsAgreement, 1)
        XCTAssertEqual(d.sameAnswerShare, 1)
        XCTAssertEqual(d.anlsCandidate, d.anlsBase)
        XCTAssertTrue(r.passed)

        // The base perplexity is what `i2q perplexity` computes on the same windows.
        let session = try TextSession(source: try openModel(Self.model))
        let p = try Perplexity.evaluate(session: session, text: String(decoding: try FileSystem.readFile(Self.text), as: UTF8.self), ctx: 64)
        XCTAssertEqual(t.stats.pplBase, p.ppl, accuracy: 1e-9 * p.ppl)
    }

    func testBF16CandidateReportAndThresholds() throws {
        var o = options()
        o.maxKLD = 0            // any difference breaks it
        o.maxPPLRatio = 10      // a bf16 cast is far within this
        o.minANLS = 0
        let r = try Verifier.run(candidate: try bf16(), reference: Self.model, options: o)
        let t = try XCTUnwrap(r.text)
        XCTAssertGreaterThan(t.stats.kldMean, 0)
        XCTAssertLessThan(t.stats.kldMean, 0.01, "a bf16 cast of a random tiny model stays close")
        XCTAssertEqual(t.stats.pplRatio, 1, accuracy: 0.02)
        XCTAssertGreaterThan(t.stats.sameTop, 0.8)
        let layers = try XCTUnwrap(r.layers)
        XCTAssertTrue(layers.allSatisfy { $0.relError > 0 && $0.relError < 0.05 }, "\(layers)")
        XCTAssertEqual(r.failures.count, 1)
        XCTAssertTrue(r.failures[0].contains("--max-kld 0"), r.failures[0])
        XCTAssertFalse(r.passed)

        // Stable JSON keys (docs/verify.md).
        let j = r.json
        for k in ["format", "format_version", "i2q_version", "candidate", "reference", "model_type", "text", "layers", "docvqa",
                  "thresholds", "passed", "failures", "seconds"] {
            XCTAssertNotNil(j[k], "top-level key \(k)")
        }
        let tj = try XCTUnwrap(j["text"])
        for k in ["file", "tokens", "ctx", "windows", "scored_tokens", "ppl_candidate", "ppl_candidate_err", "ppl_base", "ppl_base_err",
                  "ppl_ratio", "ppl_ratio_err", "mean_ln_ratio", "mean_ln_ratio_err", "nll_correlation", "kld", "delta_p", "same_top",
                  "seconds", "tokens_per_second"] {
            XCTAssertNotNil(tj[k], "text.\(k)")
        }
        for k in ["mean", "mean_err", "max", "p99_9", "p99", "p90", "median", "p10", "p5", "p1", "min"] { XCTAssertNotNil(tj["kld"]?[k], "kld.\(k)") }
        for k in ["rms", "rms_err", "mean", "max", "p99", "p95", "p90", "median", "p10", "p5", "p1", "min"] { XCTAssertNotNil(tj["delta_p"]?[k], "delta_p.\(k)") }
        XCTAssertNotNil(tj["same_top"]?["share"]); XCTAssertNotNil(tj["same_top"]?["err"])
        XCTAssertEqual(j["layers"]?["decoder"]?.arrayValue?.count, 2)
        XCTAssertNotNil(j["layers"]?["decoder"]?.arrayValue?.first?["rel_error"])
        let dj = try XCTUnwrap(j["docvqa"])
        for k in ["directory", "file", "mode", "questions_in_set", "samples", "seed", "max_new_tokens", "anls_candidate", "anls_base",
                  "anls_agreement", "exact_match_candidate", "exact_match_base", "same_answer_share", "seconds", "worst", "items"] {
            XCTAssertNotNil(dj[k], "docvqa.\(k)")
        }
        XCTAssertEqual(dj["items"]?.arrayValue?.count, 4)
        for k in ["questionId", "question", "image", "answers", "candidate", "base", "anls_candidate", "anls_base", "agreement",
                  "exact_candidate", "exact_base"] {
            XCTAssertNotNil(dj["items"]?.arrayValue?.first?[k], "docvqa.items[].\(k)")
        }
        XCTAssertEqual(j["thresholds"]?["max_kld"]?.doubleValue, 0)
        XCTAssertEqual(j["passed"], .bool(false))
        // The text form parses back.
        XCTAssertEqual(try JSONParser.parse(Array(r.jsonString().utf8), source: "report"), j)

        // --report DIR: every file, SVGs complete.
        let dir = try makeTempDir("verify-report") + "/report"
        try VerifyReportFiles.write(r, to: dir)
        let names = try FileSystem.listDirectory(dir)
        XCTAssertEqual(names, ["docvqa.svg", "kld_cdf.svg", "kld_histogram.svg", "layer_error.svg", "report.json", "summary.md",
                               "vision_layer_error.svg"])
        // Idefics2 with DocVQA: the vision tower's layers are compared on the questions' distinct pages.
        let vision = try XCTUnwrap(j["layers"]?["vision"])
        XCTAssertEqual(vision["layers"]?.arrayValue?.count, 2)
        XCTAssertGreaterThan(vision["patches"]?.intValue ?? 0, 0)
        for n in names where n.hasSuffix(".svg") {
            let s = String(decoding: try FileSystem.readFile(dir + "/" + n), as: UTF8.self)
            XCTAssertTrue(s.hasPrefix("<?xml") && s.contains("<svg xmlns=\"http://www.w3.org/2000/svg\"") && s.hasSuffix("</svg>\n"), n)
        }
        let md = String(decoding: try FileSystem.readFile(dir + "/summary.md"), as: UTF8.self)
        XCTAssertTrue(md.contains("FAILED") && md.contains("| mean KLD |") && md.contains("### Worst items"))
        // A second report replaces the first; a directory that is not a report is refused.
        try VerifyReportFiles.write(r, to: dir)
        let other = try makeTempDir("verify-other")
        try write([1], to: other + "/keep.txt")
        assertThrowsMentioning([other, "not an i2q verify report"]) { try VerifyReportFiles.write(r, to: other) }
        XCTAssertTrue(FileSystem.exists(other + "/keep.txt"))
    }

    /// Per-layer errors of the bf16 cast equal transformers' (forward hooks on the float32 model and on
    /// a copy with bf16-rounded weights; Tests/Fixtures/verify/layers.json). The runtime matches
    /// transformers to ~1e-4·std of the activations, far below the bf16 differences (~1e-2), so 2 %.
    func testLayerErrorsEqualTransformers() throws {
        let g = try JSONParser.parse(FileSystem.readFile(fixturesDir + "/verify/layers.json"), source: "layers.json")
        let ids = try XCTUnwrap(g["input_ids"]?.arrayValue).compactMap(\.intValue)
        XCTAssertEqual(ids.count, 64)
        let base = try TextSession(source: try openModel(Self.model))
        let text = String(decoding: try FileSystem.readFile(Self.text), as: UTF8.self)
        XCTAssertEqual(Array(base.tokenizer.encode(text).prefix(64)), ids, "the tokenizer's first 64 ids of the text")
        let cand = try TextSession(source: try openModel(try bf16()))
        let r = try Verifier.compareText(base: base.decoder, candidate: cand.decoder, ids: ids, ctx: 64, layerwise: true)
        let got = try XCTUnwrap(r.layers).result
        let want = try XCTUnwrap(g["layers"]?.arrayValue)
        XCTAssertEqual(got.count, want.count)
        for (l, w) in zip(got, want) {
            for (name, v) in [("rel_error", l.relError), ("mean_token_rel_error", l.meanTokenRelError), ("max_token_rel_error", l.maxTokenRelError)] {
                let e = try XCTUnwrap(w[name]?.doubleValue)
                XCTAssertEqual(v, e, accuracy: 0.02 * e, "layer \(l.layer) \(name)")
            }
        }
    }

    /// Per vision-layer error against transformers: forward hooks on the vision encoder layers of the
    /// tiny Idefics2 and of a bf16-rounded copy, on one DocVQA page through Idefics2ImageProcessorPil,
    /// real patches only (Tests/Fixtures/verify/vision_layers.json). Same 2 % as the decoder test.
    func testVisionLayerErrorsEqualTransformers() throws {
        let g = try JSONParser.parse(FileSystem.readFile(fixturesDir + "/verify/vision_layers.json"), source: "vision_layers.json")
        let base = try Idefics2Session(source: try openModel(Self.model))
        let cand = try Idefics2Session(source: try openModel(try bf16()))
        var acc = LayerErrorAccumulator(layers: base.model.config.vision.numHiddenLayers)
        let image = fixturesDir + "/docvqa-mini/documents/invoice_00.png"
        let patches = try Verifier.compareVision(base: base, candidate: cand, imagePath: image, into: &acc)
        XCTAssertEqual(patches, g["patches"]?.intValue)
        let want = try XCTUnwrap(g["layers"]?.arrayValue)
        XCTAssertEqual(acc.result.count, want.count)
        for (l, w) in zip(acc.result, want) {
            for (name, v) in [("rel_error", l.relError), ("mean_token_rel_error", l.meanTokenRelError), ("max_token_rel_error", l.maxTokenRelError)] {
                let e = try XCTUnwrap(w[name]?.doubleValue)
                XCTAssertEqual(v, e, accuracy: 0.02 * e, "vision layer \(l.layer) \(name)")
            }
        }
        // A model against itself: exactly zero.
        var same = LayerErrorAccumulator(layers: base.model.config.vision.numHiddenLayers)
        _ = try Verifier.compareVision(base: base, candidate: base, imagePath: image, into: &same)
        XCTAssertTrue(same.result.allSatisfy { $0.relError == 0 && $0.maxTokenRelError == 0 })
    }

    func testTextModelAnswersFromDocumentText() throws {
        // tiny-mistral has the Idefics2 tokenizer (no <|im_start|>): the plain document prompt.
        var o = options(text: false)
        o.samples = 2
        let m = fixturesDir + "/tiny-mistral"
        let r = try Verifier.run(candidate: m, reference: m, options: o)
        let d = try XCTUnwrap(r.docvqa)
        XCTAssertEqual(d.mode, "document_text")
        XCTAssertEqual(d.items.count, 2)
        XCTAssertNil(r.text)
        XCTAssertNil(r.layers)
        let session = try TextSession(source: try openModel(m))
        let p = try Verifier.documentTextPrompt(question: "Q?", documentText: "DOC", session: session)
        XCTAssertEqual(p, "Document:\nACME Tools\nOrder number: 5521\nDate: March 3, 2021\nTotal: $41.20\n\nQuestion: What is the order number?\nAnswer: 5521\n\n"
                       + "Document:\nACME Tools\nOrder number: 5521\nDate: March 3, 2021\nTotal: $41.20\n\nQuestion: What is the total?\nAnswer: $41.20\n\n"
                       + "Document:\nDOC\n\nQuestion: Q?\nAnswer:")
    }

    /// The chat prompt for text models is what transformers' apply_chat_template gives with
    /// SmolLM2's chat template (default system turn, two example turns, the question), rendered by
    /// the model's template through the Jinja subset.
    func testChatMLPromptEqualsTransformersChatTemplate() throws {
        let g = try JSONParser.parse(FileSystem.readFile(fixturesDir + "/verify/chatml_prompt.json"), source: "chatml_prompt.json")
        let dir = fixturesDir + "/tokenizer/smollm2"
        let tok = try Tokenizer(tokenizerJSON: try FileSystem.readFile(dir + "/tokenizer.json"),
                                tokenizerConfigJSON: try FileSystem.readFile(dir + "/tokenizer_config.json"), source: dir)
        let template = try ChatTemplate(source: String(decoding: try FileSystem.readFile(dir + "/chat_template.jinja"), as: UTF8.self))
        let chat = ChatPrompt(template: template, bosToken: tok.bosTokenId.flatMap(tok.idToToken), eosToken: tok.eosTokenId.flatMap(tok.idToToken))
        let p = try Verifier.documentTextPrompt(question: try XCTUnwrap(g["question"]?.stringValue),
                                                documentText: try XCTUnwrap(g["document_text"]?.stringValue), tokenizer: tok, chat: chat)
        XCTAssertEqual(p, g["prompt"]?.stringValue)
    }

    func testUsageErrors() throws {
        assertThrowsMentioning(["--text FILE", "--docvqa DIR"]) {
            _ = try Verifier.run(candidate: Self.model, reference: Self.model, options: self.options(text: false, docvqa: false))
        }
        var o = options(docvqa: false)
        o.minANLS = 0.5
        assertThrowsMentioning(["--min-anls", "--docvqa"]) { _ = try Verifier.run(candidate: Self.model, reference: Self.model, options: o) }
        // A text model against an Idefics2 model (same vocabulary size, 32003).
        assertThrowsMentioning(["mistral", "idefics2", "transform of itself"]) {
            _ = try Verifier.run(candidate: fixturesDir + "/tiny-mistral", reference: fixturesDir + "/tiny-idefics2-v5", options: self.options(docvqa: false))
        }
    }
}
