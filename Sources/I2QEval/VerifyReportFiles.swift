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
/// kld_cdf.svg, layer_error.svg, docvqa.svg — those with data). The directory is built under a
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
        var plots: [String] = []
        func put(_ name: String, _ text: String) throws {
            try FileSystem.writeFile(out.tempPath + "/" + name, Array(text.utf8))
        }
        if let t = r.text {
            try put("kld_histogram.svg", SVG.kldHistogram(t.stats.sortedKLD)); plots.append("kld_histogram.svg")
            try put("kld_cdf.svg", SVG.kldCDF(t.stats.sortedKLD, mean: t.stats.kldMean)); plots.append("kld_cdf.svg")
        }
        if let l = r.layers, !l.isEmpty {
            try put("layer_error.svg", SVG.layerError(l)); plots.append("layer_error.svg")
        }
        if let v = r.visionLayers, !v.isEmpty {
            try put("vision_layer_error.svg", SVG.layerError(v, part: "vision encoder")); plots.append("vision_layer_error.svg")
        }
        if let d = r.docvqa {
            try put("docvqa.svg", SVG.docvqaBars(d)); plots.append("docvqa.svg")
        }
        try put("report.json", r.jsonString() + "\n")
        try put("summary.md", summary(r, plots: plots))
        try out.commit()
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
        s += "- result: **\(r.passed ? "passed" : "FAILED")**"
        s += r.failures.isEmpty ? "\n" : "\n" + r.failures.map { "  - \($0)\n" }.joined()
        s += "- time: \(f(r.seconds, 1)) s\n\n"
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
            s += "\n"
        }
        if let d = r.docvqa {
            s += "## DocVQA: `\(d.file)`\n\n"
            s += "\(d.items.count) of \(d.questionsInSet) questions (seed \(d.seed)), \(d.mode != "document_text" ? "image + question (\(d.mode.prefix(1).uppercased() + d.mode.dropFirst()) chat template)" : "page text + question in the prompt"), greedy, at most \(d.maxNewTokens) new tokens; \(f(d.seconds, 1)) s.\n\n"
            s += "| | candidate | base |\n|---|---|---|\n"
            s += "| ANLS | \(f(d.anlsCandidate, 4)) | \(f(d.anlsBase, 4)) |\n"
            s += "| exact match | \(pct(d.exactMatchCandidate, 2)) | \(pct(d.exactMatchBase, 2)) |\n"
            s += "| exact match, 95% interval (Wilson) | \(pct(d.exactMatchCandidateCI.0, 2)) – \(pct(d.exactMatchCandidateCI.1, 2)) | \(pct(d.exactMatchBaseCI.0, 2)) – \(pct(d.exactMatchBaseCI.1, 2)) |\n"
            if let k = d.kldAnswerMean { s += "| mean KLD on the base's answer tokens (\(d.answerTokens) tokens) | \(sci(k)) | |\n" }
            s += "| ANLS candidate vs base answers (agreement) | \(f(d.anlsAgreement, 4)) | |\n"
            s += "| same answer | \(pct(d.sameAnswerShare, 1)) | |\n\n"
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
            s += "## Plots\n\n" + plots.map { "![\($0)](\($0))\n" }.joined(separator: "\n") + "\n"
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

/// Hand-written SVG plots (no dependencies; open in any browser).
enum SVG {
    static let width = 640.0, height = 400.0
    static let left = 72.0, right = 24.0, top = 44.0, bottom = 58.0
    static var plotW: Double { width - left - right }
    static var plotH: Double { height - top - bottom }

    static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
    static func n(_ d: Double) -> String { formatFixed(d, 1) }

    /// Frame, title, axis labels and ticks. x/yTicks: (position in plot pixels from the left/bottom, label).
    static func frame(title: String, xLabel: String, yLabel: String, xTicks: [(Double, String)], yTicks: [(Double, String)], body: String) -> String {
        var s = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        s += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n"
        s += "<rect x=\"0\" y=\"0\" width=\"\(Int(width))\" height=\"\(Int(height))\" fill=\"white\"/>\n"
        s += "<text x=\"\(n(width / 2))\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">\(esc(title))</text>\n"
        for (x, l) in xTicks {
            let px = left + x
            s += "<line x1=\"\(n(px))\" y1=\"\(n(top))\" x2=\"\(n(px))\" y2=\"\(n(top + plotH))\" stroke=\"#e4e4e4\"/>\n"
            s += "<text x=\"\(n(px))\" y=\"\(n(top + plotH + 18))\" text-anchor=\"middle\">\(esc(l))</text>\n"
        }
        for (y, l) in yTicks {
            let py = top + plotH - y
            s += "<line x1=\"\(n(left))\" y1=\"\(n(py))\" x2=\"\(n(left + plotW))\" y2=\"\(n(py))\" stroke=\"#e4e4e4\"/>\n"
            s += "<text x=\"\(n(left - 8))\" y=\"\(n(py + 4))\" text-anchor=\"end\">\(esc(l))</text>\n"
        }
        s += body
        s += "<rect x=\"\(n(left))\" y=\"\(n(top))\" width=\"\(n(plotW))\" height=\"\(n(plotH))\" fill=\"none\" stroke=\"#333\"/>\n"
        s += "<text x=\"\(n(left + plotW / 2))\" y=\"\(n(height - 14))\" text-anchor=\"middle\">\(esc(xLabel))</text>\n"
        s += "<text x=\"18\" y=\"\(n(top + plotH / 2))\" text-anchor=\"middle\" transform=\"rotate(-90 18 \(n(top + plotH / 2)))\">\(esc(yLabel))</text>\n"
        s += "</svg>\n"
        return s
    }

    static func powLabel(_ e: Int) -> String { e == 0 ? "1" : "1e\(e)" }

    /// log10 range of the positive values (KLD ≤ 1e-9 is drawn at the left edge).
    static func logRange(_ v: [Double]) -> (Int, Int) {
        let pos = v.filter { $0 > 1e-9 }
        guard let lo = pos.first, let hi = pos.last else { return (-9, 0) }
        var a = Int(Foundation.log10(lo).rounded(.down)), b = Int(Foundation.log10(hi).rounded(.up))
        a = max(a, -9)
        if b <= a { b = a + 1 }
        return (a, b)
    }

    /// Histogram of log10(KLD), 10 bins per decade.
    static func kldHistogram(_ sorted: [Double]) -> String {
        let (a, b) = logRange(sorted)
        let binsPerDecade = 10
        let bins = (b - a) * binsPerDecade
        var counts = [Int](repeating: 0, count: bins)
        for k in sorted {
            let x = k > 1e-9 ? Foundation.log10(k) : Double(a)
            let i = min(max(Int(((x - Double(a)) * Double(binsPerDecade)).rounded(.down)), 0), bins - 1)
            counts[i] += 1
        }
        let maxC = max(counts.max() ?? 1, 1)
        let bw = plotW / Double(bins)
        var body = ""
        for (i, c) in counts.enumerated() where c > 0 {
            let h = plotH * Double(c) / Double(maxC)
            body += "<rect x=\"\(n(left + Double(i) * bw + 0.5))\" y=\"\(n(top + plotH - h))\" width=\"\(n(max(bw - 1, 0.5)))\" height=\"\(n(h))\" fill=\"#4878a8\"/>\n"
        }
        let xt = (a...b).map { (plotW * Double($0 - a) / Double(b - a), powLabel($0)) }
        let step = niceStep(Double(maxC) / 5)
        let yt = stride(from: 0.0, through: Double(maxC), by: step).map { (plotH * $0 / Double(maxC), String(Int($0))) }
        return frame(title: "KL divergence per token (\(sorted.count) tokens)", xLabel: "KLD(base ‖ candidate), nats (log scale)",
                     yLabel: "tokens", xTicks: xt, yTicks: yt, body: body)
    }

    /// Empirical CDF of KLD on a log x axis, with the mean and median marked.
    static func kldCDF(_ sorted: [Double], mean: Double) -> String {
        let (a, b) = logRange(sorted)
        func px(_ k: Double) -> Double {
            let x = k > 1e-9 ? Foundation.log10(k) : Double(a)
            return plotW * min(max((x - Double(a)) / Double(b - a), 0), 1)
        }
        var pts: [String] = []
        let nT = sorted.count
        let stepI = max(1, nT / 600)  // at most ~600 points
        var i = 0
        while i < nT {
            pts.append("\(n(left + px(sorted[i]))),\(n(top + plotH - plotH * Double(i + 1) / Double(nT)))")
            i += stepI
        }
        pts.append("\(n(left + px(sorted[nT - 1]))),\(n(top))")
        var body = "<polyline fill=\"none\" stroke=\"#4878a8\" stroke-width=\"2\" points=\"\(pts.joined(separator: " "))\"/>\n"
        let median = interpolatedPercentile(sorted: sorted, 0.5), p99 = interpolatedPercentile(sorted: sorted, 0.99)
        for (v, name, color) in [(mean, "mean", "#c03030"), (median, "median", "#30a030"), (p99, "99 %", "#a06000")] {
            let x = left + px(v)
            body += "<line x1=\"\(n(x))\" y1=\"\(n(top))\" x2=\"\(n(x))\" y2=\"\(n(top + plotH))\" stroke=\"\(color)\" stroke-dasharray=\"4 3\"/>\n"
            body += "<text x=\"\(n(x + 4))\" y=\"\(n(top + 14 + (name == "mean" ? 0 : name == "median" ? 14 : 28)))\" fill=\"\(color)\">\(esc(name)) \(esc(String(format: "%.2e", v)))</text>\n"
        }
        let xt = (a...b).map { (plotW * Double($0 - a) / Double(b - a), powLabel($0)) }
        let yt = stride(from: 0.0, through: 1.0, by: 0.2).map { (plotH * $0, formatFixed($0, 1)) }
        return frame(title: "KL divergence, cumulative distribution", xLabel: "KLD(base ‖ candidate), nats (log scale)",
                     yLabel: "share of tokens ≤ x", xTicks: xt, yTicks: yt, body: body)
    }

    /// Per-layer relative error: all positions (line) and mean per position (dashed).
    static func layerError(_ layers: [LayerErrorAccumulator.Layer], part: String = "decoder") -> String {
        let vals = layers.flatMap { [$0.relError, $0.meanTokenRelError] }.filter(\.isFinite)
        let maxV = max(vals.max() ?? 1, 1e-12) * 1.1
        let step = niceStep(maxV / 5)
        let top_ = (maxV / step).rounded(.up) * step
        let nL = layers.count
        func px(_ i: Int) -> Double { nL > 1 ? plotW * (Double(i) + 0.5) / Double(nL) : plotW / 2 }
        func py(_ v: Double) -> Double { plotH * min(v, top_) / top_ }
        var body = ""
        for (key, color, dash) in [("rel", "#4878a8", ""), ("mean", "#c06020", " stroke-dasharray=\"5 3\"")] {
            let pts = layers.enumerated().map { i, l in
                "\(n(left + px(i))),\(n(top + plotH - py(key == "rel" ? l.relError : l.meanTokenRelError)))"
            }
            body += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(dash) points=\"\(pts.joined(separator: " "))\"/>\n"
            for (i, l) in layers.enumerated() {
                let v = key == "rel" ? l.relError : l.meanTokenRelError
                body += "<circle cx=\"\(n(left + px(i)))\" cy=\"\(n(top + plotH - py(v)))\" r=\"3\" fill=\"\(color)\"><title>layer \(l.layer): \(String(format: "%.4e", v))</title></circle>\n"
            }
        }
        body += "<text x=\"\(n(left + 10))\" y=\"\(n(top + 16))\" fill=\"#4878a8\">— ‖ΔH‖/‖H‖ over all positions</text>\n"
        body += "<text x=\"\(n(left + 10))\" y=\"\(n(top + 32))\" fill=\"#c06020\">- - mean over positions of ‖Δh‖/‖h‖</text>\n"
        let every = max(1, nL / 16)
        let xt = layers.indices.filter { $0 % every == 0 }.map { (px($0), String(layers[$0].layer)) }
        let yt = stride(from: 0.0, through: top_ + step / 2, by: step).map { (py($0), tick($0, step)) }
        return frame(title: "Relative error of each \(part) layer's output", xLabel: "\(part) layer",
                     yLabel: "relative error vs base", xTicks: xt, yTicks: yt, body: body)
    }

    /// DocVQA bars: ANLS and exact match of both models, and their agreement.
    static func docvqaBars(_ d: DocVQAComparison) -> String {
        let bars: [(String, Double, String)] = [
            ("ANLS cand.", d.anlsCandidate, "#4878a8"), ("ANLS base", d.anlsBase, "#9ab"),
            ("exact cand.", d.exactMatchCandidate, "#4878a8"), ("exact base", d.exactMatchBase, "#9ab"),
            ("agreement", d.anlsAgreement, "#c06020"), ("same answer", d.sameAnswerShare, "#c06020"),
        ]
        let bw = plotW / Double(bars.count)
        var body = ""
        var xt: [(Double, String)] = []
        for (i, (name, v, color)) in bars.enumerated() {
            let h = plotH * (v.isFinite ? min(max(v, 0), 1) : 0)
            body += "<rect x=\"\(n(left + Double(i) * bw + bw * 0.2))\" y=\"\(n(top + plotH - h))\" width=\"\(n(bw * 0.6))\" height=\"\(n(h))\" fill=\"\(color)\"/>\n"
            body += "<text x=\"\(n(left + (Double(i) + 0.5) * bw))\" y=\"\(n(top + plotH - h - 5))\" text-anchor=\"middle\">\(v.isFinite ? formatFixed(v, 3) : "n/a")</text>\n"
            xt.append(((Double(i) + 0.5) * bw, name))
        }
        let yt = stride(from: 0.0, through: 1.0, by: 0.2).map { (plotH * $0, formatFixed($0, 1)) }
        return frame(title: "DocVQA (\(d.items.count) questions)", xLabel: "", yLabel: "score", xTicks: xt, yTicks: yt, body: body)
    }

    /// 1, 2 or 5 × 10^k, at least `raw`.
    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0, raw.isFinite else { return 1 }
        let e = Foundation.pow(10, Foundation.floor(Foundation.log10(raw)))
        for m in [1.0, 2.0, 5.0, 10.0] where m * e >= raw { return m * e }
        return 10 * e
    }

    static func tick(_ v: Double, _ step: Double) -> String {
        if v == 0 { return "0" }
        if step >= 1 { return String(Int(v.rounded())) }
        if step >= 1e-3 { return formatFixed(v, max(0, Int(-Foundation.floor(Foundation.log10(step))))) }
        return String(format: "%.1e", v)
    }
}
