import Foundation
import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QFormats
@testable import I2QPasses
@testable import I2QQuant

/// int3 / int2 affine schemes in the passes: `quantize --rtn --bits`, `--awq --bits`, the `int3gG` /
/// `int2gG` candidates of `--target-bpw` and `--recipe`, inspect's bits/weight, and the exports'
/// refusals. The codec itself is tested against torch (AffineLowBitTests); here the written entries
/// must hold that codec's bytes in the layout of Formats/i2q-format.md.
final class AffineLowBitPassTests: XCTestCase {
    var dir = ""
    let settings: OutputSettings = { var s = OutputSettings(); s.showProgress = false; return s }()
    override func setUpWithError() throws { dir = try makeTempDir("lowbit") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }  // deliberate: cleanup only

    /// Bits per weight from the layout: codes (b bits) + an f16 scale and a u8 zero per group.
    func testCandidateNamesBitsAndFit() throws {
        let c = try MixedCandidate.parseList("int3g64,int3g128,int2g64,int2g128")
        XCTAssertEqual(c, [.affine(bits: 3, groupSize: 64), .affine(bits: 3, groupSize: 128), .affine(bits: 2, groupSize: 64), .affine(bits: 2, groupSize: 128)])
        XCTAssertEqual(c.map(\.name), ["int3g64", "int3g128", "int2g64", "int2g128"])
        let bpw = { (n: String, cols: Int) -> Double in Double(MixedCandidate(name: n)!.bytes(rows: 3, cols: cols) * 8) / Double(3 * cols) }
        XCTAssertEqual(bpw("int3g64", 576), 3.375)
        XCTAssertEqual(bpw("int3g128", 1536), 3.1875)
        XCTAssertEqual(bpw("int2g64", 576), 2.375)
        XCTAssertEqual(bpw("int2g128", 1536), 2.1875)
        XCTAssertEqual(bpw("int4g64", 576), 4.375)  // unchanged
        XCTAssertTrue(MixedCandidate(name: "int3g64")!.fits(columns: 576))
        XCTAssertFalse(MixedCandidate(name: "int3g128")!.fits(columns: 576))
        XCTAssertEqual(MixedCandidate.options(c, columns: 576).map(\.name), ["int3g64", "int2g64"])
        for n in ["int3g64", "int3g128", "int2g64", "int2g128"] { XCTAssertTrue(MixedCandidate.allNames.contains(n), n) }
        XCTAssertNil(MixedCandidate(name: "int5g64"))
        XCTAssertNil(MixedCandidate(name: "int3g48"))
        assertThrowsMentioning(["\"int1g64\"", "int3g64", "int2g128"]) { _ = try MixedCandidate.parseList("int1g64") }
    }

