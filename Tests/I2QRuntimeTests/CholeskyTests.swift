import XCTest
import I2QTestSupport
@testable import I2QRuntime

/// GPTQ's linear algebra (Cholesky.swift) against its definitions: the Hessian is XᵀX·alpha (a full
/// symmetric matrix after `mirrorUpper`), and the inverse factor U is upper triangular with a positive
/// diagonal and Uᵀ·U·H = I — the defining properties of torch's
/// `cholesky(cholesky_inverse(cholesky(H)), upper=True)` (the Cholesky factor is unique).
final class CholeskyTests: XCTestCase {
    func testGramAndInverseUpperFactor() {
        var rng = SplitMix64(seed: 3)
        for n in [1, 2, 7, 64, 131] {
            let rows = n + 9
            let x = (0..<(rows * n)).map { _ in Float(Double(rng.next() >> 11) / Double(1 << 53) * 2 - 1) }  // [rows, n]
            var h = [Float](repeating: 0, count: n * n)                           // [n, n]
            x.withUnsafeBufferPointer { xp in h.withUnsafeMutableBufferPointer { hp in
                Cholesky.accumulateGram(xp.baseAddress!, rows: rows, cols: n, alpha: 0.5, into: hp.baseAddress!)
                Cholesky.mirrorUpper(hp.baseAddress!, n: n)
            } }
            for i in 0..<n { for j in 0..<n {
                var s = 0.0
                for r in 0..<rows { s += Double(x[r * n + i]) * Double(x[r * n + j]) }
                XCTAssertEqual(Double(h[i * n + j]), 0.5 * s, accuracy: 1e-4 * max(1, abs(s)), "n \(n) H[\(i),\(j)]")
            } }
            for i in 0..<n { h[i * n + i] += 0.01 }
            let h0 = h
            XCTAssertTrue(h.withUnsafeMutableBufferPointer { Cholesky.inverseUpperFactor($0.baseAddress!, n: n) })
            var worst = 0.0
            for i in 0..<n {
                XCTAssertGreaterThan(h[i * n + i], 0, "n \(n): diagonal")
                for j in 0..<i { XCTAssertEqual(h[i * n + j], 0, "n \(n): lower triangle") }
            }
            // (UᵀU)·H0 = I
            var utu = [Double](repeating: 0, count: n * n)
            for i in 0..<n { for j in 0..<n { var s = 0.0; for k in 0...min(i, j) { s += Double(h[k * n + i]) * Double(h[k * n + j]) }; utu[i * n + j] = s } }
            for i in 0..<n { for j in 0..<n {
                var s = 0.0
                for k in 0..<n { s += utu[i * n + k] * Double(h0[k * n + j]) }
                worst = max(worst, abs(s - (i == j ? 1 : 0)))
            } }
            XCTAssertLessThan(worst, 2e-3, "n \(n): |UᵀU·H − I|")
        }
        var notPD: [Float] = [1, 2, 2, 1]
        XCTAssertFalse(notPD.withUnsafeMutableBufferPointer { Cholesky.inverseUpperFactor($0.baseAddress!, n: 2) })
    }
}
