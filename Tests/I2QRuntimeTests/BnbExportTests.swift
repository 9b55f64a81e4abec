import XCTest
import I2QCore
import I2QFormats
import I2QQuant
import I2QTestSupport
import I2QPasses
@testable import I2QRuntime

/// `i2q quantize` + `i2q export --to hf-bnb` against what transformers 5.24 + bitsandbytes 0.50.2
/// write and compute (Tests/Fixtures/bnb-export, scripts/fixtures/make_bnb_export_goldens.py):
/// every tensor of the state dict byte for byte, config.json's quantization_config, and the i2q
/// runtime's logits on the .i2q against bnb's logits (its generic CPU path, dequantize_4bit + matmul).
final class BnbExportTests: XCTestCase {
    func export(_ model: String, _ configure: (inout QuantizeOptions) -> Void, into dir: String) throws -> (i2q: String, hf: String) {
        var o = QuantizeOptions()
        o.computeDType = .f32
        configure(&o)
        var s = OutputSettings(); s.showProgress = false
        let q = dir + "/m.i2q", hf = dir + "/hf"
        _ = try QuantizePass.run(source: try openModel(fixturesDir + "/" + model), output: q, options: o, settings: s)
        _ = try BnbExportPass.run(source: try openModel(q), output: hf, settings: s)
        return (q, hf)
    }

    func assertSameStateDict(_ hf: String, _ golden: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let got = try SafetensorsFile(path: hf + "/model.safetensors")
        let want = try SafetensorsFile(path: golden + "/model.safetensors")
        XCTAssertEqual(Set(got.tensors.map(\.name)), Set(want.tensors.map(\.name)), file: file, line: line)
        var compared = 0
        for name in want.tensors.map(\.name) {
            guard let a = got.info(name), let b = want.info(name) else { continue }
            XCTAssertEqual(a.dtype, b.dtype, name, file: file, line: line)
            XCTAssertEqual(a.shape, b.shape, name, file: file, line: line)
            let x = got.withData(a) { Array($0) }, y = want.withData(b) { Array($0) }
            XCTAssertTrue(x == y, "\(name): bytes differ" + (name.contains("quant_state") ? " (\(String(decoding: x, as: UTF8.self)) vs \(String(decoding: y, as: UTF8.self)))" : ""), file: file, line: line)
            compared += 1
        }
        XCTAssertGreaterThan(compared, 0)
        // quantization_config equal as JSON values (key order aside).
        func qc(_ d: String) throws -> [String: String] {
            let v = try JSONParser.parse(FileSystem.readFile(d + "/config.json"), source: d)
            let e = try XCTUnwrap(v["quantization_config"]?.objectEntries)
            return Dictionary(uniqueKeysWithValues: e.map { ($0.0, JSONWriter.string($0.1)) })
        }
        XCTAssertEqual(try qc(hf), try qc(golden), file: file, line: line)
    }

    func testTinyIdefics2NF4DoubleQuantMatchesTransformers() throws {
        let dir = try makeTempDir("bnb-idefics2")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let golden = fixturesDir + "/bnb-export/tiny-idefics2-nf4"
        let (q, hf) = try export("tiny-idefics2-v4", { $0.type = .nf4; $0.doubleQuant = true }, into: dir)
        try assertSameStateDict(hf, golden)

        // Logits of the i2q runtime on the .i2q vs transformers + bnb on its own quantization.
        let g = try SafetensorsFile(path: fixturesDir + "/golden/tiny-idefics2.safetensors")
        let model = try Idefics2Model(source: try openModel(q))
        let shape = g.info("pixel_values")!.shape  // [1, 1, 3, H, W]
        let image = Idefics2Model.ImageInput(pixels: floats(g, "pixel_values"), mask: ints(g, "pixel_attention_mask").map { $0 != 0 },
                                             height: shape[3], width: shape[4])
        let ids = ints(g, "input_ids")
        let emb = try model.embeddings(ids: ids, images: [image])
        let logits = try model.text.logits(try model.text.forward(embeddings: emb, cache: model.text.makeCache(capacity: 64)), rows: 0..<ids.count)
        let want = floats(try SafetensorsFile(path: golden + "/logits.safetensors"), "logits")
        let d = maxDiff(logits, want), std = standardDeviation(want)
        print("tiny Idefics2 NF4: i2q vs transformers+bnb logits max|Δ|/std \(d / std)")
        XCTAssertLessThanOrEqual(d, 1e-4 * std)
    }

    func testTinyLlamaFP4WithoutDoubleQuantMatchesTransformers() throws {
        let dir = try makeTempDir("bnb-llama")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let golden = fixturesDir + "/bnb-export/tiny-llama-fp4"
        let (q, hf) = try export("tiny-llama", { $0.type = .fp4; $0.doubleQuant = false }, into: dir)
        try assertSameStateDict(hf, golden)
        let ids = try loadTextGolden(fixturesDir + "/tiny-llama/golden.safetensors").ids
        let dec = try TextDecoder(source: try openModel(q))
        let logits = try dec.logits(try dec.forward(embeddings: try dec.embed(ids), cache: dec.makeCache(capacity: 32)), rows: 0..<ids.count)
        let want = floats(try SafetensorsFile(path: golden + "/logits.safetensors"), "logits")
        let d = maxDiff(logits, want), std = standardDeviation(want)
        print("tiny Llama FP4: i2q vs transformers+bnb logits max|Δ|/std \(d / std)")
        XCTAssertLessThanOrEqual(d, 1e-4 * std)
    }

    func testRefusesModelsWithoutFourBitTensors() throws {
        let dir = try makeTempDir("bnb-plain")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var s = OutputSettings(); s.showProgress = false
        assertThrowsMentioning(["no NF4/FP4 tensors", "i2q quantize --nf4"]) {
            _ = try BnbExportPass.run(source: try openModel(fixturesDir + "/tiny-llama"), output: dir + "/hf", settings: s)
        }
        XCTAssertFalse(FileSystem.exists(dir + "/hf"))
    }
}
