import Dispatch
import I2QCore
import I2QFormats
import I2QQuant

extension MixedQuantizePass {
    typealias Options = [(name: String, bits: Int, cost: Double)]

    /// The cost table (per planned tensor, per fitting candidate: bits stored and estimated cost) and
    /// the importance matrix it was measured with; resumes from `state`.
    static func measure(source: any ModelSource, planned: [Planned], candidates: [MixedCandidate], importance given: ImportanceMatrix?,
                        intermediate: DType, state: MixedState, options o: MixedQuantizeOptions) throws -> ([Options], ImportanceMatrix?) {
        InterruptHint.set("--target-bpw: the measurement so far is kept in \(state.dir); run the same command with --resume to continue from there\n")
        defer { InterruptHint.set(nil) }
        var imp = given
        if imp == nil {
            if FileSystem.exists(state.importanceFile) {
                imp = try ImportanceMatrix.read(path: state.importanceFile)
                o.log("bpw: importance matrix from \(state.importanceFile)")
            } else {
                let (m, r) = try collectImportance(source, o.calibration!, log: o.log)
                o.log("bpw: importance matrix: \(r.line)")
                try m.write(to: state.importanceFile + ".tmp", format: .gguf)
                try FileSystem.rename(state.importanceFile + ".tmp", state.importanceFile)
                imp = m
            }
        }
        // A tied embedding is also the output layer: its cost counts both roles.
        let tied = !planned.contains { $0.gguf == GGUFNames.output.0 }
        var table: [Options] = []
        var measured = 0, resumed = 0
        let start = ProgressBar.now()
        var probe: SensitivityProbe? = nil
        let probing = o.probeTokens > 0 && o.calibration != nil
        if o.probeTokens > 0 && o.calibration == nil { o.log("bpw: no --calibration for the KLD probe: costs are the importance-weighted weight error alone") }
        for (i, p) in planned.enumerated() {
            if let c = try state.costs(i, name: p.tensor.name) { table.append(c); resumed += 1; continue }
            let fits = MixedCandidate.options(candidates, columns: p.cols)
            let (weights, note) = costImportance(p, importance: imp, tied: tied)
            if let note { o.log("bpw: \(p.tensor.name): \(note)") }
            let cheapest = fits.min { $0.bytes(rows: p.rows, cols: p.cols) < $1.bytes(rows: p.rows, cols: p.cols) }!
            var (c, kept) = try measureTensor(p, candidates: fits, weights: weights, intermediate: intermediate, keep: probing ? cheapest : nil) { t in
                try LlamaImportance.vector(imp, tensor: p.gguf, columns: p.cols, type: t)
            }
            if let kept {
                if probe == nil { probe = try SensitivityProbe(source: source, calibration: o.calibration!, tokens: o.probeTokens) }
                let kld = max(0, try probe!.kld(name: p.tensor.name, shape: p.tensor.shape, values: kept))
                let proxy = c.first { $0.name == cheapest.name }!.cost
                let alpha = proxy > 0 ? kld / proxy : 0
                c = c.map { ($0.name, $0.bits, $0.cost * alpha) }
            }
            try state.store(i, name: p.tensor.name, options: c)
            table.append(c)
            measured += 1
            let el = ProgressBar.now() - start
            o.log("bpw: measured \(i + 1)/\(planned.count) \(p.tensor.name); ETA \(formatSeconds(el / Double(measured) * Double(planned.count - 1 - i)))")
            if let stop = o.stopAfterTensors, measured >= stop, i < planned.count - 1 { throw MixedQuantizeError.stopped(tensors: measured, state: state.dir) }
        }
        if resumed > 0 { o.log("bpw: \(resumed) tensor(s) measured by an earlier run (state \(state.dir))") }
        return (table, imp)
    }

    /// The per-column weights of tensor `p`'s cost: the mean squared input activation of its columns
    /// (for the output layer: of the final normalised hidden states); a token embedding's lookup role
    /// adds 1/vocab per column (a token's row error, tokens equally likely). Without a measured vector,
    /// 1 per column (and a note).
    static func costImportance(_ p: Planned, importance: ImportanceMatrix?, tied: Bool) -> ([Float], String?) {
        var note: String? = nil
        func vector(_ name: String) -> [Float] {
            if let v = importance?.values(for: name), v.count == p.cols { return v }
            note = "no importance vector for \(name) of \(p.cols) columns; weighting its columns equally"
            return [Float](repeating: 1, count: p.cols)
        }
        if p.gguf == "token_embd.weight" {
            let lookup = 1 / Float(p.rows)
            return (tied ? vector(GGUFNames.output.0).map { $0 + lookup } : [Float](repeating: lookup, count: p.cols), note)
        }
        return (vector(p.gguf), note)
    }

