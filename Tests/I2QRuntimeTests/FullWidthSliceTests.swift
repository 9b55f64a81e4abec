import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport
import I2QRuntime

/// The CI-sized version of the full-size golden check (issue 25): a 2-layer slice of idefics2-8b at
/// real width (vision 1152 / MLP 4304, projection 1152 → 14336 → 4096, perceiver 4096 with 16×96
/// heads, 4 kv heads, 64 latents, decoder 4096 / 14336 with 32 heads, 8 kv heads, vocab 32003),
/// bf16 weights generated from a hash (FullWidthSlice.swift), a real receipt page with and without
/// image splitting, against transformers 5.24 run by scripts/fixtures/make_fullwidth_slice_golden.py
/// (float32, eager; Tests/Fixtures/fullwidth-slice/golden.json): input ids exact; every stage's
/// recorded values (vision layers, post-layernorm, modality projection, perceiver layers, connector
/// output, decoder layers, final norm) within `layerTolerance`·std of the stage; the last-position
/// logits within `logitsTolerance`·std, same argmax. The bf16 weights are widened to float32 (exact),
/// so this is float32 compute on float32 weights of those values.
final class FullWidthSliceTests: XCTestCase {
    /// float32 on both sides, so only summation order differs. Measured (i2q-bench trace, release, vs this
    /// golden; Benchmarks/README.md "Full-size golden"): worst stage 5.1e-5·std without splitting,
    /// 6.0e-5 with (≤ 4e-6 up to the modality projection, ~5e-5 from the first perceiver layer on —
    /// not investigated further), logits 6.4e-5 / 2.9e-5·std. The bounds are half of issue 25's 1e-3·std and ~8× the measured values.
    static let layerTolerance = 5e-4
    static let logitsTolerance = 5e-4

    func testTwoLayerSliceAtRealWidthMatchesTransformers() throws {
        let golden = try JSONParser.parse(FileSystem.readFile(fixturesDir + "/fullwidth-slice/golden.json"), source: "fullwidth-slice.json")
        let dir = try makeTempDir("fullwidth-slice")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let t0 = ProgressBar.now()
        let sums = try FullWidthSlice.build(golden, into: dir)
        for s in try FullWidthSlice.specs(golden) {
            XCTAssertTrue(sums[s.name]! == (s.sumJ, s.sumJ2), "\(s.name): generated Σj, Σj² \(sums[s.name]!) differ from the golden's (\(s.sumJ), \(s.sumJ2))")
        }
        let built = ProgressBar.now() - t0
        let session = try Idefics2Session(source: try openModel(dir))
        XCTAssertEqual(session.model.config.text.vocabSize, 32003)
        XCTAssertEqual(session.model.config.vision.intermediateSize, 4304)
        let cases = try XCTUnwrap(golden["cases"]?.arrayValue)
        XCTAssertEqual(cases.count, 2)
        var worstLayer = 0.0, worstLogits = 0.0
        for c in cases {
            let name = try XCTUnwrap(c["name"]?.stringValue)
            session.imageSplitting = try XCTUnwrap(c["do_image_splitting"]?.boolValue)
            let image = fixturesDir + "/../../" + (try XCTUnwrap(c["image"]?.stringValue))
            let r = try Idefics2Trace.run(session, prompt: try XCTUnwrap(c["prompt"]?.stringValue), imagePaths: [image],
                                          limits: .init(samples: 512, lastRowMax: 0))
            XCTAssertEqual(r.inputIds, c["input_ids"]?.arrayValue?.compactMap(\.intValue), "\(name): input ids")
            XCTAssertEqual(r.pixelValuesShape, c["pixel_values_shape"]?.arrayValue?.compactMap(\.intValue), "\(name): pixel_values shape")
            let mine = Dictionary(uniqueKeysWithValues: r.stages.map { ($0.name, $0) })
            let want = try XCTUnwrap(c["stages"]?.arrayValue)
            XCTAssertEqual(want.count, r.stages.count, "\(name): stage count")
            for w in want {
                let sname = try XCTUnwrap(w["name"]?.stringValue)
                guard let m = mine[sname] else { XCTFail("\(name): i2q has no stage \(sname)"); continue }
                let rows = try XCTUnwrap(w["rows"]?.intValue), cols = try XCTUnwrap(w["cols"]?.intValue)
                XCTAssertEqual([m.rows, m.cols], [rows, cols], "\(name) \(sname): shape")
                let n = Double(rows * cols), mean = try XCTUnwrap(w["sum"]?.doubleValue) / n
                let std = (try XCTUnwrap(w["sumsq"]?.doubleValue) / n - mean * mean).squareRoot()
                let samples = try XCTUnwrap(w["samples"]?.arrayValue?.compactMap(\.doubleValue))
                XCTAssertEqual(samples.count, m.samples.count, "\(name) \(sname): samples")
                let d = zip(samples, m.samples).map { abs($0 - Double($1)) }.max() ?? .infinity
                let rel = d / std
                XCTAssertEqual(abs(m.std - std) / std, 0, accuracy: 1e-4, "\(name) \(sname): std \(m.std) vs \(std)")
                if sname == "logits.last" {
                    worstLogits = max(worstLogits, rel)
                    XCTAssertLessThanOrEqual(rel, Self.logitsTolerance, "\(name): logits max|Δ|/std \(rel)")
                    XCTAssertEqual(m.argmax, w["argmax"]?.intValue, "\(name): argmax")
                } else {
                    worstLayer = max(worstLayer, rel)
                    XCTAssertLessThanOrEqual(rel, Self.layerTolerance, "\(name) \(sname): max|Δ|/std \(rel)")
                }
            }
        }
        print("full-width slice: built in \(String(format: "%.1f", built)) s, total \(String(format: "%.1f", ProgressBar.now() - t0)) s; worst stage max|Δ|/std \(worstLayer), logits \(worstLogits)")
    }
}
