import CI2QKernels
import Foundation

/// Attention's two products with bf16 inputs (`--bf16-attention`, I2Q_BF16_ATTENTION=1): q, k, the
/// softmax probabilities and v are rounded to bf16 — the roundings torch applies to a bf16 model's
/// attention (`matmul` of bf16 q/kᵀ, `softmax(…, dtype=float32).to(bf16)`, `matmul` with bf16 v) —
/// and multiplied in `vdpbf16ps` (bgemm.c), the scores and outputs kept in float32 (torch bf16 also
/// rounds those; here they stay exact sums). Off by default (transformers' float32 attention).
///
/// Reference: transformers' eager attention on bf16-rounded q, k, probabilities and v, computed in
/// float32 (scripts/fixtures/make_bf16_activation_golden.py; BF16AttentionTests: tiny-mistral
/// logits within 1e-4·std of it, and the bidirectional kernel against the double-precision formula
/// on the rounded inputs). Products of two bf16 values are exact in float32, so the kernel and the
/// fallback (widened operands, sgemm; CPUs without AVX-512 BF16) differ from the reference only in
/// float32 summation order (and in a probability whose float32 value sits on a bf16 rounding
/// boundary, which that order can tip).
public enum BF16Attention {
    nonisolated(unsafe) public static var enabled: Bool = ProcessInfo.processInfo.environment["I2Q_BF16_ATTENTION"] == "1"

    /// Rounded copies of q, k and vᵀ for one attention call, shared by its units.
    struct Operands {
        let q16: UnsafeMutablePointer<UInt16>   // [tq, ldq] as q
        let k16: UnsafeMutablePointer<UInt16>   // [tk, ldk] as k
        let vt16: UnsafeMutablePointer<UInt16>  // [kvHeads, d, tk]: v of each kv head transposed
        let tk: Int

        /// q: [tq, ldq] (nil: the caller rounds its own query blocks), k/v: [tk, ldk] with kvHeads·d used.
        init(q: UnsafePointer<Float>?, tq: Int, ldq: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>, tk: Int, ldk: Int,
             kvHeads: Int, d: Int) {
            self.tk = tk
            q16 = .allocate(capacity: q == nil ? 1 : tq * ldq)
            if let q { BF16Gemm.round(q, q16, count: tq * ldq) }
            k16 = .allocate(capacity: tk * ldk)
            BF16Gemm.round(k, k16, count: tk * ldk)
            let v16 = UnsafeMutablePointer<UInt16>.allocate(capacity: tk * ldk)  // [tk, ldk]
            defer { v16.deallocate() }
            BF16Gemm.round(v, v16, count: tk * ldk)
            vt16 = .allocate(capacity: kvHeads * d * tk)
            for g in 0..<kvHeads { for e in 0..<d {
                let dst = vt16 + (g * d + e) * tk, src = v16 + g * d + e
                for j in 0..<tk { dst[j] = src[j * ldk] }
            } }
        }

        func free() { q16.deallocate(); k16.deallocate(); vt16.deallocate() }
    }

    /// c[m, n] = a[m, k] · w[n, k]ᵀ on bf16 operands (rows lda / ldw apart), float32 c (rows ldc
    /// apart), on the calling thread: the `vdpbf16ps` kernel, else sgemm of the widened operands.
    static func product(a: UnsafePointer<UInt16>, lda: Int, w: UnsafePointer<UInt16>, ldw: Int,
                        c: UnsafeMutablePointer<Float>, ldc: Int, m: Int, k: Int, n: Int, alpha: Float = 1) {
        if BF16Gemm.native && !BF16Gemm.forceFallback {
            let pack = UnsafeMutableRawPointer.allocate(byteCount: max(64, i2q_bgemm_pack_bytes(Int64(k), Int64(n))), alignment: 64)
            defer { pack.deallocate() }
            _ = i2q_bgemm(a, Int64(lda), w, Int64(ldw), c, Int64(ldc), Int64(m), Int64(k), 0, Int64(n), 0, alpha, pack)
            return
        }
        let af = UnsafeMutablePointer<Float>.allocate(capacity: m * k), wf = UnsafeMutablePointer<Float>.allocate(capacity: n * k)
        defer { af.deallocate(); wf.deallocate() }  // [m, k], [n, k]
        for i in 0..<m { for p in 0..<k { af[i * k + p] = Float(bitPattern: UInt32(a[i * lda + p]) << 16) } }
        for j in 0..<n { for p in 0..<k { wf[j * k + p] = Float(bitPattern: UInt32(w[j * ldw + p]) << 16) } }
        Matmul.serialSGEMM(transB: true, m: m, n: n, k: k, alpha: alpha, a: af, lda: k, b: wf, ldb: k, beta: 0, c: c, ldc: ldc)
    }

    /// One unit of attention: rows of queries `q16` [m, d] (rows ldq apart) against the first `sv`
    /// keys of kv head g, scores (q·kᵀ)·scale; `probabilities(r, row)` masks and softmaxes row r of
    /// the float32 scores [sv] in place (each row rounded to bf16 right after, while it is in L1);
    /// out [m, d] (rows ldo apart) = bf16(P) · V.
    static func unit(_ ops: Operands, q16: UnsafePointer<UInt16>, ldq: Int, m: Int, d: Int, g: Int, ldk: Int, sv: Int, scale: Float,
                     out: UnsafeMutablePointer<Float>, ldo: Int, probabilities: (Int, UnsafeMutablePointer<Float>) -> Void) {
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: m * sv)  // [m, sv]
        let p16 = UnsafeMutablePointer<UInt16>.allocate(capacity: m * sv)    // [m, sv]
        let outT = UnsafeMutablePointer<Float>.allocate(capacity: d * m)     // [d, m]
        defer { scores.deallocate(); p16.deallocate(); outT.deallocate() }
        product(a: q16, lda: ldq, w: ops.k16 + g * d, ldw: ldk, c: scores, ldc: sv, m: m, k: d, n: sv, alpha: scale)
        for r in 0..<m {
            probabilities(r, scores + r * sv)
            i2q_f32_to_bf16(scores + r * sv, p16 + r * sv, Int64(sv), Int32(I2Q_IMPL_AUTO))
        }
        // outᵀ = Vᵀ · Pᵀ: head dims as the kernel's rows (72 = 6 tiles of 12 for SigLIP) and queries as
        // its 32-wide column panels, instead of d columns padded to whole panels. Same sums per element.
        product(a: ops.vt16 + g * d * ops.tk, lda: ops.tk, w: p16, ldw: sv, c: outT, ldc: m, m: d, k: sv, n: m)
        for e in 0..<d { for i in 0..<m { out[i * ldo + e] = outT[e * m + i] } }
    }
}
