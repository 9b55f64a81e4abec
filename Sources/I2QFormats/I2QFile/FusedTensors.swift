import Foundation
import I2QCore

/// Fused tensors (Formats/i2q-format.md, "Fused tensors"): one directory entry holding several
/// logical tensors that read the same input (q/k/v → `qkv_proj`, k/v → `kv_proj`, gate/up →
/// `gate_up_proj`), their rows stacked in part order. Written by `i2q fuse` (I2QPasses/FusePass).
///
/// This file holds the layout arithmetic every reader shares — where part p's bytes lie inside each
/// component of a fused entry, per scheme — and the unfused view of a fused file. The runtime's use
/// of fused weights (one product for the whole group) is I2QRuntime's FusedWeights.swift.
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
    public static func plainView(_ e: I2QComponent, _ part: I2QTensorEntry, owner: I2QTensorEntry, file f: I2QFile) -> SourceTensor {
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
