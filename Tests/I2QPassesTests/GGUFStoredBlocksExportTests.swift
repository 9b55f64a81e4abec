import Foundation
import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QFormats
@testable import I2QPasses
@testable import I2QQuant

/// Issue 21: `export --to gguf` of an .i2q holding ggml entries writes each with its stored type and
/// its bytes as they are. The inputs hold, for every tensor, exactly the type and bytes llama-quantize
/// wrote (Tests/Fixtures/gguf-export/*.llama-quantize.json — llama.cpp's types and sha256, checked on
/// the .i2q before exporting); the export must then give llama.cpp's types and bytes again, the
/// recorded file type, and the same metadata as `export --to gguf --type T` from the float model.
final class GGUFStoredBlocksExportTests: XCTestCase {
    func settings() -> OutputSettings {
        var s = OutputSettings()
        s.showProgress = false
        return s
    }

    func reference(_ json: String, _ cfg: String) throws -> (fileType: Int, tensors: [String: (type: String, sha: String)]) {
        let ref = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: fixturesDir + "/gguf-export/" + json))), source: json)
        let c = try XCTUnwrap(ref[cfg])
        var t: [String: (String, String)] = [:]
        for (n, v) in c["tensors"]?.objectEntries ?? [] { t[n] = (v.arrayValue![0].stringValue!, v.arrayValue![1].stringValue!) }
        return (c["file_type"]!.intValue!, t)
    }

    /// convert_hf_to_gguf LlamaModel.permute, as row indices: GGUF row o holds checkpoint row
    /// h·2·dim + (o mod 2)·dim + (o mod 2·dim)/2 of head h = o / 2·dim.
    func permuted(_ bytes: UnsafeRawBufferPointer, rows: Int, heads: Int?) -> [UInt8] {
        guard let heads else { return Array(bytes) }
        let rb = bytes.count / rows, dim = rows / heads / 2
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        for o in 0..<rows {
            let h = o / (2 * dim), rem = o % (2 * dim)
            let s = h * 2 * dim + (rem % 2) * dim + rem / 2
            out += bytes[(s * rb)..<((s + 1) * rb)]
        }
        return out
    }

    /// Writes `source` as an .i2q holding, for every decoder tensor, llama-quantize's type under `cfg`:
    /// block types as ggml entries encoded by GGMLQuantize from the values rounded through the
    /// default export's type (what llama-quantize reads), F16/BF16/F32 weights plain in that type,
    /// norms as stored (as `i2q quantize` keeps them); provenance records `ggml_file_type` when `record` is set. Then checks every
    /// stored tensor (q/k rows permuted as in the GGUF) against llama.cpp's sha256.
    func buildInput(_ source: any ModelSource, ref: [String: (type: String, sha: String)], to out: String, record: String?) throws {
        let plan = try GGUFExportPass(source: source, output: out + ".plan.gguf", type: .f32, settings: settings()).plan
        let byHF = Dictionary(uniqueKeysWithValues: plan.map { ($0.source, $0) })
        let mid: DType = GGUFExportType.auto(for: source) == .bf16 ? .bf16 : .f16
        let w = try I2QWriter(path: out)
        for t in source.tensors {
            let want = byHF[t.name].flatMap { ref[$0.name]?.type }
            if let want, let type = GGMLBlockLayout.types.first(where: { $0.name == want }) {
                let cap = max(1 << 20, t.shape[1])
                let m16 = UnsafeMutableRawPointer.allocate(byteCount: cap * 2, alignment: 64)
                let f = UnsafeMutablePointer<Float>.allocate(capacity: cap)
                defer { m16.deallocate(); f.deallocate() }
                try w.writeGGML(t, type: type, dtype: t.dtype) { rows, n, cols, dst in
                    _ = try FloatConversion.convert(from: .f32, to: mid, count: n * cols, src: rows, dst: m16)
                    _ = try FloatConversion.convert(from: mid, to: .f32, count: n * cols, src: m16, dst: f)
                    try GGMLQuantize.encode(type, f, rows: n, rowLength: cols, dst, importance: nil)
                }
            } else {
                let dt: DType = t.shape.count == 2 && want == "F16" ? .f16 : t.shape.count == 2 && want == "BF16" ? .bf16 : t.dtype
                var raw = [UInt8](repeating: 0, count: t.byteCount)
                try raw.withUnsafeMutableBytes { try t.read(elements: 0, count: t.elementCount, into: $0.baseAddress!) }
                var conv = [UInt8](repeating: 0, count: t.elementCount * dt.size)
                try raw.withUnsafeBytes { r in try conv.withUnsafeMutableBytes { _ = try FloatConversion.convert(from: t.dtype, to: dt, count: t.elementCount, src: r.baseAddress!, dst: $0.baseAddress!) } }
                try conv.withUnsafeBytes { try w.writePlain(name: t.name, dtype: dt, shape: t.shape, $0) }
            }
        }
        let cfg = Array((JSONWriter.string(source.rawConfig, indent: 2) + "\n").utf8)
        let passes = record.map { [PassRecord(name: "quantize", params: [("ggml_file_type", .string($0)), ("intermediate", .string(mid.rawValue))])] } ?? []
        try w.finish(metadata: I2QMetadata(files: [("config.json", cfg)] + (try source.auxiliaryFiles()),
                                           provenance: Provenance(source: .object([("path", .string(source.path))]), passes: passes)))

        // The input holds llama.cpp's bytes (its weights: norms are kept as stored, made F32 by the export).
        let f = try I2QFile(path: out)
        var bad: [String] = []
        for e in f.entries where e.shape.count == 2 {
            guard let p = byHF[e.name], let r = ref[p.name] else { continue }
            let c = e.components[0]
            let bytes = f.file.withBytes(f.header.dataOffset + c.offset, c.size) { permuted($0, rows: e.shape[0], heads: p.permuteHeads) }
            let sha = bytes.withUnsafeBytes { SHA256.hex($0.baseAddress!, $0.count) }
            let type = e.scheme == GGMLBlockLayout.scheme ? try GGMLBlockLayout(e).type.name : e.dtype == .f16 ? "F16" : e.dtype == .bf16 ? "BF16" : "F32"
            if type != r.type || sha != r.sha { bad.append("\(p.name): \(type) \(sha.prefix(12)) vs \(r.type) \(r.sha.prefix(12))") }
        }
        XCTAssertTrue(bad.isEmpty, "the input does not hold llama-quantize's bytes:\n" + bad.prefix(8).joined(separator: "\n"))
    }

    /// Exports `input` and checks every tensor's type and sha256 against llama-quantize's, the file
    /// type, and the metadata against `export --type cfg` from the float source.
    func checkExport(_ input: String, float source: any ModelSource, type: GGUFExportType,
                     ref: (fileType: Int, tensors: [String: (type: String, sha: String)]), label: String) throws {
        let out = input + ".gguf"
        let report = try GGUFExportPass(source: try openModel(input), output: out, settings: settings()).run()
        XCTAssertFalse(report.notes.contains { $0.contains("guessed") }, "\(label): \(report.notes)")
        XCTAssertTrue(report.summary.contains("to gguf \(type.rawValue)"), report.summary)
        let g = try GGUFFile(path: out)
        XCTAssertEqual(g.value("general.file_type"), .uint32(UInt32(ref.fileType)), label)
        XCTAssertEqual(Set(g.tensors.map(\.name)), Set(ref.tensors.keys), "\(label): tensor names")
        var bad: [String] = []
        for (name, r) in ref.tensors {
            guard let t = g.tensor(name) else { continue }
            let digest = g.file.withBytes(t.offset, t.byteCount) { SHA256.hex($0.baseAddress!, t.byteCount) }
            if t.type.name != r.type || digest != r.sha { bad.append("\(name): i2q \(t.type.name) \(digest.prefix(12)) vs llama-quantize \(r.type) \(r.sha.prefix(12))") }
        }
        XCTAssertTrue(bad.isEmpty, "\(label): \(bad.count) of \(ref.tensors.count) tensors differ from llama-quantize's:\n" + bad.prefix(8).joined(separator: "\n"))
        // Metadata: what the float export with --type writes (its pass's metadata; no need to quantize again).
        let want = try GGUFExportPass(source: source, output: input + ".float.gguf", type: type, settings: settings()).metadata
        XCTAssertEqual(g.metadata.map(\.key), want.map(\.key), "\(label): metadata keys")
        for (k, v) in want where g.value(k) != v { XCTFail("\(label): metadata \(k) differs") }
    }

    func check(model: String, json: String, cfg: String, fuse: Bool) throws {
        let ref = try reference(json, cfg)
        let type = GGUFExportType(rawValue: String(cfg.prefix { $0 != "+" }))!
        let dir = try makeTempDir("gguf-stored")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try openModel(model)
        // Named after the model so that general.name (the file name without .i2q) matches.
        let input = dir + "/" + FileSystem.basename(model) + ".i2q"
        try buildInput(source, ref: ref.tensors, to: input, record: type.rawValue)
        try checkExport(input, float: source, type: type, ref: ref, label: "\(model) \(cfg)")
        if fuse {
            let fdir = dir + "/fused"
            try FileManager.default.createDirectory(atPath: fdir, withIntermediateDirectories: true)
            let fused = fdir + "/" + FileSystem.basename(model) + ".i2q"
            let r = try FusePass.run(source: try openModel(input), output: fused, options: FuseOptions(), settings: settings())
            XCTAssertFalse(r.fused.isEmpty, "nothing was fused")
            XCTAssertTrue(try I2QFile(path: fused).entries.contains { !$0.parts.isEmpty && $0.scheme == GGMLBlockLayout.scheme }, "no fused ggml entry")
            try checkExport(fused, float: source, type: type, ref: ref, label: "\(model) \(cfg) fused")
        }
    }

    /// tiny-mistral (bf16) q4_k_m: Q5_0/Q8_0 fallbacks; fused (gate/up are both Q5_0) too.
    func testTinyMistralQ4KMCopiesLlamaQuantizeBytes() throws {
        try check(model: fixturesDir + "/tiny-mistral", json: "tiny-mistral.llama-quantize.json", cfg: "q4_k_m", fuse: true)
    }

    /// With --tensor-type overrides: two F16 weights (plain f16 entries) among Q5_0/Q5_1/Q8_0 blocks.
    func testTinyMistralMixedPlainAndBlocks() throws {
        try check(model: fixturesDir + "/tiny-mistral", json: "tiny-mistral.llama-quantize.json", cfg: "q4_k_m+tensor_type", fuse: false)
    }

    /// SmolLM2-135M (f32 → rounded through f16): real Q4_K/Q6_K blocks in ffn_down, fused too.
    func testSmolLM2Q4KMCopiesLlamaQuantizeBytes() throws {
        let dir = try XCTUnwrap(ProcessInfo.processInfo.environment["I2Q_SMOLLM2"], "set I2Q_SMOLLM2 to the SmolLM2-135M-Instruct f32 directory (scripts/get_smollm2.sh): a failure, never a skip")
        try check(model: dir, json: "smollm2.llama-quantize.json", cfg: "q4_k_m", fuse: true)
    }

    /// --type other than the recorded file type, --tensor-type and an importance matrix are refused
    /// with what to do instead; the recorded type itself is accepted. Without a record, the file
    /// type is llama.cpp's guess from the most common type (here Q5_0 of q4_k_m's fallbacks → 8,
    /// LLAMA_FTYPE_MOSTLY_Q5_0), with a note.
    func testRequestedTypeMustBeTheStoredOne() throws {
        let ref = try reference("tiny-mistral.llama-quantize.json", "q4_k_m")
        let dir = try makeTempDir("gguf-stored-refuse")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = try openModel(fixturesDir + "/tiny-mistral")
        let input = dir + "/tiny-mistral.i2q"
        try buildInput(source, ref: ref.tensors, to: input, record: "q4_k_m")
        let m = try openModel(input)
        for t in [GGUFExportType.q6_k, .f16, .q8_0] {
            let out = dir + "/\(t.rawValue).gguf"
            assertThrowsMentioning(["already quantized as q4_k_m", "--type \(t.rawValue)", "second rounding", "--to gguf` (no --type)",
                                    "i2q export \(source.path) --to gguf --type TYPE"]) {
                _ = try GGUFExportPass(source: m, output: out, type: t, settings: settings()).run()
            }
            XCTAssertFalse(FileSystem.exists(out))
        }
        assertThrowsMentioning(["--tensor-type attn_v=Q8_0"]) {
            _ = try GGUFExportPass(source: m, output: dir + "/o.gguf", settings: settings(), overrides: [try TensorTypeOverride(parsing: "attn_v=q8_0")])
        }
        struct One: ImportanceSource { func values(for n: String) -> [Float]? { nil } }
        assertThrowsMentioning(["importance matrix"]) {
            _ = try GGUFExportPass(source: m, output: dir + "/o.gguf", settings: settings(), importance: One())
        }
        let r = try GGUFExportPass(source: m, output: dir + "/same.gguf", type: .q4_k_m, settings: settings()).run()
        XCTAssertEqual(try GGUFFile(path: r.output).value("general.file_type"), .uint32(15))

        let bare = dir + "/bare/tiny-mistral.i2q"
        try FileManager.default.createDirectory(atPath: dir + "/bare", withIntermediateDirectories: true)
        try buildInput(source, ref: ref.tensors, to: bare, record: nil)
        let g = try GGUFExportPass(source: try openModel(bare), output: bare + ".gguf", settings: settings()).run()
        XCTAssertTrue(g.notes.contains { $0.contains("guessed") }, "\(g.notes)")
        XCTAssertEqual(try GGUFFile(path: bare + ".gguf").value("general.file_type"), .uint32(8))
    }
}
