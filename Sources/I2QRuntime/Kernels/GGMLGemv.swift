import CBLAS
import Foundation
import CI2QKernels
import I2QCore
import I2QQuant

/// A ggml-block weight [rows, cols] read in place from a mapped `.i2q` file (scheme `ggml`,
/// `GGMLBlockLayout`): row r is `rowBytes` bytes of blocks at `blocks + r · rowBytes`. No widened
/// copy is kept; values are produced by `GGMLDequant`, bit-exact to gguf-py's `quants.dequantize`.
struct GGMLRows: @unchecked Sendable {
    let type: GGMLType
    let rows: Int, cols: Int
    let rowBytes: Int
    let blocks: UnsafeRawPointer
    /// Keeps the mapping of `blocks` alive.
    let owner: AnyObject

    /// Rows [first, first + n) as float32 [n, cols] into `dst`, on the calling thread.
    func dequantize(rows first: Int, _ n: Int, into dst: UnsafeMutablePointer<Float>) {
        do {
            try GGMLDequant.blocks(type, blocks + first * rowBytes, n * (cols / type.blockSize), dst)
        } catch {
            preconditionFailure("GGMLRows: \(type.name) passed GGMLBlockLayout but has no dequantizer")  // layout admits dequantizable types only
        }
    }

    /// Rows [first, first + n) as float32 [n, cols] into `dst`, split over the cores when large.
    func dequantizeRows(_ first: Int, _ n: Int, into dst: UnsafeMutablePointer<Float>) {
        let me = self, d = UnsafeSendable(dst), k = cols
        Kernels.parallelRows(n, cost: n * k) { range in
            me.dequantize(rows: first + range.lowerBound, range.count, into: d.p + range.lowerBound * k)
        }
    }

    /// Elements [first, first + count) of the row-major tensor as float32 (any range: partial rows
    /// go through a one-row buffer).
    func dequantize(first: Int, count: Int, into out: UnsafeMutablePointer<Float>) {
        var i = first, o = out
        let end = first + count
        var row: UnsafeMutablePointer<Float>?  // [cols] f32, only for partial rows
        defer { row?.deallocate() }
        while i < end {
            let r = i / cols, c = i - r * cols
            if c == 0 && end - i >= cols {
                let n = (end - i) / cols
                dequantize(rows: r, n, into: o)
                i += n * cols; o += n * cols
            } else {
                let buf = row ?? UnsafeMutablePointer<Float>.allocate(capacity: cols)
                row = buf
                dequantize(rows: r, 1, into: buf)
                let m = min(cols - c, end - i)
                o.update(from: buf + c, count: m)
                i += m; o += m
            }
        }
    }
}

/// How activations meet ggml-block weights: rounded as llama.cpp rounds them (its integer block dot
/// products), or float32 (transformers on the dequantized weight).
public enum GGMLActivations: String, Sendable { case llamaCpp = "q8", float32 = "f32" }

/// Matrix products with ggml-block weights.
///
/// Reference: transformers `F.linear` in float32 on the weight dequantized by gguf-py
/// (`quants.dequantize`), i.e. `Matmul.linear` on `GGMLRows.dequantize`'s output (bit-exact values).
/// - Prefill (m > 1, `linear`): bounded row tiles (~4 MiB of float32, `QuantGemv.tileRows`) are
///   dequantized and multiplied with sgemm — the same products as `Matmul.linear` on the whole
///   dequantized weight (float32 rounding of the sums only, as any sgemm).
/// - Decode (m = 1, `run`): each thread dequantizes a few rows at a time into a small buffer and
///   runs the float GEMV kernel (`i2q_gemv`, the one `Gemv.run` uses) on them: every output is
///   bit-identical to `Gemv.run` on the dequantized weight, i.e. to decoding the float32 model that
///   holds the dequantized weights. Decode vs prefill therefore differ exactly as they do for float32
///   weights: by float32 summation order, |Δy| ≲ k · 2⁻²⁴ · Σ|w·x| per product (tests, GGMLRuntimeTests:
///   decode vs prefill logits within 1e-5 · std on the 2-layer tiny models, measured ≤ 2.3e-6; within
///   5e-5 · std on 30-layer SmolLM2, measured 1.0e-5, as for its float32 weights). Against transformers
///   on the gguf-py-dequantized weights, prefill logits are within 1e-4 · std (measured ≤ 1.7e-5).
///
/// Activations (`activations`): by default they are first rounded as llama.cpp's CPU backend
/// rounds them for that weight type — to Q8_K blocks for K-quants, Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for
/// Q4_1/Q5_1 (`i2q_ggml_round_activations`, ggml_act.c: libggml-cpu's bytes, their values d·q) — so the
/// products equal llama.cpp's integer block dot products up to float32 summation order: i2q runs a
/// ggml .i2q as llama.cpp runs the same bytes as GGUF (GGMLActivationTests: every type against
/// libggml-cpu's `ggml_mul_mat` within 2e-6 · Σ|w·x|; for Q4_1/Q5_1 the Q8_1 block's rounded sum s,
/// which d·q cannot carry, is added as a min term, `minTerm`). `.float32` (`--ggml-f32-activations`,
/// I2Q_GGML_ACTIVATIONS=f32) skips the rounding: transformers' F.linear on the dequantized weight.
public enum GGMLGemv {
    /// Float32 elements of one decode thread's row buffer (16 KiB: stays in L1 next to x).
    static let bufferElements = 4096

    /// How activations meet ggml-block weights (see above); set before the model runs.
    nonisolated(unsafe) public static var activations: GGMLActivations =
        ProcessInfo.processInfo.environment["I2Q_GGML_ACTIVATIONS"] == "f32" ? .float32 : .llamaCpp

