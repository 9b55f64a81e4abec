import Foundation
import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QFormats
@testable import I2QPasses
@testable import I2QQuant

/// Issue 21's "Bytes" acceptance: `export --to gguf --type q4_k_m|…` equals, tensor for tensor, what
/// llama-quantize (llama-cpp-python 0.3.36's `llama_model_quantize`) writes from i2q's default GGUF
/// export of the same model — same ggml type, same bytes (sha256) — without and with the same
/// importance matrix, and with `--tensor-type` overrides. Expected data:
/// Tests/Fixtures/gguf-export/{tiny-mistral,tiny-llama,smollm2}.llama-quantize.json, made by
/// scripts/fixtures/make_gguf_kquant_fixtures.py from llama.cpp's output (never from i2q's quantizer).
/// SmolLM2 needs the real model (env I2Q_SMOLLM2); without it the test fails (CI sets it).
final class GGUFKQuantExportTests: XCTestCase {
    /// The script's synthetic importance: for 2-D blk.* weights, value i = k / 16 with
    /// k = (37·i + Σ utf8(name)) mod 101.
    struct Synthetic: ImportanceSource {
        let columns: [String: Int]
        func values(for name: String) -> [Float]? {
            guard name.hasPrefix("blk."), let n = columns[name] else { return nil }
            let h = name.utf8.reduce(0) { $0 + Int($1) }
            return (0..<n).map { Float((37 * $0 + h) % 101) / 16 }
        }
    }