    /// Σ_j weights_j Σ_i (w_ij − ŵ_ij)² for each candidate, streamed in row chunks (~1 Mi elements);
    /// the candidates run in parallel, each summing its chunks in order (deterministic). ggml
    /// candidates start from the values rounded through `intermediate`, as the writer does; a tensor
    /// whose values overflow it (f16) gets no ggml option.
    /// `keep`: also return that candidate's values for the whole tensor ([rows, cols] f32), for the probe.
    static func measureTensor(_ p: Planned, candidates: [MixedCandidate], weights: [Float], intermediate: DType, keep: MixedCandidate? = nil,
                              ggmlImportance: (GGMLType) throws -> [Float]?) throws -> (Options, [Float]?) {
        let (rows, cols, t) = (p.rows, p.cols, p.tensor)
        var cands = candidates
        var vectors: [[Float]?] = try cands.map { c in if case let .ggml(g) = c { return try ggmlImportance(g) } else { return nil } }
        let step = max(1, (1 << 20) / cols)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: step * cols * 8, alignment: 64)  // [step, cols] source dtype / 16-bit
        let w = UnsafeMutablePointer<Float>.allocate(capacity: step * cols)                    // [step, cols] f32
        let wi = UnsafeMutablePointer<Float>.allocate(capacity: step * cols)                   // [step, cols] f32 via intermediate
        var outs = (0..<cands.count).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: step * cols) }  // [cands][step, cols]
        defer { raw.deallocate(); w.deallocate(); wi.deallocate(); outs.forEach { $0.deallocate() } }
        var costs = [Double](repeating: 0, count: cands.count)
        var kept: [Float]? = keep.map { _ in [] }
        kept?.reserveCapacity(rows * cols)
        var r = 0
        while r < rows {
            let m = min(step, rows - r)
            try t.read(elements: r * cols, count: m * cols, into: raw)
            FloatConversion.widenToF32(from: t.dtype, count: m * cols, src: raw, dst: w)
            if cands.contains(where: \.roundsThroughIntermediate) {
                let st = try FloatConversion.convert(from: .f32, to: intermediate, count: m * cols, src: w, dst: raw)
                if st.overflowed > 0 {
                    let keep = cands.indices.filter { !cands[$0].roundsThroughIntermediate }
                    for i in cands.indices where cands[i].roundsThroughIntermediate { outs[i].deallocate() }
                    cands = keep.map { cands[$0] }; vectors = keep.map { vectors[$0] }; outs = keep.map { outs[$0] }; costs = keep.map { costs[$0] }
                } else {
                    FloatConversion.widenToF32(from: intermediate, count: m * cols, src: raw, dst: wi)
                }
            }
            let errors = ErrorBox()
            let box = UnsafeSendableBox((w, wi, outs, cands, vectors))
            let partial = UnsafeMutablePointer<Double>.allocate(capacity: cands.count)  // [cands]
            defer { partial.deallocate() }
            let pb = UnsafeSendableBox(partial)
            weights.withUnsafeBufferPointer { wp in
                let wb = UnsafeSendableBox(wp.baseAddress!)
                DispatchQueue.concurrentPerform(iterations: box.p.3.count) { k in
                    let (w, wi, outs, cands, vectors) = box.p
                    do {
                        let src = cands[k].roundsThroughIntermediate ? wi : w
                        try vectors[k].withUnsafeBufferPointerIfAny { v in
                            try cands[k].roundTrip(src, rows: m, cols: cols, importance: v, into: outs[k])
                        }
                        pb.p[k] = weightedError(w, outs[k], wb.p, rows: m, cols: cols)
                    } catch { errors.set(error) }
                }
            }
            if let e = errors.error {
                if case let .some(.encode(_, d)) = e as? GGMLQuantizeError { throw GGMLQuantizeError.encode(tensor: t.name, detail: d) }
                if let g = e as? GGUFQuantizeError { throw GGMLQuantizeError.encode(tensor: t.name, detail: g.description) }
                throw e
            }
            for k in cands.indices { costs[k] += partial[k] }
            if let keep {
                guard let k = cands.firstIndex(of: keep) else { throw MixedQuantizeError.noCandidate(tensor: t.name, columns: cols, candidates: [keep.name]) }
                kept! += UnsafeBufferPointer(start: outs[k], count: m * cols)
            }
            r += m
        }
        return (cands.indices.map { (cands[$0].name, cands[$0].bytes(rows: rows, cols: cols) * 8, costs[$0]) }, kept)
    }

    /// Σ_i Σ_j v_j (a_ij − b_ij)² over [rows, cols], in double, row by row.
    static func weightedError(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ v: UnsafePointer<Float>, rows: Int, cols: Int) -> Double {
        var s = 0.0
        for i in 0..<rows {
            let ra = a + i * cols, rb = b + i * cols
            var row = 0.0
            for j in 0..<cols { let d = Double(ra[j] - rb[j]); row += Double(v[j]) * d * d }
            s += row
        }
        return s
    }
}

/// The first error thrown by concurrent work.
final class ErrorBox: @unchecked Sendable {
    private let lock = Lock()
    private var first: Error?
    func set(_ e: Error) { lock.withLock { if first == nil { first = e } } }
    var error: Error? { lock.withLock { first } }
}
