import XCTest
import I2QCore
import I2QFormats
import I2QQuant
import I2QTestSupport
import I2QPasses
@testable import I2QRuntime

/// The runtime on `ggml` entries holding llama.cpp's bytes (ggml_quantize_chunk, llama-cpp-python
/// 0.3.36). References (Tests/Fixtures/ggml-blocks, scripts/fixtures/make_ggml_block_fixtures.py):
/// gguf-py's `quants.dequantize` values and transformers' float32 logits on those dequantized weights.
final class GGMLRuntimeTests: XCTestCase {
    var dir = ""
    // These references are transformers' F.linear on dequantized weights: float32 activations
    // (the default, llama.cpp's 8-bit activation rounding, is tested by GGMLActivationTests).
    override func setUpWithError() throws { dir = try makeTempDir("ggmlrt"); GGMLGemv.activations = .float32 }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir); GGMLGemv.activations = .llamaCpp }

    func write(_ model: String, _ fixture: String) throws -> (String, GGMLBlocksFixture) {
        let fx = try GGMLBlocksFixture(fixture)
        let out = dir + "/\(fixture).i2q"
        try fx.writeModel(try openModel(model), configPath: model + "/config.json", to: out)
        return (out, fx)
    }

    /// Prefill logits of `ids`, then the same ids decoded one at a time (m = 1: the GEMV path);
    /// returns (prefill [T, vocab], decode [T, vocab]).
    func prefillAndDecode(_ d: TextDecoder, _ ids: [Int]) throws -> ([Float], [Float]) {
        let pre = try d.logits(try d.forward(embeddings: try d.embed(ids), cache: d.makeCache(capacity: 64)), rows: 0..<ids.count)
        let cache = try d.makeCache(capacity: 64)
        var dec: [Float] = []
        for id in ids { dec += try d.logits(try d.forward(embeddings: try d.embed([id]), cache: cache), rows: 0..<1) }
        return (pre, dec)
    }

    /// tiny-llama with every linear and the tied embedding in Q8_0/Q4_0/Q4_1/Q5_0/Q5_1.
    func testTinyLlamaValuesAndLogits() throws {
        let model = fixturesDir + "/tiny-llama"
        let (path, fx) = try write(model, "tiny-llama")
        let f = try I2QFile(path: path)
        XCTAssertTrue(f.verifyAll().isEmpty)
        let dequant = try f32Tensors(fixturesDir + "/ggml-blocks/tiny-llama.dequantized.safetensors")
        XCTAssertEqual(Set(dequant.keys), Set(fx.types.keys))
        XCTAssertEqual(Set(fx.types.values), [.q8_0, .q4_0, .q4_1, .q5_0, .q5_1])
        // Every weight reads as gguf-py's values, bit for bit (whole tensor, and a range across rows).
        for e in f.entries where e.scheme == "ggml" {
            let t = try GGMLWeight.sourceTensor(e, file: f)
            var v = [Float](repeating: .nan, count: t.elementCount)
            try v.withUnsafeMutableBytes { try t.read(elements: 0, count: t.elementCount, into: $0.baseAddress!) }
            let ref = try XCTUnwrap(dequant[e.name])
            XCTAssertEqual(v.map(\.bitPattern), ref.map(\.bitPattern), e.name)
            var part = [Float](repeating: .nan, count: 50)
            try part.withUnsafeMutableBytes { try t.read(elements: 13, count: 50, into: $0.baseAddress!) }
            XCTAssertEqual(part.map(\.bitPattern), ref[13..<63].map(\.bitPattern), e.name)
        }
        let d = try TextDecoder(source: f)
        XCTAssertNotNil(d.layers[0].mlp.down.ggml)
        let expected = fixturesDir + "/ggml-blocks/tiny-llama.expected.safetensors"
        let ids = try i64Tensor(expected, "input_ids"), ref = try XCTUnwrap(try f32Tensors(expected)["logits"])
        let (pre, dec) = try prefillAndDecode(d, ids)
        let std = standardDeviation(ref)
        print("tiny-llama ggml: prefill vs transformers max|Δ|/std \(maxDiff(pre, ref) / std), decode vs prefill \(maxDiff(dec, pre) / std)")
        XCTAssertLessThanOrEqual(maxDiff(pre, ref), 1e-4 * std)
        XCTAssertLessThanOrEqual(maxDiff(dec, pre), 1e-5 * std)
        // The float32 model holding gguf-py's dequantized weights computes the same bits, decode and prefill.
        let plainPath = dir + "/plain.i2q"
        try fx.writeModel(try openModel(model), configPath: model + "/config.json", to: plainPath, plainValues: dequant)
        let p = try TextDecoder(source: try I2QFile(path: plainPath))
        XCTAssertNil(p.layers[0].mlp.down.ggml)
        let (ppre, pdec) = try prefillAndDecode(p, ids)
        XCTAssertEqual(dec.map(\.bitPattern), pdec.map(\.bitPattern))
        XCTAssertEqual(pre.map(\.bitPattern), ppre.map(\.bitPattern))
    }

    /// tiny-mistral (bf16 source) with Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 weights, Q4_1 tied embedding.
    func testTinyMistralLogits() throws {
        let model = fixturesDir + "/tiny-mistral"
        let (path, _) = try write(model, "tiny-mistral")
        let d = try TextDecoder(source: try I2QFile(path: path))
        let expected = fixturesDir + "/ggml-blocks/tiny-mistral.expected.safetensors"
        let ids = try i64Tensor(expected, "input_ids"), ref = try XCTUnwrap(try f32Tensors(expected)["logits"])
        let (pre, dec) = try prefillAndDecode(d, ids)
        let std = standardDeviation(ref)
        print("tiny-mistral ggml: prefill vs transformers max|Δ|/std \(maxDiff(pre, ref) / std), decode vs prefill \(maxDiff(dec, pre) / std)")
        XCTAssertLessThanOrEqual(maxDiff(pre, ref), 1e-4 * std)
        XCTAssertLessThanOrEqual(maxDiff(dec, pre), 1e-5 * std)
    }

    /// `i2q fuse` on ggml entries: groups of one type fuse (rows stacked; the fused model computes the
    /// unfused model's bits), groups of mixed types stay unfused and say why.
    func testFusedGroups() throws {
        let (path, _) = try write(fixturesDir + "/tiny-llama", "tiny-llama")
        let fusedPath = dir + "/fused.i2q"
        var s = OutputSettings(); s.showProgress = false
        let r = try FusePass.run(source: try I2QFile(path: path), output: fusedPath, options: FuseOptions(), settings: s)
        XCTAssertEqual(Set(r.fused.map(\.fused)), ["model.layers.1.self_attn.qkv_proj.weight", "model.layers.1.mlp.gate_up_proj.weight"])
        let left = Dictionary(uniqueKeysWithValues: r.leftUnfused.map { ($0.group.fused, $0.reason) })
        XCTAssertEqual(left["model.layers.0.self_attn.qkv_proj.weight"]?.contains("their ggml types differ (Q8_0, Q4_0, Q4_1)"), true, "\(left)")
        XCTAssertEqual(left["model.layers.0.mlp.gate_up_proj.weight"]?.contains("their ggml types differ (Q5_1, Q8_0)"), true, "\(left)")
        let ff = try I2QFile(path: fusedPath)
        let qkv = try XCTUnwrap(ff.entries.first { $0.name == "model.layers.1.self_attn.qkv_proj.weight" })
        XCTAssertEqual(qkv.scheme, "ggml")
        XCTAssertEqual(qkv.shape, [48, 32])
        XCTAssertEqual(qkv.components[0].shape, [48, 24])  // Q5_1: 24 bytes per 32 values
        let fused = try TextDecoder(source: ff), plain = try TextDecoder(source: try I2QFile(path: path))
        let ids = try i64Tensor(fixturesDir + "/ggml-blocks/tiny-llama.expected.safetensors", "input_ids")
        let (fp, fd) = try prefillAndDecode(fused, ids), (pp, pd) = try prefillAndDecode(plain, ids)
        XCTAssertEqual(fp.map(\.bitPattern), pp.map(\.bitPattern))
        XCTAssertEqual(fd.map(\.bitPattern), pd.map(\.bitPattern))
    }

    /// A damaged or malformed ggml entry is an error naming the file and tensor, at load.
    func testMalformedEntryIsNamed() throws {
        let (path, _) = try write(fixturesDir + "/tiny-llama", "tiny-llama")
        // Rewrite the file with one entry's type param changed to a type whose rows are a different size.
        let f = try I2QFile(path: path)
        let bad = dir + "/bad.i2q"
        let w = try I2QWriter(path: bad)
        for e in f.entries {
            let c = e.components[0]
            let bytes = f.file.copyBytes(f.header.dataOffset + c.offset, c.size)
            try w.beginTensor(name: e.name, scheme: e.scheme, dtype: e.dtype, shape: e.shape,
                              params: e.name == "model.layers.0.mlp.down_proj.weight" ? [("ggml_type", .string("Q8_0"))] : e.params)
            try w.beginComponent(role: c.role, dtype: c.dtype, shape: c.shape)
            try bytes.withUnsafeBytes { try w.append($0) }
            try w.endComponent()
            try w.endTensor()
        }
        try w.finish(metadata: f.metadata)
        assertThrowsMentioning([bad, "model.layers.0.mlp.down_proj.weight", "expected U8 [32, 68]"]) {
            _ = try TextDecoder(source: try I2QFile(path: bad))
        }
    }

    /// Tiny Idefics2 with every 2-D weight of width 32 in a 32-block type (vision tower, position
    /// embedding, perceiver, connector, text, lm_head): the golden prompt + image against transformers
    /// on the dequantized weights; the last 4 positions decoded one at a time against the same logits.
    func testTinyIdefics2() throws {
        let model = fixturesDir + "/tiny-idefics2-v5"
        let (path, fx) = try write(model, "tiny-idefics2")
        XCTAssertEqual(fx.types.count, 38)
        XCTAssertTrue(fx.types.keys.contains("model.vision_model.encoder.layers.1.mlp.fc2.weight"))
        XCTAssertTrue(fx.types.keys.contains("model.connector.perceiver_resampler.layers.0.self_attn.k_proj.weight"))
        let m = try Idefics2Model(source: try I2QFile(path: path))
        let g = try SafetensorsFile(path: fixturesDir + "/golden/tiny-idefics2.safetensors")
        let shape = g.info("pixel_values")!.shape  // [1, 1, 3, H, W]
        let pixels = floats(g, "pixel_values"), mask = ints(g, "pixel_attention_mask").map { $0 != 0 }
        let ids = ints(g, "input_ids")
        let emb = try m.embeddings(ids: ids, images: [.init(pixels: pixels, mask: mask, height: shape[3], width: shape[4])])
        let logits = try m.text.logits(try m.text.forward(embeddings: emb, cache: try m.text.makeCache(capacity: 64)), rows: 0..<ids.count)
        let x = try SafetensorsFile(path: fixturesDir + "/ggml-blocks/tiny-idefics2.expected.safetensors")
        let want = floats(x, "logits_last4"), v = m.text.config.vocabSize, t = ids.count
        let last4 = Array(logits[((t - 4) * v)...])
        let argmax = (0..<t).map { r in (0..<v).max { logits[r * v + $0] < logits[r * v + $1] }! }
        XCTAssertEqual(argmax, ints(x, "logits_argmax"))
        let std = standardDeviation(want)
        // Decode: the prompt but its last 4 positions prefilled, then those 4 one at a time (m = 1).
        let h = m.text.config.hiddenSize
        let cache = try m.text.makeCache(capacity: 64)
        _ = try m.text.forward(embeddings: Array(emb[..<((t - 4) * h)]), cache: cache)
        var dec: [Float] = []
        for r in (t - 4)..<t {
            dec += try m.text.logits(try m.text.forward(embeddings: Array(emb[(r * h)..<((r + 1) * h)]), cache: cache), rows: 0..<1)
        }
        print("tiny-idefics2 ggml: prefill vs transformers max|Δ|/std \(maxDiff(last4, want) / std), decode vs prefill \(maxDiff(dec, last4) / std)")
        XCTAssertLessThanOrEqual(maxDiff(last4, want), 1e-4 * std)
        XCTAssertLessThanOrEqual(maxDiff(dec, last4), 1e-5 * std)
    }

    /// SmolLM2 with two whole layers and three more down_proj weights in ggml types (K-quants where
    /// 256 divides the width, llama.cpp's fallbacks elsewhere); the rest float32.
    func testSmolLM2Logits() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let model = ProcessInfo.processInfo.environment["I2Q_SMOLLM2"] ?? root + "/.cache/smollm2/SmolLM2-135M-Instruct-f32"
        guard FileManager.default.fileExists(atPath: model + "/model.safetensors") else {
            return XCTFail("SmolLM2 is not at \(model): run `bash scripts/get_smollm2.sh` or set I2Q_SMOLLM2")
        }
        let (path, fx) = try write(model, "smollm2")
        XCTAssertEqual(Set(fx.types.values), [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K])
        let d = try TextDecoder(source: try I2QFile(path: path))
        let expected = fixturesDir + "/ggml-blocks/smollm2.expected.safetensors"
        let ids = try i64Tensor(expected, "input_ids"), ref = try XCTUnwrap(try f32Tensors(expected)["logits"])
        let (pre, dec) = try prefillAndDecode(d, ids)
        let std = standardDeviation(ref)
        // For scale: the float32 model's own decode-vs-prefill gap (the same float GEMV vs sgemm).
        let (fpre, fdec) = try prefillAndDecode(try TextDecoder(source: try openModel(model)), ids)
        print("SmolLM2 ggml: prefill vs transformers max|Δ|/std \(maxDiff(pre, ref) / std), decode vs prefill \(maxDiff(dec, pre) / std); float32 model decode vs prefill \(maxDiff(fdec, fpre) / std)")
        XCTAssertLessThanOrEqual(maxDiff(pre, ref), 1e-4 * std)
        // 30 layers compound the float32 summation-order differences (measured 1.0e-5·std).
        XCTAssertLessThanOrEqual(maxDiff(dec, pre), 5e-5 * std)
    }
}
