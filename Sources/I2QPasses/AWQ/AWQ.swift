import Dispatch
import Foundation
import I2QCore
import I2QFormats
import I2QQuant
import I2QRuntime

/// Settings of the AWQ search (AutoAWQ 0.2.9 defaults).
public struct AWQSettings: Sendable, Equatable {
    /// Elements per quantization group along a row (must divide every quantized input dimension).
    public var groupSize = 128
    /// Code width of Q (4; 3 or 2 for `quantize --awq --bits`): AutoAWQ's `w_bit`.
    public var bits = 4
    /// Ratios 0, 1/nGrid, …, (nGrid−1)/nGrid of the scale search.
    public var nGrid = 20
    /// s = x_mean^r / (w_mean^(1−r) + 1e-4) (AutoAWQ `duo_scaling=True`, its default); else s = x_mean^r.
    public var duoScaling = true
    /// Search the clipping range of each linear except q/k (AutoAWQ `apply_clip=True`).
    public var clip = true
    /// Clipping grid: shrink factors 1 − i/clipGrid for i < maxShrink·clipGrid (AutoAWQ: 20, 0.5).
    public var clipGrid = 20
    public var maxShrink = 0.5
    /// Tokens sampled for the clipping search (every ⌊N/clipTokens⌋-th row; AutoAWQ: 512).
    public var clipTokens = 512
    /// Tokens the scale-search losses are computed on (0: every calibration token, as AutoAWQ).
    /// See `SearchSample`; x_mean always uses every token.
    public var searchTokens = 0
    /// Short names of the linears that are quantized ("q", "k", "v", "o", "gate", "up", "down"); a
    /// scale group is searched only when all its linears are quantized.
    public var quantized: Set<String> = Set(AWQ.linearNames)
    public init() {}
}

/// What AWQ did to one layer.
public struct AWQLayerResult: Sendable {
    /// The layer's weights after scaling and clipping (float32, not yet quantized).
    public var weights: DecoderLayerWeights
    /// Chosen scale per group ("qkv", "vo", "gateup", "updown"): [channels] f32.
    public var scales: [(group: String, ratio: Double, loss: Double, scales: [Float])]
    /// Clipping bound per linear: [rows, cols/groupSize] f32.
    public var clips: [(linear: String, maxVal: [Float])]
    /// Wall time of the scale search and of the clipping search (for the progress log).
    public var searchSeconds = 0.0, clipSeconds = 0.0
}

/// Activation-aware weight quantization (AutoAWQ 0.2.9 `AwqQuantizer`, awq/quantize/quantizer.py and
/// scale.py) for one Llama/Mistral decoder layer, in float32:
///
/// 1. scale groups (`LlamaAWQForCausalLM.get_layers_for_scaling`): input_layernorm → q,k,v (loss on
///    the self-attention output); v → o only when v_proj and o_proj have the same shape (no GQA);
///    post_attention_layernorm → gate, up (loss on the MLP output); up → down.
/// 2. `_search_best_scale`: w_mean = per input channel mean of |W| / (max|W| of its group + 1e-6) over
///    the group's weights concatenated; x_mean = per channel mean |x|; for r = i/nGrid:
///    s = clamp(x_mean^r / (w_mean^(1−r) + 1e-4), min 1e-4), s /= sqrt(max(s)·min(s)), inf/NaN → 1;
///    loss = MSE(module(x; Q(W·s)/s), module(x; W)); keep the s of the smallest loss. All groups are
///    searched on the layer's original weights, then applied (`apply_scale`): the previous op is
///    divided by s (norm weight, or the rows of fc1 and its bias), the linears' input columns
///    multiplied by s, and the captured inputs divided by s.
/// 3. `_search_best_clip` (not q/k): per (row, group), max_val = max|W| · (1 − i/20), i < 10, error =
///    mean over ~512 sampled tokens of (Σ_group x·Q(clamp(W)) − Σ_group x·W)²; W = clamp(W, ±best).
///
/// Q is `AffineInt4.fakeQuantize` (AutoAWQ's pseudo_quantize_tensor with the scale rounded to
/// Float16 before use, the stored form). Float32 throughout (AutoAWQ runs the model in float16).
public enum AWQ {
    public static let linearNames = ["q", "k", "v", "o", "gate", "up", "down"]

