import CBLAS
import Foundation
import I2QCore
import I2QFormats

/// Fused tensors (Formats/i2q-format.md, "Fused tensors"): one directory entry holding several
/// logical tensors that read the same input (q/k/v → `qkv_proj`, k/v → `kv_proj`, gate/up →
/// `gate_up_proj`), their rows stacked in part order. Written by `i2q fuse` (I2QPasses/FusePass).
///
/// This file holds the layout arithmetic every reader shares — where part p's bytes lie inside each
/// component of a fused entry, per scheme — and the runtime's use of fused weights: one product for
/// the whole group, outputs split afterwards.
public enum FusedTensors {
    /// The fused name of `parts` when they form a known group (same module prefix), else nil.
    /// q,k,v → qkv_proj; k,v → kv_proj; gate,up → gate_up_proj (suffix `.weight` or `.bias`).
    public static func fusedName(of parts: [String]) -> String? {
        let kinds: [([String], String)] = [(["q_proj", "k_proj", "v_proj"], "qkv_proj"), (["k_proj", "v_proj"], "kv_proj"),
                                           (["gate_proj", "up_proj"], "gate_up_proj")]
        for suffix in [".weight", ".bias"] {
            for (names, fused) in kinds where parts.count == names.count {
                let tail = names[0] + suffix
                guard parts[0].hasSuffix(tail) else { continue }
                let prefix = String(parts[0].dropLast(tail.count))
                if parts == names.map({ prefix + $0 + suffix }) { return prefix + fused + suffix }
            }
        }
        return nil
    }

