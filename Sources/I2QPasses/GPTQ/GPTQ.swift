import Foundation
import I2QCore
import I2QRuntime

/// Settings of a GPTQ run (GPTQModel 7.7 / llm-compressor defaults: block 128, damp 0.01).
public struct GPTQSettings: Sendable, Equatable {
    /// Elements per group along a row (must divide every quantized input dimension).
    public var groupSize = 128
    /// Dampening: λ = damp · mean(diag H) added to the diagonal (GPTQModel `damp_percent`).
    public var damp = 0.01
    /// Columns processed in descending order of diag H (GPTQModel `desc_act=True`), always with
    /// static groups (`static_groups=True`): each group's scale and zero come from the original
    /// weights of consecutive columns, so the stored layout is plain affine_int4 (no g_idx or
    /// permutation is stored; g_idx[c] = c / groupSize).
    public var actOrder = false
    /// Columns per lazy-batch block (GPTQModel/llm-compressor `blocksize=128`).
    public var blockSize = 128
    public init() {}
}

public enum GPTQError: I2QError {
    case notPositiveDefinite(tensor: String, damp: Double)
    case nonFinite(tensor: String, what: String)

    public var description: String {
        switch self {
        case let .notPositiveDefinite(t, d):
            return "\(t): the damped Hessian (--damp \(d)) is not positive definite, so GPTQ cannot invert it; raise --damp (e.g. 0.1) or add calibration samples"
        case let .nonFinite(t, w):
            return "\(t): \(w) holds NaN or infinity; GPTQ needs finite weights and calibration activations (check the model and --calibration)"
        }
    }
}

/// One weight quantized by GPTQ, in the stored affine_int4 form (original column order).
public struct GPTQTensorResult: Sendable {
    public var codes: [UInt8]         // [rows, cols] 0...15
    public var scales: [Float16]      // [rows, cols/groupSize]
    public var zeros: [UInt8]         // [rows, cols/groupSize]
    public var dequantized: [Float]   // [rows, cols] (q − z)·s, what the quantized model computes with
    /// GPTQModel's `avg_loss`: Σ (w − q)²/(2·d²) / N over the calibration tokens N.
    public var loss: Double
}

/// GPTQ (Frantar et al. 2022, Algorithm 1 with lazy batches and the Cholesky inverse) as GPTQModel
/// 7.7 implements it (gptqmodel/quantization/gptq.py `GPTQ.quantize`, quantizer.py `Quantizer`),
/// 4-bit asymmetric with groups:
///
/// 1. H = 2·XᵀX / N (float32); dead columns (H_cc = 0): H_cc = 1 and W[:, c] = 0.
/// 2. static groups (with act-order only): every group's (scale, zero) from the original W.
/// 3. act-order: columns (of W and H) permuted by descending diag H.
/// 4. H += damp·mean(diag H)·I; U = upper Cholesky factor of H⁻¹.
/// 5. per block of 128 columns [i1, i2): W1 = W[:, i1:i2] copy; for each column c = i1 + i:
///    (dynamic groups) when c % groupSize == 0, the group's params from W[:, c:c+groupSize] — the
///    outer W, i.e. error-updated by the previous blocks but not by this block's columns (exactly
///    the reference's indexing); q = Q(W1[:, i]); err = (W1[:, i] − q)/U_cc;
///    W1[:, i:] −= err ⊗ U[c, i1+i:i2]; after the block, W[:, i2:] −= Err1 · U[i1:i2, i2:].
/// 6. quantizer (`find_params`, asymmetric): per row of the group, xmin = min(min x, 0),
///    xmax = max(max x, 0) (both 0 → −1, +1); s = (xmax − xmin)/15; z = round(−xmin/s);
///    Q(x) = (clamp(round(x/s) + z, 0, 15) − z)·s, round half to even (torch.round).
///
/// One documented change, as in `AffineInt4`: s is rounded to Float16 (the stored dtype;
/// GPTQModel stores fp16 scales after computing with float32 ones) before z and the codes are
/// computed, and z is clamped to [0, 15], so the error feedback sees exactly the values the stored
/// model computes with. A Float16 scale of 0 becomes the smallest normal Float16 (GPTQModel's
/// `_replace_zero_scale`).
///
/// Float32 like the reference; the loops work on Wᵀ (a column of W is a contiguous row of Wᵀ).
/// Tested against GPTQModel 7.7 itself (with the same Float16 rounding patched in) on fixtures
/// from scripts/fixtures/make_gptq_fixtures.py: codes equal except where float32 summation order
/// flips a rounding (see GPTQTests for the measured agreement and the tolerance).
public enum GPTQ {
    /// The Hessian 2·XᵀX/N of x [n, cols] (N = n): [cols, cols] f32.
    public static func hessian(_ x: [Float], cols: Int) -> [Float] {
        let n = x.count / cols
        var h = [Float](repeating: 0, count: cols * cols)  // [cols, cols]
        x.withUnsafeBufferPointer { xp in h.withUnsafeMutableBufferPointer { hp in
            Cholesky.accumulateGram(xp.baseAddress!, rows: n, cols: cols, alpha: 2 / Float(max(n, 1)), into: hp.baseAddress!)
            Cholesky.mirrorUpper(hp.baseAddress!, n: cols)
        } }
        return h
    }

