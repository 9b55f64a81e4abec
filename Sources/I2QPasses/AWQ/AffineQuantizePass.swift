import Foundation
import I2QCore
import I2QFormats
import I2QQuant
import I2QRuntime

public struct AffineQuantizeOptions: Sendable {
    public enum Method: String, Sendable { case rtn, awq, gptq }
    /// AWQ and GPTQ calibrate layer by layer (with a resumable state); RTN does not.
    public var calibrated: Bool { method != .rtn }
    public var method: Method = .rtn
    /// Elements per group along the input dimension; nil: `AffineQuantizePass.defaultGroupSize`.
    public var groupSize: Int? = nil
    /// Code width: 4 (`affine_int4`, the default), 3 or 2 (`affine_int3`/`affine_int2`; RTN and AWQ).
    public var bits = 4
    /// Dtype affine_int4 entries dequantize to (nil: the source tensor's float dtype).
    public var computeDType: DType?
    /// Substrings of tensor names to keep unquantized (in addition to the defaults).
    public var skip: [String] = []
    /// RTN only: also store the vision tower's linear weights (Idefics2: attention q/k/v/out and
    /// fc1/fc2 of every encoder layer) as affine int4, rounded to nearest (`--vision-int4`).
    public var vision = false
    /// Cast for the tensors kept unquantized (nil: keep their dtype).
    public var dtype: DType?
    /// AWQ only.
    public var calibration: CalibrationOptions?
    public var awq = AWQSettings()
    /// GPTQ only (its groupSize is taken from `groupSize`).
    public var gptq = GPTQSettings()
    /// AWQ only: continue a previous run's state (next to the output) from its last finished layer.
    public var resume = false
    /// AWQ only: discard a previous run's state and start over (without it, or --resume, a state
    /// holding finished layers is refused rather than silently thrown away).
    public var restart = false
    /// AWQ only: stop (throwing `AffineQuantizeError.stopped`) after this many layers were finished in
    /// this run, keeping the state (tests of --resume).
    public var stopAfterLayers: Int?
    /// AWQ only: keep the state directory after success (its per-layer scales, for reports and tests).
    public var keepState = false
    /// Progress lines (one per layer, with ETA).
    public var log: @Sendable (String) -> Void = { _ in }
    public init() {}
}

public enum AffineQuantizeError: I2QError {
    case noCalibration
    case stateMismatch(path: String, differing: [String])
    case stateExists(path: String, layers: Int)
    case stopped(layers: Int, state: String)
    case noDecoder(path: String)
    case groupSize(tensor: String, inDim: Int, groupSize: Int)
    case replacementMismatch(state: String, tensor: String, detail: String)
    case visionNeedsRTN
    case noVision(path: String, modelType: String)
    case gptqBits(bits: Int)

    public var description: String {
        switch self {
        case let .gptqBits(b): return "GPTQ writes 4-bit codes only (asked for \(b) bits); use --rtn or --awq for --bits \(b)"
        case .visionNeedsRTN:
            return "--vision-int4 rounds the vision tower to nearest (RTN); AWQ and GPTQ calibrate the decoder only. Use --rtn --vision-int4, or --awq/--gptq without it"
        case let .noVision(p, t): return "\(p): --vision-int4 needs an Idefics2 model (this is \(t), which has no vision tower)"
        case .noCalibration: return "--awq and --gptq need calibration data: --calibration FILE.txt or a DocVQA-format directory"
        case let .stateMismatch(p, d):
            let what = d.isEmpty ? "" : " (differing: \(d.joined(separator: ", ")))"
            return "\(p) holds the state of a run with other settings or another model\(what); run with the same settings, or --restart to discard it"
        case let .stateExists(p, n):
            return "\(p) holds \(n) finished layer(s) of an earlier \(p.hasSuffix(".gptq-state") ? "GPTQ" : "AWQ") run for this output: --resume to continue it, or --restart to discard it"
        case let .stopped(n, s): return "stopped after \(n) layer(s) as asked; state kept in \(s) (continue with --resume)"
        case let .noDecoder(p): return "\(p): no Llama/Mistral decoder layers found to quantize"
        case let .replacementMismatch(s, t, d):
            return "\(s): \(t): \(d); the state does not belong to this model. Delete it and run again without --resume"
        case let .groupSize(t, n, g):
            let fits = [256, 128, 64, 32, 16].filter { n % $0 == 0 }.map(String.init)
            return "\(t): --group-size \(g) does not divide its input dimension \(n)" +
                (fits.isEmpty ? "; choose a group size that divides \(n), or --skip this tensor" : "; use --group-size \(fits.joined(separator: " or ")), or --skip this tensor")
        }
    }
}

