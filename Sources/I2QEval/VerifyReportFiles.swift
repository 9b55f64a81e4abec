import Foundation
import I2QCore

public enum VerifyReportError: I2QError {
    case notAReportDirectory(String)
    public var description: String {
        switch self {
        case let .notAReportDirectory(d):
            return "\(d) exists and is not an i2q verify report (no report.json in it); choose a new directory for --report (an old report is replaced)"
        }
    }
}

/// `--report DIR`: summary.md, report.json and hand-written SVG plots (kld_histogram.svg,
/// kld_cdf.svg, layer_error.svg, vision_layer_error.svg, docvqa.svg — those with data; SVG in
/// VerifyReportPlots.swift). The directory is built under a
/// temporary name and renamed when complete; an existing report directory is replaced.
public enum VerifyReportFiles {
    public static func write(_ r: VerifyReport, to dir: String) throws {
        try write(r, into: claim(dir))
    }

    /// Checks `dir` and takes its lock before any computing: a directory that is not a report is
    /// refused at once, and a second verify writing the same report is refused while this one runs.
    public static func claim(_ dir: String, inputs: [String] = []) throws -> StagedOutput {
        if FileSystem.exists(dir) {
            let names = FileSystem.isDirectory(dir) ? try FileSystem.listDirectory(dir) : ["?"]
            guard names.isEmpty || names.contains("report.json") else { throw VerifyReportError.notAReportDirectory(dir) }
        }
        return try StagedOutput(finalPath: dir, directory: true, overwrite: true, inputs: inputs)
    }

    public static func write(_ r: VerifyReport, into out: StagedOutput) throws {
        var names: [String] = []
        func put(_ name: String, _ text: String) throws {
            try FileSystem.writeFile(out.tempPath + "/" + name, Array(text.utf8))
        }
        for (name, svg) in plots(r) {
            try put(name, svg); names.append(name)
        }
        try put("report.json", r.jsonString() + "\n")
        try put("summary.md", summary(r, plots: names))
        try out.commit()
    }

    /// The report's plots, (file name, SVG text), in the order summary.md shows them:
    /// kld_histogram.svg and kld_cdf.svg (with text), layer_error.svg (every module measured, in model
    /// order: vision encoder → connector → decoder), vision_layer_error.svg (the vision encoder alone),
    /// docvqa.svg.
    static func plots(_ r: VerifyReport) -> [(String, String)] {
        let m = PlotModels(r)
        var out: [(String, String)] = []
        if let t = r.text {
            out.append(("kld_histogram.svg", SVG.kldHistogram(t.stats.sortedKLD, models: m)))
            out.append(("kld_cdf.svg", SVG.kldCDF(t.stats.sortedKLD, mean: t.stats.kldMean, models: m)))
        }
        let segments = layerSegments(r)
        if !segments.isEmpty { out.append(("layer_error.svg", SVG.layerError(segments, models: m))) }
        if let v = segments.first, v.module == "vision encoder" {
            out.append(("vision_layer_error.svg", SVG.layerError([v], models: m)))
        }
        if let d = r.docvqa { out.append(("docvqa.svg", SVG.docvqaBars(d, models: m))) }
        return out
    }

    /// The measured modules in model order, each a run of layers comparable with each other.
    static func layerSegments(_ r: VerifyReport) -> [SVG.LayerSegment] {
        var segs: [SVG.LayerSegment] = []
        if let v = r.visionLayers, !v.isEmpty {
            segs.append(.init(module: "vision encoder", width: r.visionWidth, inputs: "\(r.visionImages) images", layers: v, unit: "patches"))
        }
        if let c = r.connector {
            segs.append(.init(module: "connector", width: r.decoderWidth, inputs: "\(r.visionImages) images", layers: [c], unit: "image tokens", tick: { _ in "out" }))
        }
        if let l = r.layers, !l.isEmpty {
            segs.append(.init(module: "decoder", width: r.decoderWidth, inputs: "text, \(r.layerPositions) positions", layers: l))
        }
        return segs
    }

    /// "`nf4.i2q`" row of the Models table.
    static func modelRow(_ role: String, _ path: String, _ m: ModelStorage?) -> String {
        guard let m else { return "| \(role) | `\(md(path))` | | | | |\n" }
        let schemes = m.schemesBySize.map { "\(md($0.scheme)): \(f($0.bitsPerWeight, 2)) bits/weight, \(formatCount($0.parameters)) params, \(formatBytes($0.bytes))" }
        return "| \(role) | `\(md(m.name))` | \(formatBytes(m.bytes)) (\(m.bytes) B) | \(schemes.joined(separator: "; ")) | \(formatCount(m.schemes.totalParameters)) | \(f(m.schemes.bitsPerWeight, 3)) |\n"
    }

