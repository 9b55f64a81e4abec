import I2QCore

/// Where the bits went in a mixed-precision recipe (`quantize --target-bpw`, issue 22): one bar per
/// tensor in model order, height = its bits per weight (scales included), colour = its scheme, x ticks
/// at each decoder layer's first tensor; the title names the file, the model and the achieved/target
/// bits per weight. Hand-written SVG, as the verify plots.
public enum RecipePlot {
    public struct Bar: Sendable {
        public let name: String
        public let scheme: String
        public let bitsPerWeight: Double
        public init(name: String, scheme: String, bitsPerWeight: Double) {
            self.name = name; self.scheme = scheme; self.bitsPerWeight = bitsPerWeight
        }
    }

    /// Colours by scheme family, lighter for fewer bits.
    static func color(_ scheme: String, index: Int) -> String {
        let fixed: [String: String] = [
            "q2_k": "#f4c7a1", "q3_k": "#eea36a", "int4g128": "#9ec3e6", "int4g64": "#6fa3d6", "int4g32": "#4878a8",
            "int2g128": "#f7d6e0", "int2g64": "#eeb4c6", "int2g32": "#e492ac", "int3g128": "#d6c7ee", "int3g64": "#b9a2e0", "int3g32": "#9b7dd2",
            "q4_0": "#b7dfae", "q4_1": "#93cc87", "q4_k": "#6fb862", "q5_0": "#f2e08a", "q5_1": "#e3c75a",
            "q5_k": "#c9a83a", "q6_k": "#c98ac9", "q8_0": "#9b59b6", "bf16": "#888888", "f16": "#555555",
        ]
        let spare = ["#c06020", "#2a9d8f", "#e76f51", "#264653"]
        return fixed[scheme] ?? spare[index % spare.count]
    }

    /// "model.layers.12.mlp.down_proj.weight" → 12.
    static func layer(_ name: String) -> Int? {
        guard let r = name.range(of: "layers.") else { return nil }
        return Int(name[r.upperBound...].prefix { $0.isNumber })
    }

    public static func svg(_ bars: [Bar], file: String, model: String, achievedBPW: Double, targetBPW: Double?) -> String {
        var schemes: [String] = []
        for b in bars where !schemes.contains(b.scheme) { schemes.append(b.scheme) }
        func bpw(_ s: String) -> Double { bars.first { $0.scheme == s }?.bitsPerWeight ?? 0 }
        schemes.sort { a, b in bpw(a) < bpw(b) }
        let legend = schemes.enumerated().map { i, s in
            SVG.LegendItem(swatch: .bar(color(s, index: i)), label: "\(s) ×\(bars.filter { $0.scheme == s }.count)")
        }
        let target = targetBPW.map { " (target \(formatFixed($0, 2)))" } ?? ""
        let models = PlotModels(candidate: file, reference: model, candidateStorage: nil, referenceStorage: nil)
        let f = SVG.Frame(headline: "Bits per weight by tensor, \(formatFixed(achievedBPW, 3)) overall\(target)", models: models, legend: legend)
        let ymax = max(8.0, (bars.map(\.bitsPerWeight).max() ?? 8) * 1.05)
        let bw = f.plotW / Double(max(bars.count, 1))
        var body = ""
        var xt: [(Double, String)] = []
        var lastKey: String? = nil
        for (i, b) in bars.enumerated() {
            let h = f.plotH * min(b.bitsPerWeight, ymax) / ymax
            let x = f.left + Double(i) * bw
            let c = color(b.scheme, index: schemes.firstIndex(of: b.scheme) ?? 0)
            body += "<rect class=\"bar\" x=\"\(SVG.n(x))\" y=\"\(SVG.n(f.top + f.plotH - h))\" width=\"\(SVG.n(max(bw - 0.6, 0.4)))\" height=\"\(SVG.n(h))\" fill=\"\(c)\"><title>\(SVG.esc(b.name)): \(b.scheme), \(formatFixed(b.bitsPerWeight, 3)) bits/weight</title></rect>\n"
            let key = layer(b.name).map(String.init) ?? (b.name.contains("embed") ? "emb" : b.name.contains("lm_head") ? "head" : "·")
            if key != lastKey {
                xt.append((Double(i) * bw + bw / 2, key))
                lastKey = key
            }
        }
        if bars.count > 1 {
            let y = f.top + f.plotH - f.plotH * min(achievedBPW, ymax) / ymax
            body += "<line x1=\"\(SVG.n(f.left))\" y1=\"\(SVG.n(y))\" x2=\"\(SVG.n(f.left + f.plotW))\" y2=\"\(SVG.n(y))\" stroke=\"#c00\" stroke-dasharray=\"5 3\"><title>achieved \(formatFixed(achievedBPW, 3)) bits/weight</title></line>\n"
        }
        let step = ymax > 12 ? 4.0 : 2.0
        let yt = stride(from: 0.0, through: ymax, by: step).map { (f.plotH * $0 / ymax, formatFixed($0, 0)) }
        return f.render(xLabel: "tensor, in model order (ticks: decoder layer)", yLabel: "bits per weight", xTicks: xt, yTicks: yt, body: body)
    }
}
