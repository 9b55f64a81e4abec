import I2QCore
import I2QFormats
import I2QQuant

public enum AWQExportError: I2QError {
    case notAffine(path: String)
    case otherScheme(path: String, tensor: String, scheme: String)
    case malformed(path: String, tensor: String, detail: String)
    case outNotMultipleOf8(path: String, tensor: String, out: Int)
    case quantizedVision(path: String, tensor: String)
    /// An affine_int3 / affine_int2 tensor: AutoAWQ's GEMM layout packs 4-bit codes only.
    case lowBits(path: String, tensor: String, bits: Int)

    public var description: String {
        switch self {
        case let .quantizedVision(p, t):
            return "\(p): \"\(t)\" is int4; AutoAWQ's layout (hf-awq) keeps the vision tower and connector unquantized. Re-quantize without --vision-int4 for this export"
        case let .lowBits(p, t, b):
            return "\(p): tensor \"\(t)\" is affine int\(b); AutoAWQ's GEMM layout (hf-awq) holds 4-bit codes only, and i2q does not re-quantize. Quantize the model again with 4 bits (`--rtn`/`--awq` without --bits, or int4 candidates) for this export."
        case let .notAffine(p):
            return "\(p): no affine_int4 tensors; hf-awq exports an AWQ/RTN model. Run `i2q quantize --awq` or `--rtn` first, or use --to hf."
        case let .otherScheme(p, t, s):
            return "\(p): tensor \"\(t)\" is \(s); hf-awq holds only affine int4 tensors (use --to hf-bnb for NF4/FP4)."
        case let .malformed(p, t, d):
            return "\(p): affine int4 tensor \"\(t)\": \(d). The file was not written by `i2q quantize`; re-create it."
        case let .outNotMultipleOf8(p, t, o):
            return "\(p): \"\(t)\" has \(o) output rows; AutoAWQ's GEMM layout packs 8 output channels per int32, so it needs a multiple of 8. Re-quantize with --skip for this tensor."
        }
    }
}

/// `i2q export MODEL.i2q --to hf-awq`: AutoAWQ's GEMM checkpoint (awq/modules/linear/gemm.py
/// `WQLinear_GEMM.from_linear`, AutoAWQ 0.2.9), which transformers (+ gptqmodel), vLLM and TGI load.
///
/// Per affine_int4 linear `X` ([out, in], group G), from the stored codes q[o, i], zeros z[o, g] and
/// fp16 scales s[o, g] (no requantization: the exported model dequantizes to the same values):
///   X.qweight  I32 [in, out/8]:   word[i, c] = Σ_k q[8c + ORDER[k], i] << 4k,  ORDER = [0,2,4,6,1,3,5,7]
///   X.qzeros   I32 [in/G, out/8]: word[g, c] = Σ_k z[8c + ORDER[k], g] << 4k  (plain zeros, no −1)
///   X.scales   F16 [in/G, out]:   s transposed
/// Words are raw bits (nibble 7 sets the sign). Every other float tensor (norms, embeddings,
/// lm_head, biases, the vision tower and connector) is written as float16, as AutoAWQ saves the
/// model; config.json gets `torch_dtype: float16` and `quantization_config` {"quant_method": "awq",
/// "zero_point": true, "group_size": G, "bits": 4, "version": "gemm", "modules_to_not_convert": …}.
public enum AWQExportPass {
    public static let order = [0, 2, 4, 6, 1, 3, 5, 7]

    /// Packs codes/zeros `v` [rows, cols] (one value 0..15 per byte, row-major, rows = out channels)
    /// transposed into AutoAWQ words [cols, rows/8].
    public static func packTransposed(_ v: UnsafePointer<UInt8>, rows: Int, cols: Int, into w: UnsafeMutablePointer<Int32>) {
        let words = rows / 8
        for c in 0..<words {
            for i in 0..<cols {
                var x: UInt32 = 0
                for k in 0..<8 { x |= UInt32(v[(8 * c + order[k]) * cols + i] & 15) << (4 * UInt32(k)) }
                w[i * words + c] = Int32(bitPattern: x)
            }
        }
    }

    struct Item {
        let plan: PlannedTensor
        /// The tensor written: a directory entry, or a part of a fused one (component views, checksum 0).
        let entry: I2QTensorEntry
        /// The stored entry whose component checksums cover `entry`'s bytes (the fused one, for a part).
        let owner: I2QTensorEntry
        let output: Output
        /// What the item writes: an AutoAWQ GEMM tensor made from the affine_int4 entry, or a plain tensor.
        enum Output { case qweight, qzeros, scales, plain }
    }

