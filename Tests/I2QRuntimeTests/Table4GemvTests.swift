import Foundation
import XCTest
import I2QCore
import I2QQuant
import I2QTestSupport
@testable import I2QRuntime

/// The int8 decode GEMV for NF4/FP4 weights (`QuantGemv.Int8.tableRows`, C `i2q_table4_gemv`) against
/// bitsandbytes' dequantized weights (`FourBitCodec.dequantize`, bnb-exact per FourBitCodecTests)
/// times the float32 x, in double precision.
///
/// Tolerance, per output row: the kernel multiplies w̃_c = t[q_c]/127 · a_c (t = round(127·code), a
/// the block's absmax) with x̂ = d_b·round(x/d_b), so
///     |y − Σ w·x| ≤ Σ_c |w̃_c|·|x_c − x̂_c| + Σ_c |w_c − w̃_c|·|x_c|     (|x − x̂| ≤ max|x_b|/254,
///                                                                       |w − w̃| ≤ a/254)
/// plus float32 rounding of the sums, k·2⁻²⁴·Σ|w̃·x̂| (checked separately against Σ w̃·x̂).
final class Table4GemvTests: XCTestCase {
    typealias Store = QuantKernelTests.Store
    var rng = SplitMix64(seed: 11)
    func uniform() -> Float { Float(Double(rng.next() >> 11) / Double(1 << 53)) * 2 - 1 }
    func randoms(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in uniform() * scale } }

    /// A bnb 4-bit weight quantized from `w` and its reference dequantization (QuantKernelTests' builder).
    func table(_ w: [Float], rows: Int, cols: Int, type: FourBitType, blockSize: Int, doubleQuant: Bool, store: Store) -> (PackedFourBit, [Float]) {
        QuantKernelTests.table(w, rows: rows, cols: cols, type: type, blockSize: blockSize, doubleQuant: doubleQuant, store: store)
    }

    func rows(_ p: PackedFourBit, _ x: [Float], y0: [Float]? = nil, impl: QuantGemv.Int8.Impl?) -> [Float] {
        let xq = x.withUnsafeBufferPointer { QuantGemv.Int8.Activations($0.baseAddress!, k: p.cols) }
        var y = y0 ?? [Float](repeating: .nan, count: p.rows)
        y.withUnsafeMutableBufferPointer { QuantGemv.Int8.tableRows(p, 0..<p.rows, xq, $0.baseAddress!, accumulate: y0 != nil, impl: impl) }
        return y
    }

    /// (rows, cols, block size): partial last chunks of 1–3 q8 blocks (cols % 128 ≠ 0), blocks of 32
    /// to 256, rows whose flattened start is not block-aligned for blocks larger than the row.
    let shapes = [(5, 576, 64), (7, 96, 32), (3, 1536, 128), (9, 160, 32), (4, 224, 32), (11, 384, 64),
                  (6, 32, 64), (3, 768, 256), (17, 1152, 64)]

    func testWithinTableAndActivationRoundingBound() {
        let store = Store()
        var worst = 0.0
        for type in [FourBitType.nf4, .fp4] {
            for dq in [false, true] {
                for (n, k, bs) in shapes {
                    var w = randoms(n * k, scale: 0.05)
                    w[min(5, w.count - 1)] = 0.9  // an outlier weight: a coarse block
                    let (p, ref) = table(w, rows: n, cols: k, type: type, blockSize: bs, doubleQuant: dq, store: store)
                    XCTAssertTrue(p.int8TableRows)
                    var x = randoms(k)
                    x[1] = -7
                    let xq = x.withUnsafeBufferPointer { QuantGemv.Int8.Activations($0.baseAddress!, k: k) }
                    let xh = xq.dequantized()
                    let t = QuantTables.int8Code(type), code = QuantTables.code(type)
                    for impl in QuantGemv.Int8.supported {
                        let y = rows(p, x, impl: impl)
                        for r in 0..<n {
                            var s = 0.0, sh = 0.0, bound = 0.0, absWXh = 0.0
                            for c in 0..<k {
                                let i = r * k + c
                                let byte = p.packed[i >> 1]
                                let q = Int(i & 1 == 0 ? byte >> 4 : byte & 15)
                                let a = Double(p.tableScale(i / bs))
                                let wt = Double(t[q]) / 127 * a  // w̃
                                XCTAssertEqual(Double(ref[i]), Double(code[q] * Float(a)), "reference value \(i)")
                                s += Double(ref[i]) * Double(x[c]); sh += wt * Double(xh[c]); absWXh += abs(wt * Double(xh[c]))
                                bound += abs(wt) * abs(Double(x[c] - xh[c])) + abs(Double(ref[i]) - wt) * abs(Double(x[c]))
                            }
                            let rounding = Double(k + 16) * 0x1p-24 * absWXh
                            let d = abs(Double(y[r]) - s), dh = abs(Double(y[r]) - sh)
                            XCTAssertLessThanOrEqual(d, bound + rounding + 1e-30, "\(type) dq \(dq) \(impl) [\(n), \(k)] bs \(bs) row \(r)")
                            XCTAssertLessThanOrEqual(dh, rounding + 1e-30, "\(type) dq \(dq) \(impl) [\(n), \(k)] row \(r): not Σ w̃·x̂")
                            worst = max(worst, d / max(bound, 1e-30))
                        }
                    }
                }
            }
        }
        print("table4 int8 GEMV: max |Δ| / bound = \(worst)")
    }

    /// Every implementation the CPU supports gives the scalar C code's bits (also accumulating).
    func testScalarAndSIMDPathsAgreeBitForBit() throws {
        let simd = QuantGemv.Int8.supported.filter { $0 != .scalar }
        try XCTSkipIf(simd.isEmpty, "this CPU has neither AVX2 nor AVX-512 VNNI: only the scalar path exists")
        let store = Store()
        for impl in simd {
            for dq in [false, true] {
                for (n, k, bs) in shapes {
                    let (p, _) = table(randoms(n * k, scale: 0.1), rows: n, cols: k, type: .nf4, blockSize: bs, doubleQuant: dq, store: store)
                    let x = randoms(k, scale: 3), y0 = randoms(n)
                    XCTAssertEqual(rows(p, x, impl: .scalar).map(\.bitPattern), rows(p, x, impl: impl).map(\.bitPattern), "\(impl) [\(n), \(k)] bs \(bs)")
                    XCTAssertEqual(rows(p, x, y0: y0, impl: .scalar).map(\.bitPattern), rows(p, x, y0: y0, impl: impl).map(\.bitPattern),
                                   "\(impl) [\(n), \(k)] bs \(bs) accumulate")
                }
            }
        }
    }

    /// The int8 table is round(127·code) of bitsandbytes' NF4 table (functional.py `get_4bit_type`).
    func testInt8TableOfNF4() {
        let t = QuantTables.int8Code(.nf4)
        XCTAssertEqual((0..<16).map { Int(t[$0]) }, [-127, -88, -67, -50, -36, -23, -12, 0, 10, 20, 31, 43, 56, 71, 92, 127])
    }

    /// Non-finite activations give NaN outputs.
    func testNonFiniteActivationsPropagate() {
        let store = Store()
        let (p, _) = table(randoms(3 * 128, scale: 0.1), rows: 3, cols: 128, type: .nf4, blockSize: 64, doubleQuant: false, store: store)
        var x = randoms(128)
        x[40] = .nan
        for impl in QuantGemv.Int8.supported { XCTAssertTrue(rows(p, x, impl: impl).allSatisfy(\.isNaN), "\(impl)") }
    }
}
