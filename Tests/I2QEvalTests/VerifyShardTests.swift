import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport
import I2QPasses
@testable import I2QEval

/// `verify --shard I/N` + `--merge` (issue 25): 4 shards merged give the report of one unsharded run,
/// on the shipped sets — text windows and docvqa-mini through the tiny Idefics2 (vision layers,
/// connector, answer KLD), docvqa-mini's page texts through a text model, and easy-VQA through the
/// trained Idefics2 — compared key by key.
final class VerifyShardTests: XCTestCase {
    static let idefics = fixturesDir + "/tiny-idefics2-v5"
    static let text = "/usr/share/common-licenses/BSD"
    nonisolated(unsafe) static var casts: [String: String] = [:]

    /// The bf16 cast of `model` (made once).
    func bf16(_ model: String) throws -> String {
        if let p = Self.casts[model] { return p }
        let out = try makeTempDir("shard-bf16") + "/bf16.i2q"
        var s = OutputSettings()
        s.showProgress = false
        _ = try CastPass.make(source: try openModel(model), output: out, dtype: .bf16, settings: s).run()
        Self.casts[model] = out
        return out
    }

    /// Runs `options` unsharded and as `n` shards (each written to a JSON file, as `--json` does), merges
    /// the files in a shuffled order; returns both reports.
    func shardedAndWhole(candidate: String, reference: String, options o: VerifyOptions, n: Int = 4) throws -> (whole: VerifyReport, merged: VerifyReport, files: [String]) {
        let whole = try Verifier.run(candidate: candidate, reference: reference, options: o)
        let dir = try makeTempDir("shards")
        var files: [String] = []
        for i in 0..<n {
            var so = o
            so.shard = try VerifyShard(index: i, count: n)
            let r = try Verifier.run(candidate: candidate, reference: reference, options: so)
            XCTAssertEqual(r.json["passed"], .null, "a shard checks no limits")
            XCTAssertEqual(r.json["shard"]?["index"]?.intValue, i)
            let f = dir + "/shard-\(i).json"
            try write(Array(r.jsonString().utf8), to: f)
            files.append(f)
        }
        let merged = try VerifyMerge.merge(paths: [files[2], files[0], files[3], files[1]])
        return (whole, merged, files)
    }

    /// Keys that may differ between a merged and an unsharded report: timings (the merge sums the
    /// shards'), the merge's own provenance; the layer errors' sums are added shard by shard (float
    /// rounding, ≤ 1e-12 relative). Everything else — counts, percentiles, means, intervals, answers,
    /// flips, worst items — must be equal as written.
    static let timingKeys: Set<String> = ["seconds", "tokens_per_second"]
    static let roundedKeys: Set<String> = ["rel_error", "mean_token_rel_error"]

    func assertSameReport(_ whole: JSONValue, _ merged: JSONValue, path: String = "", file: StaticString = #filePath, line: UInt = #line) {
        switch (whole, merged) {
        case let (.object(a), .object(b)):
            let keysA = a.map(\.0), keysB = b.map(\.0).filter { $0 != "merged_from" }
            XCTAssertEqual(keysA, keysB, "keys of \(path)", file: file, line: line)
            for (k, v) in a where !Self.timingKeys.contains(k) {
                guard let w = merged[k] else { continue }
                if Self.roundedKeys.contains(k), let x = v.doubleValue, let y = w.doubleValue {
                    XCTAssertEqual(x, y, accuracy: 1e-12 * max(abs(x), 1e-300), "\(path).\(k)", file: file, line: line)
                } else {
                    assertSameReport(v, w, path: path + "." + k, file: file, line: line)
                }
            }
        case let (.array(a), .array(b)):
            XCTAssertEqual(a.count, b.count, "length of \(path)", file: file, line: line)
            for (i, (x, y)) in zip(a, b).enumerated() { assertSameReport(x, y, path: path + "[\(i)]", file: file, line: line) }
        default:
            XCTAssertEqual(whole, merged, path, file: file, line: line)
        }
    }

