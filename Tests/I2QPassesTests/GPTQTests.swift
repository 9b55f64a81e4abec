import XCTest
import I2QCore
import I2QFormats
import I2QEval
import I2QRuntime
import I2QQuant
import I2QTestSupport
@testable import I2QPasses

/// GPTQ: the per-tensor algorithm against GPTQModel 7.7 itself (fixtures made by
/// scripts/fixtures/make_gptq_fixtures.py), the layer-by-layer pass (resume gives the same bytes,
/// bad input is refused with a clear message).
final class GPTQTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try makeTempDir("gptq") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }
    var settings: OutputSettings { var s = OutputSettings(); s.showProgress = false; return s }

    func f32(_ f: SafetensorsFile, _ n: String) throws -> [Float] {
        let i = try XCTUnwrap(f.info(n), n)
        return f.withData(i) { b in (0..<(b.count / 4)).map { b.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) } }
    }
    func u8(_ f: SafetensorsFile, _ n: String) throws -> [UInt8] { let i = try XCTUnwrap(f.info(n), n); return f.withData(i) { Array($0) } }
    func f16(_ f: SafetensorsFile, _ n: String) throws -> [Float16] {
        let i = try XCTUnwrap(f.info(n), n)
        return f.withData(i) { b in (0..<(b.count / 2)).map { Float16(bitPattern: b.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) } }
    }

    /// ‖X·(Ŵ − W)ᵀ‖² / ‖X·Wᵀ‖²: the layer-output error GPTQ minimises.
    func outputError(_ x: [Float], _ w: [Float], _ wq: [Float], rows: Int, cols: Int) -> Double {
        let n = x.count / cols
        let d = zip(wq, w).map { $0 - $1 }
        let y = Matmul.linear(x, w, m: n, k: cols, n: rows), e = Matmul.linear(x, d, m: n, k: cols, n: rows)
        return e.reduce(0.0) { $0 + Double($1 * $1) } / y.reduce(0.0) { $0 + Double($1 * $1) }
    }

    /// Every case and setting of the fixture (dynamic groups with group < block, = block; act-order
    /// with static groups; a dead input channel; nearly collinear channels; outliers): codes, scales
    /// and zeros as GPTQModel's, up to float32 summation order. Both run float32 GEMMs (OpenBLAS
    /// here, torch's there) whose sums differ in the last bits; a code sitting on a rounding
    /// boundary can flip and its error then propagates through the feedback to later columns, so
    /// the check is: ≥ 99 % of codes equal, and the layer-output error within 2 % of GPTQModel's.
    /// (Measured on this machine, OpenBLAS vs torch 2.15: every code, scale and zero equal, the
    /// output errors equal to all printed digits.)
    func testMatchesGPTQModel() throws {
        let f = try SafetensorsFile(path: fixturesDir + "/gptq/cases.safetensors")
        let meta = try JSONParser.parse(try FileSystem.readFile(fixturesDir + "/gptq/cases.json"), source: "cases.json")
        var checked = 0
        for (name, c) in try XCTUnwrap(meta["cases"]?.objectEntries) {
            let tokens = try XCTUnwrap(c["tokens"]?.intValue), rows = try XCTUnwrap(c["rows"]?.intValue), cols = try XCTUnwrap(c["cols"]?.intValue)
            let x = try f32(f, name + ".x"), w = try f32(f, name + ".w")
            let h = GPTQ.hessian(x, cols: cols)
            for (tag, s) in try XCTUnwrap(c["settings"]?.objectEntries) {
                var st = GPTQSettings()
                st.groupSize = try XCTUnwrap(s["group_size"]?.intValue)
                st.actOrder = try XCTUnwrap(s["act_order"]?.boolValue)
                let r = try GPTQ.quantize(tensor: "\(name).\(tag)", weight: w, rows: rows, cols: cols, hessian: h, tokens: tokens, settings: st)
                let codes = try u8(f, "\(name).\(tag).codes"), scales = try f16(f, "\(name).\(tag).scales")
                let zeros = try u8(f, "\(name).\(tag).zeros"), ref = try f32(f, "\(name).\(tag).w_hat")
                let same = zip(r.codes, codes).filter { $0 == $1 }.count
                let frac = Double(same) / Double(codes.count)
                let sameParams = zip(r.scales, scales).filter { $0 == $1 }.count
                let eOurs = outputError(x, w, r.dequantized, rows: rows, cols: cols), eRef = outputError(x, w, ref, rows: rows, cols: cols)
                let msg = "\(name).\(tag): codes equal \(same)/\(codes.count), scales equal \(sameParams)/\(scales.count), output error ours \(eOurs) GPTQModel \(eRef)"
                print(msg)
                XCTAssertGreaterThanOrEqual(frac, 0.99, msg)
                XCTAssertGreaterThanOrEqual(Double(sameParams) / Double(scales.count), 0.98, msg)
                XCTAssertLessThanOrEqual(eOurs, eRef * 1.02, msg)
                // The stored form reproduces the dequantized weight exactly.
                for i in 0..<(rows * cols) where i % 7 == 0 {
                    let g = (i / cols) * (cols / st.groupSize) + (i % cols) / st.groupSize
                    XCTAssertEqual(r.dequantized[i], (Float(r.codes[i]) - Float(r.zeros[g])) * Float(r.scales[g]))
                }
                // Where the group's parameters agree, so do GPTQModel's zero points.
                for g in 0..<zeros.count where r.scales[g] == scales[g] { XCTAssertEqual(r.zeros[g], zeros[g], "\(msg) group \(g)") }
                // GPTQ beats round-to-nearest on the calibration inputs (the point of the method).
                var rtn = w
                rtn.withUnsafeMutableBufferPointer { AffineInt4.fakeQuantize($0.baseAddress!, rows: rows, cols: cols, groupSize: st.groupSize) }
                XCTAssertLessThan(eOurs, outputError(x, w, rtn, rows: rows, cols: cols), msg)
                checked += 1
            }
        }
        XCTAssertEqual(checked, 5)
    }

    /// Dead input channels (never active in calibration) get weight 0, as GPTQModel's
    /// `_neutralize_dead_columns`; non-finite weights are refused with the tensor's name.
    func testDeadColumnsAndNonFiniteInput() throws {
        let rows = 8, cols = 32, n = 40
        var x = (0..<(n * cols)).map { Float(sin(Double($0) * 0.37)) }
        for t in 0..<n { x[t * cols + 5] = 0 }
        let w = (0..<(rows * cols)).map { Float(cos(Double($0) * 0.11)) * 0.1 }
        var st = GPTQSettings(); st.groupSize = 16
        let r = try GPTQ.quantize(tensor: "t", weight: w, rows: rows, cols: cols, hessian: GPTQ.hessian(x, cols: cols), tokens: n, settings: st)
        for o in 0..<rows { XCTAssertEqual(r.dequantized[o * cols + 5], 0, "row \(o)") }
        var bad = w; bad[3] = .nan
        assertThrowsMentioning(["model.layers.0.mlp.up_proj.weight", "the weight", "NaN"]) {
            _ = try GPTQ.quantize(tensor: "model.layers.0.mlp.up_proj.weight", weight: bad, rows: rows, cols: cols, hessian: GPTQ.hessian(x, cols: cols), tokens: n, settings: st)
        }
    }

    func gptqOptions(_ calibration: String, group: Int = 8, actOrder: Bool = false) -> AffineQuantizeOptions {
        var o = AffineQuantizeOptions()
        o.method = .gptq
        o.groupSize = group
        o.gptq.actOrder = actOrder
        var cal = CalibrationOptions(path: calibration)
        cal.samples = 6
        cal.seqLen = 64
        o.calibration = cal
        return o
    }

    func calibrationText() throws -> String {
        let set = try DocVQASet.load(directory: fixturesDir + "/docvqa-mini")
        let path = dir + "/calib.txt"
        try write(Array(set.items.compactMap(\.documentText).joined(separator: "\n\n").utf8), to: path)
        return path
    }

    /// An interrupted GPTQ run continued with --resume writes the same bytes as an uninterrupted
    /// one; the state lives in OUT.gptq-state and is removed after success; the result is affine_int4
    /// and differs from RTN (and act-order from plain GPTQ).
    func testResumeAfterInterruptionGivesTheSameBytes() throws {
        let text = try calibrationText()
        let src = try openModel(fixturesDir + "/tiny-idefics2-a")
        let a = dir + "/a.i2q"
        _ = try AffineQuantizePass.run(source: src, output: a, options: gptqOptions(text), settings: settings)
        XCTAssertFalse(FileManager.default.fileExists(atPath: a + ".gptq-state"), "state removed after success")
        let b = dir + "/b.i2q"
        var o = gptqOptions(text)
        o.stopAfterLayers = 1
        assertThrowsMentioning(["stopped after 1 layer", "--resume"]) {
            _ = try AffineQuantizePass.run(source: src, output: b, options: o, settings: settings)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: b + ".gptq-state/layer-0000/model.safetensors"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: b + ".gptq-state/hidden-0000.f32"))
        final class Lines: @unchecked Sendable { var all: [String] = []; let lock = NSLock() }
        let log = Lines()
        o.stopAfterLayers = nil
        o.resume = true
        o.log = { s in log.lock.lock(); log.all.append(s); log.lock.unlock() }
        _ = try AffineQuantizePass.run(source: src, output: b, options: o, settings: settings)
        XCTAssertTrue(log.all.contains { $0.contains("gptq: resuming after layer 1/3") }, "\(log.all)")
        XCTAssertTrue(log.all.contains { $0.hasPrefix("gptq: layer 3/3") && $0.contains("ETA") }, "\(log.all)")
        XCTAssertEqual(try FileSystem.readFile(a), try FileSystem.readFile(b))

        let f = try I2QFile(path: a)
        let q = try XCTUnwrap(f.entries.first { $0.name.hasSuffix("text_model.layers.0.self_attn.q_proj.weight") })
        XCTAssertEqual(q.scheme, AffineInt4Layout.scheme)
        let r = dir + "/rtn.i2q", act = dir + "/act.i2q"
        var ro = AffineQuantizeOptions(); ro.method = .rtn; ro.groupSize = 8
        _ = try AffineQuantizePass.run(source: src, output: r, options: ro, settings: settings)
        _ = try AffineQuantizePass.run(source: src, output: act, options: gptqOptions(text, actOrder: true), settings: settings)
        let bytesA = try FileSystem.readFile(a)
        XCTAssertNotEqual(bytesA, try FileSystem.readFile(r))
        XCTAssertNotEqual(bytesA, try FileSystem.readFile(act))

        // A state made with other settings is refused, naming what differs.
        var other = gptqOptions(text)
        other.gptq.damp = 0.1
        other.stopAfterLayers = 1
        _ = try? AffineQuantizePass.run(source: src, output: dir + "/c.i2q", options: other, settings: settings)
        var mismatched = gptqOptions(text)
        mismatched.resume = true
        assertThrowsMentioning(["c.i2q.gptq-state", "other settings", "differing: damp", "--restart"]) {
            _ = try AffineQuantizePass.run(source: src, output: dir + "/c.i2q", options: mismatched, settings: settings)
        }
    }

    /// GPTQ without calibration, and with --vision-int4, is refused.
    func testRefusals() throws {
        let src = try openModel(fixturesDir + "/tiny-idefics2-a")
        var o = AffineQuantizeOptions(); o.method = .gptq; o.groupSize = 8
        assertThrowsMentioning(["--gptq", "--calibration"]) {
            _ = try AffineQuantizePass.run(source: src, output: dir + "/x.i2q", options: o, settings: settings)
        }
        o.calibration = CalibrationOptions(path: dir + "/none.txt")
        o.vision = true
        assertThrowsMentioning(["--vision-int4", "GPTQ"]) {
            _ = try AffineQuantizePass.run(source: src, output: dir + "/x.i2q", options: o, settings: settings)
        }
    }
}
