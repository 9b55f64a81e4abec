import Dispatch
import I2QCore
import I2QEval
import I2QFormats
import I2QQuant

public struct MixedQuantizeOptions: Sendable {
    /// Average bits per weight (scales included) over the assigned tensors, at most.
    public var targetBPW: Double?
    public var candidates: [MixedCandidate] = try! MixedCandidate.parseList(MixedCandidate.defaultList)
    /// `--recipe FILE`: apply its assignment (or, with `targetBPW`, re-optimize its cost table).
    public var recipe: MixedRecipe?
    /// Where the recipe is written (nil: OUTPUT.recipe.json).
    public var recipeOutput: String?
    /// Measurement calibration (the importance matrix is collected on it, image tokens included for
    /// Idefics2); or `importance` given (`--imatrix`).
    public var calibration: ImatrixSettings?
    public var importance: ImportanceMatrix?
    /// Calibration positions of the KLD probe (`SensitivityProbe`; 0: the weight-error proxy alone).
    public var probeTokens = 128
    public var resume = false
    public var restart = false
    /// Tests of resuming: stop (throwing `MixedQuantizeError.stopped`) after this many tensors were
    /// measured in this run, keeping the state.
    public var stopAfterTensors: Int?
    public var log: @Sendable (String) -> Void = { _ in }
    public init() {}
}

public enum MixedQuantizeError: I2QError, Equatable {
    case noImportance
    case infeasible(target: Double, minimum: Double, cheapest: String)
    case noCandidate(tensor: String, columns: Int, candidates: [String])
    case recipeMismatch(path: String, detail: String)
    case stateExists(path: String, pieces: Int)
    case stateMismatch(path: String, differing: [String])
    case stopped(tensors: Int, state: String)
    case fused(path: String)
    case nothingToQuantize(path: String)

    public var description: String {
        switch self {
        case .noImportance: return "--target-bpw measures each tensor's sensitivity: give --calibration (a text file or a DocVQA-format directory) or --imatrix FILE"
        case let .infeasible(t, m, c): return "--target-bpw \(formatFixed(t, 3)) is below the smallest these candidates reach (\(formatFixed(m, 3)) bits/weight, every tensor at its cheapest: \(c)); raise --target-bpw or add a smaller candidate (e.g. int4g128, q4_0, int3g64, int2g64)"
        case let .noCandidate(t, c, cs): return "tensor \"\(t)\" (rows of \(c)) fits none of the candidates \(cs.joined(separator: ", ")) (their groups/blocks do not divide \(c)); add bf16 or a block-32 type (q8_0, q4_0) to --candidates"
        case let .recipeMismatch(p, d): return "\(p): \(d); the recipe was made for another model or candidate list"
        case let .stateExists(p, n): return "\(p) holds \(n) finished piece(s) of an earlier --target-bpw measurement for this output: --resume to continue it, or --restart to discard it"
        case let .stateMismatch(p, d):
            let what = d.isEmpty ? "" : " (differing: \(d.joined(separator: ", ")))"
            return "\(p) holds the measurement of a run with other settings or another model\(what); run with the same settings, or --restart to discard it"
        case let .stopped(n, s): return "stopped after measuring \(n) tensor(s) as asked; state kept in \(s) (continue with --resume)"
        case let .fused(p): return "\(p) holds fused tensors (i2q fuse); quantize the unfused model with --target-bpw, then fuse"
        case let .nothingToQuantize(p): return "\(p): no decoder weights to assign schemes to"
        }
    }
}

