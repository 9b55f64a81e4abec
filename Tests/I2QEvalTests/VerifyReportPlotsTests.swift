import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport
import I2QPasses
@testable import I2QEval

/// `--report DIR` says what it shows (issue 20): every plot title names the candidate, the reference,
/// the candidate's schemes with bits per weight and its size; legends where more than one series is
/// drawn; 95% whiskers on the DocVQA bars; separators where a layer plot crosses a module or width;
/// no overlapping tick labels; summary.md and report.json carry both models' storage. Bits per weight
/// are checked against arithmetic from the format specs (Formats/i2q-format.md, ggml's block sizes),
/// never against a number the code under test computed.
final class VerifyReportPlotsTests: XCTestCase {
    static let model = fixturesDir + "/tiny-idefics2-v5"
    nonisolated(unsafe) static var nf4Path: String?

    /// NF4, block 64, float32 absmax (no double quantization) of the tiny Idefics2.
    func nf4() throws -> String {
        if let p = Self.nf4Path { return p }
        let out = try makeTempDir("plots-nf4") + "/tiny-nf4.i2q"
        var o = QuantizeOptions()
        o.doubleQuant = false
        var s = OutputSettings()
        s.showProgress = false
        _ = try QuantizePass.run(source: try openModel(Self.model), output: out, options: o, settings: s)
        Self.nf4Path = out
        return out
    }

    // MARK: Bits per weight from the specs

    /// Stored bytes of an nf4 entry of `n` elements by Formats/i2q-format.md: packed ceil(n/2) bytes,
    /// absmax F32 [ceil(n/64)]; with double quantization absmax U8 [ceil(n/64)], nested_absmax F32
    /// [ceil(ceil(n/64)/256)] and nested_code F32 [256].
    static func nf4Bytes(_ n: Int, doubleQuant: Bool) -> Int {
        let blocks = (n + 63) / 64
        return doubleQuant ? (n + 1) / 2 + blocks + 4 * ((blocks + 255) / 256) + 4 * 256 : (n + 1) / 2 + 4 * blocks
    }

    /// (expected nf4 bits per weight, expected overall bits per weight) of `path`, quantized from
    /// `source`: the quantized tensors by the spec's arithmetic, the plain ones at their dtype's size.
    func expectedBPW(_ path: String, source: String, doubleQuant: Bool) throws -> (nf4: Double, overall: Double, params: Int) {
        let file = try I2QFile(path: path)
        let quantized = Set(file.entries.filter { $0.scheme == "nf4" }.map(\.name))
        XCTAssertFalse(quantized.isEmpty)
        var qParams = 0, qBytes = 0, params = 0, bytes = 0
        for t in try openModel(source).tensors {
            let n = t.shape.reduce(1, *)
            params += n
            if quantized.contains(t.name) {
                qParams += n; qBytes += Self.nf4Bytes(n, doubleQuant: doubleQuant); bytes += Self.nf4Bytes(n, doubleQuant: doubleQuant)
            } else {
                bytes += n * t.dtype.size
            }
        }
        return (8 * Double(qBytes) / Double(qParams), 8 * Double(bytes) / Double(params), params)
    }

    func testNF4BitsPerWeightAreTheSpecArithmetic() throws {
        let path = try nf4()
        let s = SchemeSummary(try openModel(path))
        let nf4 = try XCTUnwrap(s.schemes.first { $0.scheme == "nf4 b64" }, "\(s.schemes.map(\.scheme))")
        let e = try expectedBPW(path, source: Self.model, doubleQuant: false)
        // Every quantized tensor of this model holds whole blocks: 4 bits + one float32 absmax per 64.
        XCTAssertEqual(e.nf4, 4 + 32.0 / 64)
        XCTAssertEqual(nf4.bitsPerWeight, e.nf4, accuracy: 1e-12)
        XCTAssertEqual(s.bitsPerWeight, e.overall, accuracy: 1e-12)
        XCTAssertEqual(s.totalParameters, e.params)

        // Double quantization: 4 + 8/64 per weight, a float32 per 256 blocks and a 1 KiB code table per tensor.
        let dq = try makeTempDir("plots-dq") + "/dq.i2q"
        var settings = OutputSettings()
        settings.showProgress = false
        _ = try QuantizePass.run(source: try openModel(Self.model), output: dq, options: QuantizeOptions(), settings: settings)
        let sd = SchemeSummary(try openModel(dq))
        let ed = try expectedBPW(dq, source: Self.model, doubleQuant: true)
        XCTAssertEqual(try XCTUnwrap(sd.schemes.first { $0.scheme == "nf4 b64 dq" }).bitsPerWeight, ed.nf4, accuracy: 1e-12)
        XCTAssertEqual(sd.bitsPerWeight, ed.overall, accuracy: 1e-12)
        let dqFloor: Double = 4.0 + 8.0 / 64.0 + 32.0 / (64.0 * 256.0)
        XCTAssertGreaterThan(ed.nf4, dqFloor)  // the code tables on top
    }