    /// The logical tensors a fused entry holds, as entries of their own (name, shape, scheme,
    /// params) whose components are the byte ranges of the fused entry's components that hold that
    /// part. Their offsets (relative to the data section) are NOT aligned and their checksums are 0:
    /// they are views — verify the fused entry's components instead.
    ///
    /// Per scheme (`cols` = product of shape[1...], part p = rows [s, s+len)):
    /// - plain: bytes [s·cols·size, +len·cols·size) of `data`.
    /// - nf4/fp4: each part is quantized as its own tensor; len·cols MUST be a multiple of
    ///   `blocksize`, so its codes and blocks are whole: `packed` bytes [s·cols/2, +len·cols/2),
    ///   `absmax` blocks [s·cols/bs, +len·cols/bs). With double quantization `nested_absmax` holds
    ///   the parts' nested absmax arrays one after another (part p: ceil(blocks_p/nested_blocksize)
    ///   values), `nested_code` is shared, and part p's offset is param `nested_offset.<p>`.
    /// - affine_int4: rows [s, s+len) of `qweight`, `scales` and `zeros` (per-row groups).
    public static func partEntries(_ e: I2QTensorEntry, path: String) throws -> [I2QTensorEntry] {
        func bad(_ d: String) -> FusedTensorError { .malformed(path: path, tensor: e.name, detail: d) }
        guard !e.parts.isEmpty else { throw bad("it has no parts") }
        guard let rows = e.shape.first else { throw bad("a scalar cannot be fused") }
        let cols = e.shape.dropFirst().reduce(1, *)
        var next = 0
        for p in e.parts {
            guard p.start == next, p.length > 0 else { throw bad("part \(p.name) rows [\(p.start), +\(p.length)) do not follow the previous part (row \(next))") }
            next += p.length
        }
        guard next == rows else { throw bad("its parts cover \(next) of its \(rows) rows") }
        func param(_ k: String) -> I2QParam? { e.params.first { $0.0 == k }?.1 }
        func int(_ k: String, _ d: Int) throws -> Int {
            guard let v = param(k) else { return d }
            guard case let .int(i) = v else { throw bad("param \(k) is not an integer") }
            return Int(i)
        }
        func comp(_ role: String) throws -> I2QComponent {
            guard let c = e.component(role) else { throw bad("component \"\(role)\" is missing") }
            return c
        }
        func slice(_ c: I2QComponent, _ byteStart: Int, _ bytes: Int, _ shape: [Int]) throws -> I2QComponent {
            guard byteStart >= 0, bytes >= 0, byteStart + bytes <= c.size else {
                throw bad("component \"\(c.role)\" (\(c.size) bytes) is too small for its parts")
            }
            return I2QComponent(role: c.role, dtype: c.dtype, shape: shape, offset: c.offset + byteStart, size: bytes, checksum: 0)
        }
        func entry(_ p: I2QPart, _ params: [(String, I2QParam)], _ comps: [I2QComponent]) -> I2QTensorEntry {
            I2QTensorEntry(name: p.name, scheme: e.scheme, dtype: e.dtype, shape: [p.length] + e.shape.dropFirst(),
                           params: params, parts: [], components: comps)
        }
        switch e.scheme {
        case I2QSpec.Scheme.plain:
            let data = try comp("data")
            let rowBytes = cols * e.dtype.size
            return try e.parts.map { p in
                entry(p, [], [try slice(data, p.start * rowBytes, p.length * rowBytes, [p.length] + e.shape.dropFirst())])
            }
        case I2QSpec.Scheme.nf4, I2QSpec.Scheme.fp4:
            let bs = try int("blocksize", 64)
            guard bs > 0, bs % 2 == 0 else { throw bad("blocksize \(bs) must be a positive even number") }
            let packed = try comp("packed"), absmax = try comp("absmax")
            let dq = absmax.dtype == .u8
            let nbs = try int("nested_blocksize", 256)
            guard nbs > 0 else { throw bad("nested_blocksize \(nbs) must be positive") }
            let nested = dq ? try comp("nested_absmax") : nil
            let code = dq ? try comp("nested_code") : nil
            let common = e.params.filter { !$0.0.hasPrefix("nested_offset") }
            var nestedBase = 0
            var out: [I2QTensorEntry] = []
            for (i, p) in e.parts.enumerated() {
                let n = p.length * cols, first = p.start * cols
                guard n % bs == 0 else {
                    throw bad("part \(p.name) holds \(n) values, not a multiple of the block size \(bs); its blocks would straddle parts")
                }
                let blocks = n / bs
                var comps = [try slice(packed, first / 2, n / 2, [n / 2]),
                             try slice(absmax, first / bs * (dq ? 1 : 4), blocks * (dq ? 1 : 4), [blocks])]
                var params = common
                if let nested, let code {
                    let count = (blocks + nbs - 1) / nbs
                    comps.append(try slice(nested, nestedBase * 4, count * 4, [count]))
                    comps.append(code)
                    nestedBase += count
                    guard case let .float(o)? = param("nested_offset.\(i)") else {
                        throw bad("double quantization without a float param nested_offset.\(i) for part \(p.name)")
                    }
                    params.append(("nested_offset", .float(o)))
                }
                out.append(entry(p, params, comps))
            }
            if let nested, nested.size != nestedBase * 4 {
                throw bad("nested_absmax holds \(nested.size / 4) values, its parts need \(nestedBase)")
            }
            return out
        case I2QSpec.Scheme.affineInt4:
            guard e.shape.count == 2 else { throw bad("affine_int4 needs a 2-D shape, got \(e.shape)") }
            let q = try comp("qweight"), s = try comp("scales"), z = e.component("zeros")
            guard q.shape.count == 2, q.shape[0] == rows, s.shape.count == 2, s.shape[0] == rows else {
                throw bad("qweight/scales are not [\(rows), …]")
            }
            return try e.parts.map { p in
                func rowsOf(_ c: I2QComponent) throws -> I2QComponent {
                    let rb = c.shape[1] * c.dtype.size
                    return try slice(c, p.start * rb, p.length * rb, [p.length, c.shape[1]])
                }
                return entry(p, e.params, try [rowsOf(q), rowsOf(s)] + (z.map { [try rowsOf($0)] } ?? []))
            }
        default:
            throw bad("scheme \(e.scheme) cannot be split into parts by this version")
        }
    }

    /// A plain part as a zero-copy tensor view of the mapped file.
    /// Its checksum is the fused entry's (`owner`), verified on first use.
    static func plainView(_ e: I2QComponent, _ part: I2QTensorEntry, owner: I2QTensorEntry, file f: I2QFile) -> SourceTensor {
        SourceTensor(name: part.name, dtype: part.dtype, shape: part.shape, file: f.file,
                     offset: f.header.dataOffset + e.offset, byteCount: e.size, check: { try f.ensureVerified(owner) })
    }
}

public enum FusedTensorError: I2QError {
    case malformed(path: String, tensor: String, detail: String)
    case unexpectedParts(path: String, tensor: String, expected: [String], actual: [String])

