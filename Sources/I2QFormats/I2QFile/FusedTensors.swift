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
    /// Where each part's bytes lie is the scheme's (its `SchemeLayout`, Formats/I2QFormats/Schemes).
    public static func partEntries(_ e: I2QTensorEntry, path: String) throws -> [I2QTensorEntry] {
        func bad(_ d: String) -> FusedTensorError { .malformed(path: path, tensor: e.name, detail: d) }
        guard !e.parts.isEmpty else { throw bad("it has no parts") }
        guard let rows = e.shape.first else { throw bad("a scalar cannot be fused") }
        var next = 0
        for p in e.parts {
            guard p.start == next, p.length > 0 else { throw bad("part \(p.name) rows [\(p.start), +\(p.length)) do not follow the previous part (row \(next))") }
            next += p.length
        }
        guard next == rows else { throw bad("its parts cover \(next) of its \(rows) rows") }
        do {
            return try SchemeLayouts.layout(e).partEntries(e)
        } catch let x as SchemeLayoutError {
            throw bad(x.detail)
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