/// `i2q quantize --rtn / --awq`: the decoder's linear layers as `affine_int4` (Formats/i2q-format.md;
/// codec `AffineInt4`, AutoAWQ's pseudo_quantize_tensor with fp16 scales). The vision tower, the
/// connector, embeddings, norms and lm_head stay unquantized (as AutoAWQ and TGI leave them).
///
/// RTN streams tensor by tensor. AWQ runs the calibration batch through the decoder layer by layer
/// (`AWQ.layer`), holding one layer's float32 weights and the batch's activations; each finished
/// layer's quantized tensors and changed norms go to a state directory next to the output
/// (`OUTPUT.awq-state/`), with the full-precision activations entering the next layer, so an
/// interrupted run continues with `--resume` and produces the same bytes. The .i2q file is then
/// written in the source's tensor order from the state and the source, and the state removed.
public enum AffineQuantizePass {
    /// (layer, short name) of a decoder linear weight under `textPrefix` ("model." or "model.text_model.").
    public static func decoderLinear(_ name: String, textPrefix: String) -> (layer: Int, short: String)? {
        let p = textPrefix + "layers."
        guard name.hasPrefix(p), name.hasSuffix("_proj.weight") else { return nil }
        let rest = name.dropFirst(p.count)
        guard let dot = rest.firstIndex(of: "."), let layer = Int(rest[..<dot]) else { return nil }
        let tail = String(rest[rest.index(after: dot)...])
        for s in ["q", "k", "v", "o"] where tail == "self_attn.\(s)_proj.weight" { return (layer, s) }
        for s in ["gate", "up", "down"] where tail == "mlp.\(s)_proj.weight" { return (layer, s) }
        return nil
    }

    public static func textPrefix(_ source: any ModelSource) -> String {
        source.config.architecture.textPrefix
    }

    /// Which tensors are quantized: the decoder's q/k/v/o/gate/up/down weights (and with `vision` the
    /// vision encoder's linears), minus `skip` matches.
    public static func quantizes(_ t: SourceTensor, textPrefix: String, skip: [String], visionLinear: ((String) -> Bool)? = nil) -> Bool {
        quantizes(name: t.name, dtype: t.dtype, shape: t.shape, textPrefix: textPrefix, skip: skip, visionLinear: visionLinear)
    }

    /// `visionLinear`: the architecture's vision-encoder linears when `--vision-int4` asks for them.
    static func quantizes(name: String, dtype: DType, shape: [Int], textPrefix: String, skip: [String],
                          visionLinear: ((String) -> Bool)? = nil) -> Bool {
        guard dtype.isCastableFloat, shape.count == 2,
              decoderLinear(name, textPrefix: textPrefix) != nil || (visionLinear?(name) ?? false) else { return false }
        return !skip.contains(where: { name.contains($0) })
    }

    /// Replacement of a tensor computed by AWQ: plain float32 values, or stored int4 components.
    enum Replacement {
        case plain([Float])
        case int4(packed: [UInt8], scales: [Float16], zeros: [UInt8])
    }

    /// One tensor the pass writes: a plain tensor of the source, or a fused one (`i2q fuse`) with
    /// its parts, and whether it becomes affine_int4.
    struct Input {
        let tensor: SourceTensor
        /// The logical tensors a fused tensor holds (row ranges); empty when unfused.
        let parts: [I2QPart]
        let quantize: Bool
        /// The tensors AWQ and `replacement` know: the parts, or the tensor itself.
        var logicalNames: [String] { parts.isEmpty ? [tensor.name] : parts.map(\.name) }
    }

    /// The group sizes tried when none is given, in order: AutoAWQ's / llm-compressor's 128 first.
    public static let defaultGroupSizes = [128, 64, 32]

