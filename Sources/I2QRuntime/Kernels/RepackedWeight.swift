import CI2QKernels
import Foundation

/// A bf16 weight repacked once into the prefill GEMM's panel layout (`i2q_bgemm_repack`) and kept, so
/// that later prefills skip the per-call packing (~10 % of a perplexity run) — as llama.cpp repacks
/// weights at load (its CPU "repack" buffers). Kept only from a weight's second prefill on (a single
/// `run` prefills each weight once and keeps nothing) and only while the process-wide budget
/// (`RepackedWeight.budgetBytes`, `--repack-mb`, I2Q_REPACK_MB; default 512 MiB, 0 = off) has room:
/// first come, first kept, freed with the model. Same panels, tiles and order of additions as packing
/// per call: bit-identical products (BgemmKernelTests).
public final class RepackedWeight: @unchecked Sendable {
    /// Bytes all repacked weights may hold together.
    nonisolated(unsafe) public static var budgetBytes: Int = {
        if let s = ProcessInfo.processInfo.environment["I2Q_REPACK_MB"], let mb = Int(s), mb >= 0 { return mb << 20 }
        return 512 << 20
    }()
    private static let lock = NSLock()
    nonisolated(unsafe) private static var usedBytes = 0
    /// Bytes held now by all repacked weights (tests, reports).
    public static var heldBytes: Int { lock.withLock { usedBytes } }

    private let lock = NSLock()
    private var prefills = 0
    private var panels: UnsafeMutableRawPointer?  // [k blocks][n/32 panels][kp][32][2] bf16 (bgemm.c)
    private var bytes = 0
    private var shape = (n: 0, k: 0)

    init() {}

    deinit {
        guard let panels else { return }
        panels.deallocate()
        Self.lock.withLock { Self.usedBytes -= bytes }
    }

    /// The repacked [n, k] weight `w` (bf16, row-major) for this prefill, or nil: pack per call. Repacks
    /// (on the pool) at the second prefill when the budget has room for it.
    func panels(w: UnsafePointer<UInt16>, n: Int, k: Int) -> UnsafeRawPointer? {
        lock.lock()
        defer { lock.unlock() }
        if let panels { return shape == (n, k) ? UnsafeRawPointer(panels) : nil }
        prefills += 1
        guard prefills >= 2, BF16Gemm.native else { return nil }
        let need = i2q_bgemm_repack_bytes(Int64(k), Int64(n))
        let granted = Self.lock.withLock {
            guard Self.usedBytes + need <= Self.budgetBytes else { return false }
            Self.usedBytes += need
            return true
        }
        guard granted else { return nil }
        let out = UnsafeMutableRawPointer.allocate(byteCount: max(64, need), alignment: 64)
        let count = (n + 31) / 32, threads = min(Gemv.threads, count)
        let wp = UnsafeSendable(w), op = UnsafeSendable(out)
        WorkerPool.run(threads) { part in
            _ = i2q_bgemm_repack(wp.p, Int64(k), Int64(n), Int64(k), Int64(count * part / threads), Int64(count * (part + 1) / threads), op.p)
        }
        panels = out
        bytes = need
        shape = (n, k)
        return UnsafeRawPointer(out)
    }
}
