import CBLAS

/// y[m,n] = x[m,k] · w[n,k]ᵀ — the layout of a torch `nn.Linear` (weight is [out, in], row-major).
///
/// Reference: torch.nn.functional.linear in float32 (both call an sgemm; results agree to float32
/// rounding of a k-term sum, ≤ ~k·2⁻²⁴ relative). Backed by OpenBLAS `cblas_sgemm`.
public enum Matmul {
    public static func linear(x: UnsafePointer<Float>, w: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                              m: Int, k: Int, n: Int) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                    1, x, Int32(k), w, Int32(k), 0, y, Int32(n))
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
