import CI2QKernels
import Dispatch
import Foundation

/// Element-wise kernels of the Llama/Mistral decoder, float32.
public enum Kernels {
    /// Below this many elements a kernel runs on the calling thread (dispatch costs more than it saves).
    static let parallelThreshold = 1 << 16

    /// Splits rows [0, rows) between the cores (`Gemv.threads`) when there is enough work (`cost` ≈ elements).
    @inline(__always)
    static func parallelRows(_ rows: Int, cost: Int, _ body: (Range<Int>) -> Void) {
        if rows < 2 || cost < parallelThreshold || Gemv.threads < 2 { body(0..<rows); return }
        let parts = min(Gemv.threads, rows)
        withoutActuallyEscaping(body) { b in
            let box = UnsafeSendable(b)
            WorkerPool.run(parts) { part in
                box.p((rows * part / parts)..<(rows * (part + 1) / parts))
            }
        }
    }

    /// out[r] = log Σ_j exp(x[r, j]) for rows r of x [rows, n] (log-softmax's normaliser: max plus the
    /// C `i2q_sumexp` in double; see softmax.c for the tolerance), rows split over the cores.
    public static func logSumExp(_ x: UnsafePointer<Float>, rows: Int, n: Int, into out: UnsafeMutablePointer<Double>) {
        let xs = UnsafeSendable(x), os = UnsafeSendable(out)
        parallelRows(rows, cost: rows * n * 8) { range in
            for r in range {
                var m: Float = 0
                let s = i2q_sumexp(xs.p + r * n, Int64(n), &m, Int32(I2Q_IMPL_AUTO))
                os.p[r] = Foundation.log(s) + Double(m)
            }
        }
    }

    /// RMSNorm as transformers' LlamaRMSNorm / MistralRMSNorm: y = w · (x · rsqrt(mean(x²) + eps)),
    /// in float32. x, y: [rows, n]; w: [n]. Matches to float32 rounding (the sum order differs — 16
    /// lanes, then the lanes, as torch's vectorised reduction also sums in lanes: ≤ 1e-6 rel.).
    public static func rmsNorm(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                               rows: Int, n: Int, eps: Float) {
        let (xs, ws, ys) = (UnsafeSendable(x), UnsafeSendable(w), UnsafeSendable(y))
        parallelRows(rows, cost: rows * n) { range in rmsNormRows(xs.p, ws.p, ys.p, range, n, eps) }
    }

    static func rmsNormRows(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                            _ range: Range<Int>, _ n: Int, _ eps: Float) {
        for r in range {
            let xr = x + r * n, yr = y + r * n
            var lanes = SIMD16<Float>.zero
            var i = 0
            while i + 16 <= n {
                let v = UnsafeRawPointer(xr + i).loadUnaligned(as: SIMD16<Float>.self)
                lanes += v * v
                i += 16
            }
            var ss = lanes.sum()
            while i < n { ss += xr[i] * xr[i]; i += 1 }
            let inv = 1 / (ss / Float(n) + eps).squareRoot()
            for i in 0..<n { yr[i] = w[i] * (xr[i] * inv) }
        }
    }

    /// out = silu(gate) * up, element-wise over `n` values (transformers' `act_fn(gate_proj(x)) * up_proj(x)`,
    /// silu(x) = x · sigmoid(x)).
    public static func siluMul(_ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, n: Int) {
        let (g, u, o) = (UnsafeSendable(gate), UnsafeSendable(up), UnsafeSendable(out))
        parallelRows(n, cost: n) { range in  // C i2q_silu_mul (softmax.c: exp ≤ 2 ulp, paths bit-identical)
            i2q_silu_mul(g.p + range.lowerBound, u.p + range.lowerBound, o.p + range.lowerBound, Int64(range.count), Int32(I2Q_IMPL_AUTO))
        }
    }

    /// y += x over `n` values.
    public static func add(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, n: Int) {
        for i in 0..<n { y[i] += x[i] }
    }

    /// In-place softmax over `n` values (max-subtracted, float32, as torch.softmax; C `i2q_softmax`,
    /// softmax.c: −inf entries give 0).
    public static func softmax(_ x: UnsafeMutablePointer<Float>, n: Int) {
        i2q_softmax(x, Int64(n), 0, Int64(n), Int32(I2Q_IMPL_AUTO))
    }
}

extension Kernels {
    /// LayerNorm as torch.nn.LayerNorm (biased variance, float32): y = (x − mean) / sqrt(var + eps) · w + b.
    public static func layerNorm(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                                 _ y: UnsafeMutablePointer<Float>, rows: Int, n: Int, eps: Float) {
        let (xs, ws, bs, ys) = (UnsafeSendable(x), UnsafeSendable(w), UnsafeSendable(b), UnsafeSendable(y))
        parallelRows(rows, cost: rows * n) { range in layerNormRows(xs.p, ws.p, bs.p, ys.p, range, n, eps) }
    }