    /// GPTQModel `find_params` of one row of a group with minimum `mn0` and maximum `mx0`: (scale as
    /// stored, as float, zero point).
    @inline(__always)
    static func params(min mn0: Float, max mx0: Float) -> (stored: Float16, s: Float, z: Float) {
        var xmin = Swift.min(mn0, 0), xmax = Swift.max(mx0, 0)
        if xmin == 0 && xmax == 0 { xmin = -1; xmax = 1 }
        var stored = Float16((xmax - xmin) / 15)
        if stored == 0 { stored = Float16.leastNormalMagnitude }
        let s = Float(stored)
        let z = Swift.min(Swift.max((-xmin / s).rounded(.toNearestOrEven), 0), 15)
        return (stored, s, z == 0 ? 0 : z)
    }

    @inline(__always)
    static func code(_ x: Float, s: Float, z: Float) -> Float {
        Swift.min(Swift.max((x / s).rounded(.toNearestOrEven) + z, 0), 15)
    }

    /// What GPTQ derives from one Hessian alone — shared by the linears that read the same input
    /// (q/k/v, gate/up), so the Cholesky work is done once per Hessian, not once per tensor.
    public struct Factor: Sendable {
        public let cols: Int
        /// Columns whose H_cc was 0 (their weights are zeroed).
        let dead: [Int]
        /// Processing order (act-order: descending diag H; else identity).
        let perm: [Int]
        /// Upper Cholesky factor of the damped (permuted) H⁻¹: [cols, cols].
        let u: [Float]
    }

    /// Steps 1 (the Hessian side), 3 and 4 for Hessian h0 [cols, cols]; `tensor` names it in errors.
    public static func factor(tensor: String, hessian h0: [Float], cols: Int, settings st: GPTQSettings) throws -> Factor {
        precondition(h0.count == cols * cols, "GPTQ: bad Hessian shape")
        guard h0.allSatisfy(\.isFinite) else { throw GPTQError.nonFinite(tensor: tensor, what: "the calibration Hessian") }
        var h = h0
        var dead: [Int] = []
        for c in 0..<cols where h[c * cols + c] == 0 { h[c * cols + c] = 1; dead.append(c) }
        var perm = Array(0..<cols)
        if st.actOrder {
            let d = (0..<cols).map { h[$0 * cols + $0] }
            perm.sort { d[$0] != d[$1] ? d[$0] > d[$1] : $0 < $1 }
            var hp = [Float](repeating: 0, count: cols * cols)
            for (k, c) in perm.enumerated() { for (l, c2) in perm.enumerated() { hp[k * cols + l] = h[c * cols + c2] } }
            h = hp
        }
        var mean = 0.0
        for c in 0..<cols { mean += Double(h[c * cols + c]) }
        let lambda = Float(st.damp) * Float(mean / Double(cols))
        for c in 0..<cols { h[c * cols + c] += lambda }
        let ok = h.withUnsafeMutableBufferPointer { Cholesky.inverseUpperFactor($0.baseAddress!, n: cols) }
        guard ok else { throw GPTQError.notPositiveDefinite(tensor: tensor, damp: st.damp) }
        return Factor(cols: cols, dead: dead, perm: perm, u: h)
    }

    /// Quantizes w [rows, cols] (row-major, as in the checkpoint) with Hessian h [cols, cols].
    public static func quantize(tensor: String, weight w: [Float], rows: Int, cols: Int, hessian h0: [Float],
                                tokens: Int, settings st: GPTQSettings) throws -> GPTQTensorResult {
        try quantize(tensor: tensor, weight: w, rows: rows, cols: cols,
                     factor: factor(tensor: tensor, hessian: h0, cols: cols, settings: st), tokens: tokens, settings: st)
    }

