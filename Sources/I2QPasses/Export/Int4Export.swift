import I2QCore
import I2QFormats
import I2QQuant

public enum Int4ExportError: I2QError {
    case notAffine(path: String, target: String)
    case otherScheme(path: String, tensor: String, scheme: String, target: String)
    case malformed(path: String, tensor: String, detail: String)
    case mixedGroupSizes(path: String, tensor: String, groupSize: Int, other: Int, target: String)
    /// An affine_int3 / affine_int2 tensor: the target's layout here is 4-bit.
    case lowBits(path: String, tensor: String, bits: Int, target: String)

    public var description: String {
        switch self {
        case let .lowBits(p, n, b, t):
            return "\(p): tensor \"\(n)\" is affine int\(b); --to \(t) is written with 4-bit codes only, and i2q does not re-quantize. Quantize the model again with 4 bits (`--rtn`/`--awq`/`--gptq` without --bits, or int4 candidates) for this export."
        case let .notAffine(p, t):
            return "\(p): no affine_int4 tensors; --to \(t) exports an RTN/AWQ/GPTQ model. Run `i2q quantize --rtn`, `--awq` or `--gptq` first, or use --to hf."
        case let .otherScheme(p, n, s, t):
            return "\(p): tensor \"\(n)\" is \(s); --to \(t) holds only affine int4 and plain tensors (use --to hf-bnb for NF4/FP4, --to gguf for ggml types)."
        case let .malformed(p, n, d):
            return "\(p): affine int4 tensor \"\(n)\": \(d). The file was not written by `i2q quantize`; re-create it."
        case let .mixedGroupSizes(p, n, g, o, t):
            return "\(p): \"\(n)\" has group size \(g), the other tensors \(o); --to \(t) has one group_size in its config. Re-quantize with one --group-size."
        }
    }
}

/// One affine_int4 linear as stored (`.i2q` scheme `affine_int4`): dequantized w[o, i] =
/// (codes[o, i] − zeros[o, i/G]) · scales[o, i/G].
struct Int4Linear {
    let rows: Int, cols: Int, groupSize: Int
    var groups: Int { cols / groupSize }
    let codes: [UInt8]       // [rows, cols] 0...15
    let scales: [Float16]    // [rows, groups]
    let zeros: [UInt8]       // [rows, groups]

    init(rows: Int, cols: Int, groupSize: Int, codes: [UInt8], scales: [Float16], zeros: [UInt8]) {
        self.rows = rows; self.cols = cols; self.groupSize = groupSize
        self.codes = codes; self.scales = scales; self.zeros = zeros
    }

    init(_ f: I2QFile, _ e: I2QTensorEntry, owner: I2QTensorEntry) throws {
        let l: AffineInt4Layout
        do { l = try AffineInt4Layout(e) } catch let x as SchemeLayoutError {
            throw Int4ExportError.malformed(path: f.path, tensor: e.name, detail: x.detail)
        }
        guard let zc = l.zeros else { throw Int4ExportError.malformed(path: f.path, tensor: e.name, detail: "it has no zero points") }
        try f.ensureVerified(owner)  // a part's view: through the fused entry; once per entry
        rows = l.rows; cols = l.cols; groupSize = l.groupSize
        let base = f.header.dataOffset, n = l.rows * l.cols, g = l.rows * l.groups
        var c = [UInt8](repeating: 0, count: n)
        f.file.withBytes(base + l.qweight.offset, l.qweight.size) { pk in
            c.withUnsafeMutableBufferPointer { AffineInt4.unpack(pk.bindMemory(to: UInt8.self).baseAddress!, count: n, into: $0.baseAddress!) }
        }
        codes = c
        scales = f.file.withBytes(base + l.scales.offset, l.scales.size) { b in (0..<g).map { Float16(bitPattern: b.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) } }
        zeros = f.file.withBytes(base + zc.offset, zc.size) { Array($0.prefix(g)) }
    }