    /// `--rtn --bits 3 / 2`: every decoder linear of tiny-mistral as affine_int3 / affine_int2 holding
    /// `AffineInt4.quantizeRows` + `pack` of the source values; inspect labels and bits/weight; a
    /// recipe of int3g32 everywhere gives the same entries.
    func testRTNBitsWritesDensePackedEntries() throws {
        let src = try openModel(fixturesDir + "/tiny-mistral")
        for bits in [3, 2] {
            var o = AffineQuantizeOptions()
            o.groupSize = 32
            o.bits = bits
            let out = dir + "/rtn\(bits).i2q"
            _ = try AffineQuantizePass.run(source: src, output: out, options: o, settings: settings)
            let f = try I2QFile(path: out)
            XCTAssertTrue(f.verifyAll().isEmpty)
            let q = f.entries.filter { $0.scheme == "affine_int\(bits)" }
            XCTAssertEqual(q.count, 14)
            XCTAssertFalse(f.entries.contains { $0.scheme == AffineInt4Layout.scheme })
            let pass = try XCTUnwrap(f.provenance?.passes.last)
            XCTAssertEqual(pass.params.first { $0.0 == "type" }?.1, .string("affine_int\(bits)"))
            let summary = SchemeSummary(f)
            for e in q {
                let l = try AffineInt4Layout(e)
                XCTAssertEqual(l.bits, bits)
                XCTAssertEqual(l.qweight.shape, [l.rows, l.cols * bits / 8])
                XCTAssertEqual(SchemeSummary.label(e), "int\(bits) g32")
                let stored = summary.tensors.first { $0.name == e.name }!.bytes
                XCTAssertEqual(stored, l.rows * l.cols * bits / 8 + l.rows * (l.cols / 32) * 3, e.name)
                // The bytes: the codec on the source values.
                let t = try XCTUnwrap(src.tensors.first { $0.name == e.name })
                var raw = [UInt8](repeating: 0, count: t.byteCount)
                try raw.withUnsafeMutableBytes { try t.read(elements: 0, count: t.elementCount, into: $0.baseAddress!) }
                var w = [Float](repeating: 0, count: t.elementCount)
                raw.withUnsafeBytes { rb in w.withUnsafeMutableBufferPointer { FloatConversion.widenToF32(from: t.dtype, count: t.elementCount, src: rb.baseAddress!, dst: $0.baseAddress!) } }
                var codes = [UInt8](repeating: 0, count: w.count), scales = [Float16](repeating: 0, count: w.count / 32), zeros = [UInt8](repeating: 0, count: w.count / 32)
                AffineInt4.quantizeRows(w, rows: l.rows, cols: l.cols, groupSize: 32, bits: bits, codes: &codes, scales: &scales, zeros: &zeros)
                var packed = [UInt8](repeating: 0, count: w.count * bits / 8)
                AffineInt4.pack(codes, count: codes.count, bits: bits, into: &packed)
                XCTAssertEqual(f.file.withBytes(f.header.dataOffset + l.qweight.offset, l.qweight.size) { Array($0) }, packed, e.name)
                XCTAssertEqual(f.file.withBytes(f.header.dataOffset + l.zeros!.offset, l.zeros!.size) { Array($0) }, zeros, e.name)
            }
            let info = ModelInspection(f)
            XCTAssertTrue(info.text.contains("int\(bits) g32"), info.text)
        }
        // The mixed writer's int3g32 entries are the RTN pass's bytes.
        let planned = try MixedQuantizePass.plan(src)
        var o = MixedQuantizeOptions()
        o.recipe = MixedRecipe(targetBPW: nil, candidates: ["int3g32", "bf16"], tensors: planned.map {
            .init(name: $0.tensor.name, scheme: $0.tensor.name.contains("_proj") ? "int3g32" : "bf16", parameters: $0.parameters, options: [])
        })
        var cal = ImatrixSettings(calibration: fixturesDir + "/imatrix/calibration.txt")
        cal.ctx = 16; cal.chunks = 2
        o.calibration = cal
        _ = try MixedQuantizePass.run(source: src, output: dir + "/m.i2q", options: o, settings: settings)
        let m = try I2QFile(path: dir + "/m.i2q"), r = try I2QFile(path: dir + "/rtn3.i2q")
        func bytes(_ f: I2QFile, _ e: I2QTensorEntry) -> [[UInt8]] {
            e.components.map { c in f.file.withBytes(f.header.dataOffset + c.offset, c.size) { Array($0) } }
        }
        var compared = 0
        for e in r.entries where e.scheme == "affine_int3" {
            let me = try XCTUnwrap(m.entries.first { $0.name == e.name })
            XCTAssertEqual(me.scheme, "affine_int3")
            XCTAssertTrue(bytes(m, me) == bytes(r, e), e.name)
            compared += 1
        }
        XCTAssertEqual(compared, 14)
    }

    /// --target-bpw with int3/int2 candidates reaches below 4 bits; the recipe gives the same bytes again.
    func testTargetBelowFourBitsAndRecipeRoundTrip() throws {
        let src = try openModel(fixturesDir + "/tiny-mistral")
        var o = MixedQuantizeOptions()
        o.targetBPW = 3.5
        o.candidates = try MixedCandidate.parseList("int4g32,int3g32,int2g32,q8_0")
        var cal = ImatrixSettings(calibration: fixturesDir + "/imatrix/calibration.txt")
        cal.ctx = 16; cal.chunks = 8
        o.calibration = cal
        o.probeTokens = 16
        let a = dir + "/a.i2q"
        _ = try MixedQuantizePass.run(source: src, output: a, options: o, settings: settings)
        let recipe = try MixedRecipe.read(path: dir + "/a.recipe.json")
        // tiny-mistral's embedding (32003 × 32, 98 % of the weights) fits 3.5 only as int2g32 (2.75 bits);
        // the linears then take the rest of the budget (the largest achievable: 2.85).
        XCTAssertLessThanOrEqual(recipe.achievedBPW, 3.5)
        XCTAssertGreaterThan(recipe.achievedBPW, 2.8, "the budget is used")
        XCTAssertEqual(recipe.tensors.first { $0.name == "model.embed_tokens.weight" }?.scheme, "int2g32")
        XCTAssertTrue(recipe.tensors.contains { $0.scheme != "int2g32" }, "the linears get more bits")
        let f = try I2QFile(path: a)
        let summary = SchemeSummary(f)
        for t in recipe.tensors {
            let e = try XCTUnwrap(f.entries.first { $0.name == t.name })
            XCTAssertEqual(summary.tensors.first { $0.name == t.name }!.bytes, MixedCandidate(name: t.scheme)!.bytes(rows: e.shape[0], cols: e.shape[1]), t.name)
        }
        let info = try XCTUnwrap(ModelInspection(f).mixed)
        XCTAssertEqual(info.achieved, recipe.achievedBPW, accuracy: 1e-9)
        var again = MixedQuantizeOptions()
        again.recipe = recipe
        again.calibration = cal
        _ = try MixedQuantizePass.run(source: src, output: dir + "/b.i2q", options: again, settings: settings)
        XCTAssertTrue(try FileSystem.readFile(a) == FileSystem.readFile(dir + "/b.i2q"), "recipe output differs")
    }

