import XCTest
import I2QCore
import I2QFormats
import I2QQuant
import I2QTestSupport
@testable import I2QPasses

/// `quantize --rtn` and `export --to hf-awq` against AutoAWQ's semantics:
/// Tests/Fixtures/awq/tiny-llama-g16.safetensors (scripts/fixtures/awq_make_fixtures.py, torch) holds, per
/// decoder linear of tiny-llama, AutoAWQ 0.2.9's pseudo_quantize_tensor codes/scales/zeros (fp16
/// scale, the stored form), the .i2q packing, and AutoAWQ's GEMM qweight/qzeros/scales as
/// `WQLinear_GEMM.from_linear` packs them.
final class AWQExportTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try makeTempDir("awq-export") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    var settings: OutputSettings { var s = OutputSettings(); s.showProgress = false; return s }
    let linears = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]

    func component(_ f: I2QFile, _ name: String, _ role: String) -> [UInt8] {
        let e = f.entries.first { $0.name == name }!
        let c = e.component(role)!
        return f.file.withBytes(f.header.dataOffset + c.offset, c.size) { Array($0) }
    }

    func rtn(_ model: String, group: Int, out: String) throws -> PassReport {
        var o = AffineQuantizeOptions()
        o.method = .rtn
        o.groupSize = group
        return try AffineQuantizePass.run(source: try openModel(fixturesDir + "/" + model), output: out, options: o, settings: settings)
    }

    func testRTNMatchesAutoAWQPseudoQuantize() throws {
        let out = dir + "/rtn.i2q"
        let r = try rtn("tiny-llama", group: 16, out: out)
        XCTAssertEqual(r.tensors.filter { $0.to == .u8 }.count, 14)
        let f = try I2QFile(path: out)
        let want = try tensorBytes(fixturesDir + "/awq/tiny-llama-g16.safetensors")
        for l in 0..<2 {
            for lin in linears {
                let x = "model.layers.\(l).\(lin)"
                let e = try XCTUnwrap(f.entries.first { $0.name == x + ".weight" })
                XCTAssertEqual(e.scheme, I2QSpec.Scheme.affineInt4)
                XCTAssertEqual(e.dtype, .f32, "entry dtype: the source's")
                XCTAssertEqual(e.params.first { $0.0 == "group_size" }?.1, .int(16))
                XCTAssertEqual(e.params.first { $0.0 == "pack_order" }?.1, .string("sequential"))
                XCTAssertEqual(component(f, x + ".weight", "qweight"), want[x + ".packed"]!.bytes, "\(x) codes")
                XCTAssertEqual(component(f, x + ".weight", "scales"), want[x + ".scales"]!.bytes, "\(x) scales")
                XCTAssertEqual(component(f, x + ".weight", "zeros"), want[x + ".zeros"]!.bytes, "\(x) zeros")
            }
        }
        // Everything else (embeddings, norms) is copied unchanged.
        let src = try tensorBytes(fixturesDir + "/tiny-llama/model.safetensors")
        for t in f.tensors {
            XCTAssertEqual(try t.withData { Array($0) }, src[t.name]!.bytes, t.name)
        }
        XCTAssertEqual(f.tensors.count + 14, src.count)
    }

    func testGroupSizeThatDoesNotDivideNamesTheTensor() throws {
        // The first tensor in storage order (safetensors sorts names) that does not fit.
        assertThrowsMentioning(["model.layers.0.mlp.down_proj.weight", "--group-size 24", "input dimension 64", "--group-size 64 or 32 or 16"]) {
            _ = try rtn("tiny-llama", group: 24, out: dir + "/x.i2q")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/x.i2q"))
    }

    func testSkipAndComputeDTypeAndDecoderOnly() throws {
        var o = AffineQuantizeOptions()
        o.groupSize = 8
        o.skip = ["mlp.down_proj"]
        o.computeDType = .f16
        let out = dir + "/idefics.i2q"
        _ = try AffineQuantizePass.run(source: try openModel(fixturesDir + "/tiny-idefics2-a"), output: out, options: o, settings: settings)
        let f = try I2QFile(path: out)
        let q = f.entries.filter { $0.scheme == I2QSpec.Scheme.affineInt4 }
        XCTAssertEqual(q.count, 3 * 6, "6 linears per decoder layer (down_proj skipped)")
        XCTAssertTrue(q.allSatisfy { $0.name.hasPrefix("model.text_model.layers.") && $0.dtype == .f16 })
        XCTAssertTrue(f.entries.contains { $0.name.contains("vision_model") && $0.name.hasSuffix("_proj.weight") && $0.scheme == I2QSpec.Scheme.plain })
        XCTAssertTrue(f.entries.contains { $0.name.contains("connector") && $0.scheme == I2QSpec.Scheme.plain })
    }

    /// AutoAWQ's reference unpacking (awq/utils/packing_utils.py `unpack_awq` + `reverse_awq_order`,
    /// rewritten from the spec): the int32 words → [rows, cols] integers, columns in natural order.
    func unpackAWQ(_ words: [UInt8], rows: Int, cols8: Int) -> [Int] {
        let reverse = [0, 4, 1, 5, 2, 6, 3, 7]  // AWQ_REVERSE_ORDER
        var raw = [Int](repeating: 0, count: rows * cols8 * 8)
        for r in 0..<rows {
            for c in 0..<cols8 {
                let o = (r * cols8 + c) * 4
                let w = UInt32(words[o]) | UInt32(words[o + 1]) << 8 | UInt32(words[o + 2]) << 16 | UInt32(words[o + 3]) << 24
                for k in 0..<8 { raw[r * cols8 * 8 + c * 8 + k] = Int((w >> (4 * UInt32(k))) & 15) }  // shifts 0, 4, …, 28; & (2**bits − 1)
            }
        }
        var out = raw
        for r in 0..<rows { for c in 0..<cols8 { for m in 0..<8 { out[r * cols8 * 8 + c * 8 + m] = raw[r * cols8 * 8 + c * 8 + reverse[m]] } } }
        return out
    }

    func testHFAWQExportIsAutoAWQGEMMLayout() throws {
        let q = dir + "/rtn.i2q"
        _ = try rtn("tiny-llama", group: 16, out: q)
        let hf = dir + "/hf-awq"
        _ = try AWQExportPass.run(source: try openModel(q), output: hf, settings: settings)
        let got = try tensorBytes(hf)
        let want = try tensorBytes(fixturesDir + "/awq/tiny-llama-g16.safetensors")
        let f = try I2QFile(path: q)
        for l in 0..<2 {
            for lin in linears {
                let x = "model.layers.\(l).\(lin)"
                XCTAssertNil(got[x + ".weight"])
                let qw = try XCTUnwrap(got[x + ".qweight"]), qz = try XCTUnwrap(got[x + ".qzeros"]), sc = try XCTUnwrap(got[x + ".scales"])
                // Byte for byte what AutoAWQ's from_linear packs (fixture).
                XCTAssertEqual(qw.dtype, .i32); XCTAssertEqual(qz.dtype, .i32); XCTAssertEqual(sc.dtype, .f16)
                XCTAssertEqual(qw.shape, want[x + ".awq_qweight"]!.shape); XCTAssertEqual(qw.bytes, want[x + ".awq_qweight"]!.bytes, x)
                XCTAssertEqual(qz.shape, want[x + ".awq_qzeros"]!.shape); XCTAssertEqual(qz.bytes, want[x + ".awq_qzeros"]!.bytes, x)
                XCTAssertEqual(sc.shape, want[x + ".awq_scales"]!.shape); XCTAssertEqual(sc.bytes, want[x + ".awq_scales"]!.bytes, x)
                // AutoAWQ's unpacking gives back the .i2q integers, and the dequantized weights agree.
                let (inDim, out8) = (qw.shape[0], qw.shape[1])
                let out = out8 * 8, groups = qz.shape[0], g = inDim / groups
                let iw = unpackAWQ(qw.bytes, rows: inDim, cols8: out8)  // [in, out]
                let iz = unpackAWQ(qz.bytes, rows: groups, cols8: out8) // [in/G, out]
                let e = f.entries.first { $0.name == x + ".weight" }!
                var codes = [UInt8](repeating: 0, count: out * inDim)
                component(f, x + ".weight", "qweight").withUnsafeBufferPointer { p in
                    codes.withUnsafeMutableBufferPointer { AffineInt4.unpack(p.baseAddress!, count: out * inDim, into: $0.baseAddress!) }
                }
                let zeros = component(f, x + ".weight", "zeros")
                let scalesI2Q = component(f, x + ".weight", "scales")
                var deq = [Float](repeating: 0, count: out * inDim)  // i2q's dequantization [out, in]
                let packed = component(f, x + ".weight", "qweight")
                packed.withUnsafeBufferPointer { pp in scalesI2Q.withUnsafeBytes { sp in zeros.withUnsafeBufferPointer { zp in
                    deq.withUnsafeMutableBufferPointer { d in
                        AffineInt4.dequantizeRows(packed: pp.baseAddress!, scales: sp.bindMemory(to: Float16.self).baseAddress!, zeros: zp.baseAddress!,
                                                  rows: out, cols: inDim, groupSize: g, into: d.baseAddress!)
                    }
                } } }
                XCTAssertEqual(e.shape, [out, inDim])
                var mismatches = 0
                sc.bytes.withUnsafeBytes { sb in
                    for i in 0..<inDim {
                        for o in 0..<out {
                            if iw[i * out + o] != Int(codes[o * inDim + i]) { mismatches += 1 }
                            if iz[(i / g) * out + o] != Int(zeros[o * groups + i / g]) { mismatches += 1 }
                            // dequantize_gemm: (iweight − izeros) · scales, here in float32.
                            let s = Float(sb.loadUnaligned(fromByteOffset: ((i / g) * out + o) * 2, as: Float16.self))
                            let v = (Float(iw[i * out + o]) - Float(iz[(i / g) * out + o])) * s
                            if v.bitPattern != deq[o * inDim + i].bitPattern { mismatches += 1 }
                        }
                    }
                }
                XCTAssertEqual(mismatches, 0, x)
            }
        }
        // Norms and embeddings as float16; config carries AutoAWQ's quantization_config.
        XCTAssertEqual(got["model.norm.weight"]?.dtype, .f16)
        XCTAssertEqual(got["model.embed_tokens.weight"]?.dtype, .f16)
        let cfg = try JSONParser.parse(try FileSystem.readFile(hf + "/config.json"), source: "config.json")
        let qc = try XCTUnwrap(cfg["quantization_config"])
        XCTAssertEqual(qc["quant_method"], .string("awq"))
        XCTAssertEqual(qc["version"], .string("gemm"))
        XCTAssertEqual(qc["bits"], .int(4))
        XCTAssertEqual(qc["group_size"], .int(16))
        XCTAssertEqual(qc["zero_point"], .bool(true))
        XCTAssertEqual(qc["modules_to_not_convert"]?.arrayValue?.compactMap(\.stringValue), ["lm_head"])
        XCTAssertEqual(cfg["dtype"], .string("float16"))
    }

    func testHFAWQNamesVisionAndConnectorUnconverted() throws {
        let q = dir + "/idefics.i2q"
        var o = AffineQuantizeOptions()
        o.groupSize = 8
        _ = try AffineQuantizePass.run(source: try openModel(fixturesDir + "/tiny-idefics2-a"), output: q, options: o, settings: settings)
        let hf = dir + "/hf"
        _ = try AWQExportPass.run(source: try openModel(q), output: hf, settings: settings)
        let cfg = try JSONParser.parse(try FileSystem.readFile(hf + "/config.json"), source: "config.json")
        // Full module prefixes: transformers 5.24 matches patterns from the start of the module name
        // (quantizers_utils.should_convert_module: "connector" alone does not match "model.connector.…").
        XCTAssertEqual(cfg["quantization_config"]?["modules_to_not_convert"]?.arrayValue?.compactMap(\.stringValue),
                       ["model.vision_model", "model.connector", "lm_head"])
        let got = try tensorBytes(hf)
        XCTAssertNotNil(got["model.text_model.layers.0.mlp.down_proj.qweight"])
        XCTAssertEqual(got.keys.filter { $0.contains("vision_model") && $0.hasSuffix("qweight") }.count, 0)
    }

    func testHFAWQRefusesModelsWithoutAffineInt4() throws {
        assertThrowsMentioning(["no affine_int4 tensors", "--rtn"]) {
            _ = try AWQExportPass.run(source: try openModel(fixturesDir + "/tiny-llama"), output: dir + "/o", settings: settings)
        }
        var o = QuantizeOptions()
        o.blockSize = 64
        let nf4 = dir + "/nf4.i2q"
        _ = try QuantizePass.run(source: try openModel(fixturesDir + "/tiny-llama"), output: nf4, options: o, settings: settings)
        assertThrowsMentioning(["nf4", "hf-bnb"]) {
            _ = try AWQExportPass.run(source: try openModel(nf4), output: dir + "/o", settings: settings)
        }
    }
}