    func check(model: String, json: String, configs only: Set<String>? = nil) throws {
        let ref = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: fixturesDir + "/gguf-export/" + json))), source: json)
        guard let configs = ref.objectEntries else { return XCTFail("bad \(json)") }
        let dir = try makeTempDir("gguf-kquant")
        defer { try? FileManager.default.removeItem(atPath: dir) }  // ~640 MB of GGUFs per run
        let source = try openModel(model)
        var checked = 0
        for (cfg, want) in configs where cfg != "input" && (only?.contains(cfg) ?? true) {
            let type = GGUFExportType(rawValue: String(cfg.prefix { $0 != "+" }))!
            let overrides = try (want["tensor_type"]?.arrayValue ?? []).map { try TensorTypeOverride(parsing: $0.stringValue!) }
            var importance: Synthetic? = nil
            if want["imatrix"]?.boolValue == true {
                var cols: [String: Int] = [:]
                for t in source.tensors { cols[t.name] = t.shape.last }
                // GGUF names → columns: from the plan of a plain export
                let plan = try GGUFExportPass(source: source, output: dir + "/plan.gguf", type: .f32, settings: settings()).plan
                importance = Synthetic(columns: Dictionary(uniqueKeysWithValues: plan.map { ($0.name, $0.shape.last!) }))
            }
            let out = dir + "/\(cfg).gguf"
            _ = try GGUFExportPass(source: source, output: out, type: type, settings: settings(), overrides: overrides, importance: importance).run()
            let g = try GGUFFile(path: out)
            XCTAssertEqual(g.value("general.file_type"), .uint32(UInt32(want["file_type"]!.intValue!)), cfg)
            guard let tensors = want["tensors"]?.objectEntries else { return XCTFail("\(cfg): no tensors") }
            XCTAssertEqual(Set(g.tensors.map(\.name)), Set(tensors.map(\.0)), "\(cfg): tensor names")
            var bad: [String] = []
            for (name, v) in tensors {
                guard let t = g.tensor(name), let a = v.arrayValue, a.count == 2 else { continue }
                let digest = g.file.withBytes(t.offset, t.byteCount) { SHA256.hex($0.baseAddress!, t.byteCount) }
                if t.type.name != a[0].stringValue || digest != a[1].stringValue {
                    bad.append("\(name): i2q \(t.type.name) \(digest.prefix(12)) vs llama-quantize \(a[0].stringValue!) \(a[1].stringValue!.prefix(12))")
                }
            }
            XCTAssertTrue(bad.isEmpty, "\(model) \(cfg): \(bad.count) of \(tensors.count) tensors differ from llama-quantize's:\n" + bad.prefix(8).joined(separator: "\n"))
            checked += 1
        }
        XCTAssertGreaterThan(checked, 0)
    }

    func settings() -> OutputSettings {
        var s = OutputSettings()
        s.showProgress = false
        return s
    }

    /// tiny-mistral (bf16, widths 32/64: every K-quant falls back to Q5_0/Q5_1/Q8_0, the tied
    /// embedding to Q8_0; Q2_K/Q3_K fall back to Q4_0): every llama-quantize type (q2_k, q3_k_s/m/l included), q4_k_m and q5_0 with an importance matrix,
    /// q4_k_m with three --tensor-type overrides (one to F16, one that itself falls back).
    func testTinyMistralEqualsLlamaQuantize() throws {
        try check(model: fixturesDir + "/tiny-mistral", json: "tiny-mistral.llama-quantize.json")
    }

    /// tiny-llama (f32 → f16 export, widths 32/64: the K-quants fall back as llama.cpp's do, the tied
    /// embedding too): every llama-quantize type (q2_k's attn_v takes Q4_K here: n_head / n_head_kv = 4), q4_k_m, q5_k_m, q6_k and q5_0 with an importance
    /// matrix, q4_k_m with the --tensor-type overrides. tiny-llama has no tokenizer (export refuses it:
    /// GGUFExportTests.testErrors), so this exports the same copy the fixture script quantized: its
    /// config, generation config and weights plus gguf-export/tiny-llama-tokenizer.json as tokenizer.json.
    func testTinyLlamaEqualsLlamaQuantize() throws {
        let dir = try makeTempDir("tiny-llama-tok")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for n in ["config.json", "generation_config.json", "model.safetensors"] {
            try FileSystem.copyFile(fixturesDir + "/tiny-llama/" + n, dir + "/" + n)
        }
        try FileSystem.copyFile(fixturesDir + "/gguf-export/tiny-llama-tokenizer.json", dir + "/tokenizer.json")
        try check(model: dir, json: "tiny-llama.llama-quantize.json")
    }

    /// SmolLM2-135M (f32 → f16 export; ffn_down 1536 wide gets real Q4_K/Q5_K/Q6_K blocks, the
    /// 576-wide tensors fall back): q4_k_m, q5_k_m, q6_k, q4_k_m + imatrix, and an attn_v override
    /// that shifts llama.cpp's attn_v counter for every later layer; below 4 bits q2_k and q3_k_s + imatrix
    /// (ffn_down as real Q3_K blocks, ref and importance-weighted) and q3_k_m (Q4_K/Q5_K ffn_down, Q4_0 fallbacks).
    func testSmolLM2EqualsLlamaQuantize() throws {
        let dir = try XCTUnwrap(ProcessInfo.processInfo.environment["I2Q_SMOLLM2"], "set I2Q_SMOLLM2 to the SmolLM2-135M-Instruct f32 directory (scripts/get_smollm2.sh): a failure, never a skip")
        try check(model: dir, json: "smollm2.llama-quantize.json")
    }

    /// The recipe alone, on SmolLM2's real shapes (30 layers, no tensors needed): attn_v and
    /// ffn_down bumps at use_more_bits layers, the 576-wide fallbacks, the tied embedding's Q8_0.
    func testRecipeTypesMatchLlamaQuantizeOnSmolLM2Shapes() throws {
        let ref = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: fixturesDir + "/gguf-export/smollm2.llama-quantize.json"))), source: "smollm2")
        var tensors: [LlamaQuantRecipe.Tensor] = [.init(name: "token_embd.weight", columns: 576, dims: 2), .init(name: "output_norm.weight", columns: 576, dims: 1)]
        for i in 0..<30 {
            for (n, c) in [("attn_q", 576), ("attn_k", 576), ("attn_v", 576), ("attn_output", 576), ("ffn_gate", 576), ("ffn_up", 576), ("ffn_down", 1536)] {
                tensors.append(.init(name: "blk.\(i).\(n).weight", columns: c, dims: 2))
            }
            tensors.append(.init(name: "blk.\(i).attn_norm.weight", columns: 576, dims: 1))
            tensors.append(.init(name: "blk.\(i).ffn_norm.weight", columns: 576, dims: 1))
        }
        for (cfg, want) in ref.objectEntries ?? [] where cfg != "input" {
            let ft = LlamaFileType(rawValue: String(cfg.prefix { $0 != "+" }))!
            let overrides = try (want["tensor_type"]?.arrayValue ?? []).map { try TensorTypeOverride(parsing: $0.stringValue!) }
            let recipe = LlamaQuantRecipe(fileType: ft, model: .init(layers: 30, heads: 9, kvHeads: 3), overrides: overrides,
                                          hasImatrix: want["imatrix"]?.boolValue == true)
            let got = try recipe.choose(tensors)
            for (name, v) in want["tensors"]?.objectEntries ?? [] {
                let expected = v.arrayValue![0].stringValue!
                XCTAssertEqual(got[name]?.type?.name ?? "F32", expected, "\(cfg) \(name)")
            }
        }
    }
}

