import Foundation
import I2QCore

/// Who is compared, for every plot title: both file names and the candidate's storage (schemes,
/// bits per weight, file size), the reference's in short.
struct PlotModels: Sendable {
    let candidate: String
    let reference: String
    let candidateStorage: ModelStorage?
    let referenceStorage: ModelStorage?

    init(candidate: String, reference: String, candidateStorage: ModelStorage?, referenceStorage: ModelStorage?) {
        self.candidate = candidate; self.reference = reference
        self.candidateStorage = candidateStorage; self.referenceStorage = referenceStorage
    }

    init(_ r: VerifyReport) {
        self.init(candidate: r.candidateModel?.name ?? FileSystem.basename(r.candidate),
                  reference: r.referenceModel?.name ?? FileSystem.basename(r.reference),
                  candidateStorage: r.candidateModel, referenceStorage: r.referenceModel)
    }

    /// "nf4.i2q vs easy-vqa-idefics2".
    var pair: String { "\(candidate) vs \(reference)" }

    /// "candidate: nf4 b64 dq 4.36 bpw (2.0M params) + F32 (8.2M); 35.4 MB, 26.67 bpw overall ·
    /// reference: F32; 45.3 MB".
    var detail: String {
        var parts: [String] = []
        if let c = candidateStorage { parts.append("candidate: \(c.schemesText()); \(c.sizeText)") }
        if let r = referenceStorage { parts.append("reference: \(r.schemesText(counts: false)); \(formatBytes(r.bytes))") }
        return parts.joined(separator: " · ")
    }
}

/// Hand-written SVG plots (no dependencies; open in any browser). Every plot: a title naming both
/// models and the candidate's storage (wrapped to two lines, smaller type before it would overflow),
/// axis labels, a legend where more than one series or colour is drawn, and tick labels thinned so
/// that no two overlap (text width estimated as `charWidth` × font size per character).
enum SVG {
    static let width = 760.0, height = 470.0
    static let left = 78.0, right = 24.0, bottom = 56.0
    static var plotW: Double { width - left - right }
    /// Estimated advance of one character, × font size (DejaVu Sans/Helvetica average; bold a little wider).
    static let charWidth = 0.6, boldCharWidth = 0.66
    static let tickFont = 11.0, legendFont = 11.0, noteFont = 10.0

    static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
    static func n(_ d: Double) -> String { formatFixed(d, 1) }
    static func textWidth(_ s: String, _ fontSize: Double, bold: Bool = false) -> Double {
        Double(s.count) * fontSize * (bold ? boldCharWidth : charWidth)
    }

    // MARK: Title

    /// A title of at most two lines: the headline (bold, 14 px, smaller down to 10 px to fit) on the
    /// first and the detail (12 px, down to 9 px) on the second; when the detail does not fit that way,
    /// both are wrapped word by word into two lines of one size, from 13 px down to 7 px (at 7 px a
    /// second line that still does not fit is cut with "…"). Never wider than `maxWidth`.
    struct Title {
        /// A word of the title; `space`: a space before it (not for the pieces a long word is cut into).
        struct Word { let text: String; let bold: Bool; var space = true }
        struct Line { let words: [Word]; let fontSize: Double }
        let lines: [Line]
        let plain: String

        static func width(_ words: [Word], _ fs: Double) -> Double {
            words.enumerated().reduce(0) { $0 + SVG.textWidth(($1.offset > 0 && $1.element.space ? " " : "") + $1.element.text, fs, bold: $1.element.bold) }
        }

        /// The words of `s`; a word over 24 characters (a long file name) is cut after its "-", "_",
        /// ".", "/" and then every 24 characters, so that a line can break inside it.
        static func words(_ s: String, bold: Bool) -> [Word] {
            s.split(separator: " ").flatMap { w -> [Word] in
                guard w.count > 24 else { return [Word(text: String(w), bold: bold)] }
                var pieces: [String] = [""]
                for ch in w {
                    pieces[pieces.count - 1].append(ch)
                    if "-_./".contains(ch) || pieces[pieces.count - 1].count >= 24 { pieces.append("") }
                }
                return pieces.filter { !$0.isEmpty }.enumerated().map { Word(text: $0.element, bold: bold, space: $0.offset == 0) }
            }
        }