    /// GGUF tensors count what the file stores: ggml blocks of 32 weights, q4_0 = f16 scale + 16 bytes
    /// (18 B), q4_1 = two f16 + 16 bytes (20 B), q5_0 = f16 + 4 + 16 (22 B), q5_1 = 2·f16 + 4 + 16 (24 B),
    /// q8_0 = f16 + 32 (34 B).
    func testGGUFBitsPerWeightAreGGMLBlockSizes() throws {
        let s = SchemeSummary(try openModel(fixturesDir + "/gguf/tiny-llama.gguf"))
        // (bytes per block of 32 weights) × 8 / 32
        let expected: [String: Double] = ["q4_0": 4.5, "q4_1": 5.0, "q5_0": 5.5, "q5_1": 6.0, "q8_0": 8.5, "f16": 16.0, "bf16": 16.0, "f32": 32.0]
        XCTAssertEqual(expected["q4_0"], 18.0 * 8 / 32)
        XCTAssertEqual(expected["q4_1"], 20.0 * 8 / 32)
        XCTAssertEqual(expected["q5_0"], 22.0 * 8 / 32)
        XCTAssertEqual(expected["q5_1"], 24.0 * 8 / 32)
        XCTAssertEqual(expected["q8_0"], 34.0 * 8 / 32)
        XCTAssertEqual(Set(s.schemes.map(\.scheme)), Set(expected.keys))
        for sc in s.schemes { XCTAssertEqual(sc.bitsPerWeight, expected[sc.scheme]!, accuracy: 1e-12, sc.scheme) }
        let m = ModelStorage(path: fixturesDir + "/gguf/tiny-llama.gguf", source: try openModel(fixturesDir + "/gguf/tiny-llama.gguf"))
        XCTAssertEqual(m.bytes, try fileSize(fixturesDir + "/gguf/tiny-llama.gguf"))
        XCTAssertTrue(m.schemesText().hasPrefix("q4_1 5.00 bpw"), m.schemesText())  // quantized first, largest first
    }

    func fileSize(_ p: String) throws -> Int {
        try XCTUnwrap((try FileManager.default.attributesOfItem(atPath: p))[.size] as? Int)
    }

    // MARK: The report end to end