/// What `export --to gguf` says about inputs it cannot take, and about bad --tensor-type / importance.
final class GGUFKQuantExportRefusalTests: XCTestCase {
    func settings() -> OutputSettings {
        var s = OutputSettings()
        s.showProgress = false
        return s
    }

    /// AWQ int4 and NF4 .i2q files are refused with what to do instead, and nothing is written.
    func testFourBitInputsSayWhatToDoInstead() throws {
        let dir = try makeTempDir("gguf-refuse")
        for (file, alt) in [("int4.i2q", "--to hf-awq"), ("nf4.i2q", "--to hf-bnb")] {
            let out = dir + "/" + file + ".gguf"
            XCTAssertThrowsError(try GGUFExportPass(source: try openModel(fixturesDir + "/fuzz/" + file), output: out, type: .q4_k_m, settings: settings())) { e in
                let m = "\(e)"
                for want in ["--to gguf --type q4_k_m", alt, "unquantized"] { XCTAssertTrue(m.contains(want), "\(file): \(m)") }
            }
            XCTAssertFalse(FileSystem.exists(out))
        }
    }

    func testBadTensorTypeArguments() {
        for (arg, says) in [("attn_v", "REGEX=TYPE"), ("=q8_0", "empty"), ("attn_v=", "empty"), ("attn_v=iq2_xxs", "not one i2q writes"), ("attn_v[=q8_0", "not a valid regular expression")] {
            XCTAssertThrowsError(try TensorTypeOverride(parsing: arg)) { XCTAssertTrue("\($0)".contains(says), "\(arg): \($0)") }
        }
        XCTAssertEqual(try TensorTypeOverride(parsing: "ATTN_V=Q8_0").pattern, "attn_v")  // llama-quantize lowercases the pattern
    }

    /// An importance vector of the wrong length is an error naming the tensor (llama.cpp: "imatrix
    /// size … is different from tensor size"); a missing entry is quantized without, with a note.
    func testImportanceOfWrongLengthIsAnError() throws {
        struct Wrong: ImportanceSource { func values(for n: String) -> [Float]? { n == "blk.1.ffn_down.weight" ? [1, 2, 3] : nil } }
        let dir = try makeTempDir("gguf-imatrix")
        XCTAssertThrowsError(try GGUFExportPass(source: try openModel(fixturesDir + "/tiny-mistral"), output: dir + "/m.gguf", type: .q4_k_m,
                                                settings: settings(), importance: Wrong()).run()) { e in
            XCTAssertTrue("\(e)".contains("blk.1.ffn_down.weight") && "\(e)".contains("3 values"), "\(e)")
        }
        XCTAssertFalse(FileSystem.exists(dir + "/m.gguf"))
    }
}
