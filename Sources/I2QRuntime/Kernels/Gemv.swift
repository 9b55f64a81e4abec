import Foundation
import Dispatch
import I2QCore
import CI2QKernels

/// y[n] = W[n,k] · x[k] (+ y) for one row of activations (decoding), float32, the cores over the
/// output rows; the rows themselves are the C kernel `i2q_gemv` (gemv16.c: AVX-512 / AVX2+FMA /
/// scalar chosen at run time, all bit-identical).
///
/// Reference: the same product as `Matmul.linear` with m = 1 (torch `F.linear`); the sum order
/// differs (16 partial sums), which changes results by float32 rounding only (≤ ~k·2⁻²⁴ relative).
public enum Gemv {
    /// Threads of the GEMV/attention kernels: `I2Q_THREADS`, else the cores this process may use.
    static let threads: Int = {
        if let v = ProcessInfo.processInfo.environment["I2Q_THREADS"], let n = Int(v), n >= 1 { return min(n, 256) }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    public static func run(w: UnsafePointer<Float>, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                           n: Int, k: Int, accumulate: Bool) {
        let wp = UnsafeSendable(w), xp = UnsafeSendable(x), yp = UnsafeSendable(y)
        let rowsPer = (n + threads - 1) / threads
        WorkerPool.run(threads) { part in
            let lo = part * rowsPer, hi = min(n, lo + rowsPer)
            if lo < hi { rows(wp.p, xp.p, yp.p, lo, hi, k, accumulate) }
        }
    }

    /// Several products sharing one input x[k] (q/k/v, or gate/up) in one dispatch: the rows of all
    /// outputs are split between the threads. Each item: weight [n, k], output [n].
    public static func runMany(_ items: [(w: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, n: Int)],
                               x: UnsafePointer<Float>, k: Int) {
        let total = items.reduce(0) { $0 + $1.n }
        let boxed = UnsafeSendable(items), xp = UnsafeSendable(x)
        let rowsPer = (total + threads - 1) / threads
        WorkerPool.run(threads) { part in
            var lo = part * rowsPer
            let hi = min(total, lo + rowsPer)
            var base = 0
            for it in boxed.p {
                let a = max(lo, base), b = min(hi, base + it.n)
                if a < b { rows(it.w, xp.p, it.y, a - base, b - base, k, false) }
                base += it.n
                if base >= hi { break }
            }
            lo = hi
        }
    }

    /// Rows [lo, hi) of y = W·x: the C kernel (gemv16.c), AVX-512 / AVX2+FMA / scalar chosen at run time.
    @inline(__always)
    static func rows(_ w: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                     _ lo: Int, _ hi: Int, _ k: Int, _ accumulate: Bool) {
        i2q_gemv(w, Int32(I2Q_W_F32), x, y, Int64(k), Int64(lo), Int64(hi), accumulate ? 1 : 0, Int32(I2Q_IMPL_AUTO))
    }
}

/// A pointer handed to worker threads that only read it (or write disjoint parts).
struct UnsafeSendable<P>: @unchecked Sendable { let p: P; init(_ p: P) { self.p = p } }

extension Gemv {
    /// y[n] (+)= W[n,k] · x[k] with W stored as bf16 or f16 (read in place and widened exactly in
    /// registers by `i2q_gemv`). Same reference, order and tolerance as `run` with the widened
    /// weights: float32 rounding of the k-term sum.
    public static func run16(w: UnsafeRawPointer, dtype: DType, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                             n: Int, k: Int, accumulate: Bool) {
        let wp = UnsafeSendable(w), xp = UnsafeSendable(x), yp = UnsafeSendable(y)
        let rowsPer = (n + threads - 1) / threads
        let kind = Int32(dtype == .bf16 ? I2Q_W_BF16 : I2Q_W_F16)
        WorkerPool.run(threads) { part in
            let lo = part * rowsPer, hi = min(n, lo + rowsPer)
            guard lo < hi else { return }
            i2q_gemv(wp.p, kind, xp.p, yp.p, Int64(k), Int64(lo), Int64(hi), accumulate ? 1 : 0, Int32(I2Q_IMPL_AUTO))
        }
    }
}