    // MARK: Statistics

    /// AutoAWQ w_mean of the concatenation of `weights` (each [rows_i, cols]).
    public static func weightMean(_ weights: [[Float]], cols: Int, groupSize: Int) -> [Float] {
        var sum = [Double](repeating: 0, count: cols)  // [cols]
        var rows = 0
        for w in weights {
            let r = w.count / cols
            rows += r
            w.withUnsafeBufferPointer { wp in
                for i in 0..<r {
                    let row = wp.baseAddress! + i * cols
                    var g = 0
                    while g < cols {
                        var m: Float = 0
                        for c in g..<(g + groupSize) { m = max(m, abs(row[c])) }
                        let d = m + 1e-6
                        for c in g..<(g + groupSize) { sum[c] += Double(abs(row[c]) / d) }
                        g += groupSize
                    }
                }
            }
        }
        return sum.map { Float($0 / Double(max(rows, 1))) }
    }

    /// AutoAWQ x_mean: per channel mean of |x| over the rows of x [N, cols].
    public static func inputMean(_ x: [Float], cols: Int) -> [Float] {
        let n = x.count / cols
        var sum = [Double](repeating: 0, count: cols)  // [cols]
        x.withUnsafeBufferPointer { xp in
            for i in 0..<n {
                let row = xp.baseAddress! + i * cols
                for c in 0..<cols { sum[c] += Double(abs(row[c])) }
            }
        }
        return sum.map { Float($0 / Double(max(n, 1))) }
    }

    /// The candidate scales of ratio `ratio` (see the type's documentation).
    public static func candidateScales(xMean: [Float], wMean: [Float], ratio: Double, duo: Bool) -> [Float] {
        let rx = Float(ratio), rw = Float(1 - ratio)
        var s = zip(xMean, wMean).map { x, w -> Float in
            let v = duo ? powf(x, rx) / (powf(w, rw) + 1e-4) : powf(x, rx)
            return v.isNaN ? v : max(v, 1e-4)
        }
        let mx = s.max() ?? 1, mn = s.min() ?? 1
        let norm = (mx * mn).squareRoot()
        for i in s.indices {
            s[i] /= norm
            if !s[i].isFinite { s[i] = 1 }
        }
        return s
    }

    /// In place w := Q(w) for w [rows, cols], rows split between the two cores.
    public static func fakeQuantize(_ w: inout [Float], rows: Int, cols: Int, groupSize: Int, bits: Int = 4) {
        w.withUnsafeMutableBufferPointer { wp in
            let p = UnsafeSendableBox(wp.baseAddress!)
            let half = (rows + 1) / 2
            DispatchQueue.concurrentPerform(iterations: rows >= 2 ? 2 : 1) { part in
                let lo = part == 0 ? 0 : half, hi = part == 0 ? (rows >= 2 ? half : rows) : rows
                if hi > lo { AffineInt4.fakeQuantize(p.p + lo * cols, rows: hi - lo, cols: cols, groupSize: groupSize, bits: bits) }
            }
        }
    }

    /// Q(W·s)/s of W [rows, cols] with per-column scales s.
    static func scaledQuantized(_ w: [Float], _ s: [Float], cols: Int, groupSize: Int, bits: Int = 4) -> [Float] {
        var out = w
        let rows = w.count / cols
        out.withUnsafeMutableBufferPointer { o in
            for r in 0..<rows { let row = o.baseAddress! + r * cols; for c in 0..<cols { row[c] *= s[c] } }
        }
        fakeQuantize(&out, rows: rows, cols: cols, groupSize: groupSize, bits: bits)
        out.withUnsafeMutableBufferPointer { o in
            for r in 0..<rows { let row = o.baseAddress! + r * cols; for c in 0..<cols { row[c] /= s[c] } }
        }
        return out
    }