    /// Quantizes w [rows, cols] with a `factor` of its Hessian (the same `settings` as made it).
    public static func quantize(tensor: String, weight w: [Float], rows: Int, cols: Int, factor f: Factor,
                                tokens: Int, settings st: GPTQSettings) throws -> GPTQTensorResult {
        let gs = st.groupSize, groups = cols / gs
        precondition(gs > 0 && cols % gs == 0 && w.count == rows * cols && f.cols == cols, "GPTQ: bad shapes")
        guard w.allSatisfy(\.isFinite) else { throw GPTQError.nonFinite(tensor: tensor, what: "the weight") }
        // Wᵀ [cols, rows]: column c of W is row c here.
        var wt = [Float](repeating: 0, count: cols * rows)
        for r in 0..<rows { for c in 0..<cols { wt[c * rows + r] = w[r * cols + c] } }
        // [1] dead columns.
        for c in f.dead { for r in 0..<rows { wt[c * rows + r] = 0 } }
        var scales = [Float16](repeating: 0, count: rows * groups)  // [rows, groups]
        var zeros = [UInt8](repeating: 0, count: rows * groups)     // [rows, groups]
        // Float scale and zero per (row, group), read by the column loop while `findParams` writes.
        let sF = UnsafeMutablePointer<Float>.allocate(capacity: rows * groups)  // [rows, groups]
        let zF = UnsafeMutablePointer<Float>.allocate(capacity: rows * groups)  // [rows, groups]
        defer { sF.deallocate(); zF.deallocate() }
        func findParams(_ base: UnsafePointer<Float>, group g: Int) {  // base: [gs, rows] slice of Wᵀ
            for r in 0..<rows {
                var mn = Float.infinity, mx = -Float.infinity
                for k in 0..<gs { let v = base[k * rows + r]; mn = Swift.min(mn, v); mx = Swift.max(mx, v) }
                let p = params(min: mn, max: mx)
                scales[r * groups + g] = p.stored; zeros[r * groups + g] = UInt8(p.z)
                sF[r * groups + g] = p.s; zF[r * groups + g] = p.z
            }
        }
        // [2] static groups (act-order): from the original (dead-column-zeroed) weights.
        if st.actOrder {
            wt.withUnsafeBufferPointer { p in for g in 0..<groups { findParams(p.baseAddress! + g * gs * rows, group: g) } }
        }
        // [3] act-order permutation (the factor's order).
        let perm = f.perm
        if st.actOrder {
            var wp = [Float](repeating: 0, count: cols * rows)
            for (k, c) in perm.enumerated() { for r in 0..<rows { wp[k * rows + r] = wt[c * rows + r] } }
            wt = wp
        }
        // [5] the blocked column loop.
        var qcodes = [UInt8](repeating: 0, count: cols * rows)  // [cols, rows] permuted order
        var loss = 0.0
        let bs = st.blockSize
        var w1 = [Float](repeating: 0, count: bs * rows)   // [count, rows]
        var err = [Float](repeating: 0, count: bs * rows)  // [count, rows]
        wt.withUnsafeMutableBufferPointer { wp in f.u.withUnsafeBufferPointer { up in
        w1.withUnsafeMutableBufferPointer { b1 in err.withUnsafeMutableBufferPointer { e1 in
            let W = wp.baseAddress!, U = up.baseAddress!, W1 = b1.baseAddress!, E1 = e1.baseAddress!
            var i1 = 0
            while i1 < cols {
                let i2 = Swift.min(i1 + bs, cols), count = i2 - i1
                W1.update(from: W + i1 * rows, count: count * rows)
                for i in 0..<count {
                    let c = i1 + i
                    if !st.actOrder && c % gs == 0 { findParams(W + c * rows, group: c / gs) }
                    let g = (st.actOrder ? perm[c] : c) / gs
                    let d = U[c * cols + c]
                    let col = W1 + i * rows, e = E1 + i * rows
                    for r in 0..<rows {
                        let s = sF[r * groups + g], z = zF[r * groups + g]
                        let q = code(col[r], s: s, z: z)
                        qcodes[c * rows + r] = UInt8(q)
                        let deq = (q - z) * s
                        let diff = col[r] - deq
                        loss += Double(diff * diff) / Double(d * d)
                        e[r] = diff / d
                    }
                    // W1[:, i+1:] −= err ⊗ U[c, c+1:i2]  (column i itself is done)
                    if i + 1 < count {
                        Cholesky.subtractOuter(m: count - i - 1, n: rows, x: U + c * cols + c + 1, y: e, a: W1 + (i + 1) * rows, lda: rows)
                    }
                }
                // W[:, i2:] −= Err1 · U[i1:i2, i2:]   (in Wᵀ: rows i2.. −= U[i1:i2, i2:]ᵀ · Err1)
                Cholesky.subtractTransposedProduct(m: cols - i2, n: rows, k: count, a: U + i1 * cols + i2, lda: cols,
                                                   b: E1, ldb: rows, c: W + i2 * rows, ldc: rows)
                i1 = i2
            }
        } } } }
        // Back to [rows, cols] in the original column order.
        var codes = [UInt8](repeating: 0, count: rows * cols)
        for (k, c) in perm.enumerated() { for r in 0..<rows { codes[r * cols + c] = qcodes[k * rows + r] } }
        var deq = [Float](repeating: 0, count: rows * cols)
        for r in 0..<rows {
            for c in 0..<cols {
                let g = r * groups + c / gs
                deq[r * cols + c] = (Float(codes[r * cols + c]) - Float(zeros[g])) * Float(scales[g])
            }
        }
        return GPTQTensorResult(codes: codes, scales: scales, zeros: zeros, dequantized: deq,
                                loss: loss / 2 / Double(max(tokens, 1)))
    }
}