    /// The group size used when `--group-size` is not given: the largest of 128, 64, 32 that divides
    /// the input width of every tensor the options quantize (SmolLM2's 576: 64), else 128 (whose
    /// error then names the tensor and the sizes that would divide it).
    public static func defaultGroupSize(source: any ModelSource, options o: AffineQuantizeOptions) throws -> Int {
        let widths = try inputs(source, textPrefix: textPrefix(source), skip: o.skip, vision: o.vision)
            .filter(\.quantize).map { $0.tensor.shape[1] }
        return defaultGroupSizes.first { g in widths.allSatisfy { $0 % g == 0 } } ?? defaultGroupSizes[0]
    }

    /// What the pass reads from `source`. A fused plain tensor (i2q fuse) whose parts are all
    /// quantized (or all kept) stays one tensor with its `parts`: groups are per row, so quantizing
    /// the fused rows gives the parts' codes, scales and zeros concatenated (the bytes quantize →
    /// fuse writes). When only some of its parts are quantized (a `--skip` matching one) it is
    /// written as its parts, unfused.
    static func inputs(_ source: any ModelSource, textPrefix prefix: String, skip: [String], vision: Bool = false) throws -> [Input] {
        let visionLinear = vision ? source.config.architecture.visionLinear : nil
        func partSelected(_ e: I2QTensorEntry, _ p: I2QPart) -> Bool {
            quantizes(name: p.name, dtype: e.dtype, shape: [p.length] + e.shape.dropFirst(), textPrefix: prefix, skip: skip, visionLinear: visionLinear)
        }
        let plain = try FusePass.plainInputs(source) { e in
            let s = Set(e.parts.map { partSelected(e, $0) })
            return s.count <= 1
        }
        return plain.map { t, parts in
            let q = parts.isEmpty ? quantizes(t, textPrefix: prefix, skip: skip, visionLinear: visionLinear)
                : parts.allSatisfy { quantizes(name: $0.name, dtype: t.dtype, shape: [$0.length] + t.shape.dropFirst(), textPrefix: prefix, skip: skip, visionLinear: visionLinear) }
            return Input(tensor: t, parts: parts, quantize: q)
        }
    }

    public static func run(source: any ModelSource, output: String, options: AffineQuantizeOptions,
                           settings: OutputSettings) throws -> PassReport {
        let started = ProgressBar.now()
        var o = options
        if o.groupSize == nil { o.groupSize = try defaultGroupSize(source: source, options: o) }
        let q = source.quantizedTensorNames
        if !q.isEmpty { throw PassError.quantizedInput(path: source.path, tensors: q, verb: "quantize") }
        let pipeline = try PassPipeline(source: source, output: output, settings: settings,
                                        record: PassRecord(name: "quantize", params: record(o)), directory: false)
        let prefix = textPrefix(source)
        if o.vision && o.calibrated { throw AffineQuantizeError.visionNeedsRTN }
        if o.method == .gptq && o.bits != 4 { throw AffineQuantizeError.gptqBits(bits: o.bits) }
        if o.vision && source.config.architecture.visionLinear == nil { throw AffineQuantizeError.noVision(path: source.path, modelType: source.config.modelType) }
        let inputs = try inputs(source, textPrefix: prefix, skip: o.skip, vision: o.vision)
        let selected = inputs.filter(\.quantize)
        guard !selected.isEmpty else { throw AffineQuantizeError.noDecoder(path: source.path) }
        for s in selected {
            let t = s.tensor, name = s.parts.first?.name ?? t.name
            if t.shape[1] % o.groupSize! != 0 {
                throw AffineQuantizeError.groupSize(tensor: name, inDim: t.shape[1], groupSize: o.groupSize!)
            }
            try AffineInt4.check(tensor: name, shape: t.shape, groupSize: o.groupSize!, bits: o.bits)
        }
        let names = Set(selected.flatMap(\.logicalNames))
        // Claim the output (lock, existence, --overwrite rules) before hours of calibration.
        try pipeline.stage()
        var state: AWQState? = nil
        if o.calibrated {
            guard o.calibration != nil else { throw AffineQuantizeError.noCalibration }
            // AWQ works per projection (scale groups q/k/v, gate/up, …; one layer's float32 weights
            // by their transformers names): on a fused file it reads the unfused view (zero-copy
            // part views), the same values and model the unfused source gives, so fuse → awq writes
            // the bytes awq → fuse writes.
            let view: any ModelSource
            if let f = source as? I2QFile, UnfusedSource.hasFused(f) { view = try UnfusedSource(f) } else { view = source }
            let s = try AWQState(output: output, source: view, options: o)
            do { try s.run(source: view, selected: names, options: o) } catch {
                s.removeIfNoLayerFinished()  // nothing worth --resume: leave no OUT.awq-state behind
                throw error
            }
            state = s
        }
        var report = try pipeline.run { temp in
            try write(source: source, output: output, to: temp, pipeline: pipeline, inputs: inputs, options: o,
                      settings: settings, replacement: { name in try state?.replacement(name) })
        }
        if !o.keepState { state?.remove() }
        report.seconds = ProgressBar.now() - started  // the whole run, not only the writing
        return report
    }