    static func mse(_ a: [Float], _ b: [Float]) -> Double {
        var s = 0.0
        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in
            for i in 0..<ap.count { let d = Double(ap[i] - bp[i]); s += d * d }
        } }
        return s / Double(max(a.count, 1))
    }

    static func sumSquaredDiff(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Double {
        var s = 0.0
        for i in 0..<n { let d = Double(a[i] - b[i]); s += d * d }
        return s
    }

    static func scaleColumns(_ w: inout [Float], _ s: [Float], cols: Int) {
        let rows = w.count / cols
        w.withUnsafeMutableBufferPointer { o in
            for r in 0..<rows { let row = o.baseAddress! + r * cols; for c in 0..<cols { row[c] *= s[c] } }
        }
    }

    static func divideColumns(_ w: inout [Float], _ s: [Float], cols: Int) {
        let rows = w.count / cols
        w.withUnsafeMutableBufferPointer { o in
            for r in 0..<rows { let row = o.baseAddress! + r * cols; for c in 0..<cols { row[c] /= s[c] } }
        }
    }

    static func divideRows(_ w: inout [Float], _ s: [Float], cols: Int) {
        w.withUnsafeMutableBufferPointer { o in
            for r in 0..<s.count { let row = o.baseAddress! + r * cols; for c in 0..<cols { row[c] /= s[r] } }
        }
    }

    // MARK: Scale search

    /// `_search_best_scale` + `_compute_best_scale`: the best ratio's scales for the linears
    /// `weights` (each [rows_i, cols]) fed by x [N, cols]; `loss` runs the inspected module with the
    /// given Q(W·s)/s weights and returns its MSE against the full-precision output.
    static func searchScale(weights: [[Float]], x: [Float], cols: Int, settings: AWQSettings,
                            loss: ([[Float]]) -> Double) -> (ratio: Double, loss: Double, scales: [Float]) {
        let wMean = weightMean(weights, cols: cols, groupSize: settings.groupSize)
        let xMean = inputMean(x, cols: cols)
        var best: (ratio: Double, loss: Double, scales: [Float])? = nil
        for i in 0..<settings.nGrid {
            let ratio = Double(i) / Double(settings.nGrid)
            let s = candidateScales(xMean: xMean, wMean: wMean, ratio: ratio, duo: settings.duoScaling)
            let q = weights.map { scaledQuantized($0, s, cols: cols, groupSize: settings.groupSize, bits: settings.bits) }
            let l = loss(q)
            if l < (best?.loss ?? .infinity) { best = (ratio, l, s) }
        }
        // AutoAWQ raises when no ratio gave a finite loss; keep the weights unscaled instead.
        return best ?? (-1, .nan, [Float](repeating: 1, count: cols))
    }

    // MARK: Clipping search

    /// `_compute_best_clip`: the clipping bound [rows, cols/groupSize] of w [rows, cols] for input x [N, cols].
    public static func searchClip(_ w: [Float], x: [Float], cols: Int, settings: AWQSettings) -> [Float] {
        let rows = w.count / cols, n = x.count / cols, gsz = settings.groupSize, groups = cols / gsz
        let step = max(1, n / settings.clipTokens)
        let ns = (n + step - 1) / step
        var best = [Float](repeating: 0, count: rows * groups)  // [rows, groups]
        let xg = UnsafeMutablePointer<Float>.allocate(capacity: ns * gsz)    // [ns, G]
        let wg = UnsafeMutablePointer<Float>.allocate(capacity: rows * gsz)  // [rows, G]
        let wc = UnsafeMutablePointer<Float>.allocate(capacity: rows * gsz)  // [rows, G]
        let org = UnsafeMutablePointer<Float>.allocate(capacity: ns * rows)  // [ns, rows]
        let cur = UnsafeMutablePointer<Float>.allocate(capacity: ns * rows)  // [ns, rows]
        defer { xg.deallocate(); wg.deallocate(); wc.deallocate(); org.deallocate(); cur.deallocate() }
        var orgMax = [Float](repeating: 0, count: rows), minErr = [Float](repeating: 0, count: rows)
        var err = [Double](repeating: 0, count: rows)
        let shrinkSteps = Int(settings.maxShrink * Double(settings.clipGrid))
        x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in
            for g in 0..<groups {
                for i in 0..<ns { (xg + i * gsz).update(from: xp.baseAddress! + (i * step) * cols + g * gsz, count: gsz) }
                for r in 0..<rows { (wg + r * gsz).update(from: wp.baseAddress! + r * cols + g * gsz, count: gsz) }
                Matmul.linear(x: xg, w: wg, y: org, m: ns, k: gsz, n: rows)
                for r in 0..<rows {
                    var m: Float = 0
                    for c in 0..<gsz { m = max(m, abs(wg[r * gsz + c])) }
                    orgMax[r] = m
                    best[r * groups + g] = m
                    minErr[r] = 1e9
                }
                for i in 0..<shrinkSteps {
                    let f = Float(1 - Double(i) / Double(settings.clipGrid))
                    for r in 0..<rows {
                        let mv = orgMax[r] * f
                        for c in 0..<gsz { wc[r * gsz + c] = min(max(wg[r * gsz + c], -mv), mv) }
                    }
                    let wcs = UnsafeSendableBox(wc), half = (rows + 1) / 2
                    DispatchQueue.concurrentPerform(iterations: 2) { part in
                        let lo = part == 0 ? 0 : half, hi = part == 0 ? half : rows
                        if hi > lo { AffineInt4.fakeQuantize(wcs.p + lo * gsz, rows: hi - lo, cols: gsz, groupSize: gsz, bits: settings.bits) }
                    }
                    Matmul.linear(x: xg, w: wc, y: cur, m: ns, k: gsz, n: rows)
                    for r in 0..<rows { err[r] = 0 }
                    for t in 0..<ns {
                        let a = cur + t * rows, b = org + t * rows
                        for r in 0..<rows { let d = a[r] - b[r]; err[r] += Double(d * d) }
                    }
                    for r in 0..<rows {
                        let e = Float(err[r] / Double(ns))
                        if e < minErr[r] { minErr[r] = e; best[r * groups + g] = orgMax[r] * f }
                    }
                }
            }
        } }
        return best
    }

    /// `apply_clip`: w := clamp(w, −maxVal, maxVal) per (row, group).
    public static func applyClip(_ w: inout [Float], maxVal: [Float], cols: Int, groupSize: Int) {
        let groups = cols / groupSize
        w.withUnsafeMutableBufferPointer { wp in
            for i in 0..<wp.count {
                let r = i / cols, g = (i % cols) / groupSize
                let m = maxVal[r * groups + g]
                wp[i] = min(max(wp[i], -m), m)
            }
        }
    }

    // MARK: One layer

    /// Runs AWQ on one decoder layer: searches and applies the scales, then the clipping. `features`
    /// are the layer's captured inputs and full-precision outputs (changed: inputs divided by the
    /// scales, as AutoAWQ does). Returns the scaled and clipped float32 weights (quantize them next).
    public static func layer(_ w0: DecoderLayerWeights, features f: inout LayerFeatures, forward: DecoderLayerForward,
                             settings st: AWQSettings, groups: [AWQScaleGroup] = AWQScaleGroup.llamaDecoder) -> AWQLayerResult {
        let c = forward.config
        let h = c.hiddenSize, im = c.intermediateSize, qw = c.numAttentionHeads * c.headDim, kw = c.numKeyValueHeads * c.headDim
        let quant = st.quantized
        var w = w0
        var chosen: [(group: String, ratio: Double, loss: Double, scales: [Float])] = []
        let sample = SearchSample(batch: forward.batch, budget: st.searchTokens)
        let t0 = ProgressBar.now()

        // Where each linear's weight, captured input and module output live (Llama/Mistral layer).
        func weight(_ n: String) -> WritableKeyPath<DecoderLayerWeights, [Float]> {
            switch n {
            case "q": return \.q
            case "k": return \.k
            case "v": return \.v
            case "o": return \.o
            case "gate": return \.gate
            case "up": return \.up
            default: return \.down
            }
        }
        func input(_ n: String) -> (WritableKeyPath<LayerFeatures, [Float]>, Int) {  // (captured input, width)
            switch n {
            case "q", "k", "v": return (\.attnInput, h)
            case "o": return (\.oInput, qw)
            case "gate", "up": return (\.mlpInput, h)
            default: return (\.downInput, im)
            }
        }

        // [STEP 2] scale search, every group on the original weights; x_mean on every token, the
        // losses on `sample` (whole sequences for attention, evenly spaced rows elsewhere). The
        // groups are the architecture's recipe (`AWQScaleGroup`), in order.
        for g in groups where g.linears.allSatisfy(quant.contains) && (!g.needsMatchingShapes || (kw == h && qw == h)) {
            let (inKey, cols) = input(g.linears[0])
            let ws = g.linears.map { w0[keyPath: weight($0)] }
            let r: (ratio: Double, loss: Double, scales: [Float])
            switch g.loss {
            case .attention:  // q, k, v through attention and o_proj
                let x = sample.sequenceRows(f.attnInput, cols: h), ref = sample.sequenceRows(f.attnOutput, cols: h)
                let sub = sample.isAll ? forward : DecoderLayerForward(config: c, batch: sample.sequenceBatch)
                r = searchScale(weights: ws, x: f.attnInput, cols: h, settings: st) { q in
                    let ctx = sub.attentionContext(x, q: q[0], k: q[1], v: q[2], qBias: w0.qBias, kBias: w0.kBias, vBias: w0.vBias)
                    return mse(DecoderLayerForward.linear(ctx, w0.o, rows: sub.batch.tokens, inDim: qw, outDim: h), ref)
                }
            case .mlp:  // gate, up → act → down
                let x = sample.rows(f.mlpInput, cols: h), out = sample.rows(f.mlpOutput, cols: h)
                // mlpChunks only uses the row count of its batch.
                let sub = sample.isAll ? forward : DecoderLayerForward(config: c, batch: CalibrationBatch(lengths: [sample.rowCount]))
                r = searchScale(weights: ws, x: f.mlpInput, cols: h, settings: st) { q in
                    var s = 0.0
                    out.withUnsafeBufferPointer { ref in
                        sub.mlpChunks(x, gate: q[0], up: q[1], down: w0.down) { range, y in
                            y.withUnsafeBufferPointer { s += sumSquaredDiff($0.baseAddress!, ref.baseAddress! + range.lowerBound * h, range.count * h) }
                        }
                    }
                    return s / Double(max(sample.rowCount * h, 1))
                }
            case .linears where cols == im:  // down_proj: its [N, intermediate] input in row chunks
                let x = sample.rows(f.downInput, cols: im), out = sample.rows(f.mlpOutput, cols: h)
                let n = sample.rowCount
                r = searchScale(weights: ws, x: f.downInput, cols: im, settings: st) { q in
                    var s = 0.0
                    out.withUnsafeBufferPointer { ref in
                        x.withUnsafeBufferPointer { xp in
                            var r0 = 0
                            while r0 < n {
                                let m = min(DecoderLayerForward.mlpChunkRows, n - r0)
                                var y = [Float](repeating: 0, count: m * h)  // [m, hidden]
                                q[0].withUnsafeBufferPointer { wp in y.withUnsafeMutableBufferPointer { yp in
                                    Matmul.linear(x: xp.baseAddress! + r0 * im, w: wp.baseAddress!, y: yp.baseAddress!, m: m, k: im, n: h)
                                } }
                                y.withUnsafeBufferPointer { s += sumSquaredDiff($0.baseAddress!, ref.baseAddress! + r0 * h, m * h) }
                                r0 += m
                            }
                        }
                    }
                    return s / Double(max(n * h, 1))
                }
            case .linears:  // o_proj: compared with the attention output
                let x = sample.rows(f[keyPath: inKey], cols: cols), ref = sample.rows(f.attnOutput, cols: h)
                r = searchScale(weights: ws, x: f[keyPath: inKey], cols: cols, settings: st) { q in
                    mse(DecoderLayerForward.linear(x, q[0], rows: sample.rowCount, inDim: cols, outDim: h), ref)
                }
            }
            chosen.append((g.name, r.ratio, r.loss, r.scales))
        }

        // apply_scale (in order): the previous op divided, the linears' input columns multiplied, and
        // the captured inputs divided too.
        for (name, _, _, s) in chosen {
            guard let g = groups.first(where: { $0.name == name }) else { continue }
            switch g.previous {
            case let .norm(n):
                if n == "input_layernorm" { for i in 0..<h { w.inputNorm[i] /= s[i] } } else { for i in 0..<h { w.postNorm[i] /= s[i] } }
            case let .linear(p):
                divideRows(&w[keyPath: weight(p)], s, cols: h)
                if p == "v", w.vBias != nil { for i in 0..<kw { w.vBias![i] /= s[i] } }
            }
            for l in g.linears { scaleColumns(&w[keyPath: weight(l)], s, cols: input(l).1) }
            let (inKey, cols) = input(g.linears[0])
            divideColumns(&f[keyPath: inKey], s, cols: cols)
        }

        let t1 = ProgressBar.now()
        // [STEP 3] clipping (not q/k: "due to qk bmm, it is hard to clip precisely").
        var clips: [(linear: String, maxVal: [Float])] = []
        if st.clip {
            // (linear, its weight, the input it sees, its input width), in AutoAWQ's order.
            let targets: [(String, WritableKeyPath<DecoderLayerWeights, [Float]>, [Float], Int)] = [
                ("v", \.v, f.attnInput, h), ("o", \.o, f.oInput, qw), ("gate", \.gate, f.mlpInput, h),
                ("up", \.up, f.mlpInput, h), ("down", \.down, f.downInput, im),
            ]
            for (name, weight, x, cols) in targets where quant.contains(name) {
                let m = searchClip(w[keyPath: weight], x: x, cols: cols, settings: st)
                applyClip(&w[keyPath: weight], maxVal: m, cols: cols, groupSize: st.groupSize)
                clips.append((name, m))
            }
        }
        return AWQLayerResult(weights: w, scales: chosen, clips: clips, searchSeconds: t1 - t0, clipSeconds: ProgressBar.now() - t1)
    }
}

