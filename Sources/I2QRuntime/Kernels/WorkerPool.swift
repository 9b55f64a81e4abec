import CI2QKernels
import Dispatch
import Foundation

/// Splits kernel work between the calling thread and a persistent worker thread (C `i2q_pool_run`,
/// Sources/CI2QKernels/pool.c): the worker spins ~50 µs after each task, so the ~120 GEMV
/// dispatches of a decoded token do not each pay a thread wake-up. Results do not depend on the
/// pool: every part computes the same rows with the same code as before (only who runs it changes).
/// `I2Q_POOL=0` uses `DispatchQueue.concurrentPerform` instead (for comparisons).
enum WorkerPool {
    nonisolated(unsafe) static var enabled: Bool = ProcessInfo.processInfo.environment["I2Q_POOL"] != "0"

    /// body(part) for every part in 0..<parts, spread over `Gemv.threads` threads; returns when all are done.
    static func run(_ parts: Int, _ body: (Int) -> Void) {
        guard parts > 1 else { if parts == 1 { body(0) }; return }
        withoutActuallyEscaping(body) { b in
            guard enabled else {
                let box = UnsafeSendable(b)
                DispatchQueue.concurrentPerform(iterations: parts) { box.p($0) }
                return
            }
            var f = b
            withUnsafeMutablePointer(to: &f) { p in
                i2q_pool_run(Int64(parts), Int32(Gemv.threads - 1), { ctx, part in
                    ctx!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(part))
                }, p)
            }
        }
    }
}