    /// hf-awq, compressed-tensors, hf-gptq, gguf and hf refuse int3/int2 tensors, naming one.
    func testExportsRefuseLowBitTensors() throws {
        let src = try openModel(fixturesDir + "/tiny-mistral")
        var o = AffineQuantizeOptions()
        o.groupSize = 32
        o.bits = 3
        let path = dir + "/rtn3.i2q"
        _ = try AffineQuantizePass.run(source: src, output: path, options: o, settings: settings)
        let first = try XCTUnwrap(try I2QFile(path: path).entries.first { $0.scheme == "affine_int3" }?.name)
        assertThrowsMentioning([first, "affine int3", "hf-awq", "4-bit codes only"]) {
            _ = try AWQExportPass.run(source: try openModel(path), output: dir + "/awq", settings: settings)
        }
        assertThrowsMentioning([first, "affine int3", "--to compressed-tensors", "4-bit codes only"]) {
            _ = try CompressedTensorsExportPass.run(source: try openModel(path), output: dir + "/ct", settings: settings)
        }
        assertThrowsMentioning([first, "affine int3", "--to hf-gptq"]) {
            _ = try HFGPTQExportPass.run(source: try openModel(path), output: dir + "/gptq", settings: settings)
        }
        assertThrowsMentioning(["affine_int3"]) {
            _ = try GGUFExportPass(source: try openModel(path), output: dir + "/x.gguf", settings: settings).run()
        }
        assertThrowsMentioning([first]) {
            _ = try ExportPass.makeHF(source: try openModel(path), output: dir + "/hf", settings: settings).run()
        }
        for p in ["/awq", "/ct", "/gptq", "/x.gguf", "/hf"] { XCTAssertFalse(FileSystem.exists(dir + p), p) }
        // A mixed file with int2 tensors: GGUF names one and the scheme.
        var m = MixedQuantizeOptions()
        m.targetBPW = 4
        m.candidates = try MixedCandidate.parseList("int2g32,q8_0,bf16")
        var cal = ImatrixSettings(calibration: fixturesDir + "/imatrix/calibration.txt")
        cal.ctx = 16; cal.chunks = 2
        m.calibration = cal
        m.probeTokens = 0
        _ = try MixedQuantizePass.run(source: src, output: dir + "/m.i2q", options: m, settings: settings)
        assertThrowsMentioning(["affine int2g32", "no GGUF block type"]) {
            _ = try GGUFExportPass(source: try openModel(dir + "/m.i2q"), output: dir + "/m.gguf", settings: settings).run()
        }
    }

    /// `--awq --bits 3`: the search runs with the 3-bit Q and the linears are written as affine_int3.
    func testAWQBitsThree() throws {
        let src = try openModel(fixturesDir + "/tiny-mistral")
        var o = AffineQuantizeOptions()
        o.method = .awq
        o.groupSize = 32
        o.bits = 3
        var c = CalibrationOptions(path: fixturesDir + "/imatrix/calibration.txt")
        c.samples = 2
        c.seqLen = 16
        o.calibration = c
        let out = dir + "/awq3.i2q"
        _ = try AffineQuantizePass.run(source: src, output: out, options: o, settings: settings)
        let f = try I2QFile(path: out)
        XCTAssertEqual(f.entries.filter { $0.scheme == "affine_int3" }.count, 14)
        XCTAssertTrue(f.verifyAll().isEmpty)
        let pass = try XCTUnwrap(f.provenance?.passes.last)
        XCTAssertEqual(pass.params.first { $0.0 == "type" }?.1, .string("affine_int3"))
        XCTAssertEqual(pass.params.first { $0.0 == "method" }?.1, .string("awq"))
    }
}
