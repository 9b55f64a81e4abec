import XCTest
import CI2QKernels
import I2QCore
import I2QQuant
import I2QFormats
import I2QTestSupport
@testable import I2QRuntime

/// ggml-block weights with llama.cpp's activation rounding (the default, `GGMLGemv.activations =
/// .llamaCpp`) against llama.cpp itself: Tests/Fixtures/ggml-blocks/activations.safetensors holds the
/// bytes of libggml-cpu's `quantize_row_q8_0/q8_1/q8_K` (the functions ggml's mul_mat quantizes its
/// activations with on x86) and `ggml_mul_mat` outputs for weights of every dequantizable type, one
/// and eight activation rows (llama-cpp-python 0.3.36, scripts/fixtures/make_ggml_activation_fixtures.py).
final class GGMLActivationTests: XCTestCase {
    static let path = fixturesDir + "/ggml-blocks/activations.safetensors"
    static let fixture: [String: (dtype: DType, shape: [Int], bytes: [UInt8])]? = try? tensorBytes(path)

    override func tearDown() { GGMLGemv.activations = .llamaCpp }

    func tensor(_ name: String) throws -> (shape: [Int], bytes: [UInt8]) {
        let all = try XCTUnwrap(Self.fixture, "cannot read \(Self.path) (committed: a failure, never a skip)")
        let t = try XCTUnwrap(all[name], "fixture has no \(name)")
        return (t.shape, t.bytes)
    }

