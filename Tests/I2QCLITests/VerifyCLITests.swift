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
}
