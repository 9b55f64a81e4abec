import Foundation
import I2QCore
import I2QFormats
import I2QQuant
import I2QRuntime

public struct AffineQuantizeOptions: Sendable {
    public enum Method: String, Sendable { case rtn, awq }
    public var method: Method = .rtn
    public var groupSize = 128
    /// Dtype affine_int4 entries dequantize to (nil: the source tensor's float dtype).
    public var computeDType: DType?
    /// Substrings of tensor names to keep unquantized (in addition to the defaults).
    public var skip: [String] = []
    /// Cast for the tensors kept unquantized (nil: keep their dtype).
    public var dtype: DType?
    /// AWQ only.
    public var calibration: CalibrationOptions?
    public var awq = AWQSettings()
    /// AWQ only: continue a previous run's state (next to the output) from its last finished layer.
    public var resume = false
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
    case stateMismatch(path: String)
    case stopped(layers: Int, state: String)
    case noDecoder(path: String)
    case groupSize(tensor: String, inDim: Int, groupSize: Int)

    public var description: String {
        switch self {
        case .noCalibration: return "--awq needs calibration data: --calibration FILE.txt or a DocVQA-format directory"
        case let .stateMismatch(p):
            return "\(p) holds the state of a run with other settings or another model; delete it or run without --resume"
        case let .stopped(n, s): return "stopped after \(n) layer(s) as asked; state kept in \(s) (continue with --resume)"
        case let .noDecoder(p): return "\(p): no Llama/Mistral decoder layers found to quantize"
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
        source.config.modelType == "idefics2" ? "model.text_model." : "model."
    }

    /// Which tensors are quantized: the decoder's q/k/v/o/gate/up/down weights, minus `skip` matches.
    public static func quantizes(_ t: SourceTensor, textPrefix: String, skip: [String]) -> Bool {
        guard t.dtype.isCastableFloat, t.shape.count == 2, decoderLinear(t.name, textPrefix: textPrefix) != nil else { return false }
        return !skip.contains(where: { t.name.contains($0) })
    }

    /// Replacement of a tensor computed by AWQ: plain float32 values, or stored int4 components.
    enum Replacement {
        case plain([Float])
        case int4(packed: [UInt8], scales: [Float16], zeros: [UInt8])
    }

    public static func run(source: any ModelSource, output: String, options o: AffineQuantizeOptions,
                           settings: OutputSettings) throws -> PassReport {
        let q = source.quantizedTensorNames
        if !q.isEmpty { throw PassError.quantizedInput(path: source.path, tensors: q, verb: "quantize") }
        if FileSystem.exists(output) && !settings.overwrite { throw IOError.exists(path: output) }
        let prefix = textPrefix(source)
        let selected = source.tensors.filter { quantizes($0, textPrefix: prefix, skip: o.skip) }
        guard !selected.isEmpty else { throw AffineQuantizeError.noDecoder(path: source.path) }
        for t in selected {
            if t.shape[1] % o.groupSize != 0 {
                throw AffineQuantizeError.groupSize(tensor: t.name, inDim: t.shape[1], groupSize: o.groupSize)
            }
            try AffineInt4.check(tensor: t.name, shape: t.shape, groupSize: o.groupSize)
        }
        var state: AWQState? = nil
        if o.method == .awq {
            guard o.calibration != nil else { throw AffineQuantizeError.noCalibration }
            let s = try AWQState(output: output, source: source, options: o)
            try s.run(source: source, selected: Set(selected.map(\.name)), options: o)
            state = s
        }
        let report = try write(source: source, output: output, selected: Set(selected.map(\.name)), options: o,
                               settings: settings, replacement: { name in try state?.replacement(name) })
        if !o.keepState { state?.remove() }
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

    static let chunkRows = 1 << 20  // elements per quantization step (rounded to whole rows)

    /// Writes the .i2q: selected tensors as affine_int4 (from `replacement` or quantized from the
    /// source), the others plain (replaced values cast to the output dtype, or copied/cast).
    static func write(source: any ModelSource, output: String, selected: Set<String>, options o: AffineQuantizeOptions,
                      settings: OutputSettings, replacement: (String) throws -> Replacement?) throws -> PassReport {
        let staged = try StagedOutput(finalPath: output, directory: false, overwrite: settings.overwrite)
        let w = try I2QWriter(path: staged.tempPath, alignment: settings.alignment)
        let progress = ProgressBar(label: "quantize", totalBytes: source.tensorBytes, enabled: settings.showProgress)
        var results: [TensorCastResult] = []
        var written = 0
        let gs = o.groupSize
        for t in source.tensors {
            let n = t.elementCount
            if selected.contains(t.name) {
                let rows = t.shape[0], cols = t.shape[1], groups = cols / gs
                let entryDType = o.computeDType ?? t.dtype
                try w.beginTensor(name: t.name, scheme: I2QSpec.Scheme.affineInt4, dtype: entryDType, shape: t.shape,
                                  params: [("group_size", .int(Int64(gs))), ("pack_order", .string("sequential")), ("zero_point", .int(1))])
                var scales = [Float16](repeating: 0, count: rows * groups)  // [rows, groups]
                var zeros = [UInt8](repeating: 0, count: rows * groups)     // [rows, groups]
                try w.beginComponent(role: "qweight", dtype: .u8, shape: [rows, cols / 2])
                if case let .int4(packed, s, z)? = try replacement(t.name) {
                    try packed.withUnsafeBytes { try w.append($0) }
                    scales = s; zeros = z
                } else {
                    let step = max(1, chunkRows / cols)
                    var raw = [UInt8](repeating: 0, count: step * cols * t.dtype.size)  // [step, cols] source dtype
                    var f32 = [Float](repeating: 0, count: step * cols)                  // [step, cols]
                    var codes = [UInt8](repeating: 0, count: step * cols)                // [step, cols]
                    var packed = [UInt8](repeating: 0, count: step * cols / 2)           // [step, cols/2]
                    var r = 0
                    while r < rows {
                        let m = min(step, rows - r)
                        try raw.withUnsafeMutableBytes { rb in
                            try t.read(elements: r * cols, count: m * cols, into: rb.baseAddress!)
                            f32.withUnsafeMutableBufferPointer { FloatConversion.widenToF32(from: t.dtype, count: m * cols, src: rb.baseAddress!, dst: $0.baseAddress!) }
                        }
                        f32.withUnsafeBufferPointer { fp in codes.withUnsafeMutableBufferPointer { cp in
                        scales.withUnsafeMutableBufferPointer { sp in zeros.withUnsafeMutableBufferPointer { zp in
                            AffineInt4.quantizeRows(fp.baseAddress!, rows: m, cols: cols, groupSize: gs, codes: cp.baseAddress!,
                                                    scales: sp.baseAddress! + r * groups, zeros: zp.baseAddress! + r * groups)
                        } } } }
                        codes.withUnsafeBufferPointer { cp in packed.withUnsafeMutableBufferPointer { pp in
                            AffineInt4.pack(cp.baseAddress!, count: m * cols, into: pp.baseAddress!)
                        } }
                        try packed.withUnsafeBytes { try w.append(UnsafeRawBufferPointer(rebasing: $0[0..<(m * cols / 2)])) }
                        progress.advance(m * cols * t.dtype.size)
                        r += m
                    }
                }
                try w.endComponent()
                try w.beginComponent(role: "scales", dtype: .f16, shape: [rows, groups])
                try scales.withUnsafeBytes { try w.append($0) }
                try w.endComponent()
                try w.beginComponent(role: "zeros", dtype: .u8, shape: [rows, groups])
                try zeros.withUnsafeBytes { try w.append($0) }
                try w.endComponent()
                try w.endTensor()
                written += rows * cols / 2 + rows * groups * 3
                results.append(TensorCastResult(name: t.name, from: t.dtype, to: .u8, elements: n, stats: CastStats()))
                continue
            }
            let to = (t.dtype.isCastableFloat ? o.dtype : nil) ?? t.dtype
            try w.beginTensor(name: t.name, dtype: to, shape: t.shape)
            try w.beginComponent(role: "data", dtype: to, shape: t.shape)
            var stats = CastStats()
            if case let .plain(values)? = try replacement(t.name) {
                var out = [UInt8](repeating: 0, count: n * to.size)  // [n] output dtype
                try values.withUnsafeBytes { vb in
                    try out.withUnsafeMutableBytes { ob in
                        stats += try FloatConversion.convert(from: .f32, to: to, count: n, src: vb.baseAddress!, dst: ob.baseAddress!, first: 0, total: n)
                    }
                }
                try out.withUnsafeBytes { try w.append($0) }
                progress.advance(n * t.dtype.size)
            } else {
                let chunk = 1 << 20
                var raw = [UInt8](repeating: 0, count: chunk * 8)  // [chunk] source dtype
                var out = [UInt8](repeating: 0, count: chunk * 8)  // [chunk] output dtype
                var i = 0
                while i < n {
                    let m = min(chunk, n - i)
                    try raw.withUnsafeMutableBytes { rb in
                        try t.read(elements: i, count: m, into: rb.baseAddress!)
                        if to == t.dtype {
                            try w.append(UnsafeRawBufferPointer(start: rb.baseAddress!, count: m * to.size))
                        } else {
                            try out.withUnsafeMutableBytes { ob in
                                stats += try FloatConversion.convert(from: t.dtype, to: to, count: m, src: rb.baseAddress!, dst: ob.baseAddress!, first: i, total: n)
                                try w.append(UnsafeRawBufferPointer(start: ob.baseAddress!, count: m * to.size))
                            }
                        }
                    }
                    progress.advance(m * t.dtype.size)
                    i += m
                }
            }
            try w.endComponent()
            try w.endTensor()
            written += n * to.size
            results.append(TensorCastResult(name: t.name, from: t.dtype, to: to, elements: n, stats: stats))
        }
        var prov = source.provenance ?? Provenance(source: source.identity, passes: [])
        prov.passes.append(PassRecord(name: "quantize", params: record(o)))
        prov.i2qVersion = I2QVersion.string
        let cfg = Array((JSONWriter.string(source.rawConfig, indent: 2) + "\n").utf8)
        try w.finish(metadata: I2QMetadata(files: [("config.json", cfg)] + (try source.auxiliaryFiles()), provenance: prov))
        try settings.beforeCommit?(staged.tempPath)
        try staged.commit()
        progress.finish()
        return PassReport(output: output, files: [FileSystem.basename(output)], tensors: results,
                          bytesRead: source.tensorBytes, bytesWritten: written, seconds: progress.elapsed)
    }

    /// The provenance record (also the fingerprint of a resumable AWQ state).
    static func record(_ o: AffineQuantizeOptions) -> [(String, JSONValue)] {
        var p: [(String, JSONValue)] = [
            ("type", .string("affine_int4")), ("method", .string(o.method.rawValue)), ("group_size", .int(o.groupSize)),
            ("compute_dtype", o.computeDType.map { .string($0.rawValue) } ?? .null),
            ("skip", .array(o.skip.map { .string($0) })),
            ("dtype", o.dtype.map { .string($0.rawValue) } ?? .null),
        ]
        if o.method == .awq, let c = o.calibration {
            p += [("calibration", .string(FileSystem.basename(c.path))), ("samples", .int(c.samples)), ("seq_len", .int(c.seqLen)),
                  ("seed", .int(Int(truncatingIfNeeded: c.seed))), ("n_grid", .int(o.awq.nGrid)), ("duo_scaling", .bool(o.awq.duoScaling)),
                  ("clip", .bool(o.awq.clip))]
        }
        return p
    }
}