        init(headline: String, detail: String, maxWidth: Double = SVG.width - 24) {
            plain = detail.isEmpty ? headline : headline + " — " + detail
            let head = Self.words(headline, bold: true), rest = Self.words(detail, bold: false)
            func fit(_ ws: [Word], from: Double, to: Double) -> Double? {
                stride(from: from, through: to, by: -0.5).first { Self.width(ws, $0) <= maxWidth }
            }
            if let hf = fit(head, from: 14, to: 10), rest.isEmpty || fit(rest, from: min(12, hf), to: 9) != nil {
                lines = [Line(words: head, fontSize: hf)] + (rest.isEmpty ? [] : [Line(words: rest, fontSize: fit(rest, from: min(12, hf), to: 9)!)])
                return
            }
            func greedy(_ fs: Double) -> [[Word]] {
                var lines: [[Word]] = [[]]
                for word in head + rest {
                    if !lines[lines.count - 1].isEmpty && Self.width(lines[lines.count - 1] + [word], fs) > maxWidth { lines.append([]) }
                    lines[lines.count - 1].append(word)
                }
                return lines
            }
            for fs in stride(from: 13.0, through: 7, by: -0.5) {
                let g = greedy(fs)
                if g.count <= 2 && g.allSatisfy({ Self.width($0, fs) <= maxWidth }) { lines = g.map { Line(words: $0, fontSize: fs) }; return }
            }
            let all = greedy(7)
            var g = Array(all.prefix(2))
            if all.count > 2 {
                let more = Word(text: "…", bold: false)
                while g[1].count > 1 && Self.width(g[1] + [more], 7) > maxWidth { g[1].removeLast() }
                g[1].append(more)
            }
            lines = g.map { Line(words: $0, fontSize: 7) }
        }

        var height: Double { lines.reduce(0) { $0 + $1.fontSize * 1.35 } }

        func svg(y0: Double) -> String {
            var s = ""
            var y = y0
            for line in lines {
                y += line.fontSize * 1.1
                s += "<text class=\"title\" xml:space=\"preserve\" x=\"\(SVG.n(SVG.width / 2))\" y=\"\(SVG.n(y))\" text-anchor=\"middle\" font-size=\"\(SVG.n(line.fontSize))\">"
                var runs: [(String, Bool)] = []
                for (j, w) in line.words.enumerated() {
                    let t = (j > 0 && w.space ? " " : "") + w.text
                    if let last = runs.last, last.1 == w.bold { runs[runs.count - 1].0 += t } else { runs.append((t, w.bold)) }
                }
                for (t, bold) in runs { s += bold ? "<tspan font-weight=\"bold\">\(SVG.esc(t))</tspan>" : "<tspan>\(SVG.esc(t))</tspan>" }
                s += "</text>\n"
                y += line.fontSize * 0.25
            }
            return s
        }
    }

    // MARK: Legend

    struct LegendItem {
        enum Swatch { case line(String, dashed: Bool), bar(String), whisker }
        let swatch: Swatch
        let label: String
    }

    /// Legend entries laid out in rows under the title, wrapped to the figure width.
    struct Legend {
        let rows: [[(LegendItem, Double)]]
        static let rowHeight = 17.0

        init(_ items: [LegendItem]) {
            var rows: [[(LegendItem, Double)]] = []
            var x = SVG.left, row: [(LegendItem, Double)] = []
            for it in items {
                let w = 26 + SVG.textWidth(it.label, SVG.legendFont) + 16
                if !row.isEmpty && x + w > SVG.width - SVG.right { rows.append(row); row = []; x = SVG.left }
                row.append((it, x)); x += w
            }
            if !row.isEmpty { rows.append(row) }
            self.rows = rows
        }

        var height: Double { rows.isEmpty ? 0 : Double(rows.count) * Self.rowHeight + 4 }

