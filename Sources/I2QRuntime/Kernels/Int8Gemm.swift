import CI2QKernels
import Foundation
import I2QCore

/// Products of float weights (f32, bf16, f16) at prefill (m > 1) in int8, when asked for
/// (`--int8-activations`, I2Q_INT8_ACTIVATIONS=1): each row of the layer input and each row of the
/// weight quantized to int8 with its own scale (max|·|/127, round to nearest even), the products summed
/// exactly in int32 and scaled back — the W8A8 "per-token, per-channel" scheme (SmoothQuant without
/// smoothing; llama.cpp's Q8_0 rounding over whole rows). Twice the bf16 GEMM's rate on AVX-512 VNNI
/// (`vpdpbusd`); on AVX2 the exact `vpmaddubsw` path runs at about float32's rate (no gain there). Off by
/// default: it changes results by the two roundings (igemm.c states the bound; the model-level cost in
/// accuracy and logits is in Benchmarks/README.md).
///
/// Reference: the formula in igemm.c, computed in numpy (Tests/Fixtures/int8-gemm): every path (VNNI,
/// AVX2, scalar) equals it bit for bit (Int8GemmKernelTests).
public enum Int8Gemm {
    /// Whether float weights multiply int8-quantized inputs at prefill (default false).
    nonisolated(unsafe) public static var enabled: Bool = ProcessInfo.processInfo.environment["I2Q_INT8_ACTIVATIONS"] == "1"
    /// The path this CPU runs (AUTO resolved; I2Q_CPU caps it).
    static let best: QuantGemv.Int8.Impl = QuantGemv.Int8.best
    /// Tests: the path to take (nil = best).
    nonisolated(unsafe) static var forced: QuantGemv.Int8.Impl?

    /// y[m, n] (+)= int8 product of x[m, k] and W[n, k] (row-major, `dtype` f32/bf16/f16, in place),
    /// y rows `ldy` apart (default n).
    static func linear(x: UnsafePointer<Float>, w: UnsafeRawPointer, dtype: DType, y: UnsafeMutablePointer<Float>,
                       m: Int, k: Int, n: Int, ldy: Int? = nil, accumulate: Bool) {
        let ldc = ldy ?? n
        let impl = (forced ?? best).rawValue
        let a = input.value(for: x, count: m * k) { quantize(x, m: m, k: k, impl: impl) }  // codes [m, ld], scales [m], sums [m]
        defer { input.release(a) }
        let wtype: Int32 = dtype == .f32 ? Int32(I2Q_W_F32) : dtype == .bf16 ? Int32(I2Q_W_BF16) : Int32(I2Q_W_F16)
        let panels = (n + 31) / 32
        let threads = min(Gemv.threads, panels)
        let ap = UnsafeSendable(a.value), wp = UnsafeSendable(w), yp = UnsafeSendable(y)
        WorkerPool.run(threads) { part in
            let n0 = panels * part / threads * 32, n1 = min(n, panels * (part + 1) / threads * 32)
            guard n0 < n1 else { return }
            let pack = UnsafeMutableRawPointer.allocate(byteCount: i2q_igemm_pack_bytes(Int64(k), Int64(n1 - n0)), alignment: 64)
            defer { pack.deallocate() }
            let r = ap.p
            i2q_igemm(r.codes, Int64(r.ld), r.scales, r.sums, wp.p, wtype, Int64(k), yp.p, Int64(ldc),
                      Int64(m), Int64(k), Int64(n0), Int64(n1), accumulate ? 1 : 0, pack, impl)
        }
    }

    /// x quantized row by row: codes [m, ld] (ld = k rounded up to 4), scales [m], code sums [m].
    final class Rows: @unchecked Sendable {
        let ld: Int
        let codes: UnsafeMutablePointer<Int8>
        let scales: UnsafeMutablePointer<Float>
        let sums: UnsafeMutablePointer<Int32>
        init(m: Int, k: Int) {
            ld = (k + 3) & ~3
            codes = .allocate(capacity: max(1, m * ld))
            scales = .allocate(capacity: max(1, m))
            sums = .allocate(capacity: max(1, m))
        }
        func deallocate() { codes.deallocate(); scales.deallocate(); sums.deallocate() }
    }

    static func quantize(_ x: UnsafePointer<Float>, m: Int, k: Int, impl: Int32) -> Rows {
        let r = Rows(m: m, k: k)
        let xs = UnsafeSendable(x), rs = UnsafeSendable(r)
        Kernels.parallelRows(m, cost: m * k) { range in
            let rr = rs.p
            i2q_i8_quantize_rows(xs.p + range.lowerBound * k, Int64(k), Int64(range.count), Int64(k),
                                 rr.codes + range.lowerBound * rr.ld, Int64(rr.ld), rr.scales + range.lowerBound,
                                 rr.sums + range.lowerBound, impl)
        }
        return r
    }

    /// x quantized, shared by the parts of one ProjectionGroup (`sharingConvertedInputs`).
    static let input = SharedInput<Rows>(free: { $0.deallocate() })
}
