import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QFormats
@testable import I2QPasses

/// `export --to gguf --mmproj FILE` against llama.cpp's own converter: Tests/Fixtures/gguf-export/
/// tiny-{idefics3,smolvlm}.mmproj.reference.gguf are `convert_hf_to_gguf.py Tests/Fixtures/tiny-X --mmproj`
/// (default --outtype auto: f16 for these f32 checkpoints) and tiny-X.mmproj.q8_0.reference.gguf the same
/// with `--outtype q8_0` (scripts/fixtures/make_idefics3_gguf_fixtures.py; the copy vendored by
/// llama-cpp-python 0.3.36). i2q's projector is the same file byte for byte — metadata (general.name
/// "Tiny Idefics3" from the directory name, general.size_label from the parameter count), tensor
/// order, types and data; on a difference the per-tensor and per-key checks say where.
final class MmprojExportTests: XCTestCase {
    func check(_ m: String, type: MmprojExportPass.OutType, reference: String, expectedType: MmprojExportPass.OutType) throws {
        let dir = try makeTempDir("mmproj")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var s = OutputSettings()
        s.showProgress = false
        let out = dir + "/\(m).mmproj.gguf"
        let r = try MmprojExportPass.run(source: try openModel(fixturesDir + "/" + m), output: out, type: type, settings: s)
        XCTAssertEqual(r.tensors, 38, m)
        XCTAssertEqual(r.type, expectedType, m)
        try assertSameGGUF(out, reference: fixturesDir + "/gguf-export/" + reference, "\(m) --mmproj-type \(type)")
    }

    func testTinyModelsMatchConvertHfToGguf() throws {
        for m in ["tiny-idefics3", "tiny-smolvlm"] {
            try check(m, type: .auto, reference: "\(m).mmproj.reference.gguf", expectedType: .f16)
        }
    }

    /// `--mmproj-type q8_0` = `convert_hf_to_gguf.py --mmproj --outtype q8_0`: attention/MLP/connector
    /// weights Q8_0 (ggml's reference encoder), embeddings, norms and biases F32, general.file_type 7.
    func testQ8_0MatchesConvertHfToGguf() throws {
        for m in ["tiny-idefics3", "tiny-smolvlm"] {
            try check(m, type: .q8_0, reference: "\(m).mmproj.q8_0.reference.gguf", expectedType: .q8_0)
        }
        let g = try GGUFFile(path: fixturesDir + "/gguf-export/tiny-idefics3.mmproj.q8_0.reference.gguf")
        XCTAssertEqual(g.tensor("mm.model.fc.weight")?.type, .q8_0)
        XCTAssertEqual(g.tensor("v.patch_embd.weight")?.type, .f32)
    }

    /// gguf-py's size label and name heuristics (metadata.py): expected values printed by gguf-py 0.19
    /// (the vendored copy: `model_weight_count_rounded_notation`, `Metadata.id_to_title`,
    /// `Metadata.get_model_id_components(id, total_params)`), beyond what the tiny files exercise.
    func testGeneralMetadataHeuristics() {
        XCTAssertEqual(GGUFGeneralMetadata.roundedCount(28_000), "28K")
        XCTAssertEqual(GGUFGeneralMetadata.roundedCount(1_034_240), "1.0M")
        XCTAssertEqual(GGUFGeneralMetadata.roundedCount(134_515_008), "135M")
        XCTAssertEqual(GGUFGeneralMetadata.idToTitle("tiny-idefics3"), "Tiny Idefics3")
        XCTAssertEqual(GGUFGeneralMetadata.idToTitle("SmolVLM-256M-Instruct"), "SmolVLM 256M Instruct")
        let c = GGUFGeneralMetadata.components("HuggingFaceTB/SmolLM2-135M-Instruct", totalParams: 134_515_008)
        XCTAssertEqual(c.org, "HuggingFaceTB")
        XCTAssertEqual(c.basename, "SmolLM2")
        XCTAssertEqual(c.sizeLabel, "135M")
        XCTAssertEqual(c.finetune, "Instruct")
        XCTAssertNil(c.version)
        let v = GGUFGeneralMetadata.components("Mistral-7B-Instruct-v0.2", totalParams: 7_241_732_096)
        XCTAssertEqual(v.basename, "Mistral")
        XCTAssertEqual(v.version, "v0.2")
        XCTAssertEqual(v.sizeLabel, "7B")
        XCTAssertNil(GGUFGeneralMetadata.components("tiny-idefics3", totalParams: 28_000).basename)
        let b = GGUFGeneralMetadata.components("bigscience/bloom-7b1", totalParams: 7_069_016_064)
        XCTAssertEqual([b.basename, b.sizeLabel, b.finetune], ["bloom", "7.1B", nil])
        let l = GGUFGeneralMetadata.components("Llama-3.1-8B-Instruct-128k", totalParams: 8_030_261_248)
        XCTAssertEqual([l.basename, l.sizeLabel, l.finetune, l.version], ["Llama-3.1", "8B", "Instruct-128k", nil])
        let p = GGUFGeneralMetadata.components("phi-small-3.8B", totalParams: 3_821_079_552)
        XCTAssertEqual([p.basename, p.sizeLabel], ["phi-small", "3.8B"])
        XCTAssertEqual(GGUFGeneralMetadata.idToTitle("v1.0-model-3b-xl_small"), "v1.0 Model 3b Xl_Small")
    }

    func testRefusesOtherFamilies() throws {
        let dir = try makeTempDir("mmproj")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var s = OutputSettings()
        s.showProgress = false
        XCTAssertThrowsError(try MmprojExportPass.run(source: try openModel(fixturesDir + "/tiny-idefics2-v5"), output: dir + "/x.gguf", settings: s)) {
            XCTAssertTrue("\($0)".contains("Idefics3 or SmolVLM"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/x.gguf"))
    }
}
