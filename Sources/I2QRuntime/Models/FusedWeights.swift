import CBLAS
import Foundation
import I2QCore
import I2QFormats

/// Projections that read the same input (q/k/v, k/v, gate/up). When the file holds them fused,
/// the whole group is ONE product against the fused weight — `Weight.linear` (sgemm / GEMV over
/// all rows) for 16/32-bit weights; for 4-bit ones one `QuantGemv.runMany` dispatch over every
/// part when decoding and dequantized row tiles × sgemm when prefilling — and the [m, Σ rows]
/// output is split into the parts' outputs. Unfused, each part is its own product (decoding with
/// float32 or 4-bit weights: still one dispatch for the group). A fused ggml-block entry is read
/// as its parts (row-range views of the fused blocks) and multiplied part by part, exactly as the
/// unfused entries would be (identical bits).
///
/// `parts` are always available as ordinary weights (for a fused file: zero-copy views of the
/// fused one), for code that reads a projection's values (calibration).
///
/// Reference: the unfused products. Fused decoding computes each output row with the same kernel
/// and summation order as unfused decoding (identical bits); fused prefill uses one sgemm with
/// N = Σ rows instead of one per part, which agrees to float32 rounding (tests: logits max|Δ| ≤
/// 1e-6 · std, FuseTests).
struct ProjectionGroup {
    let parts: [Weight]
    let biases: [Weight?]
    /// The fused weight [Σ rows, in] (16/32-bit) …
    let fused: Weight?
    /// … or the parts of a fused 4-bit entry (one kernel dispatch over all of them).
    let fused4: Bool
    let fusedBias: Weight?
    let widths: [Int]
    let inDim: Int
    var total: Int { widths.reduce(0, +) }
    var isFused: Bool { fused != nil || fused4 }

    /// y_p[m, widths[p]] = x[m, in] · W_pᵀ (+ b_p) for every part p.
    func callAsFunction(_ x: UnsafePointer<Float>, m: Int, outputs: [UnsafeMutablePointer<Float>], ws: Workspace) throws {
        precondition(outputs.count == parts.count, "ProjectionGroup: one output per part")
        if let o = LinearInputTap.observer { o.observe(weights: parts.map(\.name), x: x, rows: m, columns: inDim) }
        if isFused {
            let n = total
            let y = ws.fused(m * n)  // [m, Σ rows]
            try fusedProduct(x, m: m, y: y, ws: ws)
            if let b = fusedBias { try b.withF32(ws.scratch) { Kernels.addBias(y, $0, rows: m, n: n) } }
            var off = 0
            for (p, w) in widths.enumerated() {
                let dst = outputs[p]
                for i in 0..<m { (dst + i * w).update(from: y + i * n + off, count: w) }
                off += w
            }
            if fusedBias == nil { try addPartBiases(m: m, outputs: outputs, ws: ws) }
            return
        }
        if m == 1 {
            let direct = parts.compactMap(\.direct)
            let packed = parts.compactMap(\.packed)
            if direct.count == parts.count {
                Gemv.runMany(zip(direct, zip(outputs, widths)).map { (w: $0, y: $1.0, n: $1.1) }, x: x, k: inDim)  // one dispatch
                return try addPartBiases(m: m, outputs: outputs, ws: ws)
            }
            if packed.count == parts.count {
                QuantGemv.runMany(zip(packed, outputs).map { (w: $0, y: $1) }, x: x)  // one dispatch
                return try addPartBiases(m: m, outputs: outputs, ws: ws)
            }
        }
        try sharingConvertedInputs {  // the parts round / quantize x once (--bf16-activations, --int8-activations)
            for (w, y) in zip(parts, outputs) { try w.linear(x: x, y: y, m: m, scratch: ws.scratch, observe: false) }
        }
        try addPartBiases(m: m, outputs: outputs, ws: ws)
    }

    private func addPartBiases(m: Int, outputs: [UnsafeMutablePointer<Float>], ws: Workspace) throws {
        for (p, b) in biases.enumerated() {
            guard let b else { continue }
            try b.withF32(ws.scratch) { Kernels.addBias(outputs[p], $0, rows: m, n: widths[p]) }
        }
    }