    func testReportNamesModelsSizesAndBitsPerWeight() throws {
        let path = try nf4()
        var o = VerifyOptions()
        o.textPath = "/usr/share/common-licenses/BSD"
        o.docvqaDirectory = fixturesDir + "/docvqa-mini"
        o.ctx = 64
        o.samples = 4
        o.seed = 3
        o.maxNewTokens = 4
        o.showProgress = false
        let r = try Verifier.run(candidate: path, reference: Self.model, options: o)
        let e = try expectedBPW(path, source: Self.model, doubleQuant: false)
        let dir = try makeTempDir("plots-report") + "/report"
        try VerifyReportFiles.write(r, to: dir)

        // report.json
        let j = try JSONParser.parse(try FileSystem.readFile(dir + "/report.json"), source: "report.json")
        XCTAssertEqual(j["format_version"]?.intValue, 3)
        let c = try XCTUnwrap(j["candidate"]), ref = try XCTUnwrap(j["reference"])
        XCTAssertEqual(c["path"]?.stringValue, path)
        XCTAssertEqual(c["name"]?.stringValue, "tiny-nf4.i2q")
        XCTAssertEqual(c["bytes"]?.intValue, try fileSize(path))
        XCTAssertEqual(c["params"]?.intValue, e.params)
        XCTAssertEqual(try XCTUnwrap(c["bits_per_weight"]?.doubleValue), e.overall, accuracy: 1e-9)
        let schemes = try XCTUnwrap(c["schemes"]?.arrayValue)
        let nf4 = try XCTUnwrap(schemes.first { $0["scheme"]?.stringValue == "nf4 b64" })
        XCTAssertEqual(nf4["bits_per_weight"]?.doubleValue, 4.5)
        for s in schemes { for k in ["scheme", "params", "bytes", "bits_per_weight"] { XCTAssertNotNil(s[k], k) } }
        XCTAssertEqual(schemes.reduce(0) { $0 + ($1["params"]?.intValue ?? 0) }, e.params)
        XCTAssertEqual(ref["name"]?.stringValue, "tiny-idefics2-v5")
        let dirBytes = try FileManager.default.contentsOfDirectory(atPath: Self.model).reduce(0) { n, f in
            var isDir: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: Self.model + "/" + f, isDirectory: &isDir)
            return n + (!exists || isDir.boolValue ? 0 : try fileSize(Self.model + "/" + f))
        }
        XCTAssertEqual(ref["bytes"]?.intValue, dirBytes)
        let refParams = try XCTUnwrap(ref["params"]?.intValue)
        XCTAssertEqual(refParams, e.params)
        // The tiny reference is float32 throughout.
        XCTAssertEqual(ref["bits_per_weight"]?.doubleValue, 32)
        // New DocVQA intervals: the normal approximation over the questions, recomputed here.
        let d = try XCTUnwrap(r.docvqa)
        let a = d.items.map(\.anlsCandidate), m = a.reduce(0, +) / Double(a.count)
        let sd = (a.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(a.count - 1)).squareRoot()
        let ci = try XCTUnwrap(j["docvqa"]?["anls_candidate_ci95"]?.arrayValue?.compactMap(\.doubleValue))
        XCTAssertEqual(ci[0], max(0, m - 1.959963984540054 * sd / Double(a.count).squareRoot()), accuracy: 1e-12)
        XCTAssertEqual(ci[1], min(1, m + 1.959963984540054 * sd / Double(a.count).squareRoot()), accuracy: 1e-12)
        for k in ["anls_base_ci95", "anls_agreement_ci95", "same_answer_share_ci95"] { XCTAssertEqual(j["docvqa"]?[k]?.arrayValue?.count, 2, k) }
        // The connector and the widths, for the layer plot's boundaries.
        let textWidth = try openModel(Self.model).config.textConfig.hiddenSize
        XCTAssertEqual(j["layers"]?["connector"]?["width"]?.intValue, textWidth)
        XCTAssertNotNil(j["layers"]?["connector"]?["rel_error"]?.doubleValue)
        XCTAssertNotNil(j["layers"]?["vision"]?["width"]?.intValue)
        XCTAssertEqual(j["layers"]?["width"]?.intValue, textWidth)

        // summary.md
        let md = String(decoding: try FileSystem.readFile(dir + "/summary.md"), as: UTF8.self)
        XCTAssertTrue(md.contains("## Models"), md)
        XCTAssertTrue(md.contains("| candidate | `tiny-nf4.i2q` | \(formatBytes(try fileSize(path))) (\(try fileSize(path)) B) |"), md)
        XCTAssertTrue(md.contains("nf4 b64: 4.50 bits/weight"), md)
        XCTAssertTrue(md.contains("| \(formatFixed(e.overall, 3)) |"), md)
        XCTAssertTrue(md.contains("| reference | `tiny-idefics2-v5` |") && md.contains("| 32.000 |"), md)