    func testSliceRules() throws {
        XCTAssertEqual(try VerifyShard.parse("0/4"), try VerifyShard(index: 0, count: 4))
        XCTAssertEqual(try VerifyShard.parse("3/4").index, 3)
        for bad in ["4/4", "-1/4", "1/0", "a/b", "1-4", "1/4/2", ""] {
            assertThrowsMentioning(["--shard", "0-based", "JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID"]) { _ = try VerifyShard.parse(bad) }
        }
        // Windows: contiguous, in order, covering all.
        let w = try (0..<4).map { try VerifyShard(index: $0, count: 4).windows(of: 10) }
        XCTAssertEqual(w, [0..<2, 2..<5, 5..<7, 7..<10])
        assertThrowsMentioning(["only 3 windows", "at most 3 shards"]) { _ = try VerifyShard(index: 0, count: 4).windows(of: 3) }
        // Questions: grouped by page (first appearance), N contiguous runs of about Q/N questions.
        let images = ["a", "b", "a", "c", "c", "d"]
        XCTAssertEqual(try (0..<2).map { try VerifyShard(index: $0, count: 2).questions(images: images) }, [[0, 1, 2], [3, 4, 5]])
        XCTAssertEqual(try (0..<4).map { try VerifyShard(index: $0, count: 4).questions(images: images) }, [[0, 2], [1], [3, 4], [5]])
        // Every shard gets a page even when one page holds most questions.
        let big = ["a", "b", "b", "b", "b", "b"]
        XCTAssertEqual(try (0..<2).map { try VerifyShard(index: $0, count: 2).questions(images: big) }, [[0], [1, 2, 3, 4, 5]])
        assertThrowsMentioning(["4 page images", "at most 4 shards"]) { _ = try VerifyShard(index: 0, count: 5).questions(images: images) }
    }

    /// Text windows + docvqa-mini through Idefics2 (images): text statistics, decoder, vision and
    /// connector layers, answers, answer KLD.
    func testFourShardsEqualUnshardedIdefics2() throws {
        var o = VerifyOptions()
        o.textPath = Self.text
        o.docvqaDirectory = fixturesDir + "/docvqa-mini"
        o.ctx = 64
        o.samples = 12
        o.seed = 3
        o.maxNewTokens = 4
        o.maxKLD = 0  // broken by any difference: the merge must check it as the whole run does
        o.showProgress = false
        let (whole, merged, _) = try shardedAndWhole(candidate: try bf16(Self.idefics), reference: Self.idefics, options: o)
        XCTAssertEqual(merged.text?.windows, 5)
        XCTAssertEqual(merged.docvqa?.items.count, 12)
        XCTAssertNotNil(whole.json["layers"]?["vision"])
        XCTAssertNotNil(whole.json["layers"]?["connector"])
        XCTAssertGreaterThan(whole.docvqa?.answerTokens ?? 0, 0)
        XCTAssertFalse(merged.passed)
        XCTAssertEqual(merged.failures, whole.failures)
        XCTAssertEqual(merged.json["merged_from"]?.arrayValue?.count, 4)
        assertSameReport(whole.json, merged.json)
        // The text statistics are bit-identical (same per-position values in the same order).
        XCTAssertEqual(merged.text?.stats.sortedKLD, whole.text?.stats.sortedKLD)
        XCTAssertEqual(merged.text?.stats.kldMean, whole.text?.stats.kldMean)
        XCTAssertEqual(merged.text?.stats.nllCorrelation, whole.text?.stats.nllCorrelation)

        // The merged report directory has the same files; its summary says what it is.
        let a = try makeTempDir("shard-report") + "/whole", b = try makeTempDir("shard-report") + "/merged"
        try VerifyReportFiles.write(whole, to: a)
        try VerifyReportFiles.write(merged, to: b)
        XCTAssertEqual(try FileSystem.listDirectory(a), try FileSystem.listDirectory(b))
        let md = String(decoding: try FileSystem.readFile(b + "/summary.md"), as: UTF8.self)
        XCTAssertTrue(md.contains("merged from 4 shard reports") && md.contains("FAILED"), md)
        // Limits given to the merge replace the shards'.
        let files = try XCTUnwrap(merged.mergedFrom)
        XCTAssertTrue(try VerifyMerge.merge(paths: files, thresholds: (nil, 0.5, nil)).passed)
    }

    /// docvqa-mini's page texts through a text model (document_text mode; no answer KLD).
    func testFourShardsEqualUnshardedDocumentText() throws {
        var o = VerifyOptions()
        o.docvqaDirectory = fixturesDir + "/docvqa-mini"
        o.samples = 16
        o.seed = 7
        o.maxNewTokens = 3
        o.showProgress = false
        let m = fixturesDir + "/tiny-mistral"
        let (whole, merged, _) = try shardedAndWhole(candidate: try bf16(m), reference: m, options: o)
        XCTAssertEqual(whole.docvqa?.mode, "document_text")
        XCTAssertEqual(merged.docvqa?.items.count, 16)
        assertSameReport(whole.json, merged.json)
    }

