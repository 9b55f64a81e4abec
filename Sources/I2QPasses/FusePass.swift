import I2QCore
import I2QFormats

/// Which projection groups `i2q fuse` fuses.
public enum FuseSelection: String, CaseIterable, Sendable {
    /// Everything below.
    case all
    /// Attention: q,k,v → `qkv_proj` (text decoder, vision tower, with biases); the perceiver's k,v →
    /// `kv_proj` (its q reads the latents only, k/v read [context; latents]: they cannot share a product).
    case qkv
    /// gate,up → `gate_up_proj` (decoder MLP, perceiver MLP, modality projection).
    case mlp
}

public struct FuseOptions: Sendable {
    public var only: FuseSelection = .all
    public init() {}
}

/// One fusion the pass found: the fused tensor and the tensors it holds, in row order.
public struct FuseGroup: Sendable, Equatable {
    public let fused: String
    public let parts: [String]
}

public struct FuseReport: Sendable {
    public let pass: PassReport
    /// Fused tensors written (weights and biases).
    public let fused: [FuseGroup]
    /// Groups left unfused, with the reason (e.g. 4-bit blocks that would straddle two parts).
    public let leftUnfused: [(group: FuseGroup, reason: String)]
}

public enum FuseError: I2QError {
    case malformedPart(path: String, tensor: String, detail: String)

    public var description: String {
        switch self {
        case let .malformedPart(p, t, d): return "\(p): tensor \"\(t)\": \(d). Re-create the model with `i2q quantize` / `i2q cast`, then fuse."
        }
    }
}

/// `i2q fuse MODEL -o OUT.i2q [--only qkv|mlp]`: stores projections that read the same input as
/// ONE tensor (rows of q then k then v; gate then up), so a runtime loads and multiplies one matrix
/// instead of three (Formats/i2q-format.md, "Fused tensors"). The fused entry's `parts` record which
/// logical tensor each row range holds; nothing is re-quantized or rounded: the fused tensor's
/// values (dequantized, for 4-bit schemes) equal the unfused ones bit for bit.
///
/// Per scheme: plain (f32/f16/bf16) — rows concatenate. nf4/fp4 — the parts' packed codes and
/// absmax concatenate exactly when every part's element count is a multiple of the block size
/// (blocks never straddle two parts; true when `in % 64 == 0`); with double quantization each part
/// keeps its own nested absmax and offset (bitsandbytes' offset is the mean of the tensor's absmax
/// and nested blocks of 256 do not line up across parts), so a fused entry holds them per part.
/// Groups whose parts are not block-aligned are left unfused and reported. affine_int4 — groups
/// are per row, so qweight, scales and zeros concatenate by rows.
///
/// Streams tensor by tensor; the output is written at a temporary name and renamed when complete.
public enum FusePass {
    static let chunkBytes = 16 << 20

    /// What the source holds for one tensor: its directory entry (synthesised for HF sources) and,
    /// for plain tensors, the readable data.
    struct Item {
        let entry: I2QTensorEntry
        let tensor: SourceTensor?
    }

