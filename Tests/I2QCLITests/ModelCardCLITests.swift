import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport

/// Every HF directory export carries a README.md model card (issue 20), as mlx-lm and AutoAWQ write:
/// Hub front matter, the passes with their parameters, the verify numbers when a --verify ran, the
/// files, and how to load it. Expected values are the inputs' own facts (the flags given, the numbers
/// `--verify` recorded in the provenance / i2q_verify.json), never recomputed by the card code.
final class ModelCardCLITests: CLITestCase {
    override var tempPrefix: String { "cli-model-card" }

    let text = "/usr/share/common-licenses/BSD"

    func testHFBnbExportCardNamesSchemePassesVerifyNumbersAndLoading() throws {
        let model = fixturesDir + "/easy-vqa-idefics2", q = dir + "/nf4.i2q", out = dir + "/nf4-hf"
        let r = try run(["quantize", model, "--nf4", "-o", q, "--verify", "--verify-text", text, "--verify-ctx", "32", "--no-progress"])
        XCTAssertEqual(r.code, 0, r.err)
        let rec = try XCTUnwrap(try I2QFile(path: q).provenance?.passes.last)
        XCTAssertEqual(rec.name, "verify")
        let ppl = try XCTUnwrap(Dictionary(uniqueKeysWithValues: rec.params)["ppl"]?.doubleValue)
        let e = try run(["export", q, "--to", "hf-bnb", "-o", out, "--no-progress"])
        XCTAssertEqual(e.code, 0, e.err)
        let card = String(decoding: try FileSystem.readFile(out + "/README.md"), as: UTF8.self)
        XCTAssertTrue(card.hasPrefix("---\nlibrary_name: transformers\nbase_model: easy-vqa-idefics2\npipeline_tag: image-text-to-text\n"), card)
        for s in ["- bitsandbytes\n", "- nf4\n", "bitsandbytes 4-bit nf4, double quantization",
                  "| quantize | type=\"nf4\" block_size=64 double_quant=true",       // the pass and its parameters
                  "perplexity \(formatFixed(ppl, 3))",                               // the recorded verify number
                  "AutoModelForImageTextToText.from_pretrained(\"\(out)\")", "pip install transformers bitsandbytes",
                  "`model.safetensors` ("] {
            XCTAssertTrue(card.contains(s), "missing \(s) in\n\(card)")
        }
    }

    func testSafetensorsCastCardCarriesItsOwnVerifyAndTextModelLoading() throws {
        let model = fixturesDir + "/tiny-mistral", out = dir + "/bf16-hf"
        let r = try run(["cast", model, "--dtype", "bf16", "--format", "safetensors", "-o", out, "--verify", "--verify-text", text, "--verify-ctx", "32"])
        XCTAssertEqual(r.code, 0, r.err)
        let j = try JSONParser.parse(FileSystem.readFile(out + "/i2q_verify.json"), source: "i2q_verify.json")
        let kld = try XCTUnwrap(j["text"]?["kld"]?["mean"]?.doubleValue)
        let card = String(decoding: try FileSystem.readFile(out + "/README.md"), as: UTF8.self)
        for s in ["pipeline_tag: text-generation", "**bfloat16 safetensors**", "| cast |", "mean KLD \(formatFixed(kld, 5))",
                  "AutoModelForCausalLM.from_pretrained(\"\(out)\")", "(`i2q_verify.json`)"] {
            XCTAssertTrue(card.contains(s), "missing \(s) in\n\(card)")
        }
    }

    func testAWQExportCardWithoutVerifySaysHowToMeasure() throws {
        let q = dir + "/rtn.i2q", out = dir + "/awq-hf"
        XCTAssertEqual(try run(["quantize", fixturesDir + "/tiny-idefics2-v4", "--rtn", "--group-size", "32", "-o", q, "--no-progress"]).code, 0)
        let e = try run(["export", q, "--to", "hf-awq", "-o", out, "--no-progress"])
        XCTAssertEqual(e.code, 0, e.err)
        let card = String(decoding: try FileSystem.readFile(out + "/README.md"), as: UTF8.self)
        for s in ["AWQ int4, group size 32", "- awq\n", "Not measured when this was written. `i2q verify \(out) ",
                  "vllm serve \(out) --quantization awq", "pip install transformers autoawq"] {
            XCTAssertTrue(card.contains(s), "missing \(s) in\n\(card)")
        }
    }
}