    /// easy-VQA's test split (the set scripts/demo.sh verifies on) through the trained Idefics2.
    func testFourShardsEqualUnshardedEasyVQA() throws {
        let set = try EasyVQATests.testSplit()
        var o = VerifyOptions()
        o.docvqaDirectory = set.directory
        o.samples = 16
        o.seed = 1
        o.maxNewTokens = 4
        o.showProgress = false
        o.minANLS = 0.5
        let m = EasyVQATests.model
        let (whole, merged, _) = try shardedAndWhole(candidate: try bf16(m), reference: m, options: o)
        XCTAssertEqual(merged.docvqa?.items.count, 16)
        XCTAssertGreaterThan(whole.docvqa?.anlsBase ?? 0, 0.5, "the trained model answers most questions")
        assertSameReport(whole.json, merged.json)
    }

    /// --merge refuses what is not one run's complete set of shards, naming the file.
    func testMergeRefusesWhatDoesNotBelong() throws {
        var o = VerifyOptions()
        o.textPath = Self.text
        o.ctx = 64
        o.layerwise = false
        o.showProgress = false
        let m = Self.idefics, dir = try makeTempDir("shard-errors")
        func shardFile(_ name: String, _ i: Int, _ n: Int, _ opts: VerifyOptions? = nil, candidate: String? = nil) throws -> String {
            var so = opts ?? o
            so.shard = try VerifyShard(index: i, count: n)
            let f = dir + "/" + name + ".json"
            try write(Array(try Verifier.run(candidate: candidate ?? m, reference: m, options: so).jsonString().utf8), to: f)
            return f
        }
        let s0 = try shardFile("s0", 0, 2), s1 = try shardFile("s1", 1, 2)
        XCTAssertNoThrow(try VerifyMerge.merge(paths: [s0, s1]))
        assertThrowsMentioning(["shard 1 of 2 missing", "--shard I/2"]) { _ = try VerifyMerge.merge(paths: [s0]) }
        assertThrowsMentioning([s0, s0, "both shard 0/2"]) { _ = try VerifyMerge.merge(paths: [s0, s1, s0]) }
        let t0 = try shardFile("t0", 0, 3)
        assertThrowsMentioning([t0, s0, "shard count"]) { _ = try VerifyMerge.merge(paths: [s0, t0]) }
        var other = o
        other.ctx = 32
        let c1 = try shardFile("c1", 1, 2, other)
        assertThrowsMentioning([c1, s0, "ctx = 32", "with 64"]) { _ = try VerifyMerge.merge(paths: [s0, c1]) }
        let b1 = try shardFile("b1", 1, 2, candidate: try bf16(m))
        assertThrowsMentioning([b1, "candidate"]) { _ = try VerifyMerge.merge(paths: [s0, b1]) }
        // A whole report, something else, nothing.
        let whole = dir + "/whole.json"
        try write(Array(try Verifier.run(candidate: m, reference: m, options: o).jsonString().utf8), to: whole)
        assertThrowsMentioning([whole, "not a shard"]) { _ = try VerifyMerge.merge(paths: [s0, whole]) }
        let junk = dir + "/config.json"
        try write(Array("{\"model_type\": \"llama\"}".utf8), to: junk)
        assertThrowsMentioning([junk, "not an i2q verify report"]) { _ = try VerifyMerge.merge(paths: [junk]) }
        assertThrowsMentioning([dir + "/nope", "does not exist"]) { _ = try VerifyMerge.merge(paths: [dir + "/nope"]) }
        // Slices that cannot be cut: more shards than windows or pages.
        var many = o
        many.shard = try VerifyShard(index: 0, count: 6)
        assertThrowsMentioning(["only 5 windows", "at most 5 shards"]) { _ = try Verifier.run(candidate: m, reference: m, options: many) }
        var pages = o
        pages.textPath = nil
        pages.docvqaDirectory = fixturesDir + "/docvqa-mini"
        pages.samples = 3
        pages.shard = try VerifyShard(index: 0, count: 4)
        assertThrowsMentioning(["3 selected DocVQA questions", "at most"]) { _ = try Verifier.run(candidate: m, reference: m, options: pages) }
    }