    public static func run(source: any ModelSource, output: String, options: FuseOptions, settings: OutputSettings) throws -> FuseReport {
        let items = try inventory(source)
        let byName = Dictionary(items.map { ($0.entry.name, $0) }, uniquingKeysWith: { a, _ in a })
        let order = Dictionary(items.enumerated().map { ($1.entry.name, $0) }, uniquingKeysWith: { a, _ in a })
        // Plan: candidate groups, then eligibility.
        var fusedAt: [String: FuseGroup] = [:]  // first part (in source order) → group
        var skip = Set<String>()
        var fused: [FuseGroup] = []
        var left: [(FuseGroup, String)] = []
        for g in candidateGroups(items.map(\.entry.name), only: options.only) {
            let entries = g.parts.compactMap { byName[$0]?.entry }
            guard entries.count == g.parts.count else { continue }
            if let why = ineligible(entries) { left.append((g, why)); continue }
            let first = g.parts.min { order[$0]! < order[$1]! }!
            fusedAt[first] = g
            skip.formUnion(g.parts)
            fused.append(g)
        }

        let pipeline = try PassPipeline(source: source, output: output, settings: settings, record: PassRecord(name: "fuse", params: [
            ("only", .string(options.only.rawValue)), ("fused", .int(fused.count)), ("left_unfused", .int(left.count)),
        ]), directory: false)
        let (results, written, totalBytes, seconds) = try pipeline.run { temp in
        let w = try I2QWriter(path: temp, alignment: settings.alignment)
        let totalBytes = items.reduce(0) { $0 + ($1.tensor?.byteCount ?? $1.entry.components.reduce(0) { $0 + $1.size }) }
        let progress = ProgressBar(label: "fuse", totalBytes: totalBytes, enabled: settings.showProgress)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunkBytes, alignment: 64)  // [16 MiB] bytes in flight
        defer { buffer.deallocate() }
        var written = 0
        var results: [TensorCastResult] = []
        for it in items {
            let e = it.entry
            if let g = fusedAt[e.name] {
                let parts = g.parts.map { byName[$0]! }
                written += try writeFused(g, parts, source: source, writer: w, buffer: buffer, progress: progress)
                results.append(TensorCastResult(name: g.fused, from: e.dtype, to: e.dtype,
                                                elements: parts.reduce(0) { $0 + $1.entry.shape.reduce(1, *) }, stats: CastStats()))
                continue
            }
            if skip.contains(e.name) { continue }
            try w.beginTensor(name: e.name, scheme: e.scheme, dtype: e.dtype, shape: e.shape, params: e.params, parts: e.parts)
            written += try copyComponents([it], source: source, writer: w, buffer: buffer, progress: progress)
            try w.endTensor()
            results.append(TensorCastResult(name: e.name, from: e.dtype, to: e.dtype, elements: e.shape.reduce(1, *), stats: CastStats()))
        }
        let cfg: [UInt8]
        if let f = source as? I2QFile, let bytes = f.metadata.file("config.json") {
            cfg = bytes  // verbatim: fusion changes no config (transformers' names come back on export)
        } else if let d = source as? ModelDirectory {
            cfg = try FileSystem.readFile(d.path + "/config.json")  // verbatim, as above
        } else {
            cfg = Array((JSONWriter.string(source.rawConfig, indent: 2) + "\n").utf8)
        }
        try w.finish(metadata: try pipeline.i2qMetadata(config: cfg))
        progress.finish()
        return (results, written, totalBytes, progress.elapsed)
        }
        let report = PassReport(output: output, files: [FileSystem.basename(output)], tensors: results,
                                bytesRead: totalBytes, bytesWritten: written, seconds: seconds)
        return FuseReport(pass: report, fused: fused, leftUnfused: left)
    }

    /// Every tensor of the source in storage order: .i2q entries as they are (plain or quantized),
    /// HF/GGUF tensors as plain entries.
    static func inventory(_ source: any ModelSource) throws -> [Item] {
        if let f = source as? I2QFile {
            var plain: [String: SourceTensor] = [:]
            for t in f.tensors { plain[t.name] = t }
            return f.entries.map { Item(entry: $0, tensor: $0.scheme == I2QSpec.Scheme.plain ? plain[$0.name] : nil) }
        }
        let q = source.quantizedTensorNames
        if !q.isEmpty { throw PassError.quantizedInput(path: source.path, tensors: q, verb: "fuse") }
        return source.tensors.map { t in
            Item(entry: I2QTensorEntry(name: t.name, dtype: t.dtype, shape: t.shape,
                                       components: [I2QComponent(role: PlainLayout.dataRole, dtype: t.dtype, shape: t.shape, size: t.byteCount)]),
                 tensor: t)
        }
    }

    /// Groups of tensors (present or not) that read the same input, by name: q/k/v (k/v in the
    /// perceiver) and gate/up, weights and biases, in the order of `names`.
    public static func candidateGroups(_ names: [String], only: FuseSelection) -> [FuseGroup] {
        var out: [FuseGroup] = []
        func add(_ parts: [String]) {
            if let f = FusedTensors.fusedName(of: parts) { out.append(FuseGroup(fused: f, parts: parts)) }
        }
        for n in names {
            for suffix in [".weight", ".bias"] {
                if only != .mlp, n.hasSuffix("q_proj" + suffix), n.hasSuffix("self_attn.q_proj" + suffix) {
                    let p = String(n.dropLast(("q_proj" + suffix).count))
                    if p.contains("perceiver_resampler") {
                        add([p + "k_proj" + suffix, p + "v_proj" + suffix])
                    } else {
                        add([p + "q_proj" + suffix, p + "k_proj" + suffix, p + "v_proj" + suffix])
                    }
                }
                if only != .qkv, n.hasSuffix("gate_proj" + suffix) {
                    let p = String(n.dropLast(("gate_proj" + suffix).count))
                    add([p + "gate_proj" + suffix, p + "up_proj" + suffix])
                }
            }
        }
        return out
    }

    /// Why these entries cannot be fused exactly (nil: they can).
    static func ineligible(_ es: [I2QTensorEntry]) -> String? {
        let a = es[0]
        if let e = es.first(where: { !$0.parts.isEmpty }) { return "\(e.name) is already fused" }
        if let e = es.first(where: { $0.scheme != a.scheme }) { return "\(e.name) is \(e.scheme), \(a.name) is \(a.scheme)" }
        if let e = es.first(where: { $0.dtype != a.dtype }) { return "\(e.name) is \(e.dtype.rawValue), \(a.name) is \(a.dtype.rawValue)" }
        guard !a.shape.isEmpty, es.allSatisfy({ $0.shape.count == a.shape.count && $0.shape.dropFirst() == a.shape.dropFirst() }) else {
            return "shapes \(es.map(\.shape)) differ beyond the first dimension"
        }
        guard let layout = SchemeLayouts.type(of: a.scheme) else { return "scheme \(a.scheme) is not fused by this version" }
        return layout.fuseConflict(es)
    }

    /// Writes the fused entry of `g`; returns bytes written.
    static func writeFused(_ g: FuseGroup, _ parts: [Item], source: any ModelSource, writer w: I2QWriter,
                           buffer: UnsafeMutableRawPointer, progress: ProgressBar) throws -> Int {
        let a = parts[0].entry
        var rows = 0
        var fparts: [I2QPart] = []
        for p in parts {
            fparts.append(I2QPart(name: p.entry.name, start: rows, length: p.entry.shape[0]))
            rows += p.entry.shape[0]
        }
        let params: [(String, I2QParam)]
        do {
            params = try SchemeLayouts.type(of: a.scheme)?.fusedParams(parts.map(\.entry)) ?? a.params
        } catch let x as SchemeLayoutError {
            throw FuseError.malformedPart(path: source.path, tensor: g.fused, detail: x.detail)
        }
        try w.beginTensor(name: g.fused, scheme: a.scheme, dtype: a.dtype, shape: [rows] + a.shape.dropFirst(), params: params, parts: fparts)
        let n = try copyComponents(parts, source: source, writer: w, buffer: buffer, progress: progress)
        try w.endTensor()
        return n
    }

    /// Writes each component role of `parts[0]` with the parts' bytes one after another (shape:
    /// first dimensions summed), except `nested_code` (shared: written once). For a single item this
    /// copies its components unchanged.
    static func copyComponents(_ parts: [Item], source: any ModelSource, writer w: I2QWriter,
                               buffer: UnsafeMutableRawPointer, progress: ProgressBar) throws -> Int {
        let f = source as? I2QFile
        var written = 0
        for (ci, c0) in parts[0].entry.components.enumerated() {
            let shared = SchemeLayouts.type(of: parts[0].entry.scheme)?.sharedRoles.contains(c0.role) ?? false
            let members = shared ? [parts[0]] : parts
            var shape = c0.shape
            if !shape.isEmpty { shape[0] = members.reduce(0) { $0 + $1.entry.components[ci].shape[0] } }
            try w.beginComponent(role: c0.role, dtype: c0.dtype, shape: shape)
            for p in members {
                let c = p.entry.components[ci]
                if let t = p.tensor {
                    // Plain data: streamed through the buffer.
                    let per = max(1, chunkBytes / max(1, t.dtype.size))
                    var k = 0
                    while k < t.elementCount {
                        let m = min(per, t.elementCount - k)
                        try t.read(elements: k, count: m, into: buffer)
                        try w.append(UnsafeRawBufferPointer(start: buffer, count: m * t.dtype.size))
                        progress.advance(m * t.dtype.size)
                        k += m
                    }
                    written += t.byteCount
                } else if let f {
                    // A quantized component: checked against its checksum, then copied byte for byte.
                    try f.ensureVerified(p.entry)  // all its components, once
                    try f.file.withBytes(f.header.dataOffset + c.offset, c.size) { try w.append($0) }
                    f.file.release(f.header.dataOffset + c.offset, c.size)
                    progress.advance(c.size)
                    written += c.size
                } else {
                    throw FuseError.malformedPart(path: source.path, tensor: p.entry.name, detail: "unreadable tensor")
                }
            }
            try w.endComponent()
        }
        return written
    }

    // MARK: - Other passes on fused inputs

    /// The plain tensors a rewriting pass (quantize) reads from `source`, with the fusion each keeps:
    /// a fused plain tensor stays one tensor (its `parts` returned) when `keepFused(entry)` says so,
    /// else it is replaced by its parts (zero-copy row views). Unfused sources: `source.tensors`.
    public static func plainInputs(_ source: any ModelSource, keepFused: (I2QTensorEntry) -> Bool) throws -> [(tensor: SourceTensor, parts: [I2QPart])] {
        guard let f = source as? I2QFile, UnfusedSource.hasFused(f) else { return source.tensors.map { ($0, []) } }
        let parts = try UnfusedSource(f).tensors
        var byName: [String: SourceTensor] = [:]
        for t in parts { byName[t.name] = t }
        var out: [(tensor: SourceTensor, parts: [I2QPart])] = []
        for t in f.tensors {
            guard let e = f.entries.first(where: { $0.name == t.name }), !e.parts.isEmpty else { out.append((t, [])); continue }
            if keepFused(e) {
                out.append((t, e.parts))
            } else {
                for p in e.parts { if let pt = byName[p.name] { out.append((pt, [])) } }
            }
        }
        return out
    }
}