    /// Scales as `dtype` (f16: as stored; f32: exact; bf16: rounded to nearest even) bytes, in
    /// `order` (row-major [rows, groups], or transposed [groups, rows]).
    func scaleBytes(_ dtype: DType, transposed: Bool) throws -> [UInt8] {
        var f = [Float](repeating: 0, count: rows * groups)
        for r in 0..<rows { for g in 0..<groups { f[transposed ? g * rows + r : r * groups + g] = Float(scales[r * groups + g]) } }
        var out = [UInt8](repeating: 0, count: f.count * dtype.size)
        _ = try f.withUnsafeBytes { fb in try out.withUnsafeMutableBytes { ob in
            try FloatConversion.convert(from: .f32, to: dtype, count: f.count, src: fb.baseAddress!, dst: ob.baseAddress!, first: 0, total: f.count)
        } }
        return out
    }
}

/// The writing side the int4 exports share (`compressed-tensors`, `hf-gptq`): fused entries
/// un-fused into transformers' names, every affine_int4 linear as the target's tensors (made from
/// the stored codes, scales and zeros: no requantization), every plain tensor copied (cast with
/// `plainDType`), config.json from `config`.
enum Int4Export {
    struct Output {
        let plan: PlannedTensor
        let make: (Int4Linear) throws -> [UInt8]
    }

    struct Item {
        let plan: PlannedTensor
        let entry: I2QTensorEntry
        let owner: I2QTensorEntry
        let make: ((Int4Linear) throws -> [UInt8])?  // nil: a plain tensor
    }

    /// The module name of a weight ("….q_proj.weight" → "….q_proj").
    static func module(_ name: String) -> String { name.hasSuffix(".weight") ? String(name.dropLast(7)) : name }

