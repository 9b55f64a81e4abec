import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport

/// `i2q verify` as users run it: JSON on stdout, report directory, threshold exit codes.
final class VerifyCLITests: CLITestCase {
    override var tempPrefix: String { "verify-cli" }

    func testVerifyBF16CastOfTinyIdefics2() throws {
        let model = fixturesDir + "/tiny-idefics2-v5", cand = dir + "/bf16.i2q"
        let cast = try run(["cast", model, "--dtype", "bf16", "-o", cand])
        XCTAssertEqual(cast.code, 0, cast.err)
        let common = [cand, "--reference", model, "--text", "/usr/share/common-licenses/BSD", "--ctx", "64",
                      "--docvqa", fixturesDir + "/docvqa-mini", "--samples", "3", "--max-new-tokens", "4"]
        let r = try run(["verify"] + common + ["--json", "--report", dir + "/report", "--max-ppl-ratio", "1.5", "--max-kld", "0.5", "--min-anls", "0"])
        XCTAssertEqual(r.code, 0, r.err)
        let j = try JSONParser.parse(Array(r.out.utf8), source: "stdout")
        XCTAssertEqual(j["format"]?.stringValue, "i2q-verify")
        XCTAssertEqual(j["passed"], .bool(true))
        XCTAssertNotNil(j["text"]?["kld"]?["p99_9"]?.doubleValue)
        XCTAssertNotNil(j["text"]?["same_top"]?["share"]?.doubleValue)
        XCTAssertEqual(j["docvqa"]?["samples"]?.intValue, 3)
        XCTAssertEqual(j["layers"]?["decoder"]?.arrayValue?.count, 2)
        XCTAssertTrue(r.err.contains("verify: PPL ratio"), "progress lines on stderr: \(r.err)")
        for n in ["summary.md", "report.json", "kld_histogram.svg", "kld_cdf.svg", "layer_error.svg", "docvqa.svg"] {
            XCTAssertTrue(FileSystem.exists(dir + "/report/" + n), n)
        }

        // A broken limit: exit 2 and a message naming the limit.
        let f = try run(["verify"] + common + ["--max-kld", "0"])
        XCTAssertEqual(f.code, 2, f.err)
        XCTAssertTrue(f.err.contains("FAILED: mean KLD") && f.err.contains("--max-kld 0"), f.err)
        XCTAssertTrue(f.out.contains("# i2q verify") && f.out.contains("FAILED"), f.out)

        // Usage errors.
        let u = try run(["verify", cand, "--reference", model])
        XCTAssertNotEqual(u.code, 0)
        XCTAssertTrue(u.err.contains("--text FILE and/or --docvqa DIR"), u.err)
        let m = try run(["verify", cand, "--reference", model, "--docvqa", dir + "/nope"])
        XCTAssertEqual(m.code, 1)
        XCTAssertTrue(m.err.contains("error: ") && m.err.contains("/nope"), m.err)
    }

    /// A --report directory that is not a report is refused before any computing (issue 20): the
    /// refusal names it and is all it prints.
    func testReportDirectoryRefusedUpFront() throws {
        let model = fixturesDir + "/easy-vqa-idefics2", busy = dir + "/not-a-report"
        try FileSystem.makeDirectory(busy)
        try FileSystem.writeFile(busy + "/notes.txt", Array("mine".utf8))
        let r = try run(["verify", model, "--reference", model, "--text", "/usr/share/common-licenses/GPL-3", "--ctx", "512",
                         "--docvqa", fixturesDir + "/docvqa-mini", "--report", busy])
        XCTAssertEqual(r.code, 1, r.err)
        XCTAssertTrue(r.err.contains(busy) && r.err.contains("is not an i2q verify report"), r.err)
        // Nothing was computed: the refusal is all it says (a run logs its steps on stderr).
        XCTAssertEqual(r.err.split(separator: "\n").filter { !$0.isEmpty }.count, 1, r.err)
        XCTAssertEqual(try FileSystem.listDirectory(busy), ["notes.txt"], "the directory is left as it was")
    }

