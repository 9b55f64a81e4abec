import Foundation
import XCTest
import CI2QKernels
import I2QCore
import I2QTestSupport
@testable import I2QRuntime

/// The float-weight decode GEMV (`i2q_gemv`, gemv16.c) for f32, bf16 and f16 weights:
/// - every implementation this CPU supports (AVX-512, AVX2+FMA+F16C) gives the scalar C
///   reference's bits exactly (same 16-lane order and reduction tree);
/// - the scalar reference is torch's float32 `F.linear` up to float32 summation rounding: within
///   k·2⁻²⁴·Σ|w·x| (plus a tiny absolute floor) of the product computed in double precision from the
///   same widened weights (bf16: the upper 16 bits of a float32; f16: IEEE half, Swift's Float16).
final class GemvKernelTests: XCTestCase {
    var rng = SplitMix64(seed: 11)
    func uniform() -> Float { Float(Double(rng.next() >> 11) / Double(1 << 53)) * 2 - 1 }

    /// Widths with and without a k % 16 tail, and a short one below 16.
    let shapes: [(n: Int, k: Int)] = [(7, 576), (5, 1152), (3, 100), (4, 9), (2, 4096)]

    func run(_ w: UnsafeRawPointer, _ dtype: Int32, _ x: [Float], n: Int, k: Int, impl: QuantGemv.Int8.Impl, accumulate: Bool = false,
             start: Float = 0) -> [Float] {
        var y = [Float](repeating: start, count: n)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                i2q_gemv(w, dtype, xp.baseAddress!, yp.baseAddress!, Int64(k), 0, Int64(n), accumulate ? 1 : 0, impl.rawValue)
            }
        }
        return y
    }

    func check(_ dtype: Int32, _ name: String, widen: (Float) -> (bits: UInt16?, value: Float)) {
        for (n, k) in shapes {
            let x = (0..<k).map { _ in uniform() }
            var f32: [Float] = [], u16: [UInt16] = []
            for _ in 0..<(n * k) {
                let (b, v) = widen(uniform() * 0.5)
                f32.append(v)
                if let b { u16.append(b) }
            }
            func call(_ impl: QuantGemv.Int8.Impl, accumulate: Bool = false, start: Float = 0) -> [Float] {
                dtype == Int32(I2Q_W_F32)
                    ? f32.withUnsafeBytes { run($0.baseAddress!, dtype, x, n: n, k: k, impl: impl, accumulate: accumulate, start: start) }
                    : u16.withUnsafeBytes { run($0.baseAddress!, dtype, x, n: n, k: k, impl: impl, accumulate: accumulate, start: start) }
            }
            let ref = call(.scalar)
            for r in 0..<n {
                var exact = 0.0, mag = 0.0
                for c in 0..<k { let p = Double(f32[r * k + c]) * Double(x[c]); exact += p; mag += abs(p) }
                XCTAssertLessThanOrEqual(abs(Double(ref[r]) - exact), Double(k) * 0x1p-24 * mag + 1e-30, "\(name) n=\(n) k=\(k) row \(r)")
            }
            for impl in QuantGemv.Int8.supported where impl != .scalar {
                XCTAssertEqual(call(impl).map(\.bitPattern), ref.map(\.bitPattern), "\(name) \(impl) k=\(k): bits differ from scalar")
                // accumulate: y + s, with the same s.
                XCTAssertEqual(call(impl, accumulate: true, start: 0.25).map(\.bitPattern), ref.map { (0.25 + $0).bitPattern }, "\(name) \(impl) accumulate")
            }
        }
    }

    func testF32EveryPathEqualsScalarAndTheReference() {
        check(Int32(I2Q_W_F32), "f32") { (nil, $0) }
    }

    func testBF16EveryPathEqualsScalarAndTheReference() {
        check(Int32(I2Q_W_BF16), "bf16") { v in
            let b = UInt16(v.bitPattern >> 16)  // truncation: any bf16 value will do
            return (b, Float(bitPattern: UInt32(b) << 16))
        }
    }

    func testF16EveryPathEqualsScalarAndTheReference() {
        var specials: [Float16] = [0x1p-24, -0x1p-20, 65504, -0.0]  // subnormals, the largest, negative zero
        check(Int32(I2Q_W_F16), "f16") { v in
            let h = specials.isEmpty ? Float16(v) : specials.removeFirst()
            return (h.bitPattern, Float(h))
        }
    }

    /// Strided rows (`i2q_gemv_ld`, decode attention's keys inside the cache) give the bits of the
    /// same rows stored contiguously, on every path; rows outside [r0, r1) are not touched.
    func testStridedRowsEqualContiguousRows() {
        let (n, k, ld) = (9, 64, 3 * 64 + 5)
        let big = (0..<(n * ld)).map { _ in uniform() }, x = (0..<k).map { _ in uniform() }
        let packed = (0..<n).flatMap { r in big[(r * ld + 5)..<(r * ld + 5 + k)] }  // rows start 5 floats in
        for impl in QuantGemv.Int8.supported {
            var a = [Float](repeating: -7, count: n), b = a
            big.withUnsafeBufferPointer { bp in
                i2q_gemv_ld(bp.baseAddress! + 5, Int32(I2Q_W_F32), Int64(ld), x, &a, Int64(k), 2, Int64(n), 0, impl.rawValue)
            }
            i2q_gemv(packed, Int32(I2Q_W_F32), x, &b, Int64(k), 2, Int64(n), 0, impl.rawValue)
            XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "\(impl)")
            XCTAssertEqual(Array(a[0..<2]), [-7, -7], "rows before r0 untouched")
        }
    }

    /// Decode attention's Σ p·v (`i2q_weighted_sum`): every path gives the bits of the plain loop
    /// out[c] = out[c] + p[j]·v[j][c] in order j (transformers' `attn_weights @ value` up to order).
    func testWeightedSumEveryPathEqualsThePlainLoop() {
        for (n, d, ld) in [(517, 64, 3 * 64), (3, 128, 128), (40, 72, 80), (1, 5, 5)] {
            let p = (0..<n).map { _ in abs(uniform()) }, v = (0..<(n * ld)).map { _ in uniform() }
            var want = [Float](repeating: 0, count: d)
            for j in 0..<n { for c in 0..<d { let t = p[j] * v[j * ld + c]; want[c] = want[c] + t } }
            for impl in QuantGemv.Int8.supported {
                var got = [Float](repeating: .nan, count: d)
                i2q_weighted_sum(p, v, Int64(ld), Int64(n), Int64(d), &got, impl.rawValue)
                XCTAssertEqual(got.map(\.bitPattern), want.map(\.bitPattern), "\(impl) n=\(n) d=\(d)")
            }
        }
    }

    /// The dispatched paths this machine tests (printed into the log: CI says which ran).
    func testReportsThePathsTested() {
        let paths = QuantGemv.Int8.supported.map(\.description)
        print("GemvKernelTests: paths on this CPU: \(paths.joined(separator: ", "))")
        XCTAssertTrue(paths.contains("scalar"))
    }
}