    func floats(_ name: String) throws -> (shape: [Int], values: [Float]) {
        let t = try tensor(name)
        return (t.shape, t.bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) })
    }

    /// The quantized activation bytes equal libggml-cpu's, row by row (ties, outliers, zeros, -0 included).
    func testActivationBytesEqualLibggmlCpu() throws {
        let x = try floats("act.x")
        let k = x.shape[1]
        for (name, type) in [("Q8_0", 8), ("Q8_1", 9), ("Q8_K", 15)] {
            let ref = try tensor("act.\(name)")
            let rowBytes = ref.shape[1]
            for r in 0..<x.shape[0] {
                var out = [UInt8](repeating: 0xAA, count: rowBytes)
                x.values.withUnsafeBufferPointer { xp in
                    out.withUnsafeMutableBytes { i2q_ggml_quantize_q8(Int32(type), xp.baseAddress! + r * k, Int64(k), $0.baseAddress!) }
                }
                XCTAssertEqual(out, Array(ref.bytes[r * rowBytes..<(r + 1) * rowBytes]), "\(name) row \(r)")
            }
        }
    }

    /// The rounded values are d·q of those blocks (what the integer dot products stand for).
    func testRoundedValuesAreBlockValues() throws {
        let x = try floats("act.x")
        let k = x.shape[1]
        let q8k = try tensor("act.Q8_K")
        var out = [Float](repeating: .nan, count: x.values.count)
        XCTAssertEqual(i2q_ggml_round_activations(12, x.values, Int64(x.shape[0]), Int64(k), &out), 1)  // Q4_K → Q8_K
        for r in 0..<x.shape[0] {
            let row = Array(q8k.bytes[r * q8k.shape[1]..<(r + 1) * q8k.shape[1]])
            for b in 0..<(k / 256) {
                let base = b * 292
                let d = row[base..<base + 4].withUnsafeBytes { $0.loadUnaligned(as: Float.self) }
                for j in 0..<256 {
                    let q = Float(Int8(bitPattern: row[base + 4 + j]))
                    XCTAssertEqual(out[r * k + b * 256 + j].bitPattern, (d * q).bitPattern, "row \(r) block \(b) [\(j)]")
                }
            }
        }
        XCTAssertEqual(i2q_ggml_round_activations(12, x.values, 1, 100, &out), 0, "k not a multiple of 256")
        XCTAssertEqual(i2q_ggml_round_activations(0, x.values, 1, Int64(k), &out), 0, "f32 has no vec_dot_type here")
    }

    /// Decode (m = 1, `GGMLGemv.run`) and prefill (m = 8, `GGMLGemv.linear`) against ggml_mul_mat on the
    /// same bytes: equal up to float32 summation order, |Δy| ≤ 2e-6 · Σ|w·x| (measured ≤ 4e-7; llama.cpp
    /// multiplies integer blocks, i2q the dequantized weight by the rounded activations). With float32
    /// activations the outputs differ by far more (≥ 1e-4 · Σ|w·x| on these rows): the test can tell.
    func testMulMatEqualsGGMLForEveryType() throws {
        let x = try floats("mm.x")
        let k = x.shape[1]
        for type in GGMLBlockLayout.types {
            let w = try tensor("mm.\(type.name).w")
            let n = w.shape[0]
            let owner = w.bytes as AnyObject
            try w.bytes.withUnsafeBytes { wb in
                let rows = GGMLRows(type: type, rows: n, cols: k, rowBytes: w.shape[1], blocks: wb.baseAddress!, owner: owner)
                var deq = [Float](repeating: 0, count: n * k)
                rows.dequantize(rows: 0, n, into: &deq)
                for m in [1, 8] {
                    let ref = try floats("mm.\(type.name).y\(m)").values
                    var worst = 0.0, worstF32 = 0.0
                    for mode in [GGMLActivations.llamaCpp, .float32] {
                        GGMLGemv.activations = mode
                        var y = [Float](repeating: .nan, count: m * n)
                        x.values.withUnsafeBufferPointer { xp in
                            y.withUnsafeMutableBufferPointer { yp in
                                if m == 1 {
                                    GGMLGemv.run(rows, x: xp.baseAddress!, y: yp.baseAddress!, accumulate: false)
                                } else {
                                    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: n * k)  // [n, k] f32
                                    defer { scratch.deallocate() }
                                    GGMLGemv.linear(rows, x: xp.baseAddress!, y: yp.baseAddress!, m: m, accumulate: false, scratch: scratch, tileRows: 5)
                                }
                            }
                        }
                        for i in 0..<m { for j in 0..<n {
                            var scale = 0.0
                            for c in 0..<k { scale += abs(Double(deq[j * k + c]) * Double(x.values[i * k + c])) }
                            let e = abs(Double(y[i * n + j]) - Double(ref[i * n + j])) / scale
                            if mode == .llamaCpp { worst = max(worst, e) } else { worstF32 = max(worstF32, e) }
                        } }
                    }
                    XCTAssertLessThanOrEqual(worst, 2e-6, "\(type.name) m=\(m)")
                    XCTAssertGreaterThanOrEqual(worstF32, 1e-4, "\(type.name) m=\(m): float32 activations should differ")
                    print("ggml activations \(type.name) m=\(m): max|Δ|/Σ|wx| \(worst) (float32 activations: \(worstF32))")
                }
            }
        }
        GGMLGemv.activations = .llamaCpp
    }

    /// The fused decode kernel (`i2q_ggml_gemv`) on every path this CPU has — scalar always, AVX2 and
    /// AVX-512 where present — gives the same bits for every type, and equals ggml_mul_mat (m = 1)
    /// within 2e-6 · Σ|w·x|; `GGMLGemv.run` with and without the fused kernel agree within the same bound.
    func testFusedDecodePathsAreBitIdenticalAndEqualGGML() throws {
        let x = try floats("mm.x")
        let k = x.shape[1]
        let impls = [Int32(I2Q_IMPL_SCALAR), Int32(I2Q_IMPL_AVX2), Int32(I2Q_IMPL_VNNI)].filter { $0 == Int32(I2Q_IMPL_SCALAR) || i2q_q4a_impl($0) == $0 }
        print("ggml fused decode: paths tested on this CPU: \(impls)")
        for type in GGMLBlockLayout.types where i2q_ggml_dot_supported(Int32(type.rawValue)) == 1 {
            let w = try tensor("mm.\(type.name).w")
            let n = w.shape[0]
            let ref = try floats("mm.\(type.name).y1").values
            let t = i2q_ggml_vec_dot_type(Int32(type.rawValue))
            let blockBytes = t == 15 ? 292 : (t == 9 ? 36 : 34), blockSize = t == 15 ? 256 : 32
            var xq = [UInt8](repeating: 0, count: k / blockSize * blockBytes)
            x.values.withUnsafeBufferPointer { xp in xq.withUnsafeMutableBytes { i2q_ggml_quantize_q8(t, xp.baseAddress!, Int64(k), $0.baseAddress!) } }
            var outs: [[Float]] = []
            for impl in impls {
                var y = [Float](repeating: .nan, count: n)
                let ok = w.bytes.withUnsafeBytes { wb in xq.withUnsafeBytes { xb in
                    i2q_ggml_gemv(Int32(type.rawValue), wb.baseAddress!, Int64(w.shape[1]), Int64(k), xb.baseAddress!, 0, Int64(n), &y, 0, impl)
                } }
                XCTAssertEqual(ok, 1)
                outs.append(y)
            }
            for o in outs.dropFirst() { XCTAssertEqual(o.map(\.bitPattern), outs[0].map(\.bitPattern), "\(type.name): paths differ") }
            // Against ggml, and against the dequantize-then-GEMV path.
            let owner = w.bytes as AnyObject
            w.bytes.withUnsafeBytes { wb in
                let rows = GGMLRows(type: type, rows: n, cols: k, rowBytes: w.shape[1], blocks: wb.baseAddress!, owner: owner)
                var deq = [Float](repeating: 0, count: n * k)
                rows.dequantize(rows: 0, n, into: &deq)
                var unfused = [Float](repeating: .nan, count: n)
                GGMLGemv.fusedDecode = false
                defer { GGMLGemv.fusedDecode = true }
                x.values.withUnsafeBufferPointer { xp in GGMLGemv.run(rows, x: xp.baseAddress!, y: &unfused, accumulate: false) }
                for j in 0..<n {
                    var scale = 0.0
                    for c in 0..<k { scale += abs(Double(deq[j * k + c]) * Double(x.values[c])) }
                    XCTAssertLessThanOrEqual(abs(Double(outs[0][j]) - Double(ref[j])) / scale, 2e-6, "\(type.name) row \(j) vs ggml")
                    XCTAssertLessThanOrEqual(abs(Double(outs[0][j]) - Double(unfused[j])) / scale, 2e-6, "\(type.name) row \(j) vs unfused")
                }
            }
        }
        XCTAssertEqual(i2q_ggml_dot_supported(10), 1, "Q2_K has a fused kernel (tested above)")
        XCTAssertEqual(i2q_ggml_dot_supported(11), 1, "Q3_K has a fused kernel (tested above)")
        XCTAssertEqual(i2q_ggml_dot_supported(20), 0, "IQ4_NL has no fused kernel")
    }
}