    static func run(source: any ModelSource, output: String, settings: OutputSettings, target: String,
                    plainDType: (DType) -> DType,
                    linear: (_ module: String, _ entry: I2QTensorEntry, _ groupSize: Int) throws -> [Output],
                    config: (_ file: I2QFile, _ exported: [I2QTensorEntry], _ groupSize: Int) throws -> JSONValue,
                    extraFiles: (JSONValue) -> [(name: String, bytes: [UInt8])] = { _ in [] }) throws -> PassReport {
        guard let f = source as? I2QFile else { throw Int4ExportError.notAffine(path: source.path, target: target) }
        if let e = f.entries.first(where: { $0.scheme != AffineInt4Layout.scheme && AffineInt4Layout.schemes.contains($0.scheme) }) {
            throw Int4ExportError.lowBits(path: f.path, tensor: e.name, bits: AffineInt4Layout.bits(scheme: e.scheme)!, target: target)
        }
        if let e = f.entries.first(where: { ![PlainLayout.scheme, AffineInt4Layout.scheme].contains($0.scheme) }) {
            throw Int4ExportError.otherScheme(path: f.path, tensor: e.name, scheme: e.scheme, target: target)
        }
        if !f.entries.contains(where: { $0.scheme == AffineInt4Layout.scheme }) { throw Int4ExportError.notAffine(path: f.path, target: target) }
        var items: [Item] = [], exported: [I2QTensorEntry] = []
        var groupSize: Int?
        for fe in f.entries {
            let entries = fe.parts.isEmpty ? [fe] : try FusedTensors.partEntries(fe, path: f.path)
            exported += entries
            for e in entries {
                if e.scheme == I2QSpec.Scheme.plain {
                    let dt = e.dtype.isCastableFloat ? plainDType(e.dtype) : e.dtype
                    items.append(Item(plan: PlannedTensor(name: e.name, dtype: dt, shape: e.shape), entry: e, owner: fe, make: nil))
                    continue
                }
                let l: AffineInt4Layout
                do { l = try AffineInt4Layout(e) } catch let x as SchemeLayoutError {
                    throw Int4ExportError.malformed(path: f.path, tensor: e.name, detail: x.detail)
                }
                if let g = groupSize, g != l.groupSize {
                    throw Int4ExportError.mixedGroupSizes(path: f.path, tensor: e.name, groupSize: l.groupSize, other: g, target: target)
                }
                groupSize = l.groupSize
                for o in try linear(module(e.name), e, l.groupSize) {
                    items.append(Item(plan: o.plan, entry: e, owner: fe, make: o.make))
                }
            }
        }
        let cfg = try config(f, exported, groupSize!)
        var s = settings
        s.format = .safetensors
        let plainTensors = UnfusedSource.hasFused(f) ? try UnfusedSource(f).tensors : f.tensors
        let plainByName = Dictionary(plainTensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let copier = CastCopier()
        var cached: (name: String, linear: Int4Linear)?
        return try HFDirectoryOutput.write(from: f, output: output, settings: s, plan: items.map(\.plan), config: cfg, extraFiles: extraFiles(cfg)) { i, writer in
            let it = items[i]
            guard let make = it.make else {
                guard let t = plainByName[it.entry.name] else {
                    throw Int4ExportError.malformed(path: f.path, tensor: it.entry.name, detail: "plain tensor not readable")
                }
                return (it.entry.dtype, try copier.copy(t, count: t.elementCount, to: it.plan.dtype, append: { try writer.append($0) }))
            }
            if cached?.name != it.entry.name { cached = (it.entry.name, try Int4Linear(f, it.entry, owner: it.owner)) }
            let bytes = try make(cached!.linear)
            precondition(bytes.count == it.plan.byteCount, "\(it.plan.name): \(bytes.count) bytes, planned \(it.plan.byteCount)")
            try bytes.withUnsafeBytes { try writer.append($0) }
            return (it.entry.dtype, CastStats())
        }
    }

    /// The module names of the linears kept unquantized in `entries` (as written): the vision tower
    /// and connector prefixes when they are wholly plain (else nil: the caller lists them one by
    /// one), "lm_head", and every other plain `*_proj.weight` by module name.
    static func unquantizedModules(_ f: I2QFile, entries: [I2QTensorEntry]) -> (prefixes: [String], modules: [String]) {
        var prefixes: [String] = [], modules: [String] = []
        for m in f.config.architecture.otherModules {
            let members = entries.filter { $0.name.hasPrefix(m.prefix) }
            guard !members.isEmpty else { continue }
            if members.allSatisfy({ $0.scheme == I2QSpec.Scheme.plain }) { prefixes.append(m.prefix) }
        }
        modules.append("lm_head")
        for e in entries where e.scheme == I2QSpec.Scheme.plain && e.shape.count == 2 && !prefixes.contains(where: { e.name.hasPrefix($0) }) {
            let isLinear = e.name.hasSuffix("_proj.weight") || e.name.hasSuffix("fc1.weight") || e.name.hasSuffix("fc2.weight")
            if isLinear { modules.append(module(e.name)) }
        }
        return (prefixes, modules)
    }

    /// Packs 4-bit values v (one per byte, 0...15) [rows, cols] into little-endian int32 words along
    /// `cols`: word[r, j] = Σ_k v[r, 8j + k] << 4k, missing values (cols not a multiple of 8) 0.
    static func packRows(_ v: [UInt8], rows: Int, cols: Int) -> [Int32] {
        let words = (cols + 7) / 8
        var out = [Int32](repeating: 0, count: rows * words)
        for r in 0..<rows {
            for j in 0..<words {
                var x: UInt32 = 0
                for k in 0..<8 where 8 * j + k < cols { x |= UInt32(v[r * cols + 8 * j + k] & 15) << (4 * UInt32(k)) }
                out[r * words + j] = Int32(bitPattern: x)
            }
        }
        return out
    }

    /// v [rows, cols] → [cols, rows].
    static func transpose<T>(_ v: [T], rows: Int, cols: Int) -> [T] {
        guard let first = v.first else { return v }
        var out = [T](repeating: first, count: v.count)
        for r in 0..<rows { for c in 0..<cols { out[c * rows + r] = v[r * cols + c] } }
        return out
    }

    static func bytes<T>(_ a: [T]) -> [UInt8] { a.withUnsafeBytes { Array($0) } }
}