    /// Tests/Fixtures/verify: numpy's per-position values of the committed logits (one position per
    /// window) cut into 4 shard reports and merged give numpy's summary of the whole (stats.json), and
    /// exactly what one TokenStatistics over all positions gives.
    func testMergedStatisticsOfFixtureEqualNumpy() throws {
        let golden = try JSONParser.parse(FileSystem.readFile(fixturesDir + "/verify/stats.json"), source: "stats.json")
        let dir = try makeTempDir("shard-fixture")
        let t = try tensorBytes(fixturesDir + "/verify/logits.safetensors")
        func close(_ a: Double, _ b: Double, _ what: String) {
            XCTAssertLessThanOrEqual(abs(a - b), 1e-15 + 1e-12 * abs(b), "\(what): \(a) vs numpy \(b)")
        }
        for name in VerifyStatsTests.cases {
            func f64(_ k: String) throws -> [Double] {
                let x = try XCTUnwrap(t["\(name).\(k)"])
                XCTAssertEqual(x.dtype, .f64)
                return x.bytes.withUnsafeBytes { Array($0.bindMemory(to: Double.self)) }
            }
            let nb = try f64("nll_base"), nc = try f64("nll_candidate"), kld = try f64("kld"), dp = try f64("delta_p")
            let st = try XCTUnwrap(t["\(name).same_top"]).bytes
            let n = nb.count
            let tokens = (0..<n).map { i in
                TokenComparison(nllBase: nb[i], nllCandidate: nc[i], kld: kld[i], deltaP: dp[i], sameTop: st[i] != 0)
            }
            var o = VerifyOptions()
            o.textPath = "logits.safetensors"
            o.ctx = 2
            o.layerwise = false
            var files: [String] = []
            for i in 0..<4 {
                let spec = try VerifyShard(index: i, count: 4)
                let w = try spec.windows(of: n)
                let part = Array(tokens[w])
                var r = VerifyReport(candidate: "candidate", reference: "base", modelType: "llama",
                                     text: TextComparison(file: "logits.safetensors", tokens: n + 1, ctx: 2, windows: w.count,
                                                          stats: TokenStatistics(part), seconds: 1),
                                     layers: nil, layerPositions: 0, docvqa: nil, options: o, seconds: 1, failures: [])
                var sh = VerifyShardData(spec: spec)
                sh.settings = .object(Verifier.shardSettings(o, modelType: "llama", decoderWidth: 8, visionWidth: 0)
                                      + [("text_tokens", .int(n + 1)), ("text_windows", .int(n))])
                sh.textWindows = w
                sh.tokens = part
                r.shard = sh
                files.append(dir + "/\(name)-\(i).json")
                try write(Array(r.jsonString().utf8), to: files[i])
            }
            let m = try XCTUnwrap(try VerifyMerge.merge(paths: files.reversed()).text)
            XCTAssertEqual(m.windows, n)
            let whole = TokenStatistics(tokens)
            XCTAssertEqual(m.stats.sortedKLD, whole.sortedKLD, name)
            XCTAssertEqual(m.stats.kldPercentiles.map { $0.1 }, whole.kldPercentiles.map { $0.1 }, name)
            XCTAssertEqual(m.stats.deltaPPercentiles.map { $0.1 }, whole.deltaPPercentiles.map { $0.1 }, name)
            XCTAssertEqual([m.stats.pplRatio, m.stats.kldMean, m.stats.deltaPRMS, m.stats.nllCorrelation, m.stats.sameTop],
                           [whole.pplRatio, whole.kldMean, whole.deltaPRMS, whole.nllCorrelation, whole.sameTop], name)
            let g = try XCTUnwrap(golden["cases"]?[name])
            XCTAssertEqual(m.stats.count, g["count"]?.intValue)
            for (k, v) in m.stats.kldPercentiles {
                close(v, try XCTUnwrap(g["kld"]?[k]?.doubleValue), "\(name) kld \(k)")
            }
            for (k, v) in m.stats.deltaPPercentiles {
                close(v, try XCTUnwrap(g["delta_p"]?[k]?.doubleValue), "\(name) dp \(k)")
            }
            for (k, v) in [("ppl_ratio", m.stats.pplRatio), ("mean_ln_ratio", m.stats.meanLnRatio), ("nll_correlation", m.stats.nllCorrelation)] {
                close(v, try XCTUnwrap(g[k]?.doubleValue), "\(name) \(k)")
            }
            close(m.stats.kldMean, try XCTUnwrap(g["kld"]?["mean"]?.doubleValue), "\(name) kld mean")
            close(m.stats.sameTop, try XCTUnwrap(g["same_top"]?["share"]?.doubleValue), "\(name) same top")
        }
    }
}
