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
        sgemm(transB: true, m: m, n: n, k: k, alpha: 1, a: x, lda: k, b: w, ldb: k, beta: accumulate ? 1 : 0, c: y, ldc: n)
    }

    /// c[m,n] = alpha · a[m,k] · b (b is [k,n], or [n,k] when `transB`), with leading dimensions.
    public static func gemm(transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                            a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                            c: UnsafeMutablePointer<Float>, ldc: Int) {
        sgemm(transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: 0, c: c, ldc: ldc)
    }

    // MARK: - Threads (issue 19: one persistent pool for the whole forward)
    //
    // OpenBLAS is kept at one thread and every product is split over i2q's worker pool (pool.c), the
    // pool the GEMVs, attention and norms already use. With OpenBLAS's own threads beside the pool,
    // each sgemm woke them and they then spun in sched_yield for a while (≈ 20 % of the CPU time of a
    // perplexity run on 2 cores), competing with the pool's worker. Splitting the output into column
    // (or row) slabs does not change any element's sum: OpenBLAS computes an element from the same
    // packed k-panels in the same order whichever slab it is in (results bit-identical to the
    // unsplit call; MatmulThreadsTests). LAPACK-heavy callers (GPTQ's Cholesky) borrow OpenBLAS's
    // threads with `withBLASThreads`.

    /// Sets OpenBLAS to one thread, once (every entry point here evaluates it).
    static let blasSingleThread: Void = { openblas_set_num_threads(1) }()

    /// Products smaller than this (m·n·k) run on the calling thread.
    nonisolated(unsafe) static var splitThreshold = 1 << 18

    /// c[m,n] = alpha · a[m,k] · op(b) + beta · c, op(b) = b [k,n] or bᵀ (b [n,k]) when `transB`;
    /// row-major, leading dimensions given. Split over the pool into column slabs (n ≥ m) or row slabs
    /// of whole 16-wide panels; each slab is a single-threaded sgemm on its own part of c.
    public static func sgemm(transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        _ = blasSingleThread
        guard m > 0, n > 0 else { return }
        let byColumns = n >= m
        let panels = ((byColumns ? n : m) + 15) / 16
        let parts = m * n * k >= splitThreshold ? min(Gemv.threads, panels) : 1
        let box = UnsafeSendable((a, b, c))
        WorkerPool.run(parts) { part in
            let (a, b, c) = box.p
            let lo = panels * part / parts * 16, hi = min(byColumns ? n : m, panels * (part + 1) / parts * 16)
            guard lo < hi else { return }
            if byColumns {
                serialSGEMM(transB: transB, m: m, n: hi - lo, k: k, alpha: alpha, a: a, lda: lda,
                            b: transB ? b + lo * ldb : b + lo, ldb: ldb, beta: beta, c: c + lo, ldc: ldc)
            } else {
                serialSGEMM(transB: transB, m: hi - lo, n: n, k: k, alpha: alpha, a: a + lo * lda, lda: lda,
                            b: b, ldb: ldb, beta: beta, c: c + lo * ldc, ldc: ldc)
            }
        }
    }

    /// One single-threaded OpenBLAS sgemm on the calling thread (a part of a split product).
    static func serialSGEMM(transB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        _ = blasSingleThread
        cblas_sgemm(CblasRowMajor, CblasNoTrans, transB ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Runs `body` with OpenBLAS on all of i2q's threads (LAPACK factorizations, ssyrk), then back to one.
    public static func withBLASThreads<T>(_ body: () throws -> T) rethrows -> T {
        _ = blasSingleThread
        openblas_set_num_threads(Int32(Gemv.threads))
        defer { openblas_set_num_threads(1) }
        return try body()
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