    /// x[m, k] rounded for weight type `t` into a new buffer, or nil when no rounding applies.
    static func rounded(_ t: GGMLType, _ x: UnsafePointer<Float>, m: Int, k: Int) -> UnsafeMutablePointer<Float>? {
        guard activations == .llamaCpp else { return nil }
        let out = UnsafeMutablePointer<Float>.allocate(capacity: m * k)  // [m, k] f32
        guard i2q_ggml_round_activations(Int32(t.rawValue), x, Int64(m), Int64(k), out) == 1 else {
            out.deallocate()
            return nil
        }
        return out
    }

    /// y[rows] (+)= W[rows, cols] · x[cols] (decode), rows split over `Gemv.threads` like `Gemv.run`.
    static func run(_ w: GGMLRows, x x0: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, accumulate: Bool) {
        let n = w.rows, k = w.cols
        if activations == .llamaCpp, fusedDecode, i2q_ggml_dot_supported(Int32(w.type.rawValue)) == 1 {
            return runFused(w, x: x0, y: y, accumulate: accumulate)
        }
        let xr = rounded(w.type, x0, m: 1, k: k)
        defer { xr?.deallocate() }
        let x = UnsafePointer(xr) ?? x0
        let xp = UnsafeSendable(x), yp = UnsafeSendable(y)
        let threads = Gemv.threads
        let rowsPer = (n + threads - 1) / threads
        let chunk = max(1, bufferElements / k)
        WorkerPool.run(threads) { part in
            let lo = part * rowsPer, hi = min(n, lo + rowsPer)
            guard lo < hi else { return }
            let buf = UnsafeMutablePointer<Float>.allocate(capacity: min(chunk, hi - lo) * k)  // [chunk, k] f32
            defer { buf.deallocate() }
            var r = lo
            while r < hi {
                let t = min(chunk, hi - r)
                w.dequantize(rows: r, t, into: buf)
                i2q_gemv(buf, Int32(I2Q_W_F32), xp.p, yp.p + r, Int64(k), 0, Int64(t), accumulate ? 1 : 0, Int32(I2Q_IMPL_AUTO))
                r += t
            }
        }
        if xr != nil { minTerm(w, x: x0, m: 1, y: y) }
    }

    /// Decoding with llama.cpp's fused block dot products (`i2q_ggml_gemv`, ggml_dot.c): x quantized once
    /// to the weight type's activation blocks, then integer block dots per row, rows split over
    /// `Gemv.threads`. Same values as the dequantize-then-GEMV path up to float32 summation order.
    static func runFused(_ w: GGMLRows, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, accumulate: Bool) {
        let n = w.rows, k = w.cols
        let t = i2q_ggml_vec_dot_type(Int32(w.type.rawValue))
        let blockBytes = t == 15 ? 292 : (t == 9 ? 36 : 34), blockSize = t == 15 ? 256 : 32
        let xq = UnsafeMutableRawPointer.allocate(byteCount: k / blockSize * blockBytes, alignment: 64)  // activation blocks
        defer { xq.deallocate() }
        i2q_ggml_quantize_q8(t, x, Int64(k), xq)
        let threads = Gemv.threads
        let rowsPer = (n + threads - 1) / threads
        let xp = UnsafeSendable(UnsafeRawPointer(xq)), yp = UnsafeSendable(y)
        WorkerPool.run(threads) { part in
            let lo = part * rowsPer, hi = min(n, lo + rowsPer)
            guard lo < hi else { return }
            _ = i2q_ggml_gemv(Int32(w.type.rawValue), w.blocks, Int64(w.rowBytes), Int64(k), xp.p, Int64(lo), Int64(hi),
                              yp.p, accumulate ? 1 : 0, Int32(I2Q_IMPL_AUTO))
        }
    }

    /// Fused integer decode for the types `i2q_ggml_gemv` has (env I2Q_GGML_FUSED=0: dequantize rows
    /// and run the float GEMV on the rounded activations instead, for comparisons).
    nonisolated(unsafe) static var fusedDecode = ProcessInfo.processInfo.environment["I2Q_GGML_FUSED"] != "0"

    /// llama.cpp's Q8_1 min-term difference for Q4_1/Q5_1 (`i2q_ggml_q8_1_min_term`); no-op otherwise.
    static func minTerm(_ w: GGMLRows, x: UnsafePointer<Float>, m: Int, y: UnsafeMutablePointer<Float>) {
        guard w.type == .q4_1 || w.type == .q5_1 else { return }
        i2q_ggml_q8_1_min_term(Int32(w.type.rawValue), w.blocks, Int64(w.rows), Int64(w.rowBytes), Int64(w.cols), x, Int64(m), y, Int64(w.rows))
    }

    /// y[m, rows] (+)= x[m, cols] · Wᵀ (prefill): row tiles of `tileRows` dequantized into `scratch`
    /// ([tileRows, cols] f32) and multiplied with sgemm (as `QuantGemv.linear`).
    static func linear(_ w: GGMLRows, x x0: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, m: Int,
                       accumulate: Bool, scratch: UnsafeMutablePointer<Float>, tileRows: Int) {
        let xr = rounded(w.type, x0, m: m, k: w.cols)
        defer { xr?.deallocate() }
        QuantGemv.tiledLinear(w, x: UnsafePointer(xr) ?? x0, y: y, m: m, accumulate: accumulate, scratch: scratch, tileRows: tileRows)
        if xr != nil { minTerm(w, x: x0, m: m, y: y) }
    }
}
