import CBLAS
import CI2QKernels
import Foundation
import I2QCore

/// Products of bf16 weights at prefill (m > 1), when asked for (`--bf16-activations`,
/// I2Q_BF16_ACTIVATIONS=1): the layer input is rounded to bf16 — what torch, llama.cpp and vLLM do
/// with a bf16 model — and multiplied with the bf16 weight in place, exact products summed in
/// float32. Off by default: the runtime's reference is transformers computing the stored weights
/// in float32 (every golden test), and `verify` measures what the weights alone cost.
///
/// Reference: `x.bfloat16().float() @ w.float().T` (torch, float32 after the rounding). The AVX-512
/// BF16 kernel (bgemm.c, `vdpbf16ps`) and the fallback (sgemm of the widened operands, any CPU)
/// differ from it, and from each other, only in the order of float32 additions: ≤ ~k·2⁻²⁴ relative
/// to Σ|a·w| (BgemmKernelTests). Against the unrounded input (`Matmul.linear` on widened weights)
/// the difference is the bf16 rounding of x: ≤ 2⁻⁹ relative per element.
///
public enum BF16Gemm {
    /// Whether bf16 weights round their inputs to bf16 at prefill (default false).
    nonisolated(unsafe) public static var enabled: Bool = ProcessInfo.processInfo.environment["I2Q_BF16_ACTIVATIONS"] == "1"

    /// True when this CPU runs the `vdpbf16ps` kernel (else the sgemm fallback, same results up to
    /// float32 summation order).
    public static let native: Bool = i2q_cpu_has_avx512bf16() != 0 && QuantGemv.Int8.best == .vnni  // checked once
    /// Tests: take the fallback even where the kernel runs.
    nonisolated(unsafe) static var forceFallback = false

    /// y[m, n] (+)= bf16(x)[m, k] · W[n, k]ᵀ, y rows `ldy` apart (default n). w: bf16 [n, k] row-major.
    /// `widened`: supplies W as float32 [n, k] for the fallback (only called on CPUs without AVX-512 BF16).
    /// `repacked`: the weight's kept panels (`RepackedWeight`), used or made when the budget allows.
    static func linear(x: UnsafePointer<Float>, w: UnsafeRawPointer, y: UnsafeMutablePointer<Float>,
                       m: Int, k: Int, n: Int, ldy: Int? = nil, accumulate: Bool, scratch: Scratch,
                       repacked: RepackedWeight? = nil, widened: (UnsafeMutablePointer<Float>) throws -> Void) rethrows {
        let ldc = ldy ?? n
        // x rounded to bf16: [m, k] — once per ProjectionGroup product when its parts share x
        let shared = input.value(for: x, count: m * k) {
            let a = UnsafeMutablePointer<UInt16>.allocate(capacity: m * k)
            round(x, a, count: m * k)
            return a
        }
        defer { input.release(shared) }
        let a16 = shared.value
        if native && !forceFallback {
            let threads = min(Gemv.threads, (n + 31) / 32)
            let panels = (n + 31) / 32
            let ap = UnsafeSendable(UnsafePointer(a16)), wp = UnsafeSendable(w.assumingMemoryBound(to: UInt16.self)),
                yp = UnsafeSendable(y)
            let kept = repacked?.panels(w: wp.p, n: n, k: k).map(UnsafeSendable.init)  // the weight's kept panels, if any
            WorkerPool.run(threads) { part in
                let n0 = panels * part / threads * 32, n1 = min(n, panels * (part + 1) / threads * 32)
                guard n0 < n1 else { return }
                if let kept {
                    _ = i2q_bgemm_repacked(ap.p, Int64(k), kept.p, yp.p, Int64(ldc), Int64(m), Int64(k), Int64(n), Int64(n0), Int64(n1),
                                           accumulate ? 1 : 0, 1)
                    return
                }
                let pack = UnsafeMutableRawPointer.allocate(byteCount: max(64, i2q_bgemm_pack_bytes(Int64(k), Int64(n1 - n0))), alignment: 64)
                defer { pack.deallocate() }
                _ = i2q_bgemm(ap.p, Int64(k), wp.p, Int64(k), yp.p, Int64(ldc), Int64(m), Int64(k), Int64(n0), Int64(n1),
                              accumulate ? 1 : 0, 1, pack)
            }
            return
        }
        // Fallback: the rounded input widened back to float32, times the widened weight (sgemm).
        let xr = UnsafeMutablePointer<Float>.allocate(capacity: m * k)  // [m, k]
        defer { xr.deallocate() }
        for i in 0..<(m * k) { xr[i] = Float(bitPattern: UInt32(a16[i]) << 16) }
        let wf = scratch.buffer(n * k)  // [n, k] f32
        try widened(wf)
        Matmul.sgemm(transB: true, m: m, n: n, k: k, alpha: 1, a: xr, lda: k, b: wf, ldb: k,
                     beta: accumulate ? 1 : 0, c: y, ldc: ldc)
    }

    /// x rounded to bf16, shared by the parts of one ProjectionGroup (`sharingConvertedInputs`).
    static let input = SharedInput<UnsafeMutablePointer<UInt16>>(free: { $0.deallocate() })

    /// dst[i] = bf16(src[i]) (round to nearest even), the C kernel on the cores.
    static func round(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
        let s = UnsafeSendable(src), d = UnsafeSendable(dst)
        Kernels.parallelRows(count, cost: count) { r in
            i2q_f32_to_bf16(s.p + r.lowerBound, d.p + r.lowerBound, Int64(r.count), Int32(I2Q_IMPL_AUTO))
        }
    }
}