/// `i2q quantize MODEL --target-bpw X [--candidates …] --calibration …` (issue 22): mixed precision
/// by measured sensitivity.
///
/// 1. Measurement (resumable, `MixedState`): the importance matrix on the calibration data
///    (`ImatrixPass.compute`: the runtime forward, image tokens included for Idefics2, plus the
///    lm_head's input), then tensor by tensor and candidate by candidate the estimated cost
///    Σ_j imp_j Σ_i (w_ij − ŵ_ij)² — the expected squared output error per token under a diagonal
///    approximation, ŵ the values the candidate stores (`MixedCandidate.roundTrip`, the same
///    encoders the writer uses). A tied embedding adds its lookup role (imp_j + 1/vocab: a token's
///    row error, tokens equally likely).
/// 2. `BitAllocation` picks per tensor the candidate minimising Σ cost with Σ bits ≤ X · parameters.
/// 3. The recipe (`MixedRecipe`) is written as JSON and into the provenance; the .i2q holds each
///    tensor in its scheme: `ggml` entries (llama-quantize's bytes for that type with the importance
///    vector, as `quantize --type … --tensor-type` writes them), `affine_int4` / `affine_int3` /
///    `affine_int2` (RTN, the bytes of `quantize --rtn --bits B --group-size G`), or 16-bit floats.
///
/// Assigned tensors: the decoder's 2-D weights (llama.cpp's `blk.*`), the token embedding and the
/// lm_head; the rest (norms, a vision tower, the connector) is copied. AWQ scaling is not applied
/// (the int4 candidates are round to nearest) — a later step.
public enum MixedQuantizePass {
    struct Planned {
        let tensor: SourceTensor
        let gguf: String
        var rows: Int { tensor.shape[0] }
        var cols: Int { tensor.shape[1] }
        var parameters: Int { rows * cols }
    }

    static func plan(_ source: any ModelSource) throws -> [Planned] {
        if let f = source as? I2QFile, f.entries.contains(where: { !$0.parts.isEmpty }) { throw MixedQuantizeError.fused(path: source.path) }
        let arch = source.config.architecture
        return source.tensors.compactMap { s in
            let g = ImatrixNames.name(checkpoint: s.name, architecture: arch)
            guard g.hasPrefix("blk.") || g == "token_embd.weight" || g == GGUFNames.output.0,
                  s.shape.count == 2, s.shape[0] > 1, s.dtype.isCastableFloat else { return nil }
            return Planned(tensor: s, gguf: g)
        }
    }