    /// y[m, Σ rows] = x · W_fusedᵀ.
    ///
    /// Decoding (m = 1): one GEMV over all rows of the fused weight, one dispatch (f32: `Gemv.run`,
    /// 16-bit: `Gemv.run16` in place, 4-bit: `QuantGemv.runMany` over the parts' packed
    /// views). Each output row is computed exactly as unfused decoding computes it: identical bits.
    ///
    /// Prefill (m > 1): the fused weight is read once (16-bit: widened once into scratch; 4-bit:
    /// dequantized in row tiles) and multiplied part by part into the strided [m, Σ rows] output —
    /// sgemm per part with the unfused shapes, because OpenBLAS' sgemm rounds differently for
    /// different N (measured: up to ~2e-6 relative between N = 768 and N = 576 + 192), and the fused
    /// model must reproduce the unfused one (max|Δ| ≤ 1e-6·std). `FusedExecution.singleGemm` (env
    /// I2Q_FUSED_PREFILL=single) makes it one sgemm over all rows instead, for benchmarking.
    private func fusedProduct(_ x: UnsafePointer<Float>, m: Int, y: UnsafeMutablePointer<Float>, ws: Workspace) throws {
        let n = total, k = inDim
        if let fused {
            if m == 1 || FusedExecution.singleGemm {
                try fused.linear(x: x, y: y, m: m, scratch: ws.scratch, observe: false)
                return
            }
            // int8 activations × the fused float weight, part by part (as unfused: per-row scales make
            // each part's result independent of the others).
            let bytes = fused.tensor.dtype == .f32 ? 4 : 2
            if Int8Gemm.enabled, try sharingConvertedInputs({ try fused.withMappedFloat { w in
                var off = 0
                for width in widths {
                    Int8Gemm.linear(x: x, w: w + bytes * off * k, dtype: fused.tensor.dtype, y: y + off, m: m, k: k, n: width,
                                    ldy: n, accumulate: false)
                    off += width
                }
            } }) {
                return
            }
            if fused.tensor.dtype == .bf16, BF16Gemm.enabled, let f = fused.tensor.file {
                // bf16 activations × the fused bf16 weight in place, part by part (as unfused).
                try f.withBytes(fused.tensor.offset, fused.tensor.byteCount) { b in
                    var off = 0
                    for (p, width) in widths.enumerated() {
                        let o = off
                        try BF16Gemm.linear(x: x, w: b.baseAddress! + 2 * off * k, y: y + off, m: m, k: k, n: width, ldy: n,
                                            accumulate: false, scratch: ws.scratch, repacked: parts[p].repacked) { try fused.rows(o, width, into: $0) }
                        off += width
                    }
                }
                return
            }
            try fused.withF32(ws.scratch) { w in  // [Σ rows, in] f32
                var off = 0
                for width in widths {
                    Matmul.sgemm(transB: true, m: m, n: width, k: k, alpha: 1, a: x, lda: k, b: w + off * k, ldb: k,
                                 beta: 0, c: y + off, ldc: n)
                    off += width
                }
            }
            return
        }
        let segs = parts.map { $0.packed! }
        if m == 1 {
            var off = 0
            var items: [(w: PackedFourBit, y: UnsafeMutablePointer<Float>)] = []
            for s in segs { items.append((s, y + off)); off += s.rows }
            QuantGemv.runMany(items, x: x)
            return
        }
        // Prefill: row tiles dequantized into scratch, one sgemm each (QuantGemv.linear's scheme) —
        // per part exactly as unfused (`tiledLinear`: the same tiles on the pool, so bit-identical to
        // the unfused model, into the strided output), or over the fused row space (single GEMM mode).
        if !FusedExecution.singleGemm {
            var off = 0
            for s in segs {
                let tile = QuantGemv.tileRows(rows: s.rows, cols: k)
                QuantGemv.tiledLinear(s, x: x, y: y + off, m: m, ldy: n, accumulate: false,
                                      scratch: ws.scratch.buffer(tile * k), tileRows: tile)  // [tile, in] f32
                off += s.rows
            }
            return
        }
        let spans: [(segs: [PackedFourBit], base: Int, rows: Int)] = [(segs, 0, n)]
        for span in spans {
            let tile = QuantGemv.tileRows(rows: span.rows, cols: k)
            let scratch = ws.scratch.buffer(tile * k)  // [tile, in] f32
            var r0 = 0
            while r0 < span.rows {
                let t = min(tile, span.rows - r0)
                var base = 0
                for s in span.segs {
                    let lo = max(r0, base), hi = min(r0 + t, base + s.rows)
                    if lo < hi { s.dequantizeRows(lo - base, hi - lo, into: scratch + (lo - r0) * k) }
                    base += s.rows
                }
                Matmul.sgemm(transB: true, m: m, n: t, k: k, alpha: 1, a: x, lda: k, b: scratch, ldb: k,
                             beta: 0, c: y + span.base + r0, ldc: n)
                r0 += t
            }
        }
    }
}

