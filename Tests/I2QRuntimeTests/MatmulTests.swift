import XCTest
@testable import I2QRuntime

final class MatmulTests: XCTestCase {
    /// Small integer matrices: the exact product is known by hand (and exactly representable).
    func testLinearMatchesHandComputedProduct() {
        // x = [[1,2,3],[4,5,6]]  w = [[1,0,1],[0,1,0],[2,2,2],[-1,0,1]]  (torch Linear: y = x wᵀ)
        let y = Matmul.linear([1, 2, 3, 4, 5, 6], [1, 0, 1, 0, 1, 0, 2, 2, 2, -1, 0, 1], m: 2, k: 3, n: 4)
        XCTAssertEqual(y, [4, 2, 12, 2, 10, 5, 30, 2])
    }
}

/// The products split over the worker pool (issue 19: OpenBLAS single-threaded, slabs on i2q's pool)
/// against one OpenBLAS call on the whole matrices, and against the exact sum.
final class MatmulThreadsTests: XCTestCase {
    private func random(_ n: Int, seed: UInt64) -> [Float] {
        var s = seed
        return (0..<n).map { _ in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: s >> 11) % 2001 - 1000) / 1000
        }
    }

    /// Column slabs (n ≥ m) and row slabs (m > n), transposed and plain b: the split product is the
    /// unsplit call's bits (each element: the same packed k-panels in the same order), and both are
    /// within k·2⁻²⁴·Σ|a·b| of the double-precision sum (sgemm's float32 bound).
    func testSplitProductEqualsOneCallAndTheExactSum() {
        XCTAssertGreaterThanOrEqual(Gemv.threads, 1)
        for (m, n, k, transB) in [(512, 1536, 576, true), (300, 40, 1000, true), (64, 520, 72, false), (700, 33, 450, false)] {
            let a = random(m * k, seed: UInt64(m)), b = random(n * k, seed: UInt64(n) + 7)
            var split = [Float](repeating: 0, count: m * n), whole = split
            let ldb = transB ? k : n
            Matmul.sgemm(transB: transB, m: m, n: n, k: k, alpha: 0.5, a: a, lda: k, b: b, ldb: ldb, beta: 0, c: &split, ldc: n)
            Matmul.serialSGEMM(transB: transB, m: m, n: n, k: k, alpha: 0.5, a: a, lda: k, b: b, ldb: ldb, beta: 0, c: &whole, ldc: n)
            XCTAssertEqual(split, whole, "m=\(m) n=\(n) k=\(k): split product differs from one call")
            var worst = 0.0
            for i in stride(from: 0, to: m, by: 17) { for j in stride(from: 0, to: n, by: 5) {
                var exact = 0.0, mag = 0.0
                for p in 0..<k {
                    let bv = Double(transB ? b[j * k + p] : b[p * n + j])
                    exact += Double(a[i * k + p]) * bv; mag += abs(Double(a[i * k + p]) * bv)
                }
                worst = max(worst, abs(Double(split[i * n + j]) - 0.5 * exact) / (0.5 * mag * Double(k) * 0x1p-24))
            } }
            XCTAssertLessThanOrEqual(worst, 1, "m=\(m) n=\(n) k=\(k)")
        }
    }

    /// Accumulating (beta = 1) into a split product adds to each element once.
    func testSplitAccumulates() {
        let m = 256, n = 640, k = 96
        let a = random(m * k, seed: 3), b = random(n * k, seed: 4)
        var c = [Float](repeating: 1, count: m * n), ref = c
        Matmul.sgemm(transB: true, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: k, beta: 1, c: &c, ldc: n)
        Matmul.serialSGEMM(transB: true, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: k, beta: 1, c: &ref, ldc: n)
        XCTAssertEqual(c, ref)
    }

    /// Bidirectional attention in units of (head, query block) on the pool: the same bits whatever
    /// the block, and transformers' eager formula (masked keys at −∞, float32 softmax) within 1e-5
    /// of a double-precision evaluation.
    func testBlockedAttentionEqualsOneBlockAndTheFormula() {
        let tq = 70, tk = 90, heads = 4, kvHeads = 2, d = 16
        let q = random(tq * heads * d, seed: 11), k = random(tk * kvHeads * d, seed: 12), v = random(tk * kvHeads * d, seed: 13)
        let mask = (0..<tk).map { $0 % 7 != 3 }
        func run(_ block: Int) -> [Float] {
            let saved = Kernels.queryBlock
            Kernels.queryBlock = block
            defer { Kernels.queryBlock = saved }
            var out = [Float](repeating: 0, count: tq * heads * d)
            Kernels.attention(q: q, ldq: heads * d, k: k, v: v, ldk: kvHeads * d, out: &out, ldo: heads * d, tq: tq, tk: tk,
                              heads: heads, kvHeads: kvHeads, headDim: d, keyMask: mask, scale: 0.25)
            return out
        }
        let whole = run(1000), blocked = run(9)
        XCTAssertEqual(whole, blocked)
        let want = AttentionFormula.evaluate(q: q, k: k, v: v, mask: mask, tq: tq, tk: tk, heads: heads, kvHeads: kvHeads, d: d, scale: 0.25).out
        let worst = zip(want, blocked).map { abs($0 - Double($1)) }.max()!
        XCTAssertLessThan(worst, 1e-5)
    }
}
