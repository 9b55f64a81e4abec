import XCTest
import I2QCore
@testable import I2QRuntime

final class GemvTests: XCTestCase {
    /// Against the same product in double precision (exact reference up to float32 input rounding).
    func testMatchesDoublePrecisionProduct() {
        for (n, k) in [(7, 5), (33, 576), (129, 1536), (1, 17)] {
            var seed: UInt64 = 42
            func rnd() -> Float { seed = seed &* 6364136223846793005 &+ 1442695040888963407; return Float(Int64(bitPattern: seed >> 11) % 2001 - 1000) / 1000 }
            let w = (0..<(n * k)).map { _ in rnd() }, x = (0..<k).map { _ in rnd() }
            var y = [Float](repeating: 1, count: n)
            w.withUnsafeBufferPointer { wp in x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                Gemv.run(w: wp.baseAddress!, x: xp.baseAddress!, y: yp.baseAddress!, n: n, k: k, accumulate: true)
            } } }
            for r in 0..<n {
                var d = 1.0
                for c in 0..<k { d += Double(w[r * k + c]) * Double(x[c]) }
                XCTAssertEqual(Double(y[r]), d, accuracy: 1e-5 * Double(k), "n \(n) k \(k) row \(r)")
            }
        }
    }
}

final class GemvManyTests: XCTestCase {
    /// runMany equals separate products (row splits across outputs must not shift rows).
    func testRunManyEqualsSeparateRuns() {
        let k = 40
        let sizes = [7, 3, 11]
        let ws = sizes.map { n in (0..<(n * k)).map { Float(($0 * 7919) % 97) / 97 - 0.5 } }
        let x = (0..<k).map { Float(($0 * 31) % 17) / 17 }
        var many = sizes.map { [Float](repeating: 0, count: $0) }
        var single = many
        x.withUnsafeBufferPointer { xp in
            for i in 0..<3 {
                ws[i].withUnsafeBufferPointer { wp in single[i].withUnsafeMutableBufferPointer { yp in
                    Gemv.run(w: wp.baseAddress!, x: xp.baseAddress!, y: yp.baseAddress!, n: sizes[i], k: k, accumulate: false)
                } }
            }
            // One output buffer holding the three outputs back to back.
            var flat = [Float](repeating: 0, count: 21)
            ws[0].withUnsafeBufferPointer { w0 in ws[1].withUnsafeBufferPointer { w1 in ws[2].withUnsafeBufferPointer { w2 in
                flat.withUnsafeMutableBufferPointer { y in
                    Gemv.runMany([(w0.baseAddress!, y.baseAddress!, 7), (w1.baseAddress!, y.baseAddress! + 7, 3),
                                  (w2.baseAddress!, y.baseAddress! + 10, 11)], x: xp.baseAddress!, k: k)
                }
            } } }
            many = [Array(flat[0..<7]), Array(flat[7..<10]), Array(flat[10..<21])]
        }
        XCTAssertEqual(many, single)
    }
}

final class Gemv16Tests: XCTestCase {
    /// Reading bf16/f16 weights in place gives exactly the product with the widened float32 weights.
    func testSixteenBitWeightsEqualTheirWidenedProduct() {
        let n = 37, k = 50
        let x = (0..<k).map { Float(($0 * 13) % 7) / 7 - 0.4 }
        let wf = (0..<(n * k)).map { Float(($0 * 7919) % 97) / 97 - 0.5 }
        for dt in [DType.bf16, .f16] {
            let w16: [UInt16] = wf.map { dt == .bf16 ? FloatConversion.bf16Bits($0) : FloatConversion.f16Bits($0) }
            let widened: [Float] = w16.map { dt == .bf16 ? FloatConversion.float(fromBF16: $0) : FloatConversion.float(fromF16: $0) }
            var a = [Float](repeating: 0, count: n), b = a
            x.withUnsafeBufferPointer { xp in
                w16.withUnsafeBytes { wp in a.withUnsafeMutableBufferPointer { ap in
                    Gemv.run16(w: wp.baseAddress!, dtype: dt, x: xp.baseAddress!, y: ap.baseAddress!, n: n, k: k, accumulate: false)
                } }
                widened.withUnsafeBufferPointer { wp in b.withUnsafeMutableBufferPointer { bp in
                    Gemv.run(w: wp.baseAddress!, x: xp.baseAddress!, y: bp.baseAddress!, n: n, k: k, accumulate: false)
                } }
            }
            XCTAssertEqual(a, b, "\(dt)")
        }
    }
}