    /// The AWQ scales chosen for decoder layer `layer` of a run kept with `keepState`, by group
    /// ("qkv", "vo", "gateup", "updown"): [channels] f32.
    public static func keptScales(output: String, layer: Int) throws -> [String: [Float]] {
        var out = output
        while out.count > 1 && out.hasSuffix("/") { out.removeLast() }
        let f = try SafetensorsFile(path: out + ".awq-state/layer-" + AWQState.pad4(layer) + "/" + SafetensorsCheckpoint.singleName)
        var r: [String: [Float]] = [:]
        for t in f.tensors where t.name.hasPrefix("awq.") && t.name.hasSuffix(".scales") {
            r[String(t.name.dropFirst(4).dropLast(7))] = f.withData(t) { b in (0..<(b.count / 4)).map { b.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
        }
        return r
    }

    /// Where AWQ / GPTQ keep their state for `output` (AWQState: `OUTPUT.awq-state` / `OUTPUT.gptq-state`).
    static func stateDirectory(_ output: String, method: AffineQuantizeOptions.Method = .awq) -> String {
        var out = output
        while out.count > 1 && out.hasSuffix("/") { out.removeLast() }
        return out + (method == .gptq ? ".gptq-state" : ".awq-state")
    }

    /// Rows [first, first + count) of the 2-D float tensor `t` as round-to-nearest affine int4, appended to
    /// `w`'s open qweight component (packed codes) with their scales and zeros stored into `scales` / `zeros`
    /// ([rows, groups] of the whole tensor), streamed in chunks of about `chunkRows` elements:
    /// `AffineInt4.quantizeRows` + `pack` (AutoAWQ's pseudo_quantize_tensor, fp16 scales). Groups are per
    /// row, so rows quantized alone or inside a fused tensor get the same codes.
    static func appendRTNRows(_ t: SourceTensor, first: Int, count: Int, groupSize gs: Int, bits: Int = 4, to w: I2QWriter,
                              scales: inout [Float16], zeros: inout [UInt8], progress: ProgressBar) throws {
        let cols = t.shape.dropFirst().reduce(1, *), groups = cols / gs
        let step = max(1, chunkRows / cols)
        var raw = [UInt8](repeating: 0, count: step * cols * t.dtype.size)  // [step, cols] source dtype
        var f32 = [Float](repeating: 0, count: step * cols)                  // [step, cols]
        var codes = [UInt8](repeating: 0, count: step * cols)                // [step, cols]
        let rowBytes = AffineInt4.packedBytes(count: cols, bits: bits)
        var packed = [UInt8](repeating: 0, count: step * rowBytes)           // [step, cols·bits/8]
        var r = first
        while r < first + count {
            let m = min(step, first + count - r)
            try raw.withUnsafeMutableBytes { rb in
                try t.read(elements: r * cols, count: m * cols, into: rb.baseAddress!)
                f32.withUnsafeMutableBufferPointer { FloatConversion.widenToF32(from: t.dtype, count: m * cols, src: rb.baseAddress!, dst: $0.baseAddress!) }
            }
            f32.withUnsafeBufferPointer { fp in codes.withUnsafeMutableBufferPointer { cp in
            scales.withUnsafeMutableBufferPointer { sp in zeros.withUnsafeMutableBufferPointer { zp in
                AffineInt4.quantizeRows(fp.baseAddress!, rows: m, cols: cols, groupSize: gs, bits: bits, codes: cp.baseAddress!,
                                        scales: sp.baseAddress! + r * groups, zeros: zp.baseAddress! + r * groups)
            } } } }
            codes.withUnsafeBufferPointer { cp in packed.withUnsafeMutableBufferPointer { pp in
                AffineInt4.pack(cp.baseAddress!, count: m * cols, bits: bits, into: pp.baseAddress!)
            } }
            try packed.withUnsafeBytes { try w.append(UnsafeRawBufferPointer(rebasing: $0[0..<(m * rowBytes)])) }
            progress.advance(m * cols * t.dtype.size)
            r += m
        }
    }

    /// Closes the open qweight component of an affine_int4 tensor and writes its scales (f16) and zeros
    /// (u8) components, [rows, groups] each (AffineInt4Layout).
    static func appendScalesAndZeros(_ w: I2QWriter, rows: Int, groups: Int, scales: [Float16], zeros: [UInt8]) throws {
        try w.endComponent()
        try w.beginComponent(role: AffineInt4Layout.Role.scales, dtype: .f16, shape: [rows, groups])
        try scales.withUnsafeBytes { try w.append($0) }
        try w.endComponent()
        try w.beginComponent(role: AffineInt4Layout.Role.zeros, dtype: .u8, shape: [rows, groups])
        try zeros.withUnsafeBytes { try w.append($0) }
        try w.endComponent()
    }

    static let chunkRows = 1 << 20  // elements per quantization step (rounded to whole rows)

    /// Writes the .i2q: selected tensors as affine_int4 (from `replacement` or quantized from the
    /// source), the others plain (replaced values cast to the output dtype, or copied/cast). A fused
    /// input is written as one entry with its parts, part by part (each part's rows from its own
    /// replacement, or quantized / cast as that part alone would be).
    static func write(source: any ModelSource, output: String, to temp: String, pipeline: PassPipeline, inputs: [Input],
                      options o: AffineQuantizeOptions, settings: OutputSettings, replacement: (String) throws -> Replacement?) throws -> PassReport {
        let w = try I2QWriter(path: temp, alignment: settings.alignment)
        let progress = ProgressBar(label: "quantize", totalBytes: source.tensorBytes, enabled: settings.showProgress)
        var results: [TensorCastResult] = []
        var written = 0
        let gs = o.groupSize!
        let copier = CastCopier()  // tensors (and parts) written unquantized
        func mismatch(_ name: String, _ what: String) -> AffineQuantizeError {
            .replacementMismatch(state: stateDirectory(output, method: o.method), tensor: name, detail: what)
        }
        for input in inputs {
            let t = input.tensor
            let n = t.elementCount
            let cols = t.shape.dropFirst().reduce(1, *)
            // (logical name, first row, rows): the parts, or the whole tensor.
            let segments: [(name: String, row: Int, rows: Int)] = input.parts.isEmpty
                ? [(t.name, 0, t.shape.first ?? 1)] : input.parts.map { ($0.name, $0.start, $0.length) }
            if input.quantize {
                let rows = t.shape[0], groups = cols / gs
                let entryDType = o.computeDType ?? t.dtype
                try w.beginTensor(name: t.name, scheme: AffineInt4Layout.scheme(bits: o.bits), dtype: entryDType, shape: t.shape,
                                  params: AffineInt4Layout.params(groupSize: gs),
                                  parts: input.parts)
                var scales = [Float16](repeating: 0, count: rows * groups)  // [rows, groups]
                var zeros = [UInt8](repeating: 0, count: rows * groups)     // [rows, groups]
                let rowBytes = cols * o.bits / 8
                try w.beginComponent(role: AffineInt4Layout.Role.qweight, dtype: .u8, shape: [rows, rowBytes])
                for seg in segments {
                    if case let .int4(packed, s, z)? = try replacement(seg.name) {
                        guard packed.count == seg.rows * rowBytes, s.count == seg.rows * groups, z.count == seg.rows * groups else {
                            throw mismatch(seg.name, "AWQ's result has \(packed.count) code bytes and \(s.count) scales, the tensor needs \(seg.rows * rowBytes) and \(seg.rows * groups)")
                        }
                        try packed.withUnsafeBytes { try w.append($0) }
                        scales.replaceSubrange(seg.row * groups..<(seg.row + seg.rows) * groups, with: s)
                        zeros.replaceSubrange(seg.row * groups..<(seg.row + seg.rows) * groups, with: z)
                        progress.advance(seg.rows * cols * t.dtype.size)
                        continue
                    }
                    try Self.appendRTNRows(t, first: seg.row, count: seg.rows, groupSize: gs, bits: o.bits, to: w,
                                           scales: &scales, zeros: &zeros, progress: progress)
                }
                try Self.appendScalesAndZeros(w, rows: rows, groups: groups, scales: scales, zeros: zeros)
                try w.endTensor()
                written += rows * rowBytes + rows * groups * 3
                results.append(TensorCastResult(name: t.name, from: t.dtype, to: .u8, elements: n, stats: CastStats()))
                continue
            }
            let to = (t.dtype.isCastableFloat ? o.dtype : nil) ?? t.dtype
            try w.beginTensor(name: t.name, dtype: to, shape: t.shape, parts: input.parts)
            try w.beginComponent(role: PlainLayout.dataRole, dtype: to, shape: t.shape)
            var stats = CastStats()
            for seg in segments {
                // Elements [first, first + count) of the tensor: this part, cast as the part alone is
                // (`first`/`total` of the conversion relative to the part).
                let first = seg.row * cols, count = t.shape.isEmpty ? n : seg.rows * cols
                if case let .plain(values)? = try replacement(seg.name) {
                    guard values.count == count else { throw mismatch(seg.name, "AWQ's result has \(values.count) values, the tensor \(count)") }
                    var out = [UInt8](repeating: 0, count: count * to.size)  // [count] output dtype
                    try values.withUnsafeBytes { vb in
                        try out.withUnsafeMutableBytes { ob in
                            stats += try FloatConversion.convert(from: .f32, to: to, count: count, src: vb.baseAddress!, dst: ob.baseAddress!, first: 0, total: count)
                        }
                    }
                    try out.withUnsafeBytes { try w.append($0) }
                    progress.advance(count * t.dtype.size)
                    continue
                }
                stats += try copier.copy(t, first: first, count: count, to: to, append: { try w.append($0) },
                                         advance: { progress.advance($0) })
            }
            try w.endComponent()
            try w.endTensor()
            written += n * to.size
            results.append(TensorCastResult(name: t.name, from: t.dtype, to: to, elements: n, stats: stats))
        }
        return try pipeline.finishI2Q(w, progress: progress, tensors: results, bytesWritten: written)
    }

    /// The provenance record (also the fingerprint of a resumable AWQ state).
    static func record(_ o: AffineQuantizeOptions) -> [(String, JSONValue)] {
        var p: [(String, JSONValue)] = [
            ("type", .string(AffineInt4Layout.scheme(bits: o.bits))), ("method", .string(o.method.rawValue)), ("group_size", .int(o.groupSize!)),
            ("compute_dtype", o.computeDType.map { .string($0.rawValue) } ?? .null),
            ("skip", .array(o.skip.map { .string($0) })),
            ("dtype", o.dtype.map { .string($0.rawValue) } ?? .null),
        ]
        if o.vision { p.append(("vision_int4", .bool(true))) }  // only when set: older records keep their bytes
        if o.method == .awq, let c = o.calibration {
            p += [("calibration", .string(FileSystem.basename(c.path))), ("samples", .int(c.samples)), ("seq_len", .int(c.seqLen)),
                  ("seed", .int(Int(truncatingIfNeeded: c.seed))), ("n_grid", .int(o.awq.nGrid)), ("duo_scaling", .bool(o.awq.duoScaling)),
                  ("clip", .bool(o.awq.clip)), ("search_tokens", .int(o.awq.searchTokens))]
            if let split = c.imageSplitting { p.append(("image_splitting", .bool(split))) }
        }
        if o.method == .gptq, let c = o.calibration {
            p += [("calibration", .string(FileSystem.basename(c.path))), ("samples", .int(c.samples)), ("seq_len", .int(c.seqLen)),
                  ("seed", .int(Int(truncatingIfNeeded: c.seed))), ("damp", .number(String(o.gptq.damp))), ("act_order", .bool(o.gptq.actOrder)),
                  ("static_groups", .bool(o.gptq.actOrder)), ("block_size", .int(o.gptq.blockSize))]
            if let split = c.imageSplitting { p.append(("image_splitting", .bool(split))) }
        }
        return p
    }
}