    public var description: String {
        switch self {
        case let .malformed(p, t, d):
            return "\(p): fused tensor \"\(t)\": \(d). The file was not written by `i2q fuse`; fuse the unfused model again."
        case let .unexpectedParts(p, t, e, a):
            return "\(p): fused tensor \"\(t)\" holds \(a) but this model needs \(e) there; fuse the unfused model again."
        }
    }
}

/// A ModelSource showing a fused `.i2q` file with its plain fused tensors replaced by the tensors
/// they hold (zero-copy row views, in part order, at the fused tensor's place). `export --to hf`
/// writes this view, so fuse → export gives back the unfused tensors byte for byte.
public final class UnfusedSource: ModelSource, @unchecked Sendable {
    public let file: I2QFile
    public let tensors: [SourceTensor]

    public init(_ f: I2QFile) throws {
        file = f
        var plain: [String: SourceTensor] = [:]
        for t in f.tensors { plain[t.name] = t }
        var out: [SourceTensor] = []
        for e in f.entries where e.scheme == I2QSpec.Scheme.plain {
            if e.parts.isEmpty {
                if let t = plain[e.name] { out.append(t) }
                continue
            }
            for p in try FusedTensors.partEntries(e, path: f.path) {
                out.append(FusedTensors.plainView(p.components[0], p, owner: e, file: f))
            }
        }
        tensors = out
    }

    /// True when some entry of `f` is fused.
    public static func hasFused(_ f: I2QFile) -> Bool { f.entries.contains { !$0.parts.isEmpty } }

    public var path: String { file.path }
    public var rawConfig: JSONValue { file.rawConfig }
    public var config: ModelConfig { file.config }
    public var quantizedTensorNames: [String] { file.quantizedTensorNames }
    public func auxiliaryFiles() throws -> [(name: String, bytes: [UInt8])] { try file.auxiliaryFiles() }
    public var provenance: Provenance? { file.provenance }
    public var identity: JSONValue { file.identity }
    public var problems: [String] { file.problems }
}

// MARK: - Runtime

/// Projections that read the same input (q/k/v, k/v, gate/up). When the file holds them fused,
/// the whole group is ONE product against the fused weight — `Weight.linear` (sgemm / GEMV over
/// all rows) for 16/32-bit weights; for 4-bit ones one `QuantGemv.runMany` dispatch over every
/// part when decoding and dequantized row tiles × sgemm when prefilling — and the [m, Σ rows]
/// output is split into the parts' outputs. Unfused, each part is its own product (decoding with
/// float32 or 4-bit weights: still one dispatch for the group).
///
/// `parts` are always available as ordinary weights (for a fused file: zero-copy views of the
/// fused one), for code that reads a projection's values (calibration).
///
/// Reference: the unfused products. Fused decoding computes each output row with the same kernel
/// and summation order as unfused decoding (identical bits); fused prefill uses one sgemm with
/// N = Σ rows instead of one per part, which agrees to float32 rounding (tests: logits max|Δ| ≤
/// 1e-6 · std, FuseTests).
struct ProjectionGroup {
    let parts: [Weight]
    let biases: [Weight?]
    /// The fused weight [Σ rows, in] (16/32-bit) …
    let fused: Weight?
    /// … or the parts of a fused 4-bit entry (one kernel dispatch over all of them).
    let fused4: Bool
    let fusedBias: Weight?
    let widths: [Int]
    let inDim: Int
    var total: Int { widths.reduce(0, +) }
    var isFused: Bool { fused != nil || fused4 }

