import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport

/// `quantize --rtn --bits 3|2` end to end on tiny-mistral: inspect's bits/weight (from the layout:
/// b + 24/G, codes + f16 scale + u8 zero per group), `run`, `perplexity` and `verify` read the file,
/// `export` refuses it naming a tensor, and the flag's limits.
final class LowBitCLITests: CLITestCase {
    override var tempPrefix: String { "cli-lowbit" }

    func testRTNBitsThreeRunsAndInspects() throws {
        let model = fixturesDir + "/tiny-mistral"
        let out = dir + "/rtn3.i2q"
        let q = try run(["quantize", model, "--rtn", "--bits", "3", "--group-size", "32", "-o", out, "--no-progress"])
        XCTAssertEqual(q.code, 0, q.err)
        XCTAssertTrue(q.out.contains("affine int3"), q.out)
        let i = try run(["inspect", out, "--json"])
        XCTAssertEqual(i.code, 0, i.err)
        let schemes = try XCTUnwrap(try JSONParser.parse(Array(i.out.utf8), source: "inspect")["schemes"])
        XCTAssertEqual(schemes["int3 g32"]?["bits_per_weight"], .number("3.750"))
        XCTAssertEqual(schemes["int3 g32"]?["tensors"], .int(14))

        let r = try run(["run", out, "--prompt", "The quick brown fox jumps", "--max-new-tokens", "3", "--json"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertEqual(try JSONParser.parse(Array(r.out.utf8), source: "run --json")["generated_ids"]?.arrayValue?.count, 3)
        let text = "/usr/share/common-licenses/BSD"
        let p = try run(["perplexity", out, "--text", text, "--ctx", "64", "--json"])
        XCTAssertEqual(p.code, 0, p.err)
        let ppl = try XCTUnwrap(try JSONParser.parse(Array(p.out.utf8), source: "perplexity --json")["ppl"]?.doubleValue)
        XCTAssertTrue(ppl.isFinite && ppl > 1, "\(ppl)")
        let v = try run(["verify", out, "--reference", model, "--text", text, "--ctx", "64", "--json"])
        XCTAssertEqual(v.code, 0, v.err)
        let kld = try XCTUnwrap(try JSONParser.parse(Array(v.out.utf8), source: "verify --json")["text"]?["kld"]?["mean"]?.doubleValue)
        XCTAssertTrue(kld > 0 && kld.isFinite, "\(kld)")

        let e = try run(["export", out, "--to", "hf-awq", "-o", dir + "/awq"])
        XCTAssertNotEqual(e.code, 0)
        XCTAssertTrue(e.err.contains("affine int3") && e.err.contains("_proj.weight"), e.err)
        XCTAssertFalse(FileSystem.exists(dir + "/awq"))
    }

    func testBitsFlagLimits() throws {
        let model = fixturesDir + "/tiny-mistral"
        for (args, says) in [(["--rtn", "--bits", "5"], "--bits must be 2, 3 or 4"), (["--gptq", "--bits", "3", "--calibration", model + "/config.json"], "--bits applies to --rtn and --awq"),
                             (["--bits", "3"], "--bits applies to --rtn and --awq")] {
            let r = try run(["quantize", model] + args + ["-o", dir + "/x.i2q"])
            XCTAssertNotEqual(r.code, 0)
            XCTAssertTrue(r.err.contains(says), r.err)
        }
        XCTAssertFalse(FileSystem.exists(dir + "/x.i2q"))
    }
}