        // Every plot.
        let svgs = try FileSystem.listDirectory(dir).filter { $0.hasSuffix(".svg") }
        XCTAssertEqual(svgs, ["docvqa.svg", "kld_cdf.svg", "kld_histogram.svg", "layer_error.svg", "vision_layer_error.svg"])
        for name in svgs {
            let svg = String(decoding: try FileSystem.readFile(dir + "/" + name), as: UTF8.self)
            try checkTitle(svg, name, mentions: ["tiny-nf4.i2q", "tiny-idefics2-v5", "nf4 b64 4.50 bpw",
                                                 formatBytes(try fileSize(path)), "\(formatFixed(e.overall, 2)) bpw overall"])
            try checkLegend(svg, name)
            try checkTicks(svg, name)
        }
        let layer = String(decoding: try FileSystem.readFile(dir + "/layer_error.svg"), as: UTF8.self)
        XCTAssertEqual(elements(layer, "line", "separator").count, 2, "vision encoder | connector | decoder")
        XCTAssertEqual(layer.components(separatedBy: "not comparable across this line").count - 1, 2)
        let vision = String(decoding: try FileSystem.readFile(dir + "/vision_layer_error.svg"), as: UTF8.self)
        XCTAssertEqual(elements(vision, "line", "separator").count, 0, "one module: nothing to separate")
        try checkWhiskers(String(decoding: try FileSystem.readFile(dir + "/docvqa.svg"), as: UTF8.self), d)
    }

    // MARK: Plots on synthetic data

    static func models(candidate: String = "cand.i2q") -> PlotModels {
        let t = [SchemeSummary.Tensor(name: "a", dtype: .bf16, parameters: 1000, bytes: 2000, scheme: "int4 g128"),
                 SchemeSummary.Tensor(name: "b", dtype: .bf16, parameters: 64, bytes: 128, scheme: "BF16")]
        let c = ModelStorage(path: "/x/" + candidate, name: candidate, bytes: 123_456, schemes: SchemeSummary(tensors: t))
        let r = ModelStorage(path: "/x/ref", name: "ref", bytes: 999, schemes: SchemeSummary(tensors: [
            SchemeSummary.Tensor(name: "a", dtype: .f32, parameters: 1064, bytes: 4256, scheme: "F32")]))
        return PlotModels(candidate: candidate, reference: "ref", candidateStorage: c, referenceStorage: r)
    }

    static func layers(_ n: Int, _ scale: Double) -> [LayerErrorAccumulator.Layer] {
        (0..<n).map { LayerErrorAccumulator.Layer(layer: $0, relError: scale * Double($0 + 1), meanTokenRelError: scale * Double($0 + 2), maxTokenRelError: 0) }
    }

    /// A real model's shape: 27 vision layers of width 1152 → connector → 32 decoder layers of 4096;
    /// and a width change inside one model (two decoder parts).
    func testLayerPlotSeparatesModulesAndWidths() throws {
        let segs = [SVG.LayerSegment(module: "vision encoder", width: 1152, inputs: "20 images", layers: Self.layers(27, 1e-3), unit: "patches"),
                    SVG.LayerSegment(module: "connector", width: 4096, inputs: "20 images", layers: Self.layers(1, 2e-2), unit: "image tokens",
                                     tick: { _ in "out" }),
                    SVG.LayerSegment(module: "decoder", width: 4096, inputs: "text, 4096 positions", layers: Self.layers(32, 3e-3))]
        let svg = SVG.layerError(segs, models: Self.models())
        try dump("synthetic_vision_connector_decoder.svg", svg)
        XCTAssertEqual(elements(svg, "line", "separator").count, 2)
        for l in elements(svg, "line", "separator") { XCTAssertNotNil(l.attrs["stroke-dasharray"]) }
        XCTAssertEqual(elements(svg, "text", "separator-note").map(\.text), ["not comparable across this line", "not comparable across this line"])
        XCTAssertEqual(elements(svg, "text", "segment").count, 3, "a header over each module")
        try checkTitle(svg, "layers", mentions: ["cand.i2q", "ref", "int4 g128 16.00 bpw", formatBytes(123_456)])
        try checkLegend(svg, "layers")
        try checkTicks(svg, "layers")
        XCTAssertGreaterThanOrEqual(elements(svg, "text", "xtick").count, 10, "ticks are thinned, not dropped")

        // Same module, the width changes: still a separator.
        let w = SVG.layerError([SVG.LayerSegment(module: "decoder", width: 2048, inputs: "text", layers: Self.layers(8, 1e-3)),
                                SVG.LayerSegment(module: "decoder", width: 4096, inputs: "text", layers: Self.layers(8, 1e-3))],
                               models: Self.models())
        try dump("synthetic_width_change.svg", w)
        XCTAssertEqual(elements(w, "line", "separator").count, 1)
        XCTAssertTrue(elements(w, "text", "segment").contains { $0.text.contains("2048") })
        // One module: no separator.
        let one = SVG.layerError([SVG.LayerSegment(module: "decoder", width: 576, inputs: "text", layers: Self.layers(300, 1e-4))], models: Self.models())
        try dump("synthetic_300_layers.svg", one)
        XCTAssertEqual(elements(one, "line", "separator").count, 0)
        try checkTicks(one, "300 layers")
    }

    /// A long file name: the title wraps to two lines (smaller type) and stays inside the figure.
    func testLongTitlesWrapToTwoLines() throws {
        let long = String(repeating: "very-long-candidate-name-", count: 4) + "nf4.i2q"
        let svg = SVG.kldHistogram([1e-4, 2e-3, 0.1], models: Self.models(candidate: long))
        try dump("synthetic_long_title.svg", svg)
        let lines = elements(svg, "text", "title")
        XCTAssertLessThanOrEqual(lines.count, 2)
        for l in lines {
            let fs = try XCTUnwrap(Double(l.attrs["font-size"] ?? ""))
            XCTAssertLessThanOrEqual(Double(l.text.count) * 0.6 * fs, SVG.width, "title line overflows: \(l.text)")
        }
        try checkTitle(svg, "long", mentions: [long, "int4 g128"])
        // A name no two lines can hold is cut with "…", never drawn past the edge.
        let huge = SVG.kldHistogram([1e-4], models: Self.models(candidate: String(repeating: "x", count: 400)))
        try dump("synthetic_huge_title.svg", huge)
        let hl = elements(huge, "text", "title")
        XCTAssertLessThanOrEqual(hl.count, 2)
        for l in hl { XCTAssertLessThanOrEqual(Double(l.text.count) * 0.6 * Double(l.attrs["font-size"]!)!, SVG.width) }
    }

    /// With I2Q_PLOTS_OUT=DIR set, the synthetic plots are written there too (to look at them).
    func dump(_ name: String, _ svg: String) throws {
        guard let d = ProcessInfo.processInfo.environment["I2Q_PLOTS_OUT"] else { return }
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        try write(Array(svg.utf8), to: d + "/" + name)
    }

    // MARK: Checks

    /// The document's <title> and the visible title carry every mention; the visible lines are ≤ 2.
    func checkTitle(_ svg: String, _ name: String, mentions: [String]) throws {
        let docTitle = try XCTUnwrap(svg.range(of: "<title>").map { svg[$0.upperBound...].prefix { $0 != "<" } }, name)
        let visible = elements(svg, "text", "title").map(\.text).joined(separator: " ")
        XCTAssertLessThanOrEqual(elements(svg, "text", "title").count, 2, name)
        for m in mentions {
            XCTAssertTrue(unescape(String(docTitle)).contains(m), "\(name): <title> lacks \(m): \(docTitle)")
            XCTAssertTrue(visible.contains(m) || visible.replacingOccurrences(of: " ", with: "").contains(m.replacingOccurrences(of: " ", with: "")),
                          "\(name): visible title lacks \(m): \(visible)")
        }
    }

    /// More than one colour among the data marks → a legend with at least that many entries.
    func checkLegend(_ svg: String, _ name: String) throws {
        var colours = Set<String>()
        for e in elements(svg, "polyline", nil) + elements(svg, "rect", "bar") + elements(svg, "circle", nil) {
            if let c = e.attrs["stroke"] ?? e.attrs["fill"], c != "none" { colours.insert(c) }
        }
        let legend = elements(svg, "text", "legend")
        if colours.count > 1 { XCTAssertGreaterThanOrEqual(legend.count, colours.count, "\(name): \(colours.count) colours, legend \(legend.map(\.text))") }
    }

    /// No two tick labels' estimated boxes (0.6 × font size per character, one font size high) overlap.
    func checkTicks(_ svg: String, _ name: String) throws {
        let ticks = elements(svg, "text", "xtick") + elements(svg, "text", "ytick")
        XCTAssertFalse(ticks.isEmpty, name)
        let boxes = try ticks.map { t -> (Double, Double, Double, Double, String) in
            let x = try XCTUnwrap(Double(t.attrs["x"] ?? "")), y = try XCTUnwrap(Double(t.attrs["y"] ?? ""))
            let fs = try XCTUnwrap(Double(t.attrs["font-size"] ?? ""))
            let w = Double(t.text.count) * 0.6 * fs
            let x0 = t.attrs["text-anchor"] == "middle" ? x - w / 2 : t.attrs["text-anchor"] == "end" ? x - w : x
            return (x0, y - 0.8 * fs, x0 + w, y + 0.2 * fs, t.text)
        }
        for i in boxes.indices {
            for j in boxes.indices where j > i {
                let a = boxes[i], b = boxes[j]
                let overlap = a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
                XCTAssertFalse(overlap, "\(name): tick labels \"\(a.4)\" and \"\(b.4)\" overlap")
            }
        }
    }

    /// One whisker per bar, spanning the bar's top (the interval holds the value), and the caption
    /// saying which interval.
    func checkWhiskers(_ svg: String, _ d: DocVQAComparison) throws {
        let bars = elements(svg, "rect", "bar"), whiskers = elements(svg, "path", "whisker")
        XCTAssertEqual(bars.count, 6)
        XCTAssertEqual(whiskers.count, bars.count)
        for (b, w) in zip(bars, whiskers) {
            let top = try XCTUnwrap(Double(b.attrs["y"] ?? ""))
            // "M x y h14 M x y V y M x y h14": the y after each M and V.
            var ys: [Double] = []
            var cmd: Character = " ", num = ""
            func flush() {
                let p = num.split(separator: " ").compactMap { Double($0) }
                if cmd == "M", p.count == 2 { ys.append(p[1]) } else if cmd == "V", p.count == 1 { ys.append(p[0]) }
                num = ""
            }
            for ch in w.attrs["d"] ?? "" {
                if ch.isLetter { flush(); cmd = ch } else { num.append(ch) }
            }
            flush()
            XCTAssertEqual(ys.count, 4, w.attrs["d"] ?? "")
            XCTAssertLessThanOrEqual(ys.min()!, top + 0.11)
            XCTAssertGreaterThanOrEqual(ys.max()!, top - 0.11)
        }
        XCTAssertTrue(elements(svg, "text", "legend").contains { $0.text.contains("95% interval") && $0.text.contains("normal approx.") && $0.text.contains("Wilson") })
    }

    func unescape(_ s: String) -> String {
        s.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&amp;", with: "&")
    }

    /// Elements `<tag ... class="cls" ...>` (any class when nil): their attributes and their text
    /// (tags inside removed, entities decoded).
    func elements(_ svg: String, _ tag: String, _ cls: String?) -> [(attrs: [String: String], text: String)] {
        var out: [(attrs: [String: String], text: String)] = []
        var rest = Substring(svg)
        while let r = rest.range(of: "<\(tag) ") {
            let afterOpen = rest[r.upperBound...]
            guard let end = afterOpen.firstIndex(of: ">") else { break }
            let attrText = afterOpen[..<end]
            var attrs: [String: String] = [:]
            var a = attrText
            while let eq = a.range(of: "=\"") {
                let key = a[..<eq.lowerBound].split(separator: " ").last.map(String.init) ?? ""
                let v = a[eq.upperBound...]
                guard let close = v.firstIndex(of: "\"") else { break }
                attrs[key] = String(v[..<close])
                a = v[v.index(after: close)...]
            }
            var text = ""
            let body = afterOpen[afterOpen.index(after: end)...]
            if !attrText.hasSuffix("/"), let closeTag = body.range(of: "</\(tag)>") {
                var inTag = false
                for ch in body[..<closeTag.lowerBound] {
                    if ch == "<" { inTag = true } else if ch == ">" { inTag = false } else if !inTag { text.append(ch) }
                }
            }
            if cls == nil || attrs["class"] == cls { out.append((attrs, unescape(text))) }
            rest = body
        }
        return out
    }
}