    static func layerNormRows(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                              _ y: UnsafeMutablePointer<Float>, _ range: Range<Int>, _ n: Int, _ eps: Float) {
        for r in range {
            let xr = x + r * n, yr = y + r * n
            var mean: Float = 0
            for i in 0..<n { mean += xr[i] }
            mean /= Float(n)
            var v: Float = 0
            for i in 0..<n { let d = xr[i] - mean; v += d * d }
            let inv = 1 / (v / Float(n) + eps).squareRoot()
            for i in 0..<n { yr[i] = (xr[i] - mean) * inv * w[i] + b[i] }
        }
    }

    /// gelu with the tanh approximation (`gelu_pytorch_tanh`):
    /// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), in place over `n` values.
    public static func geluTanh(_ x: UnsafeMutablePointer<Float>, n: Int) {
        let xs = UnsafeSendable(x)
        parallelRows(n, cost: n) { range in  // C i2q_gelu_tanh: x·e/(e+1), e = exp(2u) (softmax.c)
            i2q_gelu_tanh(xs.p + range.lowerBound, Int64(range.count), Int32(I2Q_IMPL_AUTO))
        }
    }

    /// In-place SiLU over `n` values.
    public static func silu(_ x: UnsafeMutablePointer<Float>, n: Int) {
        for i in 0..<n { x[i] = x[i] / (1 + expf(-x[i])) }
    }

    /// Adds `bias` [n] to every row of y [rows, n].
    public static func addBias(_ y: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, n: Int) {
        for r in 0..<rows { add(y + r * n, bias, n: n) }
    }

    /// Bidirectional multi-head attention with a key mask (eager attention of transformers: scores
    /// scaled by `scale`, masked keys excluded, float32 softmax). q: [tq, heads·d] (row stride ldq),
    /// k, v: [tk, kvHeads·d] (row stride ldk), out: [tq, heads·d] (row stride ldo). Query head h uses
    /// kv head h / (heads / kvHeads). Work goes in units of (head, block of ≤ `queryBlock` queries) on
    /// the worker pool, each with its own [block, tk] scores: memory linear in the length, every
    /// score row the same dot products and softmax as one [tq, tk] matrix would give.
    public static func attention(q: UnsafePointer<Float>, ldq: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>, ldk: Int,
                                 out: UnsafeMutablePointer<Float>, ldo: Int, tq: Int, tk: Int, heads: Int, kvHeads: Int,
                                 headDim d: Int, keyMask: [Bool]?, scale: Float) {
        let group = heads / kvHeads
        let qBlock = min(tq, queryBlock)
        let blocks = (tq + qBlock - 1) / qBlock
        let box = UnsafeSendable((q, k, v, out))
        let parts = tq * tk * d * heads >= 1 << 18 ? heads * blocks : 1
        // Masks and softmaxes one row of a unit's scores [tk] in place (both paths).
        let probabilities: (Int, UnsafeMutablePointer<Float>) -> Void = { _, row in
            if let keyMask { for j in 0..<tk where !keyMask[j] { row[j] = -.infinity } }
            softmax(row, n: tk)
        }
        // --bf16-attention: bf16 inputs to both products, q/k/v rounded once for all units.
        let ops = BF16Attention.enabled
            ? BF16Attention.Operands(q: q, tq: tq, ldq: ldq, k: k, v: v, tk: tk, ldk: ldk, kvHeads: kvHeads, d: d) : nil
        defer { ops?.free() }
        WorkerPool.run(parts) { part in
            let (q, k, v, out) = box.p
            let units = parts == 1 ? Array(0..<(heads * blocks)) : [part]
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: ops == nil ? qBlock * tk : 1)  // [block, tk]
            defer { scores.deallocate() }
            for u in units {
                let h = u / blocks, i0 = (u % blocks) * qBlock, n = min(qBlock, tq - i0)
                let g = h / group
                if let ops {
                    BF16Attention.unit(ops, q16: ops.q16 + i0 * ldq + h * d, ldq: ldq, m: n, d: d, g: g, ldk: ldk, sv: tk, scale: scale,
                                       out: out + i0 * ldo + h * d, ldo: ldo, probabilities: probabilities)
                    continue
                }
                Matmul.gemm(transB: true, m: n, n: tk, k: d, alpha: scale, a: q + i0 * ldq + h * d, lda: ldq,
                            b: k + g * d, ldb: ldk, c: scores, ldc: tk)
                for i in 0..<n { probabilities(i, scores + i * tk) }
                Matmul.gemm(transB: false, m: n, n: d, k: tk, alpha: 1, a: scores, lda: tk, b: v + g * d, ldb: ldk,
                            c: out + i0 * ldo + h * d, ldc: ldo)
            }
        }
    }

    /// Queries per unit of `attention` (tests lower it to force several blocks).
    nonisolated(unsafe) static var queryBlock = 256

}
