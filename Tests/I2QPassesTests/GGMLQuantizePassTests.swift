import Foundation
import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QFormats
@testable import I2QPasses
@testable import I2QQuant

/// `i2q quantize --type q4_k_m|…` (GGMLQuantizePass): every tensor of the .i2q holds the type and the
/// bytes llama-quantize (llama-cpp-python 0.3.36) wrote for it — Tests/Fixtures/gguf-export/
/// {tiny-mistral,smollm2}.llama-quantize.json, made from llama.cpp's output by
/// scripts/fixtures/make_gguf_kquant_fixtures.py. The GGUF holds attn_q/attn_k with rows permuted
/// (convert_hf_to_gguf's `permute` for rope); the .i2q keeps checkpoint order, so the test permutes
/// the stored rows of blocks the same way before hashing (each block lies inside one row).
final class GGMLQuantizePassTests: XCTestCase {
    func settings() -> OutputSettings {
        var s = OutputSettings()
        s.showProgress = false
        return s
    }

    /// convert_hf_to_gguf LlamaModel.permute: output row h·2·dim + 2i + j comes from input row h·2·dim + j·dim + i.
    func permutedRows(_ rows: Int, heads: Int) -> [Int] {
        let dim = rows / heads / 2
        return (0..<rows).map { o in
            let h = o / (2 * dim), rem = o % (2 * dim)
            return h * 2 * dim + (rem % 2) * dim + rem / 2
        }
    }

