import I2QCore
import I2QImage

/// Per-layer summaries of one Idefics2 forward pass (prefill of a prompt with images), in the
/// format `scripts/checks/fullsize_golden.py` writes for transformers, so the two compare stage by
/// stage (`scripts/checks/compare_golden_trace.py`, `FullWidthSliceTests`). A diagnostic: it runs
/// the same model code as `Idefics2Session.run`, with observers on the layers.
///
/// Stage names: `pixel_values.J`, `image.J.vision.layer.I`, `image.J.vision.post_layernorm`,
/// `image.J.connector.modality_projection`, `image.J.connector.perceiver.I`,
/// `image.J.connector.output` (J: the real images in order, I: layer), `text.layer.I`,
/// `text.norm`, `logits.last` (the last position).
public enum Idefics2Trace {
    /// Values kept per stage (`fullsize_golden.py`: SAMPLES, LAST_ROW_MAX; the committed CI
    /// slice golden keeps 512 samples and no last rows).
    public struct Limits: Sendable {
        public var samples: Int
        public var lastRowMax: Int
        public init(samples: Int, lastRowMax: Int) { self.samples = samples; self.lastRowMax = lastRowMax }
        public static let fullSize = Limits(samples: 2048, lastRowMax: 4096)
    }

    /// One stage: float64 sum / sum of squares / max|x| over all rows × cols, the values at flat
    /// positions k·N / S (S = min(samples, N)), and the last row when it has ≤ lastRowMax columns
    /// (or always with `full`).
    public struct Summary: Sendable {
        public let name: String
        public let rows, cols: Int
        public let sum, sumsq, absmax: Double
        public let samples: [Float]
        public let lastRow: [Float]?
        public var argmax: Int? = nil

        public var std: Double {
            let n = Double(rows * cols), m = sum / n
            return max(sumsq / n - m * m, 0).squareRoot()
        }

        /// x: [rows, cols]; `keep` selects the rows summarised (nil: all).
        public init(name: String, _ x: UnsafeBufferPointer<Float>, cols: Int, keep: [Bool]? = nil, limits: Limits, full: Bool = false) {
            var kept: [Float]
            if let keep {
                kept = []
                kept.reserveCapacity(x.count)
                for (r, k) in keep.enumerated() where k { kept += x[(r * cols)..<((r + 1) * cols)] }
            } else {
                kept = Array(x)
            }
            self.name = name
            self.cols = cols
            rows = kept.count / cols
            var s = 0.0, q = 0.0, a = 0.0
            for v in kept { let d = Double(v); s += d; q += d * d; a = max(a, abs(d)) }
            sum = s; sumsq = q; absmax = a
            let n = kept.count, count = min(limits.samples, n)
            samples = (0..<count).map { kept[($0 * n) / count] }
            lastRow = (cols <= limits.lastRowMax || full) && rows > 0 ? Array(kept[((rows - 1) * cols)...]) : nil
        }
    }

    public struct Result: Sendable {
        public var inputIds: [Int]
        public var pixelValuesShape: [Int]
        public var stages: [Summary]
        public var seconds: Double
    }

    /// Runs `prompt` with the images at `imagePaths` (processed with the session's settings) and
    /// summarises every stage. `fullLogits`: keep the whole last-position logits row.
    public static func run(_ session: Idefics2Session, prompt: String, imagePaths: [String], limits: Limits = .fullSize,
                           fullLogits: Bool = false) throws -> Result {
        let model = session.model
        let processed = try session.process(try imagePaths.map { try ImageDecoder.decodeRGB(path: $0) })
        let ids = session.inputIds(prompt: prompt)
        let t0 = ProgressBar.now()
        var stages: [Summary] = []
        let inputs = Idefics2Session.inputs(processed).filter { $0.pixels.contains { $0 != 0 } }
        for (j, im) in inputs.enumerated() {
            im.pixels.withUnsafeBufferPointer { stages.append(Summary(name: "pixel_values.\(j)", $0, cols: $0.count, limits: limits)) }
        }
        let vh = model.config.vision.hiddenSize, th = model.config.text.hiddenSize
        var features: [Float] = []
        for (j, im) in inputs.enumerated() {
            let (hidden, mask) = try model.vision.encode(pixels: im.pixels, mask: im.mask, height: im.height, width: im.width) { i, h, m in
                stages.append(Summary(name: "image.\(j).vision.layer.\(i)", h, cols: vh, keep: m, limits: limits))
            }
            hidden.withUnsafeBufferPointer { stages.append(Summary(name: "image.\(j).vision.post_layernorm", $0, cols: vh, keep: mask, limits: limits)) }
            let out = try model.connector(hidden, patchMask: mask) { stage, x in
                switch stage {
                case .projection: stages.append(Summary(name: "image.\(j).connector.modality_projection", x, cols: th, keep: mask, limits: limits))
                case let .layer(i): stages.append(Summary(name: "image.\(j).connector.perceiver.\(i)", x, cols: th, limits: limits))
                }
            }
            out.withUnsafeBufferPointer { stages.append(Summary(name: "image.\(j).connector.output", $0, cols: th, limits: limits)) }
            features += out
        }
        let emb = try model.embeddings(ids: ids, features: features)
        let cache = try model.text.makeCache(capacity: ids.count + 1)
        let hidden = try model.text.forward(embeddings: emb, cache: cache) { i, h in
            stages.append(Summary(name: "text.layer.\(i)", h, cols: th, limits: limits))
        }
        hidden.withUnsafeBufferPointer { stages.append(Summary(name: "text.norm", $0, cols: th, limits: limits)) }
        let logits = try model.text.logits(hidden, rows: (ids.count - 1)..<ids.count)
        var last = logits.withUnsafeBufferPointer { Summary(name: "logits.last", $0, cols: logits.count, limits: limits, full: fullLogits) }
        last.argmax = logits.withUnsafeBufferPointer { Greedy.argmax($0, banned: []) }
        stages.append(last)
        return Result(inputIds: ids, pixelValuesShape: processed.pixelValuesShape, stages: stages, seconds: ProgressBar.now() - t0)
    }

    /// The result as JSON (the keys `fullsize_golden.py` writes; floats printed exactly).
    public static func json(_ r: Result, extra: [(String, String)] = []) -> String {
        func floats(_ a: [Float]) -> String { "[" + a.map { "\(Double($0))" }.joined(separator: ",") + "]" }
        var parts = extra.map { "\"\($0.0)\":\($0.1)" }
        parts.append("\"input_ids\":[" + r.inputIds.map(String.init).joined(separator: ",") + "]")
        parts.append("\"pixel_values_shape\":[" + r.pixelValuesShape.map(String.init).joined(separator: ",") + "]")
        parts.append("\"seconds\":\(r.seconds)")
        let stages = r.stages.map { s -> String in
            var f = ["\"name\":\"\(s.name)\"", "\"rows\":\(s.rows)", "\"cols\":\(s.cols)", "\"sum\":\(s.sum)",
                     "\"sumsq\":\(s.sumsq)", "\"absmax\":\(s.absmax)", "\"samples\":" + floats(s.samples)]
            if let l = s.lastRow { f.append("\"last_row\":" + floats(l)) }
            if let a = s.argmax { f.append("\"argmax\":\(a)") }
            return "{" + f.joined(separator: ",") + "}"
        }
        parts.append("\"stages\":[\n" + stages.joined(separator: ",\n") + "]")
        return "{" + parts.joined(separator: ",\n") + "}\n"
    }
}
