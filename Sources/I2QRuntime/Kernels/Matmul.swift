import CBLAS

/// Matrix products on OpenBLAS (`cblas_sgemm`), float32, row-major.
///
/// Reference: `torch.nn.functional.linear` / `torch.matmul` in float32. Both call an sgemm; the
/// results agree to float32 rounding of a k-term sum (≤ ~k·2⁻²⁴ relative; in practice ~1e-6).
public enum Matmul {
    /// y[m,n] = x[m,k] · w[n,k]ᵀ (+ y if `accumulate`) — the layout of a torch `nn.Linear` (weight [out, in]).
    public static func linear(x: UnsafePointer<Float>, w: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                              m: Int, k: Int, n: Int, accumulate: Bool = false) {
        if m == 1 {
            // One row (decoding): a matrix-vector product, memory-bound on the weight.
            Gemv.run(w: w, x: x, y: y, n: n, k: k, accumulate: accumulate)
            return
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                    1, x, Int32(k), w, Int32(k), accumulate ? 1 : 0, y, Int32(n))
    }

    /// c[m,n] = alpha · a[m,k] · b (b is [k,n], or [n,k] when `transB`), with leading dimensions.
    public static func gemm(transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                            a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                            c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, transB ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), 0, c, Int32(ldc))
    }

    /// Array convenience: x is [m,k], w is [n,k]; returns [m,n].
    public static func linear(_ x: [Float], _ w: [Float], m: Int, k: Int, n: Int) -> [Float] {
        precondition(x.count == m * k && w.count == n * k, "linear: shape mismatch")
        var y = [Float](repeating: 0, count: m * n)  // [m, n]
        x.withUnsafeBufferPointer { xp in
            w.withUnsafeBufferPointer { wp in
                y.withUnsafeMutableBufferPointer { yp in
                    linear(x: xp.baseAddress!, w: wp.baseAddress!, y: yp.baseAddress!, m: m, k: k, n: n)
                }
            }
        }
        return y
    }
}
