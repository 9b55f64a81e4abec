import Foundation
import XCTest
import I2QCore
import I2QTestSupport

/// The passes on the tiny Idefics3 and SmolVLM checkpoints (issue 24), through the CLI as users run
/// them: `run` with an image equals transformers' greedy tokens (golden/idefics3-cases.json); NF4 and
/// AWQ (calibrated on docvqa-mini, whose page images go through the vision tower) write .i2q files
/// that `run` loads and answers from with an image, `fuse` keeps NF4's tokens, `cast`, and the
/// hf-bnb / hf-awq exports write their directories.
final class Idefics3CLITests: CLITestCase {
    override var tempPrefix: String { "idefics3" }
    let prompt = "User:<image>What is in this picture?<end_of_utterance>\nAssistant:"
    let image = fixturesDir + "/images/photo_xmp8_120x90.jpg"

    func generated(_ model: String) throws -> [Int] {
        let r = try run(["run", model, "--prompt", prompt, "--image", image, "--max-new-tokens", "8", "--json"])
        XCTAssertEqual(r.code, 0, r.err)
        let j = try JSONParser.parse(Array(r.out.utf8), source: "run")
        return (j["generated_ids"]?.arrayValue ?? []).compactMap(\.intValue)
    }

    func testRunMatchesTransformersGreedy() throws {
        // golden/idefics3-photo.safetensors: the same prompt and image through transformers 5.24
        XCTAssertEqual(try generated(fixturesDir + "/tiny-idefics3"), [150, 6, 248, 248, 248, 159, 288, 75])
    }

    func testNF4AWQFuseCastAndExports() throws {
        for (m, group) in [("tiny-idefics3", "32"), ("tiny-smolvlm", "16")] {
            let src = fixturesDir + "/" + m, nf4 = dir + "/\(m)-nf4.i2q", awq = dir + "/\(m)-awq.i2q"
            var r = try run(["quantize", src, "--nf4", "-o", nf4, "--no-progress"])
            XCTAssertEqual(r.code, 0, r.err)
            let nf4Tokens = try generated(nf4)
            XCTAssertEqual(nf4Tokens.count, 8, m)
            r = try run(["fuse", nf4, "-o", dir + "/\(m)-fused.i2q", "--no-progress"])
            XCTAssertEqual(r.code, 0, r.err)
            XCTAssertEqual(try generated(dir + "/\(m)-fused.i2q"), nf4Tokens, "\(m): fuse is exact")
            r = try run(["quantize", src, "--awq", "--group-size", group, "--calibration", fixturesDir + "/docvqa-mini",
                         "--samples", "2", "--seq-len", "256", "-o", awq, "--no-progress"])
            XCTAssertEqual(r.code, 0, r.err)
            XCTAssertEqual(try generated(awq).count, 8, m)
            r = try run(["cast", src, "--dtype", "bf16", "-o", dir + "/\(m)-bf16.i2q", "--no-progress"])
            XCTAssertEqual(r.code, 0, r.err)
            XCTAssertEqual(try generated(dir + "/\(m)-bf16.i2q").count, 8, m)
            r = try run(["export", nf4, "--to", "hf-bnb", "-o", dir + "/\(m)-bnb"])
            XCTAssertEqual(r.code, 0, r.err)
            r = try run(["export", awq, "--to", "hf-awq", "-o", dir + "/\(m)-awq-hf"])
            XCTAssertEqual(r.code, 0, r.err)
            for d in ["bnb", "awq-hf"] {
                XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/\(m)-\(d)/model.safetensors"), "\(m)-\(d)")
                XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/\(m)-\(d)/processor_config.json"), "\(m)-\(d)")
            }
        }
    }

    /// `export --to gguf --mmproj FILE --mmproj-type q8_0`: llama.cpp's two files for the model, byte for
    /// byte (convert_hf_to_gguf.py's text model and `--mmproj --outtype q8_0`; MmprojExportTests and
    /// GGUFExportTests check the other types and say where files differ).
    func testGGUFAndMmprojExport() throws {
        let text = dir + "/text.gguf", mm = dir + "/mmproj.gguf", ref = fixturesDir + "/gguf-export/tiny-idefics3"
        var r = try run(["export", fixturesDir + "/tiny-idefics3", "--to", "gguf", "-o", text, "--mmproj", mm, "--mmproj-type", "q8_0"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.contains("idefics3 mmproj, q8_0"), r.out)
        XCTAssertTrue(try FileSystem.readFile(text) == FileSystem.readFile(ref + ".reference.gguf"), "text GGUF")
        XCTAssertTrue(try FileSystem.readFile(mm) == FileSystem.readFile(ref + ".mmproj.q8_0.reference.gguf"), "mmproj")
        r = try run(["export", fixturesDir + "/tiny-idefics3", "--to", "gguf", "-o", dir + "/x.gguf", "--mmproj", dir + "/y.gguf", "--mmproj-type", "q4_0"])
        XCTAssertNotEqual(r.code, 0)
        XCTAssertTrue(r.err.contains("--mmproj-type takes auto, f32, f16, bf16, q8_0"), r.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/x.gguf"))
    }
}
