import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport
@testable import I2QPasses

/// The int4 and GGUF paths on fused models (`i2q fuse`, Formats/i2q-format.md "Fused tensors"):
/// the passes commute with fusion and the exports un-fuse. Expected values are the outputs of the
/// unfused pipeline, whose layouts are checked against AutoAWQ (AWQExportTests) and
/// convert_hf_to_gguf.py (GGUFExportTests); here the fused pipeline must give the same bytes:
/// - fuse → quantize --rtn / --awq equals quantize → fuse (every entry: scheme, dtype, shape, params,
///   parts, component bytes; config.json);
/// - export --to hf-awq of a fused int4 model equals the export of the unfused one: every tensor
///   byte for byte, config.json and the other files identical;
///   with --fused-names a fused linear is its parts' AutoAWQ tensors concatenated along `out`;
/// - export --to gguf of a fused model equals that of the unfused model, byte for byte.
final class FusedExportTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try makeTempDir("fused-export") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    var quiet: OutputSettings { var s = OutputSettings(); s.showProgress = false; return s }

    func fuse(_ src: any ModelSource, _ out: String) throws {
        let r = try FusePass.run(source: src, output: out, options: FuseOptions(), settings: quiet)
        XCTAssertFalse(r.fused.isEmpty, out)
    }

    func rtn(_ src: any ModelSource, _ out: String, skip: [String] = []) throws {
        var o = AffineQuantizeOptions(); o.method = .rtn; o.groupSize = 16; o.skip = skip
        _ = try AffineQuantizePass.run(source: src, output: out, options: o, settings: quiet)
    }

    /// Text calibration: a couple of short samples (the tiny fixtures have small vocabularies).
    func awq(_ src: any ModelSource, _ out: String) throws {
        let text = dir + "/calib.txt"
        if !FileManager.default.fileExists(atPath: text) {
            let s = "The quick brown fox jumps over the lazy dog. Invoice number 4711, total due: 128.50 EUR. "
                + "Please reply before the end of the month; questions go to the accounts office on the second floor. "
            try write(Array(String(repeating: s, count: 4).utf8), to: text)
        }
        var o = AffineQuantizeOptions(); o.method = .awq; o.groupSize = 16
        var c = CalibrationOptions(path: text); c.samples = 2; c.seqLen = 16
        o.calibration = c
        _ = try AffineQuantizePass.run(source: src, output: out, options: o, settings: quiet)
    }

    func bytes(_ f: I2QFile, _ c: I2QComponent) -> [UInt8] {
        f.file.withBytes(f.header.dataOffset + c.offset, c.size) { Array($0) }
    }

    /// Same entries (name, scheme, dtype, shape, params, parts, components and their bytes), in the
    /// same order unless `ordered` is false, and the same config.json.
    func assertSameModel(_ a: I2QFile, _ b: I2QFile, _ tag: String, ordered: Bool = true, file: StaticString = #filePath, line: UInt = #line) {
        if ordered {
            XCTAssertEqual(a.entries.map(\.name), b.entries.map(\.name), tag, file: file, line: line)
        } else {
            XCTAssertEqual(a.entries.map(\.name).sorted(), b.entries.map(\.name).sorted(), tag, file: file, line: line)
        }
        for x in a.entries {
            guard let y = entry(b, x.name) else { continue }
            let t = "\(tag): \(x.name)"
            XCTAssertEqual(x.scheme, y.scheme, t, file: file, line: line)
            XCTAssertEqual(x.dtype, y.dtype, t, file: file, line: line)
            XCTAssertEqual(x.shape, y.shape, t, file: file, line: line)
            XCTAssertEqual(x.parts, y.parts, t, file: file, line: line)
            XCTAssertEqual(x.params.map { "\($0.0)=\($0.1)" }, y.params.map { "\($0.0)=\($0.1)" }, t, file: file, line: line)
            XCTAssertEqual(x.components.map { "\($0.role) \($0.dtype.rawValue) \($0.shape)" },
                           y.components.map { "\($0.role) \($0.dtype.rawValue) \($0.shape)" }, t, file: file, line: line)
            for (cx, cy) in zip(x.components, y.components) {
                XCTAssertTrue(bytes(a, cx) == bytes(b, cy), "\(t) \(cx.role) bytes differ", file: file, line: line)
            }
        }
        XCTAssertEqual(a.metadata.file("config.json"), b.metadata.file("config.json"), "\(tag): config.json", file: file, line: line)
        XCTAssertTrue(a.verifyAll().isEmpty && b.verifyAll().isEmpty, tag, file: file, line: line)
    }

    func entry(_ f: I2QFile, _ name: String) -> I2QTensorEntry? { f.entries.first { $0.name == name } }

    /// Two exported directories hold the same files; every tensor is byte for byte the same (name,
    /// dtype, shape, bytes) and every other file (config.json, tokenizer files) is identical. As for
    /// `--to hf` / `hf-bnb`, a weight file's tensor order follows the .i2q's (an un-fused group's parts
    /// at the fused tensor's place), so the safetensors files are compared tensor by tensor.
    func assertSameDirectory(_ a: String, _ b: String, _ tag: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let na = try FileSystem.listDirectory(a).sorted(), nb = try FileSystem.listDirectory(b).sorted()
        XCTAssertEqual(na, nb, tag, file: file, line: line)
        XCTAssertTrue(na.contains("config.json") && na.contains { $0.hasSuffix(".safetensors") }, "\(tag): \(na)", file: file, line: line)
        let ta = try tensorBytes(a), tb = try tensorBytes(b)
        XCTAssertEqual(ta.keys.sorted(), tb.keys.sorted(), tag, file: file, line: line)
        for (k, v) in ta {
            XCTAssertTrue(tb[k]?.bytes == v.bytes && tb[k]?.shape == v.shape && tb[k]?.dtype == v.dtype, "\(tag): \(k)", file: file, line: line)
        }
        for n in na where nb.contains(n) && !n.hasSuffix(".safetensors") && n != "README.md" {  // the model card names its own route
            XCTAssertTrue(try FileSystem.readFile(a + "/" + n) == FileSystem.readFile(b + "/" + n), "\(tag): \(n) differs", file: file, line: line)
        }
    }

    // MARK: - quantize --rtn / --awq on fused models

    /// tiny-idefics2-v4 also has fused tensors that stay float (vision q/k/v with biases, the
    /// perceiver's k/v, the connector's gate/up): they keep their parts through quantize.
    func testFuseThenRTNEqualsRTNThenFuse() throws {
        for model in ["tiny-llama", "tiny-mistral", "tiny-idefics2-v4"] {
            let src = try openModel(fixturesDir + "/" + model)
            let f = dir + "/\(model)-f.i2q", fq = dir + "/\(model)-fq.i2q", q = dir + "/\(model)-q.i2q", qf = dir + "/\(model)-qf.i2q"
            try fuse(src, f)
            try rtn(try openModel(f), fq)
            try rtn(src, q)
            try fuse(try openModel(q), qf)
            let a = try I2QFile(path: fq), b = try I2QFile(path: qf)
            assertSameModel(a, b, model)
            // Not vacuous: the fused groups are affine_int4 entries with their parts.
            let text = model.contains("idefics2") ? "model.text_model." : "model."
            for n in ["layers.0.self_attn.qkv_proj.weight", "layers.1.mlp.gate_up_proj.weight"] {
                let e = try XCTUnwrap(entry(a, text + n), n)
                XCTAssertEqual(e.scheme, I2QSpec.Scheme.affineInt4, n)
                XCTAssertEqual(e.parts.count, n.contains("qkv") ? 3 : 2, n)
            }
            XCTAssertNil(entry(a, text + "layers.0.self_attn.q_proj.weight"))
            if model.contains("idefics2") {
                for n in ["model.vision_model.encoder.layers.1.self_attn.qkv_proj.bias", "model.connector.perceiver_resampler.layers.0.self_attn.kv_proj.weight",
                          "model.connector.modality_projection.gate_up_proj.weight"] {
                    let e = try XCTUnwrap(entry(a, n), n)
                    XCTAssertEqual(e.scheme, I2QSpec.Scheme.plain, n)
                    XCTAssertFalse(e.parts.isEmpty, n)
                }
            }
            XCTAssertEqual(a.provenance?.passes.map(\.name), ["fuse", "quantize"])
        }
    }

    /// `--skip` matching one part of a fused group: fuse → rtn writes that group's parts unfused
    /// (k stays float, q/v int4); rtn → fuse leaves the group unfused (schemes differ). Same
    /// tensors; only their order differs (un-fused parts stand at the fused tensor's place, in part
    /// order q, k, v; the unfused source has safetensors' sorted order k, o, q, v).
    func testSkippingOnePartOfAFusedGroupUnfusesIt() throws {
        let src = try openModel(fixturesDir + "/tiny-llama")
        let f = dir + "/f.i2q", fq = dir + "/fq.i2q", q = dir + "/q.i2q", qf = dir + "/qf.i2q"
        try fuse(src, f)
        try rtn(try openModel(f), fq, skip: ["self_attn.k_proj"])
        try rtn(src, q, skip: ["self_attn.k_proj"])
        try fuse(try openModel(q), qf)
        let a = try I2QFile(path: fq), b = try I2QFile(path: qf)
        assertSameModel(a, b, "skip k_proj", ordered: false)
        XCTAssertNil(entry(a, "model.layers.0.self_attn.qkv_proj.weight"))
        XCTAssertEqual(entry(a, "model.layers.0.self_attn.k_proj.weight")?.scheme, I2QSpec.Scheme.plain)
        XCTAssertEqual(entry(a, "model.layers.0.self_attn.q_proj.weight")?.scheme, I2QSpec.Scheme.affineInt4)
        XCTAssertEqual(entry(a, "model.layers.0.mlp.gate_up_proj.weight")?.scheme, I2QSpec.Scheme.affineInt4)
    }

    /// AWQ on a fused model searches per projection group (q/k/v share the input norm's scales,
    /// gate/up the post-attention norm's) on the unfused view: the same bytes as AWQ then fuse.
    func testFuseThenAWQEqualsAWQThenFuse() throws {
        let src = try openModel(fixturesDir + "/tiny-mistral")
        let f = dir + "/f.i2q", fq = dir + "/fq.i2q", q = dir + "/q.i2q", qf = dir + "/qf.i2q"
        try fuse(src, f)
        try awq(try openModel(f), fq)
        try awq(src, q)
        try fuse(try openModel(q), qf)
        let a = try I2QFile(path: fq), b = try I2QFile(path: qf)
        assertSameModel(a, b, "awq")
        XCTAssertEqual(entry(a, "model.layers.1.self_attn.qkv_proj.weight")?.scheme, I2QSpec.Scheme.affineInt4)
        XCTAssertEqual(entry(a, "model.layers.1.mlp.gate_up_proj.weight")?.scheme, I2QSpec.Scheme.affineInt4)
        // Not vacuous: AWQ changed the norms it folded scales into (RTN copies them).
        let r = dir + "/r.i2q"
        try rtn(src, r)
        let rf = try I2QFile(path: r)
        let norm = "model.layers.0.input_layernorm.weight"
        XCTAssertFalse(bytes(a, entry(a, norm)!.components[0]) == bytes(rf, entry(rf, norm)!.components[0]), "AWQ scaled \(norm)")
    }

    // MARK: - export --to hf-awq

    func testHFAWQExportOfFusedModelIsTheUnfusedExport() throws {
        for model in ["tiny-llama", "tiny-mistral", "tiny-idefics2-v4"] {
            let src = try openModel(fixturesDir + "/" + model)
            let q = dir + "/\(model)-q.i2q", qf = dir + "/\(model)-qf.i2q", f = dir + "/\(model)-f.i2q", fq = dir + "/\(model)-fq.i2q"
            try rtn(src, q)
            try fuse(try openModel(q), qf)
            try fuse(src, f)
            try rtn(try openModel(f), fq)
            let want = dir + "/\(model)-hf-awq"
            _ = try AWQExportPass.run(source: try openModel(q), output: want, settings: quiet)
            for (tag, fused) in [("quantize→fuse", qf), ("fuse→quantize", fq)] {
                let out = dir + "/\(model)-\(tag)-hf-awq"
                _ = try AWQExportPass.run(source: try openModel(fused), output: out, settings: quiet)
                try assertSameDirectory(out, want, "\(model) \(tag)")
            }
            // Not vacuous: the export holds AutoAWQ's per-projection tensors.
            let t = try tensorBytes(want)
            let text = model.contains("idefics2") ? "model.text_model." : "model."
            XCTAssertNotNil(t[text + "layers.0.self_attn.k_proj.qweight"])
            XCTAssertNil(t[text + "layers.0.self_attn.qkv_proj.qweight"])
            XCTAssertFalse(t.keys.contains { $0.contains("qkv_proj") || $0.contains("gate_up_proj") || $0.contains("kv_proj") && !$0.contains("qkv") })
        }
    }

    /// --fused-names (vLLM-style): `qkv_proj`/`gate_up_proj` as one AutoAWQ GEMM linear each: the
    /// parts' qweight/qzeros ([in, out/8] int32) and scales ([in/G, out] f16) side by side along
    /// `out` (every part's rows are a multiple of 8, so no word mixes two parts); the rest as unfused.
    func testHFAWQFusedNamesConcatenatesThePartsAlongOut() throws {
        let src = try openModel(fixturesDir + "/tiny-mistral")
        let q = dir + "/q.i2q", qf = dir + "/qf.i2q"
        try rtn(src, q)
        try fuse(try openModel(q), qf)
        let plain = dir + "/plain", named = dir + "/named"
        _ = try AWQExportPass.run(source: try openModel(q), output: plain, settings: quiet)
        _ = try AWQExportPass.run(source: try openModel(qf), output: named, settings: quiet, fusedNames: true)
        let p = try tensorBytes(plain), n = try tensorBytes(named)
        var expected = Set(p.keys)
        for l in 0..<2 {
            for (fused, parts) in [("self_attn.qkv_proj", ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"]),
                                   ("mlp.gate_up_proj", ["mlp.gate_proj", "mlp.up_proj"])] {
                for suffix in ["qweight", "qzeros", "scales"] {
                    let pre = "model.layers.\(l)."
                    let ps = try parts.map { try XCTUnwrap(p[pre + $0 + "." + suffix]) }
                    let got = try XCTUnwrap(n[pre + fused + "." + suffix], pre + fused + "." + suffix)
                    let rows = ps[0].shape[0]
                    XCTAssertEqual(got.dtype, ps[0].dtype)
                    XCTAssertEqual(got.shape, [rows, ps.reduce(0) { $0 + $1.shape[1] }])
                    var cat: [UInt8] = []  // row r: every part's row r, in part order
                    for r in 0..<rows {
                        for t in ps {
                            let rb = t.bytes.count / rows
                            cat += t.bytes[(r * rb)..<((r + 1) * rb)]
                        }
                    }
                    XCTAssertTrue(got.bytes == cat, "\(pre)\(fused).\(suffix)")
                    for x in parts { expected.remove(pre + x + "." + suffix) }
                    expected.insert(pre + fused + "." + suffix)
                }
            }
        }
        XCTAssertEqual(Set(n.keys), expected)
        for k in expected where p[k] != nil { XCTAssertTrue(n[k]!.bytes == p[k]!.bytes, k) }
        XCTAssertEqual(try FileSystem.readFile(named + "/config.json"), try FileSystem.readFile(plain + "/config.json"))
    }

    // MARK: - export --to gguf

    /// The fused file is named like the source directory, so general.name (from the file or
    /// directory name when config.json has no `_name_or_path`) is the same.
    func testGGUFExportOfFusedModelIsTheUnfusedExport() throws {
        for (model, type) in [("tiny-mistral", GGUFExportType.q8_0), ("tiny-mistral", .f16), ("tiny-idefics2-v5", .f32)] {
            let src = try openModel(fixturesDir + "/" + model)
            let sub = dir + "/\(model)-\(type.rawValue)"
            try FileSystem.makeDirectory(sub)
            let f = sub + "/\(model).i2q"
            try fuse(src, f)
            let fused = try openModel(f)
            XCTAssertTrue((fused as? I2QFile)?.entries.contains { $0.name.hasSuffix("self_attn.qkv_proj.weight") } ?? false)
            let a = sub + "/fused.gguf", b = sub + "/unfused.gguf"
            _ = try GGUFExportPass(source: fused, output: a, type: type, settings: quiet).run()
            _ = try GGUFExportPass(source: src, output: b, type: type, settings: quiet).run()
            XCTAssertTrue(try FileSystem.readFile(a) == FileSystem.readFile(b), "\(model) \(type.rawValue): GGUF bytes differ")
        }
    }
}