    public static func run(source: any ModelSource, output: String, options o: MixedQuantizeOptions, settings: OutputSettings) throws -> PassReport {
        let started = ProgressBar.now()
        let q = source.quantizedTensorNames
        if !q.isEmpty { throw PassError.quantizedInput(path: source.path, tensors: q, verb: "quantize --target-bpw") }
        let planned = try plan(source)
        guard !planned.isEmpty else { throw MixedQuantizeError.nothingToQuantize(path: source.path) }
        let intermediate: DType = GGUFExportType.auto(for: source) == .bf16 ? .bf16 : .f16
        let recipeOut = o.recipeOutput ?? defaultRecipePath(output)
        // Claim the outputs (lock, existence, --overwrite rules) before the measurement.
        let pipeline = try PassPipeline(source: source, output: output, settings: settings, record: nil, directory: false)
        try pipeline.stage()
        let recipeStage = try StagedOutput(finalPath: recipeOut, directory: false, overwrite: settings.overwrite, inputs: [source.path])
        let plotStage = try StagedOutput(finalPath: plotPath(recipeOut), directory: false, overwrite: settings.overwrite, inputs: [source.path])

        var recipe: MixedRecipe
        var importance = o.importance
        var state: MixedState? = nil
        if let given = o.recipe, o.targetBPW == nil {
            recipe = given
            try check(recipe, against: planned, path: "--recipe")
            if importance == nil, let cal = o.calibration { importance = try collectImportance(source, cal, log: o.log).0 }
        } else {
            let candidates = o.recipe.map { r in r.candidates.compactMap(MixedCandidate.init(name:)) } ?? o.candidates
            var table: [[(name: String, bits: Int, cost: Double)]]
            if let r = o.recipe {
                try check(r, against: planned, path: "--recipe")
                guard r.tensors.allSatisfy({ !$0.options.isEmpty }) else {
                    throw MixedQuantizeError.recipeMismatch(path: "--recipe", detail: "it has no measured costs (\"options\") to re-optimize for --target-bpw; measure with --calibration instead")
                }
                let byName = Dictionary(uniqueKeysWithValues: r.tensors.map { ($0.name, $0) })
                table = planned.map { byName[$0.tensor.name]!.options }
                if importance == nil, let cal = o.calibration { importance = try collectImportance(source, cal, log: o.log).0 }
            } else {
                guard o.calibration != nil || importance != nil else { throw MixedQuantizeError.noImportance }
                for p in planned where MixedCandidate.options(candidates, columns: p.cols).isEmpty {
                    throw MixedQuantizeError.noCandidate(tensor: p.tensor.name, columns: p.cols, candidates: candidates.map(\.name))
                }
                let params = planned.reduce(0) { $0 + $1.parameters }
                let minBits = planned.reduce(0) { acc, p in acc + MixedCandidate.options(candidates, columns: p.cols).map { $0.bytes(rows: p.rows, cols: p.cols) * 8 }.min()! }
                if let t = o.targetBPW, Double(minBits) > t * Double(params) {
                    let cheapest = Set(planned.map { p in MixedCandidate.options(candidates, columns: p.cols).min { $0.bytes(rows: p.rows, cols: p.cols) < $1.bytes(rows: p.rows, cols: p.cols) }!.name }).sorted().joined(separator: "/")
                    throw MixedQuantizeError.infeasible(target: t, minimum: Double(minBits) / Double(params), cheapest: cheapest)
                }
                let s = try MixedState(output: output, fingerprint: fingerprint(source, o), resume: o.resume, restart: o.restart)
                state = s
                do {
                    (table, importance) = try measure(source: source, planned: planned, candidates: candidates, importance: importance,
                                                      intermediate: intermediate, state: s, options: o)
                } catch {
                    s.removeIfEmpty()
                    throw error
                }
            }
            let target = o.targetBPW!
            let params = planned.reduce(0) { $0 + $1.parameters }
            let budget = Int((target * Double(params)).rounded(.down))
            let opts = table.map { $0.map { BitAllocation.Option(bits: $0.bits, cost: $0.cost) } }
            let choice: [Int]
            do { choice = try BitAllocation.solve(opts, budgetBits: budget) } catch BitAllocationError.infeasible(let minBits) {
                let cheapest = Set(zip(table, opts).map { t, op in t[op.indices.min { (op[$0].bits, $0) < (op[$1].bits, $1) }!].name }).sorted().joined(separator: "/")
                throw MixedQuantizeError.infeasible(target: target, minimum: Double(minBits) / Double(params), cheapest: cheapest)
            }
            recipe = MixedRecipe(targetBPW: target, candidates: candidates.map(\.name), tensors: zip(planned, zip(table, choice)).map { p, tc in
                MixedRecipe.Tensor(name: p.tensor.name, scheme: tc.0[tc.1].name, parameters: p.parameters, options: tc.0)
            })
        }
        let schemes = Dictionary(uniqueKeysWithValues: recipe.tensors.map { ($0.name, MixedCandidate(name: $0.scheme)!) })
        let achieved = planned.reduce(0) { $0 + schemes[$1.tensor.name]!.bytes(rows: $1.rows, cols: $1.cols) * 8 }
        let achievedBPW = Double(achieved) / Double(planned.reduce(0) { $0 + $1.parameters })
        var counts: [String: Int] = [:]
        for t in recipe.tensors { counts[t.scheme, default: 0] += 1 }
        o.log("bpw: \(formatFixed(achievedBPW, 4)) bits/weight over \(planned.count) tensors" + (recipe.targetBPW.map { " (target \(formatFixed($0, 3)))" } ?? "") + ": "
              + counts.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", "))

