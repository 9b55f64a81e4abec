import CBLAS

/// Dense symmetric-matrix helpers on OpenBLAS/LAPACK (float32, row-major), for GPTQ.
///
/// Reference: torch 2.x `torch.linalg.cholesky` / `torch.cholesky_inverse` in float32 (LAPACK
/// `spotrf`/`spotri` on CPU, as here): same factorization, results equal to float32 rounding of the
/// blocked algorithm (~n·2⁻²⁴ relative).
public enum Cholesky {
    /// h[cols, cols] += alpha · xᵀx for x [rows, cols] (the GPTQ Hessian 2·XᵀX/N with alpha = 2/N).
    public static func accumulateGram(_ x: UnsafePointer<Float>, rows: Int, cols: Int, alpha: Float,
                                      into h: UnsafeMutablePointer<Float>) {
        guard rows > 0 else { return }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(cols), Int32(cols), Int32(rows),
                    alpha, x, Int32(cols), x, Int32(cols), 1, h, Int32(cols))
    }

    /// c[m, n] -= aᵀ · b for a [k, m] (leading dimension lda) and b [k, n] (ldb), c with ldc.
    public static func subtractTransposedProduct(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                                                 b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0, k > 0 else { return }
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                    -1, a, Int32(lda), b, Int32(ldb), 1, c, Int32(ldc))
    }

    /// a[m, n] -= x ⊗ y (x [m], y [n]; a with leading dimension lda): a rank-one update.
    public static func subtractOuter(m: Int, n: Int, x: UnsafePointer<Float>, y: UnsafePointer<Float>,
                                     a: UnsafeMutablePointer<Float>, lda: Int) {
        guard m > 0, n > 0 else { return }
        cblas_sger(CblasRowMajor, Int32(m), Int32(n), -1, x, 1, y, 1, a, Int32(lda))
    }

    /// GPTQ's inverse factor: U upper triangular with Uᵀ·U = h⁻¹, i.e.
    /// `torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)`.
    /// `h` [n, n] symmetric, row-major, replaced by U (strict lower triangle zeroed). Returns false
    /// when h is not positive definite.
    public static func inverseUpperFactor(_ h: UnsafeMutablePointer<Float>, n: Int) -> Bool {
        var nn = Int32(n), lda = Int32(n), info: Int32 = 0
        // Row-major upper triangle == column-major lower triangle: factor and invert that one.
        var lo = CChar(UInt8(ascii: "L"))
        spotrf_(&lo, &nn, h, &lda, &info)
        guard info == 0 else { return false }
        spotri_(&lo, &nn, h, &lda, &info)
        guard info == 0 else { return false }
        // The inverse is in the column-major lower = row-major upper triangle; mirror it.
        for i in 0..<n { for j in 0..<i { h[i * n + j] = h[j * n + i] } }
        // Column-major "L" of the inverse: L Lᵀ = h⁻¹ with L in column-major lower = row-major
        // upper storage, which read row-major is U = Lᵀ with Uᵀ U = h⁻¹.
        spotrf_(&lo, &nn, h, &lda, &info)
        guard info == 0 else { return false }
        for i in 0..<n { for j in 0..<i { h[i * n + j] = 0 } }
        return true
    }
}