    func check(model: String, json: String, configs only: Set<String>? = nil) throws {
        let ref = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: fixturesDir + "/gguf-export/" + json))), source: json)
        guard let configs = ref.objectEntries else { return XCTFail("bad \(json)") }
        let dir = try makeTempDir("ggml-quantize")
        let source = try openModel(model)
        let arch = source.config.architecture, t = source.config.textConfig
        var checked = 0
        for (cfg, want) in configs where cfg != "input" && (only?.contains(cfg) ?? true) {
            guard let ft = LlamaFileType(rawValue: String(cfg.prefix { $0 != "+" })) else { continue }  // q8_0 is convert_hf_to_gguf's
            var o = GGMLQuantizeOptions(fileType: ft)
            o.overrides = try (want["tensor_type"]?.arrayValue ?? []).map { try TensorTypeOverride(parsing: $0.stringValue!) }
            if want["imatrix"]?.boolValue == true {
                // The fixture's synthetic importance, through an imatrix file (sums = values, counts = 1).
                var entries: [String: ImportanceMatrix.Entry] = [:]
                for s in source.tensors where s.shape.count == 2 {
                    let g = ImatrixNames.name(checkpoint: s.name, architecture: arch)
                    if let v = GGUFKQuantExportTests.Synthetic(columns: [g: s.shape[1]]).values(for: g) { entries[g] = .init(sums: v, counts: [1]) }
                }
                let path = dir + "/\(cfg).imatrix.gguf"
                try ImportanceMatrix(entries: entries, datasets: ["synthetic"], chunkCount: 1, chunkSize: 512).write(to: path, format: .gguf)
                o.importance = try ImportanceMatrix.read(path: path)
            }
            let out = dir + "/\(cfg).i2q"
            _ = try GGMLQuantizePass.run(source: source, output: out, options: o, settings: settings())
            let f = try I2QFile(path: out)
            guard let tensors = want["tensors"]?.objectEntries else { return XCTFail("\(cfg): no tensors") }
            let expected = Dictionary(uniqueKeysWithValues: tensors.compactMap { (n, v) in v.arrayValue.map { (n, $0) } })
            var bad: [String] = [], quantized = 0
            for e in f.entries {
                let g = ImatrixNames.name(checkpoint: e.name, architecture: arch)
                guard let w = expected[g], w.count == 2, let wantType = w[0].stringValue else { continue }
                guard e.scheme == GGMLBlockLayout.scheme else {
                    // Plain: norms (F32) stay as stored; a 2-D weight llama-quantize left at a float
                    // type other than the default export's (an override) holds that type and its bytes.
                    if !["F32", "F16", "BF16"].contains(wantType) { bad.append("\(g): kept \(e.dtype.rawValue), llama-quantize \(wantType)") }
                    if e.shape.count == 2, e.dtype.rawValue == wantType, let c = e.components.first {
                        let order = g.hasSuffix("attn_q.weight") ? permutedRows(e.shape[0], heads: t.numAttentionHeads)
                            : g.hasSuffix("attn_k.weight") ? permutedRows(e.shape[0], heads: t.numKeyValueHeads) : Array(0..<e.shape[0])
                        let rb = c.size / e.shape[0]
                        let bytes: [UInt8] = f.file.withBytes(f.header.dataOffset + c.offset, c.size) { b in order.flatMap { Array(b[($0 * rb)..<(($0 + 1) * rb)]) } }
                        if bytes.withUnsafeBytes({ SHA256.hex($0.baseAddress!, bytes.count) }) != w[1].stringValue { bad.append("\(g): plain \(wantType) bytes differ") }
                    }
                    continue
                }
                let layout = try GGMLBlockLayout(e)
                let c = layout.blocks
                let rows = e.shape[0], rb = c.size / rows
                let order = g.hasSuffix("attn_q.weight") ? permutedRows(rows, heads: t.numAttentionHeads)
                    : g.hasSuffix("attn_k.weight") ? permutedRows(rows, heads: t.numKeyValueHeads) : Array(0..<rows)
                let bytes: [UInt8] = f.file.withBytes(f.header.dataOffset + c.offset, c.size) { b in order.flatMap { Array(b[($0 * rb)..<(($0 + 1) * rb)]) } }
                let digest = bytes.withUnsafeBytes { SHA256.hex($0.baseAddress!, bytes.count) }
                if layout.type.name != wantType || digest != w[1].stringValue {
                    bad.append("\(g): i2q \(layout.type.name) \(digest.prefix(12)) vs llama-quantize \(wantType) \(w[1].stringValue!.prefix(12))")
                }
                quantized += 1
            }
            XCTAssertGreaterThan(quantized, 0, cfg)
            XCTAssertTrue(bad.isEmpty, "\(model) \(cfg): \(bad.count) tensors differ from llama-quantize's:\n" + bad.prefix(8).joined(separator: "\n"))
            XCTAssertEqual(f.provenance?.passes.last?.params.first { $0.0 == "ggml_file_type" }?.1, .string(ft.rawValue))
            checked += 1
        }
        XCTAssertGreaterThan(checked, 0)
    }

    func testTinyMistralHoldsLlamaQuantizeBytes() throws {
        try check(model: fixturesDir + "/tiny-mistral", json: "tiny-mistral.llama-quantize.json")
    }

    func testSmolLM2HoldsLlamaQuantizeBytes() throws {
        let dir = try XCTUnwrap(ProcessInfo.processInfo.environment["I2Q_SMOLLM2"], "set I2Q_SMOLLM2 (scripts/get_smollm2.sh)")
        try check(model: dir, json: "smollm2.llama-quantize.json", configs: ["q4_k_m", "q4_k_m+imatrix", "q6_k", "q2_k", "q3_k_s+imatrix"])
    }

    /// quantize --type T then export --to gguf (blocks copied) = export --to gguf --type T from the
    /// float model (whose tensors are llama-quantize's, GGUFKQuantExportTests): the same file, byte for byte.
    func testQuantizeThenExportEqualsExportWithType() throws {
        let dir = try makeTempDir("ggml-quantize-export")
        let source = try openModel(fixturesDir + "/tiny-mistral")
        for t in [LlamaFileType.q4_k_m, .q5_1, .q6_k, .q3_k_m] {
            // general.name comes from the file name: keep the model's.
            try FileManager.default.createDirectory(atPath: dir + "/\(t)", withIntermediateDirectories: true)
            let i2q = dir + "/\(t)/tiny-mistral.i2q"
            _ = try GGMLQuantizePass.run(source: source, output: i2q, options: GGMLQuantizeOptions(fileType: t), settings: settings())
            _ = try GGUFExportPass(source: try openModel(i2q), output: dir + "/\(t).copied.gguf", type: nil, settings: settings()).run()
            _ = try GGUFExportPass(source: source, output: dir + "/\(t).direct.gguf", type: GGUFExportType(rawValue: t.rawValue)!, settings: settings()).run()
            let a = try Data(contentsOf: URL(fileURLWithPath: dir + "/\(t).copied.gguf")), b = try Data(contentsOf: URL(fileURLWithPath: dir + "/\(t).direct.gguf"))
            XCTAssertEqual(a.count, b.count, "\(t)")
            XCTAssertTrue(a == b, "\(t): the exported files differ")
        }
    }
}