/// How fused weights are multiplied at prefill (see `ProjectionGroup.fusedProduct`).
public enum FusedExecution {
    /// One sgemm over all rows of a fused weight (faster call pattern, but rounds differently from
    /// the unfused model); default false. Set from env I2Q_FUSED_PREFILL=single.
    nonisolated(unsafe) public static var singleGemm: Bool = ProcessInfo.processInfo.environment["I2Q_FUSED_PREFILL"] == "single"
}

extension WeightLoader {
    /// The group `names` (full tensor names ending in `.weight`, e.g. …q_proj.weight, …k_proj.weight,
    /// …v_proj.weight) of shapes [widths[p], inDim], fused when the file holds their fused entry
    /// (`FusedTensors.fusedName`), separate otherwise. Biases (`….bias`) are loaded when present
    /// (`bias`), fused or not.
    func group(_ names: [String], widths: [Int], inDim: Int, bias: Bool) throws -> ProjectionGroup {
        let biasNames = names.map { String($0.dropLast(".weight".count)) + ".bias" }
        let f = source as? I2QFile
        guard let fusedName = FusedTensors.fusedName(of: names),
              let f, let fe = f.entries.first(where: { $0.name == fusedName }) else {
            let parts = try zip(names, widths).map { try weight($0, [$1, inDim]) }
            let biases = try bias ? zip(biasNames, widths).map { try optional($0, [$1]) } : names.map { _ in nil }
            return ProjectionGroup(parts: parts, biases: biases, fused: nil, fused4: false, fusedBias: nil, widths: widths, inDim: inDim)
        }
        let partEntries = try checkedParts(fe, names: names, widths: widths, inDim: inDim, file: f)
        var parts: [Weight] = []
        var fused: Weight?
        let ggml = GGMLWeight.schemes.contains(fe.scheme)
        if ggml {
            try f.ensureVerified(fe)
            parts = try partEntries.map { pe in try Weight(GGMLWeight.sourceTensor(pe, file: f), ggml: GGMLWeight.rows(pe, file: f)) }
        } else if fe.scheme == I2QSpec.Scheme.plain {
            fused = try weight(fusedName, [widths.reduce(0, +), inDim])
            parts = try partEntries.map { try Weight(FusedTensors.plainView($0.components[0], $0, owner: fe, file: f)) }
        } else {
            try f.ensureVerified(fe)
            for pe in partEntries {
                let p = try FourBitWeight.packed(pe, file: f)
                let t = try FourBitWeight.sourceTensor(pe, file: f)
                parts.append(try Weight(t, packed: p))
            }
        }
        var biases: [Weight?] = names.map { _ in nil }
        var fusedBias: Weight?
        if bias, let fb = FusedTensors.fusedName(of: biasNames), let be = f.entries.first(where: { $0.name == fb }) {
            guard be.scheme == I2QSpec.Scheme.plain else { throw RuntimeError.quantized(model: f.path, name: fb) }
            let bparts = try checkedParts(be, names: biasNames, widths: widths, inDim: nil, file: f)
            fusedBias = try weight(fb, [widths.reduce(0, +)])
            biases = try bparts.map { try Weight(FusedTensors.plainView($0.components[0], $0, owner: be, file: f)) }
        } else if bias {
            biases = try zip(biasNames, widths).map { try optional($0, [$1]) }
        }
        return ProjectionGroup(parts: parts, biases: biases, fused: fused, fused4: fused == nil && !ggml, fusedBias: fusedBias,
                               widths: widths, inDim: inDim)
    }

    private func checkedParts(_ e: I2QTensorEntry, names: [String], widths: [Int], inDim: Int?, file f: I2QFile) throws -> [I2QTensorEntry] {
        let parts = try FusedTensors.partEntries(e, path: f.path)
        guard parts.map(\.name) == names else {
            throw FusedTensorError.unexpectedParts(path: f.path, tensor: e.name, expected: names, actual: parts.map(\.name))
        }
        for (p, w) in zip(parts, widths) {
            let want = inDim.map { [w, $0] } ?? [w]
            guard p.shape == want else { throw RuntimeError.wrongShape(model: f.path, name: p.name, expected: want, actual: p.shape) }
        }
        return parts
    }
}
