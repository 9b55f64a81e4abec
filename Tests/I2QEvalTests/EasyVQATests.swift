import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport
import I2QPasses
@testable import I2QEval
@testable import I2QRuntime

/// The trained Idefics2 (Tests/Fixtures/easy-vqa-idefics2, scripts/fixtures/train_vqa_model.py) on the public
/// easy-VQA test split (PyPI easy-vqa 1.0, fetched and converted by scripts/get_easy_vqa.sh; the path
/// comes from I2Q_EASY_VQA, which scripts/test.sh sets; without the data the tests fail loudly).
/// Expected values: transformers 5.24's greedy `generate` answers (test_answers.json, written by the
/// training script) and the data set's own answers.
final class EasyVQATests: XCTestCase {
    static let model = fixturesDir + "/easy-vqa-idefics2"

    static func testSplit() throws -> DocVQASet {
        let root = URL(fileURLWithPath: fixturesDir).deletingLastPathComponent().deletingLastPathComponent().path
        let dir = ProcessInfo.processInfo.environment["I2Q_EASY_VQA"] ?? root + "/.cache/easy-vqa"
        guard FileSystem.exists(dir + "/test/val_v1.0.json") else {
            XCTFail("easy-VQA is not at \(dir): run `bash scripts/get_easy_vqa.sh` (scripts/test.sh does) or set I2Q_EASY_VQA")
            throw XCTSkip("no data")  // never silent: the XCTFail above fails the test
        }
        return try DocVQASet.load(directory: dir + "/test")
    }

    /// transformers' greedy answers by questionId: (token ids without the end token, text).
    static func goldens() throws -> [Int: (ids: [Int], text: String)] {
        let path = model + "/test_answers.json"
        let root = try JSONParser.parse(FileSystem.readFile(path), source: path)
        var out: [Int: (ids: [Int], text: String)] = [:]
        for a in try XCTUnwrap(root["answers"]?.arrayValue) {
            let q = try XCTUnwrap(a["questionId"]?.intValue)
            out[q] = (try XCTUnwrap(a["ids"]?.arrayValue).compactMap(\.intValue), try XCTUnwrap(a["text"]?.stringValue))
        }
        XCTAssertEqual(out.count, 9673, "\(path) must hold the whole test split")
        return out
    }

    /// 400 questions (seeded selection over the 9,673), greedy in i2q f32: every answer's token ids
    /// equal transformers' f32 `generate`, and the accuracy they give is the goldens' (≥ 90%).
    func testGreedyAnswersEqualTransformersOn400TestQuestions() throws {
        let set = try Self.testSplit()
        XCTAssertEqual(set.items.count, 9673)
        let golden = try Self.goldens()
        let session = try Idefics2Session(source: try openModel(Self.model))
        let items = set.select(samples: 400, seed: 16)
        var image = "", features: [Float] = []
        var differ: [String] = []
        var right = 0, goldenRight = 0
        for item in items {
            if item.imagePath != image { features = try session.imageFeatures(paths: [item.imagePath]); image = item.imagePath }
            let r = try session.run(prompt: try session.chatPrompt(question: item.question, image: true, answer: nil), features: features, maxNewTokens: 8)
            let ids = r.generatedIds.filter { !session.stopTokens.contains($0) }
            let g = try XCTUnwrap(golden[item.questionId])
            if ids != g.ids { differ.append("\(item.questionId) \(item.question): i2q \(ids) \(r.text), transformers \(g.ids) \(g.text)") }
            let text = r.text.trimmingCharacters(in: .whitespacesAndNewlines)
            if ANLS.exactMatch(prediction: text, answers: item.answers) { right += 1 }
            if ANLS.exactMatch(prediction: g.text, answers: item.answers) { goldenRight += 1 }
        }
        XCTAssertEqual(differ, [], "i2q's greedy answers differ from transformers'")
        XCTAssertEqual(right, goldenRight)
        XCTAssertGreaterThanOrEqual(Double(right) / Double(items.count), 0.9, "the trained model answers ≥ 90% of easy-VQA")
    }

    /// `verify --docvqa` on the trained model: NF4 against f32 on 300 test questions. The base's
    /// exact match is transformers' (goldens) on the same questions; the interval, the flipped list
    /// and the answer-token KLD are consistent with the items.
    func testVerifyReportsAccuracyIntervalFlipsAndAnswerKLD() throws {
        let set = try Self.testSplit()
        let golden = try Self.goldens()
        let out = try makeTempDir("easy-vqa-nf4") + "/nf4.i2q"
        var s = OutputSettings()
        s.showProgress = false
        _ = try QuantizePass.run(source: try openModel(Self.model), output: out, options: QuantizeOptions(), settings: s)
        var o = VerifyOptions()
        o.docvqaDirectory = set.directory
        o.samples = 300
        o.seed = 7
        o.maxNewTokens = 8
        o.layerwise = false
        o.showProgress = false
        let r = try Verifier.run(candidate: out, reference: Self.model, options: o)
        let d = try XCTUnwrap(r.docvqa)
        XCTAssertEqual(d.items.count, 300)
        let goldenRight = d.items.filter { ANLS.exactMatch(prediction: golden[$0.questionId]!.text, answers: $0.answers) }.count
        XCTAssertEqual(d.items.filter(\.exactBase).count, goldenRight)
        let (lo, hi) = d.exactMatchCandidateCI
        XCTAssertLessThanOrEqual(lo, d.exactMatchCandidate)
        XCTAssertGreaterThanOrEqual(hi, d.exactMatchCandidate)
        XCTAssertEqual(d.flipped.count, d.items.filter { $0.exactBase != $0.exactCandidate }.count)
        XCTAssertTrue(d.flipped.prefix(while: \.exactBase).allSatisfy { !$0.exactCandidate })
        let k = try XCTUnwrap(d.kldAnswerMean)
        XCTAssertGreaterThan(k, 0, "NF4 changes the answer distributions")
        XCTAssertLessThan(k, 1, "NF4 keeps the answers' distributions close (nats per token)")
        XCTAssertGreaterThanOrEqual(d.answerTokens, 600, "every answer is at least one word and the end token")
        let json = d.json
        for key in ["exact_match_candidate_ci95", "exact_match_base_ci95", "kld_answer_mean", "answer_tokens",
                    "flipped", "flipped_to_wrong", "flipped_to_right", "same_answer_share"] {
            XCTAssertNotNil(json[key], key)
        }
    }

    /// Wilson score intervals against statsmodels 0.14 `proportion_confint(k, n, 0.05, "wilson")`.
    func testWilsonIntervalMatchesStatsmodels() {
        let cases: [(Int, Int, Double, Double)] = [
            (90, 100, 0.8256343384950865, 0.9447708629393249), (0, 10, 0.0, 0.27753279986288926),
            (10, 10, 0.7224672001371106, 1.0), (9000, 9673, 0.9251818371925384, 0.9353262155057647),
            (287, 300, 0.9272825343659885, 0.9745035519155927)]
        for (k, n, lo, hi) in cases {
            let (a, b) = wilsonInterval(successes: k, trials: n)
            XCTAssertEqual(a, lo, accuracy: 1e-12, "\(k)/\(n)")
            XCTAssertEqual(b, hi, accuracy: 1e-12, "\(k)/\(n)")
        }
    }
}