    static func f(_ d: Double, _ digits: Int) -> String { d.isFinite ? formatFixed(d, digits) : "n/a" }
    static func pct(_ d: Double, _ digits: Int = 2) -> String { d.isFinite ? formatFixed(100 * d, digits) + " %" : "n/a" }
    static func sci(_ d: Double) -> String {
        guard d.isFinite else { return "n/a" }
        if d == 0 { return "0" }
        if abs(d) >= 1e-3 && abs(d) < 1e4 { return formatFixed(d, 6) }
        return String(format: "%.3e", d)
    }
    static func md(_ s: String) -> String {
        s.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
    }

    /// The Markdown summary (what llama-perplexity --kl-divergence prints, plus DocVQA and layers).
    public static func summary(_ r: VerifyReport, plots: [String]) -> String {
        var s = "# i2q verify\n\n"
        s += "- candidate: `\(r.candidate)`\n- reference: `\(r.reference)`\n- model type: \(r.modelType)\n"
        if let sh = r.shard {
            s += "- shard: **\(sh.spec.label)** (0-based): the statistics below cover this slice only and no limit is checked; `i2q verify --merge` the reports of all \(sh.spec.count) shards for the run's report\n"
        } else {
            s += "- result: **\(r.passed ? "passed" : "FAILED")**"
            s += r.failures.isEmpty ? "\n" : "\n" + r.failures.map { "  - \($0)\n" }.joined()
        }
        if let m = r.mergedFrom { s += "- merged from \(m.count) shard reports (times below are their sums)\n" }
        s += "- time: \(f(r.seconds, 1)) s\n\n"
        if r.candidateModel != nil || r.referenceModel != nil {
            s += "## Models\n\n"
            s += "Bits per weight: stored bytes × 8 / parameters, scales, zeros, absmax and code tables included (as `i2q inspect`'s \"by scheme\").\n\n"
            s += "| | file | size on disk | schemes (as stored) | parameters | bits/weight overall |\n|---|---|---|---|---|---|\n"
            s += modelRow("candidate", r.candidate, r.candidateModel) + modelRow("reference", r.reference, r.referenceModel) + "\n"
        }
        if let t = r.text {
            let st = t.stats
            s += "## Text: `\(t.file)`\n\n"
            s += "\(t.tokens) tokens, \(t.windows) windows of \(t.ctx), \(st.count) positions scored; \(f(t.seconds, 1)) s (\(f(Double(t.windows * t.ctx) / max(t.seconds, 1e-9), 1)) tokens/s for both models).\n\n"
            s += "| statistic | value |\n|---|---|\n"
            s += "| PPL(candidate) | \(f(st.pplCandidate, 4)) ± \(f(st.pplCandidateErr, 4)) |\n"
            s += "| PPL(base) | \(f(st.pplBase, 4)) ± \(f(st.pplBaseErr, 4)) |\n"
            s += "| PPL(candidate)/PPL(base) | \(f(st.pplRatio, 5)) ± \(f(st.pplRatioErr, 5)) |\n"
            s += "| mean ln(PPL(candidate)/PPL(base)) | \(f(st.meanLnRatio, 6)) ± \(f(st.meanLnRatioErr, 6)) |\n"
            s += "| correlation of per-token ln p | \(pct(st.nllCorrelation)) |\n"
            s += "| mean KLD | \(sci(st.kldMean)) ± \(sci(st.kldMeanErr)) |\n"
            for (k, v) in st.kldPercentiles { s += "| KLD \(label(k)) | \(sci(v)) |\n" }
            s += "| RMS Δp | \(pct(st.deltaPRMS, 3)) ± \(pct(st.deltaPRMSErr, 3)) |\n"
            s += "| mean Δp | \(pct(st.deltaPMean, 3)) ± \(pct(st.deltaPMeanErr, 3)) |\n"
            for (k, v) in st.deltaPPercentiles { s += "| Δp \(label(k)) | \(pct(v, 3)) |\n" }
            s += "| same top token | \(pct(st.sameTop, 3)) ± \(pct(st.sameTopErr, 3)) |\n\n"
        }
        if let l = r.layers, !l.isEmpty {
            s += "## Per-layer error (decoder, over the text windows: \(r.layerPositions) positions)\n\n"
            s += "‖h_cand − h_base‖/‖h_base‖ of each layer's output (residual stream), each model on its own previous layers.\n\n"
            s += "| layer | rel. error (all positions) | mean per position | max per position |\n|---|---|---|---|\n"
            for x in l { s += "| \(x.layer) | \(sci(x.relError)) | \(sci(x.meanTokenRelError)) | \(sci(x.maxTokenRelError)) |\n" }
            s += "\n"
        }
        if let v = r.visionLayers, !v.isEmpty {
            s += "## Per-layer error (vision encoder, over the DocVQA images: \(r.visionImages) images, \(r.visionPatches) real patches)\n\n"
            s += "Both vision towers on the same processed images, each on its own previous layers; real patches only.\n\n"
            s += "| layer | rel. error (all patches) | mean per patch | max per patch |\n|---|---|---|---|\n"
            for x in v { s += "| \(x.layer) | \(sci(x.relError)) | \(sci(x.meanTokenRelError)) | \(sci(x.maxTokenRelError)) |\n" }
            if let c = r.connector {
                s += "| connector output (\(r.connectorTokens) image tokens, width \(r.decoderWidth)) | \(sci(c.relError)) | \(sci(c.meanTokenRelError)) | \(sci(c.maxTokenRelError)) |\n"
            }
            s += "\n"
        }
        if let d = r.docvqa {
            s += "## DocVQA: `\(d.file)`\n\n"
            s += "\(d.items.count) of \(d.questionsInSet) questions (seed \(d.seed)), \(d.mode != "document_text" ? "image + question (\(d.mode.prefix(1).uppercased() + d.mode.dropFirst()) chat template)" : "page text + question in the prompt"), greedy, at most \(d.maxNewTokens) new tokens; \(f(d.seconds, 1)) s.\n\n"
            s += "| | candidate | base |\n|---|---|---|\n"
            s += "| ANLS | \(f(d.anlsCandidate, 4)) | \(f(d.anlsBase, 4)) |\n"
            s += "| exact match | \(pct(d.exactMatchCandidate, 2)) | \(pct(d.exactMatchBase, 2)) |\n"
            s += "| ANLS, 95% interval (normal approximation) | \(f(d.anlsCandidateCI.0, 4)) – \(f(d.anlsCandidateCI.1, 4)) | \(f(d.anlsBaseCI.0, 4)) – \(f(d.anlsBaseCI.1, 4)) |\n"
            s += "| exact match, 95% interval (Wilson) | \(pct(d.exactMatchCandidateCI.0, 2)) – \(pct(d.exactMatchCandidateCI.1, 2)) | \(pct(d.exactMatchBaseCI.0, 2)) – \(pct(d.exactMatchBaseCI.1, 2)) |\n"
            if let k = d.kldAnswerMean { s += "| mean KLD on the base's answer tokens (\(d.answerTokens) tokens) | \(sci(k)) | |\n" }
            s += "| ANLS candidate vs base answers (agreement) | \(f(d.anlsAgreement, 4)) (\(f(d.anlsAgreementCI.0, 4)) – \(f(d.anlsAgreementCI.1, 4))) | |\n"
            s += "| same answer | \(pct(d.sameAnswerShare, 1)) (\(pct(d.sameAnswerShareCI.0, 1)) – \(pct(d.sameAnswerShareCI.1, 1))) | |\n\n"
            let fl = d.flipped
            if !fl.isEmpty {
                s += "### Flipped questions (exact match differs): \(fl.filter(\.exactBase).count) right → wrong, \(fl.filter { !$0.exactBase }.count) wrong → right\n\n"
                s += "| questionId | question | answers | candidate | base |\n|---|---|---|---|---|\n"
                for w in fl.prefix(50) {
                    s += "| \(w.questionId) | \(md(w.question)) | \(md(w.answers.joined(separator: " / "))) | \(md(w.candidate)) | \(md(w.base)) |\n"
                }
                if fl.count > 50 { s += "\n(\(fl.count - 50) more in report.json, `docvqa.flipped`)\n" }
                s += "\n"
            }
            s += "### Worst items\n\n| questionId | question | answers | candidate | base | ANLS cand. | ANLS base | agreement |\n|---|---|---|---|---|---|---|---|\n"
            for w in d.worst {
                s += "| \(w.questionId) | \(md(w.question)) | \(md(w.answers.joined(separator: " / "))) | \(md(w.candidate)) | \(md(w.base)) | \(f(w.anlsCandidate, 3)) | \(f(w.anlsBase, 3)) | \(f(w.agreement, 3)) |\n"
            }
            s += "\n"
        }
        if !plots.isEmpty {
            s += "## Plots\n\n"
            s += "Each plot's title names both models and the candidate's schemes, bits per weight and size. "
            s += "docvqa.svg: whiskers are 95% intervals over the questions (ANLS: normal approximation, mean ± 1.96·s/√n; shares: Wilson score). "
            s += "layer_error.svg: dashed vertical lines separate modules (or widths, or inputs) whose errors are not comparable.\n\n"
            s += plots.map { "![\($0)](\($0))\n" }.joined(separator: "\n") + "\n"
        }
        s += "Keys of report.json: docs/verify.md.\n"
        return s
    }

    static func label(_ k: String) -> String {
        switch k {
        case "max": return "maximum"
        case "min": return "minimum"
        case "median": return "median"
        default: return k.dropFirst().replacingOccurrences(of: "_", with: ".") + " %"
        }
    }
}