    /// `--shard I/N` runs writing report directories, then `--merge` of the directories (issue 25):
    /// the merged report.json equals the unsharded one but for timings; limits are checked at the merge.
    func testShardThenMerge() throws {
        let model = fixturesDir + "/tiny-idefics2-v5"
        let common = [model, "--reference", model, "--text", "/usr/share/common-licenses/BSD", "--ctx", "64", "--no-layers", "--no-progress",
                      "--max-ppl-ratio", "0.5"]  // broken: the model against itself has ratio 1
        let whole = try run(["verify"] + common + ["--json"])
        XCTAssertEqual(whole.code, 2, whole.err)
        var dirs: [String] = []
        for i in 0..<4 {
            let d = dir + "/shard-\(i)"
            let r = try run(["verify"] + common + ["--shard", "\(i)/4", "--report", d])
            XCTAssertEqual(r.code, 0, "a shard checks no limits: \(r.err)")
            XCTAssertTrue(r.out.contains("shard: **\(i)/4**"), r.out)
            dirs.append(d)
        }
        let m = try run(["verify", "--merge"] + dirs + ["--report", dir + "/merged", "--json"])
        XCTAssertEqual(m.code, 2, "the merge checks the limit: \(m.err)")
        XCTAssertTrue(m.err.contains("merged 4 shard reports") && m.err.contains("FAILED: PPL ratio"), m.err)
        let a = try JSONParser.parse(Array(whole.out.utf8), source: "whole")
        let b = try JSONParser.parse(FileSystem.readFile(dir + "/merged/report.json"), source: "merged")
        XCTAssertEqual(b, try JSONParser.parse(Array(m.out.utf8), source: "stdout"))
        for k in ["model_type", "candidate", "reference", "layers", "docvqa", "thresholds", "passed", "failures"] { XCTAssertEqual(a[k], b[k], k) }
        let ta = try XCTUnwrap(a["text"]?.objectEntries), tb = try XCTUnwrap(b["text"])
        for (k, v) in ta where k != "seconds" && k != "tokens_per_second" { XCTAssertEqual(v, tb[k], "text.\(k)") }
        XCTAssertEqual(b["merged_from"]?.arrayValue?.count, 4)
        // A limit given to the merge replaces the shards'.
        let f = try run(["verify", "--merge"] + dirs + ["--max-ppl-ratio", "1.5"])
        XCTAssertEqual(f.code, 0, f.err)
        XCTAssertTrue(f.out.contains("merged from 4 shard reports") && f.out.contains("**passed**"), f.out)
        // Usage: models with --merge, a shard outside 0..<N, a missing shard.
        let u = try run(["verify", "--merge"] + dirs + [model, "--reference", model])
        XCTAssertEqual(u.code, 64, u.err)
        XCTAssertTrue(u.err.contains("--merge takes shard reports only"), u.err)
        let s = try run(["verify"] + common + ["--shard", "4/4"])
        XCTAssertEqual(s.code, 64, s.err)
        XCTAssertTrue(s.err.contains("0-based"), s.err)
        let g = try run(["verify", "--merge"] + dirs.dropLast())
        XCTAssertEqual(g.code, 1, g.err)
        XCTAssertTrue(g.err.contains("shard 3 of 4 missing"), g.err)
    }

    /// The documented Slurm job array script (scripts/cluster/verify_slurm.sh) run as Slurm runs it: one
    /// process per task of `--array=1-3` (1-based on purpose: the script maps it to shards 0/3 … 2/3),
    /// then the documented merge command.
    func testSlurmArrayScript() throws {
        let root = URL(fileURLWithPath: fixturesDir).deletingLastPathComponent().deletingLastPathComponent().path
        let model = fixturesDir + "/tiny-idefics2-v5", out = dir + "/reports"
        for task in 1...3 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/bash")
            p.arguments = [root + "/scripts/cluster/verify_slurm.sh", model, model, out,
                           "--text", "/usr/share/common-licenses/BSD", "--ctx", "64", "--no-layers"]
            p.environment = ProcessInfo.processInfo.environment.merging(
                ["I2Q": binary.path, "SLURM_ARRAY_TASK_ID": "\(task)", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "3"]) { $1 }
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, "task \(task)")
        }
        XCTAssertEqual(try FileSystem.listDirectory(out).filter { !$0.hasPrefix(".") }, ["shard-0", "shard-1", "shard-2"])
        let m = try run(["verify", "--merge"] + (0..<3).map { out + "/shard-\($0)" } + ["--report", out + "/merged", "--json"])
        XCTAssertEqual(m.code, 0, m.err)
        let j = try JSONParser.parse(Array(m.out.utf8), source: "stdout")
        XCTAssertEqual(j["text"]?["windows"]?.intValue, 5)
        XCTAssertEqual(j["text"]?["ppl_ratio"]?.doubleValue, 1)
    }
}
