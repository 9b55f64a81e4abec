import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport
@testable import I2QEval

/// KLD / Δp / same-top / PPL statistics and ANLS against numpy and a transcription of the official
/// DocVQA evaluation script (Tests/Fixtures/verify, scripts/fixtures/make_verify_goldens.py).
final class VerifyStatsTests: XCTestCase {
    struct Case {
        let base: [Float], candidate: [Float], targets: [Int]
        let nllBase: [Double], nllCandidate: [Double], kld: [Double], deltaP: [Double], sameTop: [UInt8]
        let n: Int, vocab: Int
    }

    static let cases = ["perturbed", "peaked", "ties"]

    func load(_ name: String) throws -> Case {
        let t = try tensorBytes(fixturesDir + "/verify/logits.safetensors")
        func get(_ k: String) throws -> (DType, [Int], [UInt8]) {
            let x = try XCTUnwrap(t["\(name).\(k)"], "\(name).\(k) missing from logits.safetensors")
            return (x.dtype, x.shape, x.bytes)
        }
        func f32(_ k: String) throws -> [Float] {
            let (d, _, b) = try get(k); XCTAssertEqual(d, .f32)
            return b.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }
        func f64(_ k: String) throws -> [Double] {
            let (d, _, b) = try get(k); XCTAssertEqual(d, .f64)
            return b.withUnsafeBytes { Array($0.bindMemory(to: Double.self)) }
        }
        let (_, shape, _) = try get("base")
        let (_, _, tb) = try get("targets")
        let targets = tb.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }.map { Int($0) }
        let (_, _, sb) = try get("same_top")
        return Case(base: try f32("base"), candidate: try f32("candidate"), targets: targets,
                    nllBase: try f64("nll_base"), nllCandidate: try f64("nll_candidate"), kld: try f64("kld"),
                    deltaP: try f64("delta_p"), sameTop: sb, n: shape[0], vocab: shape[1])
    }

    func compare(_ c: Case) -> [TokenComparison] {
        c.base.withUnsafeBufferPointer { b in
            c.candidate.withUnsafeBufferPointer { p in
                TokenComparison.compareRows(base: b.baseAddress!, candidate: p.baseAddress!, rows: c.n, vocab: c.vocab, targets: c.targets)
            }
        }
    }

    /// |a − b| ≤ abs + rel·|b|
    func close(_ a: Double, _ b: Double, rel: Double = 1e-9, abs: Double = 1e-12, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertLessThanOrEqual(Swift.abs(a - b), abs + rel * Swift.abs(b), "\(what): \(a) vs numpy \(b)", file: file, line: line)
    }

    func testPerTokenValuesEqualNumpy() throws {
        for name in Self.cases {
            let c = try load(name)
            let r = compare(c)
            XCTAssertEqual(r.count, c.n)
            for i in 0..<c.n {
                close(r[i].nllBase, c.nllBase[i], "\(name)[\(i)] nll base")
                close(r[i].nllCandidate, c.nllCandidate[i], "\(name)[\(i)] nll candidate")
                // KLD is a sum of vocab terms that cancel: absolute tolerance scaled by the vocab.
                close(r[i].kld, c.kld[i], rel: 1e-9, abs: 1e-13 * Double(c.vocab), "\(name)[\(i)] kld")
                close(r[i].deltaP, c.deltaP[i], rel: 1e-9, abs: 1e-14, "\(name)[\(i)] delta p")
                XCTAssertEqual(r[i].sameTop, c.sameTop[i] != 0, "\(name)[\(i)] same top")
            }
        }
    }

    func testIdenticalRowsGiveZeroKLDAndDeltaP() throws {
        let c = try load("ties")
        let r = compare(c)
        for i in 0..<32 {  // rows 0..<32 are identical in the fixture
            XCTAssertEqual(r[i].kld, 0, "row \(i)")
            XCTAssertEqual(r[i].deltaP, 0, "row \(i)")
            XCTAssertTrue(r[i].sameTop)
        }
    }

    func testSummaryEqualsNumpyLlamaPerplexityDefinitions() throws {
        let golden = try JSONParser.parse(FileSystem.readFile(fixturesDir + "/verify/stats.json"), source: "stats.json")
        for name in Self.cases {
            let g = try XCTUnwrap(golden["cases"]?[name])
            let s = TokenStatistics(compare(try load(name)))
            func num(_ v: JSONValue?) throws -> Double { try XCTUnwrap(v?.doubleValue, "\(name): missing value") }
            XCTAssertEqual(s.count, g["count"]?.intValue)
            let scalars: [(String, Double)] = [
                ("ppl_base", s.pplBase), ("ppl_base_err", s.pplBaseErr), ("ppl_candidate", s.pplCandidate),
                ("ppl_candidate_err", s.pplCandidateErr), ("mean_ln_ratio", s.meanLnRatio), ("mean_ln_ratio_err", s.meanLnRatioErr),
                ("ppl_ratio", s.pplRatio), ("ppl_ratio_err", s.pplRatioErr), ("nll_correlation", s.nllCorrelation),
            ]
            for (k, v) in scalars { close(v, try num(g[k]), rel: 1e-8, "\(name) \(k)") }
            close(s.kldMean, try num(g["kld"]?["mean"]), rel: 1e-8, "\(name) kld mean")
            close(s.kldMeanErr, try num(g["kld"]?["mean_err"]), rel: 1e-6, "\(name) kld mean_err")
            for (k, v) in s.kldPercentiles { close(v, try num(g["kld"]?[k]), rel: 1e-8, abs: 1e-12, "\(name) kld \(k)") }
            close(s.deltaPMean, try num(g["delta_p"]?["mean"]), rel: 1e-8, abs: 1e-12, "\(name) dp mean")
            close(s.deltaPMeanErr, try num(g["delta_p"]?["mean_err"]), rel: 1e-6, "\(name) dp mean_err")
            close(s.deltaPRMS, try num(g["delta_p"]?["rms"]), rel: 1e-8, "\(name) dp rms")
            close(s.deltaPRMSErr, try num(g["delta_p"]?["rms_err"]), rel: 1e-6, "\(name) dp rms_err")
            for (k, v) in s.deltaPPercentiles { close(v, try num(g["delta_p"]?[k]), rel: 1e-8, abs: 1e-12, "\(name) dp \(k)") }
            close(s.sameTop, try num(g["same_top"]?["share"]), "\(name) same top")
            close(s.sameTopErr, try num(g["same_top"]?["err"]), "\(name) same top err")
            // Every key the fixture has is one the report writes.
            let keys = Set((g["kld"]?.objectEntries ?? []).map(\.0))
            XCTAssertEqual(keys, Set(["mean", "mean_err"] + s.kldPercentiles.map(\.0)))
        }
    }

    func testPercentileIsNumpyLinear() {
        let v: [Double] = [1, 2, 4, 8]
        XCTAssertEqual(interpolatedPercentile(sorted: v, 0.5), 3)     // numpy.percentile([1,2,4,8], 50) = 3.0
        XCTAssertEqual(interpolatedPercentile(sorted: v, 0.9), 6.8, accuracy: 1e-12)  // 4 + 0.7·4
        XCTAssertEqual(interpolatedPercentile(sorted: v, 0), 1)
        XCTAssertEqual(interpolatedPercentile(sorted: v, 1), 8)
        XCTAssertEqual(interpolatedPercentile(sorted: [5], 0.999), 5)
    }

    func testANLSEqualsOfficialScriptOnTrickyPairs() throws {
        let g = try JSONParser.parse(FileSystem.readFile(fixturesDir + "/verify/anls.json"), source: "anls.json")
        let pairs = try XCTUnwrap(g["pairs"]?.arrayValue)
        XCTAssertGreaterThanOrEqual(pairs.count, 25)
        var preds: [String] = [], answers: [[String]] = []
        for p in pairs {
            let pred = try XCTUnwrap(p["prediction"]?.stringValue)
            let ans = try XCTUnwrap(p["answers"]?.arrayValue).compactMap(\.stringValue)
            let want = try XCTUnwrap(p["anls"]?.doubleValue)
            XCTAssertEqual(ANLS.score(prediction: pred, answers: ans), want, accuracy: 1e-12, "\(pred.debugDescription) vs \(ans)")
            preds.append(pred); answers.append(ans)
        }
        XCTAssertEqual(ANLS.mean(predictions: preds, answers: answers), try XCTUnwrap(g["mean"]?.doubleValue), accuracy: 1e-12)
    }

    func testANLSThresholdEdgeAndNormalisation() {
        XCTAssertEqual(ANLS.score(prediction: "abcd", answers: ["abxy"]), 0.5)  // exactly τ is kept
        XCTAssertEqual(ANLS.score(prediction: "abcde", answers: ["abxyz"]), 0)  // 0.4 < τ
        XCTAssertEqual(ANLS.levenshtein(Array("kitten".unicodeScalars), Array("sitting".unicodeScalars)), 3)
        XCTAssertEqual(String(String.UnicodeScalarView(ANLS.normalize("  A \t B\n"))), "a b")
        XCTAssertTrue(ANLS.exactMatch(prediction: " Six ", answers: ["6", "six"]))
        XCTAssertFalse(ANLS.exactMatch(prediction: "sixty", answers: ["6", "six"]))
        XCTAssertEqual(ANLS.score(prediction: "x", answers: []), 0)
    }

    func testLayerErrorAccumulator() {
        // Two positions of width 2: base (3,4) and (0,1); candidate (3,4)+(0.3,0.4) and (0,1)+(0,1).
        var a = LayerErrorAccumulator(layers: 1)
        let b: [Float] = [3, 4, 0, 1], c: [Float] = [3.3, 4.4, 0, 2]
        b.withUnsafeBufferPointer { bp in c.withUnsafeBufferPointer { cp in
            a.add(layer: 0, base: bp.baseAddress!, candidate: cp.baseAddress!, rows: 2, width: 2)
        } }
        let r = a.result[0]
        // ‖ΔH‖² = 0.09+0.16+1 = 1.25, ‖H‖² = 25+1 = 26; per position 0.5/5 = 0.1 and 1/1 = 1.
        XCTAssertEqual(r.relError, (1.25 / 26.0).squareRoot(), accuracy: 1e-6)
        XCTAssertEqual(r.meanTokenRelError, 0.55, accuracy: 1e-6)
        XCTAssertEqual(r.maxTokenRelError, 1, accuracy: 1e-6)
    }
}
