import XCTest
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
