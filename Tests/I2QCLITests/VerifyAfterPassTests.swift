import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport

/// `--verify` on cast / quantize / fuse: the output is checked against the input after the pass; the
/// result is a `verify` provenance record in an .i2q (shown by `inspect`) or i2q_verify.json in an HF
/// directory, with the same numbers `i2q verify` reports for that pair.
final class VerifyAfterPassTests: CLITestCase {
    override var tempPrefix: String { "verify-after" }

    let text = "/usr/share/common-licenses/BSD"

    func testCastVerifyAppendsProvenanceEqualToVerify() throws {
        let model = fixturesDir + "/tiny-idefics2-v5", out = dir + "/bf16.i2q"
        let r = try run(["cast", model, "--dtype", "bf16", "-o", out, "--verify", "--verify-text", text, "--verify-ctx", "64"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.err.contains("verify: "), r.err)
        let f = try I2QFile(path: out)
        XCTAssertTrue(f.verifyAll().isEmpty)
        let rec = try XCTUnwrap(f.provenance?.passes.last)
        XCTAssertEqual(rec.name, "verify")
        XCTAssertEqual(f.provenance?.passes.map(\.name), ["cast", "verify"])
        let params = Dictionary(uniqueKeysWithValues: rec.params)
        // The same pair through `i2q verify` gives the same statistics.
        let v = try run(["verify", out, "--reference", model, "--text", text, "--ctx", "64", "--json", "--no-layers"])
        XCTAssertEqual(v.code, 0, v.err)
        let j = try JSONParser.parse(Array(v.out.utf8), source: "stdout")
        let ratio = try XCTUnwrap(j["text"]?["ppl_ratio"]?.doubleValue), kld = try XCTUnwrap(j["text"]?["kld"]?["mean"]?.doubleValue)
        XCTAssertEqual(try XCTUnwrap(params["ppl_ratio"]?.doubleValue), ratio, accuracy: 1e-5 * ratio)
        XCTAssertEqual(try XCTUnwrap(params["mean_kld"]?.doubleValue), kld, accuracy: 1e-5 * max(kld, 1e-9))
        let inspect = try run(["inspect", out])
        XCTAssertTrue(inspect.out.contains("verify reference="), inspect.out)
    }

    func testQuantizeAndFuseVerify() throws {
        let model = fixturesDir + "/tiny-mistral", q = dir + "/nf4.i2q", fused = dir + "/fused.i2q"
        let r = try run(["quantize", model, "--nf4", "-o", q, "--verify", "--verify-text", text, "--verify-ctx", "32"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertEqual(try I2QFile(path: q).provenance?.passes.map(\.name), ["quantize", "verify"])
        let f = try run(["fuse", q, "-o", fused, "--verify", "--verify-text", text, "--verify-ctx", "32"])
        XCTAssertEqual(f.code, 0, f.err)
        let passes = try XCTUnwrap(try I2QFile(path: fused).provenance?.passes)
        XCTAssertEqual(passes.map(\.name), ["quantize", "verify", "fuse", "verify"])
        // Fusing changes no value: the fused model verifies as identical to its input.
        let p = Dictionary(uniqueKeysWithValues: passes[3].params)
        XCTAssertEqual(p["mean_kld"]?.doubleValue, 0)
        XCTAssertEqual(p["ppl_ratio"]?.doubleValue, 1)
    }

    func testSafetensorsOutputGetsAReportFileAndUsageErrors() throws {
        let model = fixturesDir + "/tiny-mistral", out = dir + "/hf"
        let r = try run(["cast", model, "--dtype", "bf16", "--format", "safetensors", "-o", out, "--verify", "--verify-text", text, "--verify-ctx", "32"])
        XCTAssertEqual(r.code, 0, r.err)
        let j = try JSONParser.parse(FileSystem.readFile(out + "/i2q_verify.json"), source: "i2q_verify.json")
        XCTAssertEqual(j["format"]?.stringValue, "i2q-verify")
        XCTAssertNotNil(j["text"]?["ppl_ratio"]?.doubleValue)
        let bad = try run(["cast", model, "--dtype", "bf16", "-o", dir + "/x.i2q", "--verify"])
        XCTAssertNotEqual(bad.code, 0)
        XCTAssertTrue(bad.err.contains("--verify needs --verify-text"), bad.err)
        XCTAssertFalse(FileSystem.exists(dir + "/x.i2q"))
        // A verification that fails (a text that does not exist) leaves no output behind.
        let missing = try run(["cast", model, "--dtype", "bf16", "-o", dir + "/y.i2q", "--verify", "--verify-text", dir + "/nope.txt"])
        XCTAssertNotEqual(missing.code, 0)
        XCTAssertFalse(FileSystem.exists(dir + "/y.i2q"))
    }
}
