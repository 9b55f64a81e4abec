import XCTest
import I2QCore
import I2QFormats
import I2QQuant
import I2QTestSupport
@testable import I2QPasses

/// `export --to compressed-tensors` and `--to hf-gptq`: the bytes against the compressed-tensors
/// package's own compressor (fixtures from scripts/fixtures/make_compressed_tensors_fixtures.py),
/// the config against what the package writes, GPTQ's v1 layout decoded by its definition, and
/// the directory an RTN model exports to.
final class Int4ExportTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try makeTempDir("int4-export") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }
    var settings: OutputSettings { var s = OutputSettings(); s.showProgress = false; return s }

    func raw(_ f: SafetensorsFile, _ n: String) throws -> [UInt8] { let i = try XCTUnwrap(f.info(n), n); return f.withData(i) { Array($0) } }

    func fixtureLinear(_ f: SafetensorsFile, _ c: String) throws -> Int4Linear {
        let codes = try raw(f, c + ".codes"), zeros = try raw(f, c + ".zeros")
        let sb = try raw(f, c + ".scales")
        let scales = (0..<(sb.count / 2)).map { Float16(bitPattern: UInt16(sb[2 * $0]) | UInt16(sb[2 * $0 + 1]) << 8) }
        let shape = try XCTUnwrap(f.info(c + ".codes")).shape
        return Int4Linear(rows: shape[0], cols: shape[1], groupSize: shape[1] / (zeros.count / shape[0]), codes: codes, scales: scales, zeros: zeros)
    }

    /// weight_packed, weight_zero_point (rows not a multiple of 8 included), weight_scale and
    /// weight_shape are byte for byte what compressed-tensors 0.19.0's PackedQuantizationCompressor
    /// writes for the same codes, zeros and scales.
    func testPackQuantizedBytesEqualThePackage() throws {
        let f = try SafetensorsFile(path: fixturesDir + "/compressed-tensors/cases.safetensors")
        for c in ["a", "odd_rows"] {
            let l = try fixtureLinear(f, c)
            let outs = CompressedTensorsExportPass.outputs(module: c, rows: l.rows, cols: l.cols, groupSize: l.groupSize, scaleDType: .f32)
            XCTAssertEqual(outs.map(\.plan.name), ["weight_packed", "weight_scale", "weight_shape", "weight_zero_point"].map { c + "." + $0 })
            for o in outs {
                let want = try XCTUnwrap(f.info(o.plan.name), o.plan.name)
                XCTAssertEqual(o.plan.shape, want.shape, o.plan.name)
                XCTAssertEqual(o.plan.dtype, want.dtype, o.plan.name)
                XCTAssertEqual(try o.make(l), try raw(f, o.plan.name), o.plan.name)
            }
        }
    }

    /// quantization_config equals what compressed-tensors' ModelCompressor.update_config writes.
    func testQuantizationConfigEqualsThePackage() throws {
        let want = try JSONParser.parse(try FileSystem.readFile(fixturesDir + "/compressed-tensors/config.json"), source: "config.json")
        XCTAssertEqual(CompressedTensorsExportPass.quantizationConfig(groupSize: 64, ignore: ["lm_head"]), want["quantization_config"])
    }

    /// hf-gptq words decode by GPTQ's definition: qweight nibble k of word [j, o] is q[o, 8j + k];
    /// qzeros + 0x11111111 (GPTQModel's v1 → v2 step) has nibble k of word [g, c] = z[8c + k, g].
    func testHFGPTQLayoutDecodes() throws {
        let f = try SafetensorsFile(path: fixturesDir + "/compressed-tensors/cases.safetensors")
        let l = try fixtureLinear(f, "a")
        let outs = HFGPTQExportPass.outputs(module: "m", rows: l.rows, cols: l.cols, groupSize: l.groupSize)
        func words(_ b: [UInt8]) -> [UInt32] { (0..<(b.count / 4)).map { i in (0..<4).reduce(UInt32(0)) { $0 | UInt32(b[4 * i + $1]) << (8 * UInt32($1)) } } }
        let qw = words(try outs[0].make(l)), qz = words(try outs[1].make(l))
        for j in 0..<(l.cols / 8) { for o in 0..<l.rows { for k in 0..<8 {
            XCTAssertEqual(UInt8((qw[j * l.rows + o] >> (4 * UInt32(k))) & 15), l.codes[o * l.cols + 8 * j + k])
        } } }
        for g in 0..<l.groups { for c in 0..<(l.rows / 8) { for k in 0..<8 {
            let v2 = qz[g * (l.rows / 8) + c] &+ 0x1111_1111
            XCTAssertEqual(UInt8((v2 >> (4 * UInt32(k))) & 15), l.zeros[(8 * c + k) * l.groups + g])
        } } }
        let gidx = words(try outs[3].make(l))
        XCTAssertEqual(gidx.map(Int.init), (0..<l.cols).map { $0 / l.groupSize })
        XCTAssertEqual(outs.map(\.plan.shape), [[l.cols / 8, l.rows], [l.groups, l.rows / 8], [l.groups, l.rows], [l.cols]])
    }

    /// An RTN Idefics2 model exported both ways: every quantized linear has the target's tensors,
    /// the vision tower and connector stay plain and are named in the config; the stored codes come
    /// back out of weight_packed unchanged.
    func testExportDirectoriesFromAnRTNModel() throws {
        var o = AffineQuantizeOptions(); o.method = .rtn; o.groupSize = 8
        let src = dir + "/rtn.i2q"
        _ = try AffineQuantizePass.run(source: try openModel(fixturesDir + "/tiny-idefics2-a"), output: src, options: o, settings: settings)
        let ct = dir + "/ct", gq = dir + "/gq"
        _ = try CompressedTensorsExportPass.run(source: try openModel(src), output: ct, settings: settings)
        _ = try HFGPTQExportPass.run(source: try openModel(src), output: gq, settings: settings)
        let i2q = try I2QFile(path: src)
        let quantized = i2q.entries.filter { $0.scheme == AffineInt4Layout.scheme }
        XCTAssertFalse(quantized.isEmpty)
        let cfg = try JSONParser.parse(try FileSystem.readFile(ct + "/config.json"), source: "config.json")["quantization_config"]
        let ignore = try XCTUnwrap(cfg?["ignore"]?.arrayValue?.compactMap(\.stringValue))
        XCTAssertEqual(ignore.prefix(3), ["re:model\\.vision_model\\..*", "re:model\\.connector\\..*", "lm_head"])
        XCTAssertEqual(cfg?["config_groups"]?["group_0"]?["weights"]?["group_size"], .int(8))
        let st = try SafetensorsFile(path: ct + "/model.safetensors")
        for e in quantized {
            let m = String(e.name.dropLast(7))
            XCTAssertNil(st.info(e.name))
            for s in ["weight_packed", "weight_scale", "weight_shape", "weight_zero_point"] { XCTAssertNotNil(st.info(m + "." + s), m + "." + s) }
            // nibble i of weight_packed row o is code (o, i) as stored.
            let c = e.component(AffineInt4Layout.Role.qweight)!
            let stored = i2q.file.withBytes(i2q.header.dataOffset + c.offset, c.size) { Array($0) }
            let packed = try raw(st, m + ".weight_packed")
            // 8 codes = 4 stored bytes (low nibble first) = 1 little-endian word: the same bytes.
            XCTAssertEqual(packed, stored, m)
        }
        XCTAssertNotNil(st.info("model.vision_model.encoder.layers.0.self_attn.q_proj.weight"))
        let gst = try SafetensorsFile(path: gq + "/model.safetensors")
        for e in quantized {
            let m = String(e.name.dropLast(7))
            for s in ["qweight", "qzeros", "scales", "g_idx"] { XCTAssertNotNil(gst.info(m + "." + s), m + "." + s) }
        }
        let qc = try JSONParser.parse(try FileSystem.readFile(gq + "/quantize_config.json"), source: "quantize_config.json")
        XCTAssertEqual(qc["checkpoint_format"]?.stringValue, "gptq")
        XCTAssertEqual(qc["group_size"], .int(8))
    }

    func testRefusesModelsWithoutAffineInt4() throws {
        assertThrowsMentioning(["no affine_int4 tensors", "compressed-tensors", "--gptq"]) {
            _ = try CompressedTensorsExportPass.run(source: try openModel(fixturesDir + "/tiny-llama"), output: dir + "/o", settings: settings)
        }
        var o = QuantizeOptions(); o.blockSize = 64
        let nf4 = dir + "/nf4.i2q"
        _ = try QuantizePass.run(source: try openModel(fixturesDir + "/tiny-llama"), output: nf4, options: o, settings: settings)
        assertThrowsMentioning(["nf4", "hf-gptq", "hf-bnb"]) {
            _ = try HFGPTQExportPass.run(source: try openModel(nf4), output: dir + "/o", settings: settings)
        }
    }
}
