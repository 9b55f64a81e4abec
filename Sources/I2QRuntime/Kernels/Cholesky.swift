import CBLAS

/// Dense symmetric-matrix helpers on OpenBLAS/LAPACK (float32, row-major), for GPTQ.
///
/// Reference: torch 2.x `torch.linalg.cholesky` / `torch.cholesky_inverse` in float32 (LAPACK
/// `spotrf`/`spotri` on CPU, as here): same factorization, results equal to float32 rounding of the
/// blocked algorithm (~n·2⁻²⁴ relative).
public enum Cholesky {
    /// The upper triangle of h[cols, cols] += alpha · xᵀx for x [rows, cols] (the GPTQ Hessian
    /// 2·XᵀX/N with alpha = 2/N; `ssyrk`: half of sgemm's work). The strict lower triangle is left
    /// as it was: call `mirrorUpper` once the accumulation is done.
    public static func accumulateGram(_ x: UnsafePointer<Float>, rows: Int, cols: Int, alpha: Float,
                                      into h: UnsafeMutablePointer<Float>) {
        guard rows > 0 else { return }
        Matmul.withBLASThreads {
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, Int32(cols), Int32(rows), alpha, x, Int32(cols), 1, h, Int32(cols))
        }
    }

    /// h[n, n] := its upper triangle mirrored into the lower one (a full symmetric matrix).
    public static func mirrorUpper(_ h: UnsafeMutablePointer<Float>, n: Int) {
        for i in 0..<n { for j in 0..<i { h[i * n + j] = h[j * n + i] } }
    }

    /// c[m, n] -= aᵀ · b for a [k, m] (leading dimension lda) and b [k, n] (ldb), c with ldc.
    public static func subtractTransposedProduct(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                                                 b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0, k > 0 else { return }
        Matmul.withBLASThreads {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                        -1, a, Int32(lda), b, Int32(ldb), 1, c, Int32(ldc))
        }
    }

    /// a[m, n] -= x ⊗ y (x [m], y [n]; a with leading dimension lda): a rank-one update.
    public static func subtractOuter(m: Int, n: Int, x: UnsafePointer<Float>, y: UnsafePointer<Float>,
                                     a: UnsafeMutablePointer<Float>, lda: Int) {
        guard m > 0, n > 0 else { return }
        cblas_sger(CblasRowMajor, Int32(m), Int32(n), -1, x, 1, y, 1, a, Int32(lda))
    }

    /// Reverses `count` floats in place.
    static func reverse(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
        var b = UnsafeMutableBufferPointer(start: p, count: count)
        b.reverse()
    }

    /// GPTQ's inverse factor: U upper triangular with Uᵀ·U = h⁻¹ — mathematically
    /// `torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)` (GPTQModel,
    /// llm-compressor), computed with one factorization and one triangular inverse (2n³/3 flops instead
    /// of 4n³/3): with J the order-reversing permutation and J·h·J = L·Lᵀ, h⁻¹ = AᵀA for
    /// A = J·L⁻¹·J, which is upper triangular with a positive diagonal — so A is the unique upper
    /// Cholesky factor U of h⁻¹. Equal to the torch sequence to float32 rounding (GPTQTests compares
    /// the resulting codes with GPTQModel's). `h` [n, n] symmetric, row-major, replaced by U (strict
    /// lower triangle zeroed). Returns false when h is not positive definite.
    public static func inverseUpperFactor(_ h: UnsafeMutablePointer<Float>, n: Int) -> Bool {
        var nn = Int32(n), lda = Int32(n), info: Int32 = 0
        let count = n * n
        // J·h·J: reversing the buffer maps element (i, j) to (n−1−i, n−1−j) in either layout.
        reverse(h, count)
        // Column-major lower L of J·h·J (the buffer is symmetric, so its layout does not matter here),
        // then L⁻¹ in place (column-major lower; the other triangle untouched).
        var lo = CChar(UInt8(ascii: "L")), nonUnit = CChar(UInt8(ascii: "N"))
        let ok = Matmul.withBLASThreads { () -> Bool in
            spotrf_(&lo, &nn, h, &lda, &info)
            guard info == 0 else { return false }
            strtri_(&lo, &nonUnit, &nn, h, &lda, &info)
            return info == 0
        }
        guard ok else { return false }
        // L⁻¹(p, q) sits at q·n + p. Reversed, the row-major element (i, j) is L⁻¹(n−1−j, n−1−i) =
        // A(j, i): Aᵀ, valid where i ≥ j. So U(i, j) = A(i, j) is the reversed buffer's (j, i) for i ≤ j.
        reverse(h, count)
        for i in 0..<n {
            for j in (i + 1)..<max(n, i + 1) { h[i * n + j] = h[j * n + i] }
            for j in 0..<i { h[i * n + j] = 0 }
        }
        return true
    }
}
