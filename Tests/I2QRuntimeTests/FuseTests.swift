import XCTest
import I2QCore
import I2QFormats
import I2QQuant
import I2QTestSupport
@testable import I2QPasses
@testable import I2QRuntime

/// `i2q fuse` (FusePass) and the runtime on fused weights (FusedWeights.swift): fused models give
/// the unfused model's logits (f32: max|Δ| ≤ 1e-6·std; 4-bit: identical dequantized weights, logits
/// within float rounding), the transformers goldens still hold, the passes commute (cast→fuse,
/// fuse→cast, quantize→fuse, fuse→quantize), and export un-fuses byte for byte.
final class FuseTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try makeTempDir("fuse") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    var quiet: OutputSettings { var s = OutputSettings(); s.showProgress = false; return s }

    @discardableResult
    func fuse(_ src: any ModelSource, _ out: String, only: FuseSelection = .all) throws -> FuseReport {
        var o = FuseOptions(); o.only = only
        return try FusePass.run(source: src, output: out, options: o, settings: quiet)
    }

    func quantize(_ src: any ModelSource, _ out: String, _ type: FourBitType = .nf4, dq: Bool = true, block: Int = 64) throws {
        var o = QuantizeOptions(); o.type = type; o.doubleQuant = dq; o.blockSize = block
        _ = try QuantizePass.run(source: src, output: out, options: o, settings: quiet)
    }

    /// Logits of the prompt (prefill, every position) then of 3 greedy decode steps.
    func run(_ source: any ModelSource, _ ids: [Int]) throws -> [Float] {
        let dec = try TextDecoder(source: source)
        let cache = try dec.makeCache(capacity: ids.count + 8)
        var logits = try dec.logits(try dec.forward(embeddings: try dec.embed(ids), cache: cache), rows: 0..<ids.count)
        var next = argmax(Array(logits.suffix(dec.config.vocabSize)))
        for _ in 0..<3 {
            let l = try dec.logits(try dec.forward(embeddings: try dec.embed([next]), cache: cache), rows: 0..<1)
            logits += l
            next = argmax(l)
        }
        return logits
    }

    func argmax(_ v: [Float]) -> Int { v.indices.max { v[$0] < v[$1] }! }

    /// All parts' values (dequantized for 4-bit) of every projection group, by name.
    func projectionValues(_ source: any ModelSource) throws -> [String: [Float]] {
        let dec = try TextDecoder(source: source)
        var out: [String: [Float]] = [:]
        for (i, l) in dec.layers.enumerated() {
            for (n, w) in [("q", l.attention.q), ("k", l.attention.k), ("v", l.attention.v), ("gate", l.mlp.gate), ("up", l.mlp.up)] {
                var v = [Float](repeating: 0, count: w.count)
                try v.withUnsafeMutableBufferPointer { try w.rows(0, w.shape[0], into: $0.baseAddress!) }
                out["\(i).\(n)"] = v
            }
        }
        return out
    }

    func entry(_ f: I2QFile, _ name: String) -> I2QTensorEntry? { f.entries.first { $0.name == name } }

    // MARK: - f32 / 16-bit

    func testFusedF32TextModelsGiveTheUnfusedLogits() throws {
        for model in ["tiny-llama", "tiny-mistral"] {
            let src = try openModel(fixturesDir + "/" + model)
            let out = dir + "/\(model)-fused.i2q"
            let r = try fuse(src, out)
            XCTAssertTrue(r.leftUnfused.isEmpty, "\(r.leftUnfused)")
            let f = try I2QFile(path: out)
            XCTAssertTrue(f.verifyAll().isEmpty)
            let qkv = try XCTUnwrap(entry(f, "model.layers.0.self_attn.qkv_proj.weight"))
            let c = src.config.textConfig
            XCTAssertEqual(qkv.parts, [I2QPart(name: "model.layers.0.self_attn.q_proj.weight", start: 0, length: c.numAttentionHeads * c.headDim),
                                       I2QPart(name: "model.layers.0.self_attn.k_proj.weight", start: c.numAttentionHeads * c.headDim, length: c.numKeyValueHeads * c.headDim),
                                       I2QPart(name: "model.layers.0.self_attn.v_proj.weight", start: (c.numAttentionHeads + c.numKeyValueHeads) * c.headDim, length: c.numKeyValueHeads * c.headDim)])
            XCTAssertNotNil(entry(f, "model.layers.1.mlp.gate_up_proj.weight"))
            XCTAssertNil(entry(f, "model.layers.0.self_attn.q_proj.weight"))
            XCTAssertEqual(f.provenance?.passes.last?.name, "fuse")
            let dec = try TextDecoder(source: f)
            XCTAssertTrue(dec.layers.allSatisfy { $0.attention.qkv.isFused && $0.mlp.gateUp.isFused })

            let g = try loadTextGolden(fixturesDir + "/\(model)/golden.safetensors")
            let a = try run(src, g.ids), b = try run(f, g.ids)
            let std = standardDeviation(a)
            print("\(model) fused f32: max|Δ| \(maxDiff(a, b)), std \(std)")
            XCTAssertLessThanOrEqual(maxDiff(a, b), 1e-6 * std, model)
            // And against transformers, as the unfused model is tested.
            let prompt = Array(b.prefix(g.logits.count))
            XCTAssertLessThanOrEqual(maxDiff(prompt, g.logits), 1e-4 * standardDeviation(g.logits), model)
        }
    }

    func testOnlySelectsGroups() throws {
        let src = try openModel(fixturesDir + "/tiny-llama")
        try fuse(src, dir + "/q.i2q", only: .qkv)
        try fuse(src, dir + "/m.i2q", only: .mlp)
        let q = try I2QFile(path: dir + "/q.i2q"), m = try I2QFile(path: dir + "/m.i2q")
        XCTAssertEqual(q.entries.filter { !$0.parts.isEmpty }.map(\.name), ["model.layers.0.self_attn.qkv_proj.weight", "model.layers.1.self_attn.qkv_proj.weight"])
        XCTAssertEqual(m.entries.filter { !$0.parts.isEmpty }.map(\.name), ["model.layers.0.mlp.gate_up_proj.weight", "model.layers.1.mlp.gate_up_proj.weight"])
        // Fusing a fused file again fuses what is left and keeps the rest.
        let r = try fuse(q, dir + "/qm.i2q")
        XCTAssertEqual(r.fused.count, 2)
        XCTAssertEqual(try I2QFile(path: dir + "/qm.i2q").entries.filter { !$0.parts.isEmpty }.count, 4)
    }

    /// Tiny Idefics2 with the golden inputs of Idefics2Tests: vision q/k/v (+ biases) → qkv_proj,
    /// perceiver k/v → kv_proj, gate/up of decoder, perceiver and modality projection → gate_up_proj.
    func testFusedIdefics2GivesTheUnfusedOutputs() throws {
        let src = try openModel(fixturesDir + "/tiny-idefics2-v4")
        let out = dir + "/idefics2-fused.i2q"
        let r = try fuse(src, out)
        XCTAssertTrue(r.leftUnfused.isEmpty)
        let names = Set(r.fused.map(\.fused))
        for n in ["model.vision_model.encoder.layers.1.self_attn.qkv_proj.weight", "model.vision_model.encoder.layers.1.self_attn.qkv_proj.bias",
                  "model.connector.perceiver_resampler.layers.0.self_attn.kv_proj.weight",
                  "model.connector.perceiver_resampler.layers.0.mlp.gate_up_proj.weight",
                  "model.connector.modality_projection.gate_up_proj.weight",
                  "model.text_model.layers.1.self_attn.qkv_proj.weight", "model.text_model.layers.1.mlp.gate_up_proj.weight"] {
            XCTAssertTrue(names.contains(n), n)
        }
        let g = try SafetensorsFile(path: fixturesDir + "/golden/tiny-idefics2.safetensors")
        let shape = g.info("pixel_values")!.shape
        let H = shape[3], W = shape[4]
        let pixels = floats(g, "pixel_values"), mask = ints(g, "pixel_attention_mask").map { $0 != 0 }
        let ids = ints(g, "input_ids")
        func outputs(_ s: any ModelSource) throws -> (vision: [Float], connector: [Float], logits: [Float]) {
            let m = try Idefics2Model(source: s)
            let (hidden, pm) = try m.vision.encode(pixels: pixels, mask: mask, height: H, width: W)
            let feats = try m.connector(hidden, patchMask: pm)
            let emb = try m.embeddings(ids: ids, images: [.init(pixels: pixels, mask: mask, height: H, width: W)])
            let logits = try m.text.logits(try m.text.forward(embeddings: emb, cache: try m.text.makeCache(capacity: 64)), rows: 0..<ids.count)
            return (hidden, feats, logits)
        }
        let fm = try Idefics2Model(source: try I2QFile(path: out))
        XCTAssertTrue(fm.vision.layers.allSatisfy { $0.qkv.isFused && $0.qkv.fusedBias != nil })
        XCTAssertTrue(fm.connector.layers.allSatisfy { $0.kv.isFused && $0.gateUp.isFused } && fm.connector.projGateUp.isFused)
        let a = try outputs(src), b = try outputs(try I2QFile(path: out))
        for (what, x, y) in [("vision", a.vision, b.vision), ("connector", a.connector, b.connector), ("logits", a.logits, b.logits)] {
            print("idefics2 fused \(what): max|Δ| \(maxDiff(x, y)), std \(standardDeviation(x))")
            XCTAssertLessThanOrEqual(maxDiff(x, y), 1e-6 * standardDeviation(x), what)
        }
        let want = floats(g, "logits")
        XCTAssertLessThanOrEqual(maxDiff(b.logits, want), 1e-4 * standardDeviation(want))
    }

    // MARK: - 4-bit

    /// quantize→fuse and fuse→quantize write the same fused tensors (byte for byte), whose
    /// dequantized parts equal the unfused model's; logits agree to float rounding.
    func testFourBitQuantizeAndFuseCommute() throws {
        for model in ["tiny-llama", "tiny-idefics2-v4"] {
            for (type, dq) in [(FourBitType.nf4, true), (.fp4, false)] {
                let tag = "\(model)-\(type.rawValue)-\(dq)"
                let src = try openModel(fixturesDir + "/" + model)
                let q = dir + "/\(tag)-q.i2q", qf = dir + "/\(tag)-qf.i2q", f = dir + "/\(tag)-f.i2q", fq = dir + "/\(tag)-fq.i2q"
                try quantize(src, q, type, dq: dq)
                let r = try fuse(try openModel(q), qf)
                XCTAssertTrue(r.leftUnfused.isEmpty, "\(tag): \(r.leftUnfused)")
                try fuse(src, f)
                try quantize(try openModel(f), fq, type, dq: dq)
                let a = try I2QFile(path: qf), b = try I2QFile(path: fq)
                XCTAssertTrue(a.verifyAll().isEmpty && b.verifyAll().isEmpty)
                XCTAssertEqual(a.entries.map(\.name), b.entries.map(\.name), tag)
                for (x, y) in zip(a.entries, b.entries) {
                    XCTAssertEqual(x.scheme, y.scheme, x.name)
                    XCTAssertEqual(x.parts, y.parts, x.name)
                    XCTAssertEqual(x.params.map(\.0), y.params.map(\.0), x.name)
                    XCTAssertTrue(zip(x.params, y.params).allSatisfy { $0.1 == $1.1 }, x.name)
                    XCTAssertEqual(x.components.map(\.checksum), y.components.map(\.checksum), "\(tag) \(x.name)")
                }
                if dq {
                    let e = try XCTUnwrap(entry(a, (model == "tiny-llama" ? "model." : "model.text_model.") + "layers.0.self_attn.qkv_proj.weight"))
                    XCTAssertEqual(e.params.map(\.0), ["blocksize", "double_quant", "nested_offset.0", "nested_offset.1", "nested_offset.2"])
                }
                guard model == "tiny-llama" else {
                    // Idefics2: every stage of the fused 4-bit model against the unfused one.
                    let ua = try Idefics2Model(source: try openModel(q)), fa = try Idefics2Model(source: a)
                    XCTAssertTrue(fa.vision.layers.allSatisfy { $0.qkv.isFused } && fa.connector.layers.allSatisfy { $0.kv.isFused })
                    let g = try SafetensorsFile(path: fixturesDir + "/golden/tiny-idefics2.safetensors")
                    let shape = g.info("pixel_values")!.shape
                    let pixels = floats(g, "pixel_values"), mask = ints(g, "pixel_attention_mask").map { $0 != 0 }
                    let (h1, m1) = try ua.vision.encode(pixels: pixels, mask: mask, height: shape[3], width: shape[4])
                    let (h2, _) = try fa.vision.encode(pixels: pixels, mask: mask, height: shape[3], width: shape[4])
                    XCTAssertLessThanOrEqual(maxDiff(h1, h2), 1e-6 * standardDeviation(h1), tag)
                    let c1 = try ua.connector(h1, patchMask: m1), c2 = try fa.connector(h1, patchMask: m1)
                    XCTAssertLessThanOrEqual(maxDiff(c1, c2), 1e-6 * standardDeviation(c1), tag)
                    let ids = ints(g, "input_ids")
                    let l1 = try run(try openModel(q), ids), l2 = try run(a, ids)
                    XCTAssertLessThanOrEqual(maxDiff(l1, l2), 1e-6 * standardDeviation(l1), tag)
                    XCTAssertEqual(l1.map(\.bitPattern), l2.map(\.bitPattern), "\(tag): fused 4-bit prefill differs from unfused")
                    continue
                }
                // Identical dequantized weights, part by part.
                let u = try projectionValues(try openModel(q)), v = try projectionValues(a)
                XCTAssertEqual(u.keys.sorted(), v.keys.sorted())
                for (k, x) in u { XCTAssertTrue(x == v[k]!, "\(tag): \(k) dequantizes differently") }
                let g = try loadTextGolden(fixturesDir + "/tiny-llama/golden.safetensors")
                let l1 = try run(try openModel(q), g.ids), l2 = try run(a, g.ids)
                print("\(tag) fused vs unfused: logits max|Δ| \(maxDiff(l1, l2)), std \(standardDeviation(l1))")
                XCTAssertLessThanOrEqual(maxDiff(l1, l2), 1e-6 * standardDeviation(l1), tag)
                // Fused 4-bit prefill multiplies each part with the unfused tiling (QuantGemv.tiledLinear): the same bits.
                XCTAssertEqual(l1.map(\.bitPattern), l2.map(\.bitPattern), "\(tag): fused 4-bit prefill differs from unfused")
            }
        }
    }

    /// affine_int4 (AWQ-style per-row groups, `quantize --rtn`): quantize→fuse concatenates rows of
    /// qweight/scales/zeros; the parts dequantize exactly as the unfused tensors, logits identical.
    func testAffineInt4Fuses() throws {
        let src = try openModel(fixturesDir + "/tiny-llama")
        let q = dir + "/rtn.i2q", qf = dir + "/rtn-f.i2q"
        var o = AffineQuantizeOptions(); o.method = .rtn; o.groupSize = 16
        _ = try AffineQuantizePass.run(source: src, output: q, options: o, settings: quiet)
        let r = try fuse(try openModel(q), qf)
        XCTAssertTrue(r.leftUnfused.isEmpty, "\(r.leftUnfused)")
        let f = try I2QFile(path: qf)
        let e = try XCTUnwrap(entry(f, "model.layers.0.self_attn.qkv_proj.weight"))
        XCTAssertEqual(e.scheme, I2QSpec.Scheme.affineInt4)
        XCTAssertEqual(e.component("qweight")?.shape, [48, 16])
        XCTAssertEqual(e.component("scales")?.shape, [48, 2])
        let dec = try TextDecoder(source: f)
        XCTAssertTrue(dec.layers.allSatisfy { $0.attention.qkv.isFused && $0.mlp.gateUp.isFused })
        let u = try projectionValues(try openModel(q)), v = try projectionValues(f)
        for (k, x) in u { XCTAssertTrue(x == v[k]!, "rtn: \(k) dequantizes differently") }
        let g = try loadTextGolden(fixturesDir + "/tiny-llama/golden.safetensors")
        let l1 = try run(try openModel(q), g.ids), l2 = try run(f, g.ids)
        XCTAssertLessThanOrEqual(maxDiff(l1, l2), 1e-6 * standardDeviation(l1))
    }

    /// fuse → quantize --rtn: the fused float groups become fused affine_int4 entries (with their
    /// parts) that the runtime loads and runs fused, with the unfused rtn model's values and logits.
    func testFuseThenAffineInt4RunsFused() throws {
        let src = try openModel(fixturesDir + "/tiny-llama")
        let f = dir + "/f.i2q", fq = dir + "/fq.i2q", q = dir + "/q.i2q"
        try fuse(src, f)
        var o = AffineQuantizeOptions(); o.method = .rtn; o.groupSize = 16
        _ = try AffineQuantizePass.run(source: try openModel(f), output: fq, options: o, settings: quiet)
        _ = try AffineQuantizePass.run(source: src, output: q, options: o, settings: quiet)
        let a = try I2QFile(path: fq)
        let e = try XCTUnwrap(entry(a, "model.layers.0.self_attn.qkv_proj.weight"))
        XCTAssertEqual(e.scheme, I2QSpec.Scheme.affineInt4)
        XCTAssertEqual(e.parts.map(\.name), ["q", "k", "v"].map { "model.layers.0.self_attn.\($0)_proj.weight" })
        let dec = try TextDecoder(source: a)
        XCTAssertTrue(dec.layers.allSatisfy { $0.attention.qkv.isFused && $0.mlp.gateUp.isFused })
        let u = try projectionValues(try openModel(q)), v = try projectionValues(a)
        for (k, x) in u { XCTAssertTrue(x == v[k]!, "fuse→rtn: \(k) dequantizes differently") }
        let g = try loadTextGolden(fixturesDir + "/tiny-llama/golden.safetensors")
        let l1 = try run(try openModel(q), g.ids), l2 = try run(a, g.ids)
        XCTAssertLessThanOrEqual(maxDiff(l1, l2), 1e-6 * standardDeviation(l1))
    }

    /// Blocks that would straddle two parts: quantize→fuse leaves the group unfused (and says why),
    /// fuse→quantize un-fuses it; both give the same tensors.
    func testUnalignedFourBitGroupsStayUnfused() throws {
        let src = try openModel(fixturesDir + "/tiny-llama")   // k_proj/v_proj [8, 32]: 256 values
        let q = dir + "/q.i2q", qf = dir + "/qf.i2q", f = dir + "/f.i2q", fq = dir + "/fq.i2q"
        try quantize(src, q, block: 512)
        let r = try fuse(try openModel(q), qf)
        XCTAssertEqual(r.leftUnfused.map(\.group.fused), ["model.layers.0.self_attn.qkv_proj.weight", "model.layers.1.self_attn.qkv_proj.weight"])
        XCTAssertTrue(r.leftUnfused[0].reason.contains("not a multiple of the block size 512"), r.leftUnfused[0].reason)
        XCTAssertEqual(r.fused.count, 2)  // gate_up: [64, 32] = 2048 values each
        try fuse(src, f)
        try quantize(try openModel(f), fq, block: 512)
        let a = try I2QFile(path: qf), b = try I2QFile(path: fq)
        XCTAssertEqual(Set(a.entries.map(\.name)), Set(b.entries.map(\.name)))
        for x in a.entries {
            let y = try XCTUnwrap(entry(b, x.name))
            XCTAssertEqual(x.components.map(\.checksum), y.components.map(\.checksum), x.name)
            XCTAssertEqual(x.parts, y.parts, x.name)
        }
        XCTAssertNil(entry(b, "model.layers.0.self_attn.qkv_proj.weight"))
        XCTAssertNotNil(entry(b, "model.layers.0.mlp.gate_up_proj.weight"))
    }

    // MARK: - Other passes and exports

    /// HF → fuse → export hf: every tensor byte-identical to the unfused source; the directory equals
    /// the one exported from the unfused model (config.json included). cast→fuse and fuse→cast agree.
    func testExportUnfusesByteForByte() throws {
        for model in ["tiny-idefics2-v4", "tiny-mistral"] {
            let src = try openModel(fixturesDir + "/" + model)
            let fused = dir + "/\(model).i2q", plain = dir + "/\(model)-plain.i2q"
            try fuse(src, fused)
            _ = try CastPass.make(source: src, output: plain, dtype: .f32, settings: quiet).run()
            var s = quiet; s.format = .safetensors
            let e1 = dir + "/\(model)-from-fused", e2 = dir + "/\(model)-from-plain"
            _ = try ExportPass.makeHF(source: try openModel(fused), output: e1, settings: s).run()
            _ = try ExportPass.makeHF(source: try openModel(plain), output: e2, settings: s).run()
            let want = try tensorBytes(fixturesDir + "/" + model), got = try tensorBytes(e1)
            XCTAssertEqual(want.keys.sorted(), got.keys.sorted(), model)
            for (k, v) in want { XCTAssertTrue(got[k]?.bytes == v.bytes && got[k]?.shape == v.shape && got[k]?.dtype == v.dtype, "\(model): \(k)") }
            // The other files are equal byte for byte (the weight files hold the same tensors; their
            // order inside the file follows the fused file's, q/k/v at the place of the first part).
            for n in try FileSystem.listDirectory(e2) where !n.hasSuffix(".safetensors") && n != "config.json" && n != "README.md" {  // README.md (the model card) names its own route: not model data
                XCTAssertTrue(try FileSystem.readFile(e1 + "/" + n) == FileSystem.readFile(e2 + "/" + n), "\(model): \(n)")
            }
            XCTAssertEqual(try FileSystem.listDirectory(e1).sorted(), try FileSystem.listDirectory(e2).sorted())
            XCTAssertTrue(try FileSystem.readFile(e1 + "/config.json") == FileSystem.readFile(fixturesDir + "/\(model)/config.json"), model)

            // --fused-names keeps the fused tensors (vLLM-style names).
            let e3 = dir + "/\(model)-fused-names"
            _ = try ExportPass.makeHF(source: try openModel(fused), output: e3, settings: s, fusedNames: true).run()
            let names = try tensorBytes(e3).keys
            XCTAssertTrue(names.contains { $0.hasSuffix("self_attn.qkv_proj.weight") } && names.contains { $0.hasSuffix("mlp.gate_up_proj.weight") })
            XCTAssertFalse(names.contains { $0.hasSuffix("self_attn.q_proj.weight") && !$0.contains("perceiver") })  // the perceiver keeps q

            // fuse→cast keeps the fusion; cast→fuse gives the same file content.
            let fc = dir + "/\(model)-fc.i2q", c = dir + "/\(model)-c.i2q", cf = dir + "/\(model)-cf.i2q"
            _ = try CastPass.make(source: try openModel(fused), output: fc, dtype: .bf16, settings: quiet).run()
            _ = try CastPass.make(source: src, output: c, dtype: .bf16, settings: quiet).run()
            try fuse(try openModel(c), cf)
            let x = try I2QFile(path: fc), y = try I2QFile(path: cf)
            XCTAssertEqual(x.entries.map(\.name), y.entries.map(\.name))
            for (p, q) in zip(x.entries, y.entries) {
                XCTAssertEqual(p.parts, q.parts, p.name)
                XCTAssertEqual(p.components.map(\.checksum), q.components.map(\.checksum), p.name)
            }
            XCTAssertFalse(x.entries.filter { !$0.parts.isEmpty }.isEmpty)
            // A bf16 fused model runs like the bf16 unfused one (decode reads bf16 in place).
            if model == "tiny-mistral" {
                let g = try loadTextGolden(fixturesDir + "/tiny-mistral/golden.safetensors")
                let l1 = try run(try openModel(c), g.ids), l2 = try run(x, g.ids)
                XCTAssertLessThanOrEqual(maxDiff(l1, l2), 1e-6 * standardDeviation(l1))
            }
        }
    }

    /// quantize→fuse→export hf-bnb equals quantize→export hf-bnb: every tensor and file.
    func testBnbExportUnfusesByteForByte() throws {
        for dq in [true, false] {
            let src = try openModel(fixturesDir + "/tiny-idefics2-v4")
            let q = dir + "/q\(dq).i2q", qf = dir + "/qf\(dq).i2q"
            try quantize(src, q, dq: dq)
            try fuse(try openModel(q), qf)
            var s = quiet; s.format = .safetensors
            let e1 = dir + "/bnb-plain\(dq)", e2 = dir + "/bnb-fused\(dq)"
            _ = try BnbExportPass.run(source: try openModel(q), output: e1, settings: s)
            _ = try BnbExportPass.run(source: try openModel(qf), output: e2, settings: s)
            XCTAssertEqual(try FileSystem.listDirectory(e1).sorted(), try FileSystem.listDirectory(e2).sorted())
            // Every tensor byte for byte (the weight file's tensor order follows the fused file's);
            // config.json (quantization_config) and the other files identical.
            let a = try tensorBytes(e1), b = try tensorBytes(e2)
            XCTAssertEqual(a.keys.sorted(), b.keys.sorted())
            for (k, v) in a { XCTAssertTrue(b[k]?.bytes == v.bytes && b[k]?.shape == v.shape && b[k]?.dtype == v.dtype, "dq=\(dq): \(k)") }
            for n in try FileSystem.listDirectory(e1) where !n.hasSuffix(".safetensors") && n != "README.md" {  // README.md (the model card) names its own route: not model data
                XCTAssertTrue(try FileSystem.readFile(e1 + "/" + n) == FileSystem.readFile(e2 + "/" + n), "dq=\(dq): \(n)")
            }
            let e3 = dir + "/bnb-fused-names\(dq)"
            if dq {
                assertThrowsMentioning(["qkv_proj", "nested offset"]) { _ = try BnbExportPass.run(source: try openModel(qf), output: e3, settings: s, fusedNames: true) }
            } else {
                _ = try BnbExportPass.run(source: try openModel(qf), output: e3, settings: s, fusedNames: true)
                XCTAssertTrue(try tensorBytes(e3).keys.contains("model.text_model.layers.0.self_attn.qkv_proj.weight.absmax"))
            }
        }
    }

    // MARK: - Malformed fused entries

    func testMalformedFusedEntriesAreRefused() throws {
        let comp = I2QComponent(role: "data", dtype: .f32, shape: [6, 4], offset: 0, size: 96)
        func e(_ parts: [I2QPart], scheme: String = "plain", params: [(String, I2QParam)] = [], comps: [I2QComponent]? = nil) -> I2QTensorEntry {
            I2QTensorEntry(name: "x.qkv_proj.weight", scheme: scheme, dtype: .f32, shape: [6, 4], params: params, parts: parts, components: comps ?? [comp])
        }
        let ok = try FusedTensors.partEntries(e([I2QPart(name: "a", start: 0, length: 4), I2QPart(name: "b", start: 4, length: 2)]), path: "m.i2q")
        XCTAssertEqual(ok.map(\.shape), [[4, 4], [2, 4]])
        XCTAssertEqual(ok.map { $0.components[0].offset }, [0, 64])
        assertThrowsMentioning(["m.i2q", "x.qkv_proj.weight", "cover 5 of its 6 rows"]) {
            _ = try FusedTensors.partEntries(e([I2QPart(name: "a", start: 0, length: 5)]), path: "m.i2q")
        }
        assertThrowsMentioning(["do not follow"]) {
            _ = try FusedTensors.partEntries(e([I2QPart(name: "a", start: 0, length: 2), I2QPart(name: "b", start: 3, length: 3)]), path: "m.i2q")
        }
        // NF4 parts whose blocks straddle: 2 rows × 4 = 8 values with blocksize 64.
        let nf4 = e([I2QPart(name: "a", start: 0, length: 2), I2QPart(name: "b", start: 2, length: 4)], scheme: "nf4",
                    params: [("blocksize", .int(64))],
                    comps: [I2QComponent(role: "packed", dtype: .u8, shape: [12], size: 12), I2QComponent(role: "absmax", dtype: .f32, shape: [1], size: 4)])
        assertThrowsMentioning(["part a holds 8 values", "block size 64"]) { _ = try FusedTensors.partEntries(nf4, path: "m.i2q") }
        XCTAssertEqual(FusedTensors.fusedName(of: ["p.q_proj.weight", "p.k_proj.weight", "p.v_proj.weight"]), "p.qkv_proj.weight")
        XCTAssertNil(FusedTensors.fusedName(of: ["p.q_proj.weight", "r.k_proj.weight", "p.v_proj.weight"]))
    }

    /// SmolLM2-135M (env I2Q_SMOLLM2): fused f32 logits equal the unfused ones.
    func testSmolLM2FusedLogits() throws {
        let root = URL(fileURLWithPath: fixturesDir).deletingLastPathComponent().deletingLastPathComponent().path
        let path = ProcessInfo.processInfo.environment["I2Q_SMOLLM2"] ?? root + "/.cache/smollm2/SmolLM2-135M-Instruct-f32"
        guard FileSystem.exists(path + "/model.safetensors") else {
            return XCTFail("SmolLM2 is not at \(path): run `bash scripts/get_smollm2.sh` (scripts/test.sh does) or set I2Q_SMOLLM2")
        }
        let src = try openModel(path)
        let out = dir + "/smol-fused.i2q"
        let r = try fuse(src, out)
        XCTAssertEqual(r.fused.count, 2 * src.config.textConfig.numHiddenLayers)
        let ids = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407, 19712, 8182, 2]
        let a = try run(src, ids), b = try run(try I2QFile(path: out), ids)
        print("SmolLM2 fused f32: max|Δ| \(maxDiff(a, b)), std \(standardDeviation(a))")
        XCTAssertLessThanOrEqual(maxDiff(a, b), 1e-6 * standardDeviation(a))
    }
}