    /// Fused entries (i2q fuse) are written as the tensors they hold (transformers' / AutoAWQ's
    /// q/k/v and gate/up names: byte for byte the export of the unfused model), or with
    /// `fusedNames` as stored (vLLM-style `qkv_proj`, `gate_up_proj`): one AWQ GEMM linear of all
    /// rows, which — every part's row count being a multiple of 8, so no int32 word holds channels
    /// of two parts — is the parts' qweight/qzeros/scales concatenated along the output dimension,
    /// the layout of vLLM's fused AWQ parameters.
    public static func run(source: any ModelSource, output: String, settings: OutputSettings, fusedNames: Bool = false) throws -> PassReport {
        guard let f = source as? I2QFile else { throw AWQExportError.notAffine(path: source.path) }
        if let e = f.entries.first(where: { $0.scheme != AffineInt4Layout.scheme && AffineInt4Layout.schemes.contains($0.scheme) }) {
            throw AWQExportError.lowBits(path: f.path, tensor: e.name, bits: AffineInt4Layout.bits(scheme: e.scheme)!)
        }
        if let e = f.entries.first(where: { ![PlainLayout.scheme, AffineInt4Layout.scheme].contains($0.scheme) }) {
            throw AWQExportError.otherScheme(path: f.path, tensor: e.name, scheme: e.scheme)
        }
        if !f.entries.contains(where: { $0.scheme == AffineInt4Layout.scheme }) { throw AWQExportError.notAffine(path: f.path) }
        var items: [Item] = []
        var exported: [I2QTensorEntry] = []  // the entries as written (parts when un-fusing), for config.json
        var groupSize: Int?
        for fe in f.entries {
            let unfuse = !fe.parts.isEmpty && !fusedNames
            let entries = unfuse ? try FusedTensors.partEntries(fe, path: f.path) : [fe]
            exported += entries
            for e in entries {
                if e.scheme == I2QSpec.Scheme.plain {
                    let dt: DType = e.dtype.isCastableFloat ? .f16 : e.dtype
                    items.append(Item(plan: PlannedTensor(name: e.name, dtype: dt, shape: e.shape), entry: e, owner: fe, output: .plain))
                    continue
                }
                let g = try check(e, file: f)
                if fusedNames && !fe.parts.isEmpty {
                    for p in try FusedTensors.partEntries(fe, path: f.path) where p.shape[0] % 8 != 0 {
                        throw AWQExportError.malformed(path: f.path, tensor: fe.name, detail: "part \(p.name) has \(p.shape[0]) output rows, not a multiple of 8, so AutoAWQ's packed words would mix two parts; export without --fused-names")
                    }
                }
                if let gs = groupSize, gs != g {
                    throw AWQExportError.malformed(path: f.path, tensor: e.name, detail: "group size \(g) differs from \(gs) of the other tensors; AutoAWQ's config has one group_size")
                }
                groupSize = g
                let (out, inDim) = (e.shape[0], e.shape[1])
                let module = e.name.hasSuffix(".weight") ? String(e.name.dropLast(7)) : e.name
                items.append(Item(plan: PlannedTensor(name: module + ".qweight", dtype: .i32, shape: [inDim, out / 8]), entry: e, owner: fe, output: .qweight))
                items.append(Item(plan: PlannedTensor(name: module + ".qzeros", dtype: .i32, shape: [inDim / g, out / 8]), entry: e, owner: fe, output: .qzeros))
                items.append(Item(plan: PlannedTensor(name: module + ".scales", dtype: .f16, shape: [inDim / g, out]), entry: e, owner: fe, output: .scales))
            }
        }
        let config = try awqConfig(f, entries: exported, groupSize: groupSize!)

        var s = settings
        s.format = .safetensors
        // Plain tensors by the names written: with fused plain entries un-fused, their parts (row views).
        let plainTensors = !fusedNames && UnfusedSource.hasFused(f) ? try UnfusedSource(f).tensors : f.tensors
        let plainByName = Dictionary(plainTensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let copier = CastCopier()
        return try HFDirectoryOutput.write(from: f, output: output, settings: s, plan: items.map(\.plan), config: config) { i, writer in
            let it = items[i]
            var stats = CastStats()
            let e = it.entry
            if it.output == .plain {
                guard let t = plainByName[e.name] else { throw AWQExportError.malformed(path: f.path, tensor: e.name, detail: "plain tensor not readable") }
                stats = try copier.copy(t, count: t.elementCount, to: it.plan.dtype, append: { try writer.append($0) })
            } else {
                let (rows, cols) = (e.shape[0], e.shape[1])
                let l = try AffineInt4Layout(e)  // checked when planned
                let groups = l.groups
                try f.ensureVerified(it.owner)  // a part's view: through the fused entry; once per entry
                let base = f.header.dataOffset
                switch it.output {
                case .qweight:
                    let c = l.qweight
                    var codes = [UInt8](repeating: 0, count: rows * cols)      // [out, in] one code per byte
                    var words = [Int32](repeating: 0, count: cols * rows / 8)  // [in, out/8]
                    f.file.withBytes(base + c.offset, c.size) { pk in
                        codes.withUnsafeMutableBufferPointer { AffineInt4.unpack(pk.bindMemory(to: UInt8.self).baseAddress!, count: rows * cols, into: $0.baseAddress!) }
                    }
                    codes.withUnsafeBufferPointer { cp in words.withUnsafeMutableBufferPointer { packTransposed(cp.baseAddress!, rows: rows, cols: cols, into: $0.baseAddress!) } }
                    try words.withUnsafeBytes { try writer.append($0) }
                case .qzeros:
                    let c = l.zeros!
                    var words = [Int32](repeating: 0, count: groups * rows / 8)  // [in/G, out/8]
                    f.file.withBytes(base + c.offset, c.size) { z in
                        words.withUnsafeMutableBufferPointer { packTransposed(z.bindMemory(to: UInt8.self).baseAddress!, rows: rows, cols: groups, into: $0.baseAddress!) }
                    }
                    try words.withUnsafeBytes { try writer.append($0) }
                case .scales, .plain:
                    let c = l.scales
                    var t = [UInt16](repeating: 0, count: groups * rows)  // [in/G, out] f16 bits
                    f.file.withBytes(base + c.offset, c.size) { sb in
                        for o in 0..<rows { for gg in 0..<groups { t[gg * rows + o] = sb.loadUnaligned(fromByteOffset: (o * groups + gg) * 2, as: UInt16.self) } }
                    }
                    try t.withUnsafeBytes { try writer.append($0) }
                }
            }
            return (it.entry.dtype, stats)
        }
    }

    /// Validates one affine_int4 entry (its layout, and what AutoAWQ's GEMM form needs); returns its group size.
    static func check(_ e: I2QTensorEntry, file f: I2QFile) throws -> Int {
        func bad(_ d: String) -> AWQExportError { .malformed(path: f.path, tensor: e.name, detail: d) }
        let l: AffineInt4Layout
        do { l = try AffineInt4Layout(e) } catch let x as SchemeLayoutError { throw bad(x.detail) }
        guard l.zeros != nil else { throw bad("zero_point 0 has no AutoAWQ GEMM form (it stores zero points)") }
        guard l.rows % 8 == 0 else { throw AWQExportError.outNotMultipleOf8(path: f.path, tensor: e.name, out: l.rows) }
        return l.groupSize
    }

    /// config.json with float16 as the dtype and AutoAWQ's `quantization_config`. Modules kept
    /// unquantized: the vision tower and connector of Idefics2 (when present), lm_head, and every
    /// other plain 2-D linear weight (e.g. a `--skip`ped one), by module name — of `entries`, the
    /// tensors as written (a fused file's parts when un-fusing).
    static func awqConfig(_ f: I2QFile, entries: [I2QTensorEntry], groupSize: Int) throws -> JSONValue {
        var keep: [String] = []
        let plainLinears = entries.filter { $0.scheme == I2QSpec.Scheme.plain && $0.shape.count == 2 && $0.name.hasSuffix("_proj.weight") }
        // Full module prefixes ("model.vision_model", "model.connector"): transformers 5 matches a
        // pattern from the start of the module name (quantizers_utils.should_convert_module), 4.x as a
        // substring; a bare "connector" matches neither in 5.x and its linears load as empty AWQ modules.
        for module in f.config.architecture.otherModules {  // Idefics2: the vision tower and the connector
            let members = entries.filter { $0.name.hasPrefix(module.prefix) }
            guard !members.isEmpty else { continue }
            if let q = members.first(where: { $0.scheme != I2QSpec.Scheme.plain }) {
                throw AWQExportError.quantizedVision(path: f.path, tensor: q.name)
            }
            keep.append(String(module.prefix.dropLast()))
        }
        keep.append("lm_head")
        for e in plainLinears where !keep.contains(where: { e.name.contains($0) }) {
            keep.append(String(e.name.dropLast(7)))
        }
        let q: JSONValue = .object([
            ("quant_method", .string("awq")), ("zero_point", .bool(true)), ("group_size", .int(groupSize)),
            ("bits", .int(4)), ("version", .string("gemm")),
            ("modules_to_not_convert", .array(keep.map { .string($0) })),
        ])
        return f.rewrittenConfig(dtype: .f16).setting("quantization_config", q)
    }
}