        func svg(y0: Double) -> String {
            var s = ""
            for (r, row) in rows.enumerated() {
                let y = y0 + Double(r) * Self.rowHeight + 12
                for (it, x) in row {
                    switch it.swatch {
                    case let .line(c, dashed):
                        s += "<line class=\"legend-swatch\" x1=\"\(SVG.n(x))\" y1=\"\(SVG.n(y - 4))\" x2=\"\(SVG.n(x + 20))\" y2=\"\(SVG.n(y - 4))\" stroke=\"\(c)\" stroke-width=\"2\"\(dashed ? " stroke-dasharray=\"5 3\"" : "")/>\n"
                    case let .bar(c):
                        s += "<rect class=\"legend-swatch\" x=\"\(SVG.n(x + 3))\" y=\"\(SVG.n(y - 10))\" width=\"14\" height=\"11\" fill=\"\(c)\"/>\n"
                    case .whisker:
                        s += "<path class=\"legend-swatch\" d=\"M\(SVG.n(x + 6)) \(SVG.n(y - 11))h8M\(SVG.n(x + 10)) \(SVG.n(y - 11))v12M\(SVG.n(x + 6)) \(SVG.n(y + 1))h8\" stroke=\"#222\" fill=\"none\" stroke-width=\"1.3\"/>\n"
                    }
                    s += "<text class=\"legend\" x=\"\(SVG.n(x + 26))\" y=\"\(SVG.n(y))\" font-size=\"\(SVG.n(SVG.legendFont))\">\(SVG.esc(it.label))</text>\n"
                }
            }
            return s
        }
    }

    // MARK: Frame

    /// The figure's layout: title, legend, an optional band above the plot (segment headers), the plot
    /// area. Plot functions place their marks with `top`/`plotH` and then call `render`.
    struct Frame {
        let title: Title
        let legend: Legend
        let band: Double
        var top: Double { 8 + title.height + 6 + legend.height + band + 6 }
        var plotH: Double { SVG.height - top - SVG.bottom }
        var plotW: Double { SVG.plotW }
        var left: Double { SVG.left }

        init(headline: String, models: PlotModels, legend: [LegendItem], band: Double = 0) {
            title = Title(headline: headline + ": " + models.pair, detail: models.detail)
            self.legend = Legend(legend)
            self.band = band
        }

        var legendTop: Double { 8 + title.height + 6 }
        var bandTop: Double { legendTop + legend.height }

        /// Frame, title, legend, axis labels and ticks around `body`. x/yTicks: (position in plot pixels
        /// from the left/bottom, label); labels that would overlap a kept one are dropped.
        func render(xLabel: String, yLabel: String, xTicks: [(Double, String)], yTicks: [(Double, String)], body: String) -> String {
            let W = SVG.width, H = SVG.height
            var s = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            s += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(W))\" height=\"\(Int(H))\" viewBox=\"0 0 \(Int(W)) \(Int(H))\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"12\">\n"
            s += "<title>\(SVG.esc(title.plain))</title>\n"
            s += "<rect x=\"0\" y=\"0\" width=\"\(Int(W))\" height=\"\(Int(H))\" fill=\"white\"/>\n"
            s += title.svg(y0: 8)
            s += legend.svg(y0: legendTop)
            let xt = SVG.fitTicks(xTicks.map { (left + $0.0, $0.1) }, horizontal: true)
            let yt = SVG.fitTicks(yTicks.map { (top + plotH - $0.0, $0.1) }, horizontal: false)
            for (px, l) in xt {
                s += "<line x1=\"\(SVG.n(px))\" y1=\"\(SVG.n(top))\" x2=\"\(SVG.n(px))\" y2=\"\(SVG.n(top + plotH))\" stroke=\"#e6e6e6\"/>\n"
                s += "<text class=\"xtick\" x=\"\(SVG.n(px))\" y=\"\(SVG.n(top + plotH + 16))\" text-anchor=\"middle\" font-size=\"\(SVG.n(SVG.tickFont))\">\(SVG.esc(l))</text>\n"
            }
            for (py, l) in yt {
                s += "<line x1=\"\(SVG.n(left))\" y1=\"\(SVG.n(py))\" x2=\"\(SVG.n(left + plotW))\" y2=\"\(SVG.n(py))\" stroke=\"#e6e6e6\"/>\n"
                s += "<text class=\"ytick\" x=\"\(SVG.n(left - 7))\" y=\"\(SVG.n(py + 4))\" text-anchor=\"end\" font-size=\"\(SVG.n(SVG.tickFont))\">\(SVG.esc(l))</text>\n"
            }
            s += body
            s += "<rect x=\"\(SVG.n(left))\" y=\"\(SVG.n(top))\" width=\"\(SVG.n(plotW))\" height=\"\(SVG.n(plotH))\" fill=\"none\" stroke=\"#333\"/>\n"
            s += "<text class=\"xlabel\" x=\"\(SVG.n(left + plotW / 2))\" y=\"\(SVG.n(H - 14))\" text-anchor=\"middle\">\(SVG.esc(xLabel))</text>\n"
            s += "<text class=\"ylabel\" x=\"18\" y=\"\(SVG.n(top + plotH / 2))\" text-anchor=\"middle\" transform=\"rotate(-90 18 \(SVG.n(top + plotH / 2)))\">\(SVG.esc(yLabel))</text>\n"
            s += "</svg>\n"
            return s
        }
    }

    /// Ticks (absolute pixel position, label) with labels that would come closer than 4 px to a kept
    /// one dropped. Evenly thinned first (every k-th for the smallest k that fits), then any remaining
    /// collision (uneven spacing) drops the later label.
    static func fitTicks(_ t: [(Double, String)], horizontal: Bool) -> [(Double, String)] {
        func span(_ x: (Double, String)) -> (Double, Double) {
            horizontal ? (x.0 - textWidth(x.1, tickFont) / 2, x.0 + textWidth(x.1, tickFont) / 2) : (x.0 - tickFont / 2, x.0 + tickFont / 2)
        }
        func fits(_ ts: [(Double, String)]) -> Bool {
            let sp = ts.map(span).sorted { $0.0 < $1.0 }
            return zip(sp, sp.dropFirst()).allSatisfy { $0.1 + 4 <= $1.0 }
        }
        guard t.count > 1 else { return t }
        var kept = t
        for k in [1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 50, 100, 250, 500, 1000] {
            let c = t.enumerated().filter { $0.offset % k == 0 }.map(\.element)
            kept = c
            if fits(c) { return c }
        }
        var out: [(Double, String)] = []
        for x in kept where out.allSatisfy({ o in let a = span(o), b = span(x); return a.1 + 4 <= b.0 || b.1 + 4 <= a.0 }) { out.append(x) }
        return out
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

    // MARK: KL divergence

    /// Histogram of log10(KLD), 10 bins per decade.
    static func kldHistogram(_ sorted: [Double], models: PlotModels) -> String {
        let f = Frame(headline: "KL divergence per token (\(sorted.count) tokens)", models: models, legend: [])
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
        let step = max(1, niceStep(Double(maxC) / 5))  // whole tokens
        let topC = (Double(maxC) / step).rounded(.up) * step
        let bw = f.plotW / Double(bins)
        var body = ""
        for (i, c) in counts.enumerated() where c > 0 {
            let h = f.plotH * Double(c) / topC
            body += "<rect x=\"\(n(f.left + Double(i) * bw + 0.5))\" y=\"\(n(f.top + f.plotH - h))\" width=\"\(n(max(bw - 1, 0.5)))\" height=\"\(n(h))\" fill=\"#4878a8\"><title>\(c) tokens</title></rect>\n"
        }
        let xt = (a...b).map { (f.plotW * Double($0 - a) / Double(b - a), powLabel($0)) }
        let yt = stride(from: 0.0, through: topC + step / 2, by: step).map { (f.plotH * $0 / topC, String(Int($0))) }
        return f.render(xLabel: "KLD(reference ‖ candidate), nats, log scale (10 bins per decade; KLD ≤ 1e-9 in the first bin)",
                        yLabel: "tokens", xTicks: xt, yTicks: yt, body: body)
    }

    /// Empirical CDF of KLD on a log x axis, with the mean, median and 99th percentile marked.
    static func kldCDF(_ sorted: [Double], mean: Double, models: PlotModels) -> String {
        let median = interpolatedPercentile(sorted: sorted, 0.5), p99 = interpolatedPercentile(sorted: sorted, 0.99)
        let marks: [(Double, String, String)] = [(mean, "mean", "#c03030"), (median, "median", "#30a030"), (p99, "99th percentile", "#a06000")]
        let legend = [LegendItem(swatch: .line("#4878a8", dashed: false), label: "share of tokens with KLD ≤ x")]
            + marks.map { LegendItem(swatch: .line($0.2, dashed: true), label: "\($0.1) \(String(format: "%.2e", $0.0))") }
        let f = Frame(headline: "KL divergence per token, cumulative (\(sorted.count) tokens)", models: models, legend: legend)
        let (a, b) = logRange(sorted)
        func px(_ k: Double) -> Double {
            let x = k > 1e-9 ? Foundation.log10(k) : Double(a)
            return f.plotW * min(max((x - Double(a)) / Double(b - a), 0), 1)
        }
        var pts: [String] = []
        let nT = sorted.count
        let stepI = max(1, nT / 600)  // at most ~600 points
        var i = 0
        while i < nT {
            pts.append("\(n(f.left + px(sorted[i]))),\(n(f.top + f.plotH - f.plotH * Double(i + 1) / Double(nT)))")
            i += stepI
        }
        if nT > 0 { pts.append("\(n(f.left + px(sorted[nT - 1]))),\(n(f.top))") }
        var body = ""
        for (v, _, color) in marks where v.isFinite {
            let x = f.left + px(v)
            body += "<line x1=\"\(n(x))\" y1=\"\(n(f.top))\" x2=\"\(n(x))\" y2=\"\(n(f.top + f.plotH))\" stroke=\"\(color)\" stroke-width=\"1.5\" stroke-dasharray=\"5 3\"/>\n"
        }
        body += "<polyline fill=\"none\" stroke=\"#4878a8\" stroke-width=\"2\" points=\"\(pts.joined(separator: " "))\"/>\n"
        let xt = (a...b).map { (f.plotW * Double($0 - a) / Double(b - a), powLabel($0)) }
        let yt = stride(from: 0.0, through: 1.0, by: 0.2).map { (f.plotH * $0, formatFixed($0, 1)) }
        return f.render(xLabel: "KLD(reference ‖ candidate), nats (log scale)", yLabel: "share of tokens with KLD ≤ x",
                        xTicks: xt, yTicks: yt, body: body)
    }

    // MARK: Per-layer error

    /// One run of layers whose errors are comparable with each other: one module, one width, one input.
    struct LayerSegment {
        let module: String
        let width: Int
        /// What the module ran on ("text windows", "12 images").
        let inputs: String
        let layers: [LayerErrorAccumulator.Layer]
        /// What one row of its output is: "positions", "patches", "image tokens".
        var unit = "positions"
        /// Tick label of a layer (its index; "out" for a module with a single output).
        var tick: (LayerErrorAccumulator.Layer) -> String = { String($0.layer) }
    }

    /// A y axis: linear from 0, or log10 when the positive values span more than 50× (zeros at the bottom).
    struct YScale {
        let log: Bool
        let lo: Double, hi: Double
        let ticks: [(Double, String)]  // values

        init(_ values: [Double]) {
            let v = values.filter(\.isFinite)
            let pos = v.filter { $0 > 0 }
            if let mn = pos.min(), let mx = pos.max(), mx / mn > 50 {
                log = true
                let a = Int(Foundation.log10(mn).rounded(.down)), b = max(Int(Foundation.log10(mx).rounded(.up)), a + 1)
                lo = Foundation.pow(10, Double(a)); hi = Foundation.pow(10, Double(b))
                var t: [(Double, String)] = []
                for e in a...b {
                    t.append((Foundation.pow(10, Double(e)), SVG.powLabel(e)))
                    if b - a <= 2 && e < b {
                        for m in [2.0, 5.0] { t.append((m * Foundation.pow(10, Double(e)), "\(Int(m))e\(e)")) }
                    }
                }
                ticks = t.sorted { $0.0 < $1.0 }
            } else {
                log = false
                let maxV = (pos.max() ?? 1 / 1.08) * 1.08  // all zero: 0…1
                let step = SVG.niceStep(maxV / 5)
                lo = 0; hi = (maxV / step).rounded(.up) * step
                ticks = stride(from: 0.0, through: hi + step / 2, by: step).map { ($0, SVG.tick($0, step)) }
            }
        }

        /// 0…1 of the axis height.
        func frac(_ v: Double) -> Double {
            guard v.isFinite else { return 1 }
            if log { return v <= lo ? 0 : min(1, Foundation.log10(v / lo) / Foundation.log10(hi / lo)) }
            return min(max(v, 0), hi) / hi
        }
    }

    /// Per-layer relative error of one or more segments (e.g. vision encoder → connector → decoder),
    /// over all positions (line) and mean per position (dashed). Where the module, its width or its
    /// inputs change, a dashed separator says "not comparable across this line", and a header over each
    /// segment names it.
    static func layerError(_ segments: [LayerSegment], models: PlotModels) -> String {
        let segs = segments.filter { !$0.layers.isEmpty }
        let multi = segs.count > 1
        let units = segs.map(\.unit)
        let rows = Set(units).count == 1 ? units[0] : "positions"
        var legend = [LegendItem(swatch: .line("#4878a8", dashed: false), label: "‖ΔH‖/‖H‖ over all \(rows)"),
                      LegendItem(swatch: .line("#c06020", dashed: true), label: "mean over \(rows) of ‖Δh‖/‖h‖")]
        if multi { legend.append(LegendItem(swatch: .line("#555", dashed: true), label: "module, width or inputs change: errors not comparable across it")) }
        var modules: [String] = []  // consecutive parts of one module named once
        for seg in segs where modules.last != seg.module { modules.append(seg.module) }
        let what = modules.isEmpty ? "decoder" : modules.joined(separator: " → ")
        let f = Frame(headline: "Relative error of each layer's output (\(what))", models: models, legend: legend, band: multi ? 30 : 0)
        // x: a gap between segments (the separator in its middle); each segment's width in proportion to
        // its layers, at least 2 layers' worth.
        let gap = multi ? 30.0 : 0
        let weights = segs.map { Double(max($0.layers.count, 2)) }
        let unit = (f.plotW - gap * Double(max(segs.count - 1, 0))) / max(weights.reduce(0, +), 1)
        var starts: [Double] = []
        var x = 0.0
        for w in weights { starts.append(x); x += w * unit + gap }
        func px(_ s: Int, _ i: Int) -> Double { starts[s] + weights[s] * unit * (Double(i) + 0.5) / Double(segs[s].layers.count) }
        let scale = YScale(segs.flatMap { $0.layers.flatMap { [$0.relError, $0.meanTokenRelError] } })
        func py(_ v: Double) -> Double { f.plotH * scale.frac(v) }
        var body = ""
        if !segs.contains(where: { $0.layers.contains { $0.relError != 0 || $0.meanTokenRelError != 0 } }) {
            body += "<text class=\"note\" x=\"\(n(f.left + f.plotW / 2))\" y=\"\(n(f.top + f.plotH / 2))\" text-anchor=\"middle\" fill=\"#555\">every error is 0: the outputs are identical</text>\n"
        }
        for (key, color, dash) in [("rel", "#4878a8", ""), ("mean", "#c06020", " stroke-dasharray=\"5 3\"")] {
            for (si, seg) in segs.enumerated() {
                let pts = seg.layers.enumerated().map { i, l in
                    "\(n(f.left + px(si, i))),\(n(f.top + f.plotH - py(key == "rel" ? l.relError : l.meanTokenRelError)))"
                }
                if pts.count > 1 { body += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(dash) points=\"\(pts.joined(separator: " "))\"/>\n" }
                // Markers while they stay apart (the line alone for many layers); a lone layer always has one.
                for (i, l) in seg.layers.enumerated() where seg.layers.count <= 64 || pts.count == 1 {
                    let v = key == "rel" ? l.relError : l.meanTokenRelError
                    body += "<circle cx=\"\(n(f.left + px(si, i)))\" cy=\"\(n(f.top + f.plotH - py(v)))\" r=\"3\" fill=\"\(color)\"><title>\(esc(seg.module)) \(esc(seg.tick(l))): \(String(format: "%.4e", v))</title></circle>\n"
                }
            }
        }
        // Separators and their notes (in the gap, left of the line, reading upwards).
        for si in segs.indices.dropFirst() {
            let sx = f.left + starts[si] - gap / 2
            body += "<line class=\"separator\" x1=\"\(n(sx))\" y1=\"\(n(f.top))\" x2=\"\(n(sx))\" y2=\"\(n(f.top + f.plotH))\" stroke=\"#555\" stroke-width=\"1.2\" stroke-dasharray=\"6 4\"/>\n"
            let ny = f.top + 6
            body += "<text class=\"separator-note\" x=\"\(n(sx - 4))\" y=\"\(n(ny))\" text-anchor=\"end\" font-size=\"\(n(noteFont))\" fill=\"#555\" transform=\"rotate(-90 \(n(sx - 4)) \(n(ny)))\">not comparable across this line</text>\n"
        }
        // Segment headers in the band above the plot, over a bracket spanning the segment: the longest
        // form that fits on the first row with room.
        if multi {
            var placed: [[(Double, Double)]] = [[], []]
            for (si, seg) in segs.enumerated() {
                let x0s = f.left + starts[si], x1s = x0s + weights[si] * unit
                let by = f.top - 4
                body += "<path class=\"bracket\" d=\"M\(n(x0s + 2)) \(n(by + 3))V\(n(by))H\(n(x1s - 2))V\(n(by + 3))\" stroke=\"#777\" fill=\"none\"/>\n"
                let cx = (x0s + x1s) / 2
                let forms = ["\(seg.module): width \(seg.width), \(seg.inputs)", "\(seg.module), width \(seg.width)", seg.module,
                             String(seg.module.prefix(4)) + "."]
                // Within the segment's own room (between its separators) on the row next to the bracket
                // if any form fits there; else the longest form that fits anywhere on either row.
                let room = (x0s - (si == 0 ? 0 : gap / 2 - 3), x1s + (si == segs.count - 1 ? 0 : gap / 2 - 3))
                var choices: [(String, Double, Int)] = []  // (text, x0, row)
                for form in forms {
                    let w = textWidth(form, noteFont)
                    let x0 = min(max(cx - w / 2, room.0), room.1 - w)
                    if x0 >= room.0 - 0.01 { choices.append((form, x0, 1)) }
                }
                for form in forms {
                    let w = textWidth(form, noteFont)
                    let x0 = min(max(cx - w / 2, f.left), f.left + f.plotW - w)
                    choices += [(form, x0, 1), (form, x0, 0)]
                }
                for (form, x0, r) in choices {
                    let w = textWidth(form, noteFont)
                    guard placed[r].allSatisfy({ x0 >= $0.1 + 8 || x0 + w + 8 <= $0.0 }) else { continue }
                    let y = by - 4 - Double(1 - r) * 13
                    body += "<text class=\"segment\" x=\"\(n(x0))\" y=\"\(n(y))\" font-size=\"\(n(noteFont))\" fill=\"#333\">\(esc(form))</text>\n"
                    placed[r].append((x0, x0 + w))
                    break
                }
            }
        }
        var xt: [(Double, String)] = []
        for (si, seg) in segs.enumerated() {
            // Evenly thinned within the segment (first layer always kept), then the frame drops collisions.
            let labels = seg.layers.enumerated().map { (px(si, $0.offset), seg.tick($0.element)) }
            let spacing = labels.count > 1 ? labels[1].0 - labels[0].0 : .infinity
            let widest = labels.map { textWidth($0.1, tickFont) }.max() ?? 0
            let every = max(1, Int((widest + 6) / spacing) + 1)
            let step = [1, 2, 5, 10, 20, 50, 100].first { $0 >= every } ?? every
            xt += labels.enumerated().filter { $0.offset % step == 0 }.map(\.element)
        }
        let yt = scale.ticks.map { (py($0.0), $0.1) }
        var inputs: [(String, [String])] = []  // consecutive modules on the same inputs
        for seg in segs {
            if inputs.last?.0 == seg.inputs { inputs[inputs.count - 1].1.append(seg.module) } else { inputs.append((seg.inputs, [seg.module])) }
        }
        func once(_ xs: [String]) -> [String] { xs.enumerated().filter { !xs[..<$0.offset].contains($0.element) }.map(\.element) }
        let xLabel = multi ? "layer within each module; inputs: " + inputs.map { "\(once($0.1).joined(separator: ", ")): \($0.0)" }.joined(separator: " | ")
            : "\(what) layer (width \(segs.first?.width ?? 0), \(segs.first?.inputs ?? ""))"
        return f.render(xLabel: xLabel, yLabel: "relative error vs reference" + (scale.log ? " (log scale)" : ""),
                        xTicks: xt, yTicks: yt, body: body)
    }

    // MARK: DocVQA

    /// DocVQA bars: ANLS and exact match of both models, their agreement and same-answer share, each
    /// with its 95% interval over the questions.
    static func docvqaBars(_ d: DocVQAComparison, models: PlotModels) -> String {
        let cand = "#4878a8", ref = "#a8b4c0", both = "#c06020"
        let legend = [LegendItem(swatch: .bar(cand), label: "candidate \(models.candidate)"),
                      LegendItem(swatch: .bar(ref), label: "reference \(models.reference)"),
                      LegendItem(swatch: .bar(both), label: "candidate vs reference"),
                      LegendItem(swatch: .whisker, label: "95% interval over the \(d.items.count) questions: normal approx. (ANLS), Wilson (shares)")]
        let set = FileSystem.basename(FileSystem.dirname(d.directory)) + "/" + FileSystem.basename(d.directory)
        let f = Frame(headline: "DocVQA-format set \(set) (\(d.items.count) questions)", models: models, legend: legend)
        typealias Bar = (value: Double, ci: (Double, Double), color: String)
        let groups: [(String, [Bar])] = [
            ("ANLS", [(d.anlsCandidate, d.anlsCandidateCI, cand), (d.anlsBase, d.anlsBaseCI, ref)]),
            ("exact match", [(d.exactMatchCandidate, d.exactMatchCandidateCI, cand), (d.exactMatchBase, d.exactMatchBaseCI, ref)]),
            ("agreement (ANLS)", [(d.anlsAgreement, d.anlsAgreementCI, both)]),
            ("same answer", [(d.sameAnswerShare, d.sameAnswerShareCI, both)]),
        ]
        let gw = f.plotW / Double(groups.count)
        let bw = min(56.0, gw * 0.34)
        // Headroom above 1 for the value labels (they sit above the whiskers).
        let ymax = 1.12
        func py(_ v: Double) -> Double { f.top + f.plotH - f.plotH * (v.isFinite ? min(max(v, 0), 1) : 0) / ymax }
        var body = ""
        var xt: [(Double, String)] = []
        for (g, (name, bars)) in groups.enumerated() {
            let cx = f.left + (Double(g) + 0.5) * gw
            xt.append(((Double(g) + 0.5) * gw, name))
            for (j, b) in bars.enumerated() {
                let x = cx + (Double(j) - Double(bars.count) / 2) * (bw + 6) + 3
                let mid = x + bw / 2
                let y = py(b.value)
                body += "<rect class=\"bar\" x=\"\(n(x))\" y=\"\(n(y))\" width=\"\(n(bw))\" height=\"\(n(f.top + f.plotH - y))\" fill=\"\(b.color)\"/>\n"
                let lo = py(b.ci.0), hi = py(b.ci.1)
                body += "<path class=\"whisker\" d=\"M\(n(mid - 7)) \(n(hi))h14M\(n(mid)) \(n(hi))V\(n(lo))M\(n(mid - 7)) \(n(lo))h14\" stroke=\"#222\" stroke-width=\"1.3\" fill=\"none\"><title>95% interval \(formatFixed(b.ci.0, 3))–\(formatFixed(b.ci.1, 3))</title></path>\n"
                let label = b.value.isFinite ? formatFixed(b.value, 3) : "n/a"
                body += "<text class=\"value\" x=\"\(n(mid))\" y=\"\(n(min(y, hi) - 5))\" text-anchor=\"middle\" font-size=\"10\">\(label)</text>\n"
            }
        }
        let yt = stride(from: 0.0, through: 1.0, by: 0.2).map { (f.plotH * $0 / ymax, formatFixed($0, 1)) }
        return f.render(xLabel: "", yLabel: "score or share (0–1)", xTicks: xt, yTicks: yt, body: body)
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