        let record = PassRecord(name: "quantize", params: [
            ("type", .string("mixed")),
            ("target_bpw", recipe.targetBPW.map { .number("\($0)") } ?? .null),
            ("achieved_bpw", .number(formatFixed(achievedBPW, 4))),
            ("candidates", .array(recipe.candidates.map { .string($0) })),
            ("importance_xxh3", importance.map { .string(importanceChecksum($0)) } ?? .null),
            ("intermediate", .string(intermediate.rawValue)),
            ("recipe", .object(recipe.tensors.map { ($0.name, .string($0.scheme)) })),
        ])
        pipeline.append(record)
        var report = try pipeline.run { temp in
            try write(source: source, planned: planned, schemes: schemes, importance: importance, intermediate: intermediate,
                      to: temp, pipeline: pipeline, settings: settings)
        }
        try FileSystem.writeFile(recipeStage.tempPath, Array((JSONWriter.string(recipe.json, indent: 2) + "\n").utf8))
        let bars = planned.map { p in
            RecipePlot.Bar(name: p.tensor.name, scheme: schemes[p.tensor.name]!.name,
                           bitsPerWeight: Double(schemes[p.tensor.name]!.bytes(rows: p.rows, cols: p.cols) * 8) / Double(p.parameters))
        }
        let svg = RecipePlot.svg(bars, file: FileSystem.basename(output), model: FileSystem.basename(source.path),
                                 achievedBPW: achievedBPW, targetBPW: recipe.targetBPW)
        try FileSystem.writeFile(plotStage.tempPath, Array(svg.utf8))
        try recipeStage.commit()
        try plotStage.commit()
        state?.remove()
        report.seconds = ProgressBar.now() - started
        return report
    }

    /// The importance matrix of the measurement: `ImatrixPass.compute` with the lm_head's input
    /// (`processOutput`), whichever path needs it — so a recipe applied with the same calibration
    /// uses the very importance its measurement used.
    static func collectImportance(_ source: any ModelSource, _ cal: ImatrixSettings, log: @escaping @Sendable (String) -> Void) throws -> (ImportanceMatrix, ImatrixReport) {
        var c = cal
        c.processOutput = true
        return try ImatrixPass.compute(source: source, settings: c, log: log)
    }

    /// The recipe's plot (where the bits went): RECIPE with `.json` replaced by `.svg` (else + `.svg`).
    public static func plotPath(_ recipe: String) -> String {
        recipe.hasSuffix(".json") ? String(recipe.dropLast(5)) + ".svg" : recipe + ".svg"
    }

    /// OUTPUT without a final `.i2q`, + `.recipe.json`.
    public static func defaultRecipePath(_ output: String) -> String {
        var o = output
        while o.count > 1 && o.hasSuffix("/") { o.removeLast() }
        if o.hasSuffix(".i2q") { o.removeLast(4) }
        return o + ".recipe.json"
    }

    static func fingerprint(_ source: any ModelSource, _ o: MixedQuantizeOptions) -> [(String, JSONValue)] {
        var fp: [(String, JSONValue)] = [("source", source.identity), ("candidates", .array(o.candidates.map { .string($0.name) }))]
        if let c = o.calibration {
            fp += [("calibration_path", .string(c.calibration)),
                   ("calibration_bytes", .int(FileSystem.isDirectory(c.calibration) ? -1 : (FileSystem.fileSize(c.calibration) ?? -1))),
                   ("ctx", .int(c.ctx)), ("chunks", c.chunks.map { .int($0) } ?? .null), ("images", .bool(c.images)),
                   ("seed", .int(Int(truncatingIfNeeded: c.seed))), ("probe_tokens", .int(o.probeTokens))]
        }
        if let m = o.importance { fp.append(("importance_xxh3", .string(importanceChecksum(m)))) }
        return fp
    }

    /// XXH3-64 of the importance values (tensor names sorted, each name and its sums and counts).
    static func importanceChecksum(_ m: ImportanceMatrix) -> String {
        var bytes: [UInt8] = []
        for k in m.entries.keys.sorted() {
            bytes += Array(k.utf8) + [0]
            let e = m.entries[k]!
            e.sums.withUnsafeBytes { bytes += $0 }
            e.counts.withUnsafeBytes { bytes += $0 }
        }
        return XXH3.hex(bytes.withUnsafeBytes { XXH3.hash($0) })
    }

    /// A recipe must name exactly the planned tensors, each with a scheme that fits it.
    static func check(_ r: MixedRecipe, against planned: [Planned], path: String) throws {
        let byName = Dictionary(uniqueKeysWithValues: r.tensors.map { ($0.name, $0) })
        for p in planned {
            guard let t = byName[p.tensor.name] else { throw MixedQuantizeError.recipeMismatch(path: path, detail: "it has no scheme for tensor \"\(p.tensor.name)\"") }
            guard t.parameters == p.parameters else { throw MixedQuantizeError.recipeMismatch(path: path, detail: "tensor \"\(t.name)\" has \(t.parameters) parameters there, \(p.parameters) in the model") }
            let c = MixedCandidate(name: t.scheme)!
            guard c.fits(columns: p.cols) else { throw MixedQuantizeError.recipeMismatch(path: path, detail: "scheme \(t.scheme) of tensor \"\(t.name)\" does not fit its rows of \(p.cols)") }
        }
        let names = Set(planned.map(\.tensor.name))
        if let extra = r.tensors.first(where: { !names.contains($0.name) }) {
            throw MixedQuantizeError.recipeMismatch(path: path, detail: "tensor \"\(extra.name)\" is not a weight of this model that --target-bpw assigns")
        }
    }
}