    /// y_p[m, widths[p]] = x[m, in] · W_pᵀ (+ b_p) for every part p.
    func callAsFunction(_ x: UnsafePointer<Float>, m: Int, outputs: [UnsafeMutablePointer<Float>], ws: Workspace) throws {
        precondition(outputs.count == parts.count, "ProjectionGroup: one output per part")
        if isFused {
            let n = total
            let y = ws.fused(m * n)  // [m, Σ rows]
            try fusedProduct(x, m: m, y: y, ws: ws)
            if let b = fusedBias { try b.withF32(ws.scratch) { Kernels.addBias(y, $0, rows: m, n: n) } }
            var off = 0
            for (p, w) in widths.enumerated() {
                let dst = outputs[p]
                for i in 0..<m { (dst + i * w).update(from: y + i * n + off, count: w) }
                off += w
            }
            if fusedBias == nil { try addPartBiases(m: m, outputs: outputs, ws: ws) }
            return
        }
        if m == 1 {
            let direct = parts.compactMap(\.direct)
            let packed = parts.compactMap(\.packed)
            if direct.count == parts.count {
                Gemv.runMany(zip(direct, zip(outputs, widths)).map { (w: $0, y: $1.0, n: $1.1) }, x: x, k: inDim)  // one dispatch
                return try addPartBiases(m: m, outputs: outputs, ws: ws)
            }
            if packed.count == parts.count {
                QuantGemv.runMany(zip(packed, outputs).map { (w: $0, y: $1) }, x: x)  // one dispatch
                return try addPartBiases(m: m, outputs: outputs, ws: ws)
            }
        }
        for (w, y) in zip(parts, outputs) { try w.linear(x: x, y: y, m: m, scratch: ws.scratch) }
        try addPartBiases(m: m, outputs: outputs, ws: ws)
    }

    private func addPartBiases(m: Int, outputs: [UnsafeMutablePointer<Float>], ws: Workspace) throws {
        for (p, b) in biases.enumerated() {
            guard let b else { continue }
            try b.withF32(ws.scratch) { Kernels.addBias(outputs[p], $0, rows: m, n: widths[p]) }
        }
    }

    /// y[m, Σ rows] = x · W_fusedᵀ.
    ///
    /// Decoding (m = 1): one GEMV over all rows of the fused weight, one dispatch (f32: `Gemv.run`,
    /// 16-bit: `Gemv.runBF16`/`run16` in place, 4-bit: `QuantGemv.runMany` over the parts' packed
    /// views). Each output row is computed exactly as unfused decoding computes it: identical bits.
    ///
    /// Prefill (m > 1): the fused weight is read once (16-bit: widened once into scratch; 4-bit:
    /// dequantized in row tiles) and multiplied part by part into the strided [m, Σ rows] output —
    /// sgemm per part with the unfused shapes, because OpenBLAS' sgemm rounds differently for
    /// different N (measured: up to ~2e-6 relative between N = 768 and N = 576 + 192), and the fused
    /// model must reproduce the unfused one (max|Δ| ≤ 1e-6·std). `FusedExecution.singleGemm` (env
    /// I2Q_FUSED_PREFILL=single) makes it one sgemm over all rows instead, for benchmarking.
    private func fusedProduct(_ x: UnsafePointer<Float>, m: Int, y: UnsafeMutablePointer<Float>, ws: Workspace) throws {
        let n = total, k = inDim
        if let fused {
            if m == 1 || FusedExecution.singleGemm {
                try fused.linear(x: x, y: y, m: m, scratch: ws.scratch)
                return
            }
            try fused.withF32(ws.scratch) { w in  // [Σ rows, in] f32
                var off = 0
                for width in widths {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(width), Int32(k),
                                1, x, Int32(k), w + off * k, Int32(k), 0, y + off, Int32(n))
                    off += width
                }
            }
            return
        }
        let segs = parts.map { $0.packed! }
        if m == 1 {
            var off = 0
            var items: [(w: PackedFourBit, y: UnsafeMutablePointer<Float>)] = []
            for s in segs { items.append((s, y + off)); off += s.rows }
            QuantGemv.runMany(items, x: x)
            return
        }
        // Prefill: row tiles dequantized into scratch, one sgemm each (QuantGemv.linear's scheme) —
        // per part with its own tiling (bit-identical to unfused), or over the fused row space.
        let spans: [(segs: [PackedFourBit], base: Int, rows: Int)]
        if FusedExecution.singleGemm {
            spans = [(segs, 0, n)]
        } else {
            var off = 0
            spans = segs.map { s in defer { off += s.rows }; return ([s], off, s.rows) }
        }
        for span in spans {
            let tile = QuantGemv.tileRows(rows: span.rows, cols: k)
            let scratch = ws.scratch.buffer(tile * k)  // [tile, in] f32
            var r0 = 0
            while r0 < span.rows {
                let t = min(tile, span.rows - r0)
                var base = 0
                for s in span.segs {
                    let lo = max(r0, base), hi = min(r0 + t, base + s.rows)
                    if lo < hi { s.dequantizeRows(lo - base, hi - lo, into: scratch + (lo - r0) * k) }
                    base += s.rows
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(t), Int32(k),
                            1, x, Int32(k), scratch, Int32(k), 0, y + span.base + r0, Int32(n))
                r0 += t
            }
        }
    }
}