/// The calibration tokens the AWQ scale-search losses are computed on when the batch has more than
/// `budget` tokens (an i2q option, `--search-tokens`; AutoAWQ uses every token):
/// - the attention group (input_layernorm → q,k,v) needs whole causal sequences: every k-th sequence,
///   k = max(1, round(tokens / budget)), starting with the first;
/// - the other groups (v → o, gate/up, up → down) act row by row: every ⌈tokens / budget⌉-th row,
///   across all sequences (text and image tokens alike).
/// x_mean, the clipping search (its own 512-token sample) and the layer's forward use every token.
struct SearchSample {
    let isAll: Bool
    let sequences: [Int]        // indices into batch.lengths
    let sequenceBatch: CalibrationBatch
    let rowStep: Int
    let rowCount: Int
    let batch: CalibrationBatch

    init(batch: CalibrationBatch, budget: Int) {
        self.batch = batch
        let n = batch.tokens
        if budget <= 0 || n <= budget {
            isAll = true; sequences = Array(batch.lengths.indices); sequenceBatch = batch; rowStep = 1; rowCount = n
            return
        }
        isAll = false
        let k = max(1, Int((Double(n) / Double(budget)).rounded()))
        sequences = Array(stride(from: 0, to: batch.lengths.count, by: k))
        sequenceBatch = CalibrationBatch(lengths: sequences.map { batch.lengths[$0] })
        rowStep = (n + budget - 1) / budget
        rowCount = (n + rowStep - 1) / rowStep
    }

    /// The rows of the sampled sequences of x [N, cols] → [sequenceBatch.tokens, cols].
    func sequenceRows(_ x: [Float], cols: Int) -> [Float] {
        if isAll { return x }
        var out: [Float] = []
        out.reserveCapacity(sequenceBatch.tokens * cols)
        for s in sequences { out += x[(batch.offsets[s] * cols)..<(batch.offsets[s + 1] * cols)] }
        return out
    }

    /// Rows 0, rowStep, 2·rowStep, … of x [N, cols] → [rowCount, cols].
    func rows(_ x: [Float], cols: Int) -> [Float] {
        if isAll { return x }
        var out: [Float] = []
        out.reserveCapacity(rowCount * cols)
        for r in stride(from: 0, to: batch.tokens, by: rowStep) { out += x[(r * cols)..<((r + 1) * cols)] }
        return out
    }
}

/// A pointer handed to worker threads that write disjoint parts.
struct UnsafeSendableBox<P>: @unchecked Sendable { let p: P; init(_ p: P) { self.p = p } }
