import Foundation
import Dispatch
import I2QCore

/// y[n] = W[n,k] · x[k] (+ y) for one row of activations (decoding), float32, 2 threads over the
/// output rows, 16-lane SIMD accumulation.
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

    @inline(__always)
    static func rows(_ w: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                     _ lo: Int, _ hi: Int, _ k: Int, _ accumulate: Bool) {
        let vk = k / 16
        let xr = UnsafeRawPointer(x)
        for r in lo..<hi {
            let wr = UnsafeRawPointer(w + r * k)
            var acc = SIMD16<Float>()
            for v in 0..<vk {
                acc.addProduct(wr.loadUnaligned(fromByteOffset: v * 64, as: SIMD16<Float>.self),
                               xr.loadUnaligned(fromByteOffset: v * 64, as: SIMD16<Float>.self))
            }
            var s = acc.sum()
            for c in (vk * 16)..<k { s += w[r * k + c] * x[c] }
            y[r] = accumulate ? y[r] + s : s
        }
    }
}

/// A pointer handed to worker threads that only read it (or write disjoint parts).
struct UnsafeSendable<P>: @unchecked Sendable { let p: P; init(_ p: P) { self.p = p } }

extension Gemv {
    /// y[n] (+)= W[n,k] · x[k] with W stored as bf16 or f16 (read in place; each row is widened into
    /// a small per-thread buffer, then a 16-lane float32 dot product). Same reference and tolerance
    /// as `run` with the widened weights: float32 rounding of the k-term sum.
    public static func run16(w: UnsafeRawPointer, dtype: DType, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>,
                             n: Int, k: Int, accumulate: Bool) {
        let wp = UnsafeSendable(w), xp = UnsafeSendable(x), yp = UnsafeSendable(y)
        let rowsPer = (n + threads - 1) / threads
        let isBF16 = dtype == .bf16
        WorkerPool.run(threads) { part in
            let lo = part * rowsPer, hi = min(n, lo + rowsPer)
            guard lo < hi else { return }
            let row = UnsafeMutablePointer<Float>.allocate(capacity: k)  // [k] widened weight row
            defer { row.deallocate() }
            let vk = k / 16
            let xr = UnsafeRawPointer(xp.p)
            for r in lo..<hi {
                let src = wp.p + r * k * 2
                if isBF16 {
                    let s = src.assumingMemoryBound(to: UInt16.self)
                    for c in 0..<k { row[c] = Float(bitPattern: UInt32(s[c]) << 16) }
                } else {
                    let s = src.assumingMemoryBound(to: Float16.self)
                    for c in 0..<k { row[c] = Float(s[c]) }
                }
                let rr = UnsafeRawPointer(row)
                var acc = SIMD16<Float>()
                for v in 0..<vk {
                    acc.addProduct(rr.loadUnaligned(fromByteOffset: v * 64, as: SIMD16<Float>.self),
                                   xr.loadUnaligned(fromByteOffset: v * 64, as: SIMD16<Float>.self))
                }
                var s = acc.sum()
                for c in (vk * 16)..<k { s += row[c] * xp.p[c] }
                yp.p[r] = accumulate ? yp.p[r] + s : s
            }
        }
    }
}