/// How fused weights are multiplied at prefill (see `ProjectionGroup.fusedProduct`).
public enum FusedExecution {
    /// One sgemm over all rows of a fused weight (faster call pattern, but rounds differently from
    /// the unfused model); default false. Set from env I2Q_FUSED_PREFILL=single.
    nonisolated(unsafe) public static var singleGemm: Bool = ProcessInfo.processInfo.environment["I2Q_FUSED_PREFILL"] == "single"
}

extension WeightLoader {
    /// The group `names` (full tensor names ending in `.weight`, e.g. …q_proj.weight, …k_proj.weight,
    /// …v_proj.weight) of shapes [widths[p], inDim], fused when the file holds their fused entry
    /// (`FusedTensors.fusedName`), separate otherwise. Biases (`….bias`) are loaded when present
    /// (`bias`), fused or not.
    func group(_ names: [String], widths: [Int], inDim: Int, bias: Bool) throws -> ProjectionGroup {
        let biasNames = names.map { String($0.dropLast(".weight".count)) + ".bias" }
        let f = source as? I2QFile
        guard let fusedName = FusedTensors.fusedName(of: names),
              let f, let fe = f.entries.first(where: { $0.name == fusedName }) else {
            let parts = try zip(names, widths).map { try weight($0, [$1, inDim]) }
            let biases = try bias ? zip(biasNames, widths).map { try optional($0, [$1]) } : names.map { _ in nil }
            return ProjectionGroup(parts: parts, biases: biases, fused: nil, fused4: false, fusedBias: nil, widths: widths, inDim: inDim)
        }
        let partEntries = try checkedParts(fe, names: names, widths: widths, inDim: inDim, file: f)
        var parts: [Weight] = []
        var fused: Weight?
        if fe.scheme == I2QSpec.Scheme.plain {
            fused = try weight(fusedName, [widths.reduce(0, +), inDim])
            parts = try partEntries.map { try Weight(FusedTensors.plainView($0.components[0], $0, owner: fe, file: f)) }
        } else {
            try f.ensureVerified(fe)
            for pe in partEntries {
                let p = try FourBitWeight.packed(pe, file: f)
                let t = try FourBitWeight.sourceTensor(pe, file: f)
                parts.append(try Weight(t, packed: p))
            }
        }
        var biases: [Weight?] = names.map { _ in nil }
        var fusedBias: Weight?
        if bias, let fb = FusedTensors.fusedName(of: biasNames), let be = f.entries.first(where: { $0.name == fb }) {
            guard be.scheme == I2QSpec.Scheme.plain else { throw RuntimeError.quantized(model: f.path, name: fb) }
            let bparts = try checkedParts(be, names: biasNames, widths: widths, inDim: nil, file: f)
            fusedBias = try weight(fb, [widths.reduce(0, +)])
            biases = try bparts.map { try Weight(FusedTensors.plainView($0.components[0], $0, owner: be, file: f)) }
        } else if bias {
            biases = try zip(biasNames, widths).map { try optional($0, [$1]) }
        }
        return ProjectionGroup(parts: parts, biases: biases, fused: fused, fused4: fused == nil, fusedBias: fusedBias,
                               widths: widths, inDim: inDim)
    }

    private func checkedParts(_ e: I2QTensorEntry, names: [String], widths: [Int], inDim: Int?, file f: I2QFile) throws -> [I2QTensorEntry] {
        let parts = try FusedTensors.partEntries(e, path: f.path)
        guard parts.map(\.name) == names else {
            throw FusedTensorError.unexpectedParts(path: f.path, tensor: e.name, expected: names, actual: parts.map(\.name))
        }
        for (p, w) in zip(parts, widths) {
            let want = inDim.map { [w, $0] } ?? [w]
            guard p.shape == want else { throw RuntimeError.wrongShape(model: f.path, name: p.name, expected: want, actual: p.shape) }
        }
        return parts
    }
}
