import I2QCore
import I2QFormats

/// What `i2q inspect` reports about a model. Built from headers and configs only (no tensor data).
public struct ModelInspection: Sendable {
    public struct GroupStats: Sendable { public var tensors = 0, parameters = 0, bytes = 0 }
    public struct ShardStats: Sendable { public let file: String; public let tensors: Int; public let bytes: Int }

    public let path: String
    public let modelType: String
    public let architecture: [(String, String)]
    public let groups: [(ModuleGroup, GroupStats)]
    public let dtypes: [(DType, GroupStats)]
    /// Storage per scheme as stored (plain tensors by dtype; nf4/fp4 with block size; int4 with group
    /// size; GGUF by ggml type), bytes including scales / absmax / zeros: bits per weight = 8·bytes/params.
    public let schemes: [(String, GroupStats)]
    public let shards: [ShardStats]
    public let totalParameters: Int
    public let totalBytes: Int
    public var problems: [String]
    public let provenance: Provenance?
    /// Set for an .i2q file: its header and tensor directory are shown.
    public let i2q: I2QFile?
    /// Set for the output of `quantize --target-bpw` / `--recipe`: the per-tensor schemes (as the
    /// provenance's recipe names them) with the bits per weight each tensor is stored in, and the
    /// achieved average over them (from the stored bytes).
    public let mixed: MixedSummary?
    public struct MixedSummary: Sendable {
        public let target: Double?
        public let achieved: Double
        public let tensors: [(name: String, scheme: String, bpw: Double)]
    }

    public init(_ m: any ModelSource) {
        path = m.path
        modelType = m.config.modelType
        var arch: [(String, String)] = []
        let t = m.config.textConfig
        arch += m.config.architecture.describe(m.config)
        arch.append(("text", "\(t.modelType): \(t.numHiddenLayers) layers, hidden \(t.hiddenSize), intermediate \(t.intermediateSize), \(t.numAttentionHeads) heads, \(t.numKeyValueHeads) kv heads, head_dim \(t.headDim), vocab \(t.vocabSize)"))
        arch.append(("rope", "\(t.rope.ropeType), theta \(t.rope.theta)"))
        arch.append(("rms_norm_eps", "\(t.rmsNormEps)"))
        arch.append(("sliding_window", t.slidingWindow.map(String.init) ?? "none"))
        arch.append(("tie_word_embeddings", "\(t.tieWordEmbeddings)"))
        if let d = m.config.textConfig.dtype ?? m.config.architecture.topLevelDType(m.config) {
            arch.append(("config dtype", d))
        }
        if let p = (m as? ModelDirectory)?.processor {
            arch.append(("image processor", "longest_edge \(p.longestEdge), shortest_edge \(p.shortestEdge), splitting \(p.doImageSplitting), image_seq_len \(p.imageSeqLen) (from \(p.source))"))
        }
        architecture = arch

        var g: [ModuleGroup: GroupStats] = [:]
        var d: [DType: GroupStats] = [:]
        let summary = SchemeSummary(m)
        // (name, dtype, parameters, stored bytes) of every tensor.
        let all = summary.tensors.map { ($0.name, $0.dtype, $0.parameters, $0.bytes) }
        schemes = summary.schemes.map { ($0.scheme, GroupStats(tensors: $0.tensors, parameters: $0.parameters, bytes: $0.bytes)) }
        for (name, dt, params, bytes) in all {
            let grp = ModelRegistry.group(of: name, modelType: modelType)
            g[grp, default: .init()].tensors += 1
            g[grp, default: .init()].parameters += params
            g[grp, default: .init()].bytes += bytes
            d[dt, default: .init()].tensors += 1
            d[dt, default: .init()].parameters += params
            d[dt, default: .init()].bytes += bytes
        }
        groups = ModuleGroup.allCases.compactMap { k in g[k].map { (k, $0) } }
        dtypes = DType.allCases.compactMap { k in d[k].map { (k, $0) } }
        if let dir = m as? ModelDirectory {
            shards = dir.weights.shards.map { ShardStats(file: FileSystem.basename($0.path), tensors: $0.tensors.count, bytes: $0.tensors.reduce(0) { $0 + $1.byteCount }) }
        } else {
            shards = [ShardStats(file: FileSystem.basename(m.path), tensors: all.count, bytes: all.reduce(0) { $0 + $1.3 })]
        }
        totalParameters = all.reduce(0) { $0 + $1.2 }
        totalBytes = all.reduce(0) { $0 + $1.3 }
        provenance = m.provenance
        i2q = m as? I2QFile
        if let pass = m.provenance?.passes.last(where: { $0.name == "quantize" && $0.params.contains { $0.0 == "type" && $0.1 == .string("mixed") } }),
           let recipe = pass.params.first(where: { $0.0 == "recipe" })?.1.objectEntries {
            let byName = Dictionary(summary.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            var bits = 0, params = 0
            var rows: [(name: String, scheme: String, bpw: Double)] = []
            for (name, scheme) in recipe {
                guard let t = byName[name] else { continue }
                bits += t.bytes * 8; params += t.parameters
                rows.append((name, scheme.stringValue ?? "?", SchemeSummary.bitsPerWeight(bytes: t.bytes, parameters: t.parameters)))
            }
            mixed = MixedSummary(target: pass.params.first { $0.0 == "target_bpw" }?.1.doubleValue,
                                 achieved: params == 0 ? 0 : Double(bits) / Double(params), tensors: rows)
        } else {
            mixed = nil
        }
        var problems = m.problems
        if !m.config.textConfig.tieWordEmbeddings && !all.contains(where: { $0.0 == "lm_head.weight" }) {
            problems.append("lm_head.weight is missing and tie_word_embeddings is false")
        }
        self.problems = problems
    }

    /// Bits per weight of `s` (bytes stored · 8 / parameters).
    static func bpw(_ s: GroupStats) -> Double { SchemeSummary.bitsPerWeight(bytes: s.bytes, parameters: s.parameters) }

    public var json: JSONValue {
        func stats(_ s: GroupStats) -> JSONValue { .object([("tensors", .int(s.tensors)), ("parameters", .int(s.parameters)), ("bytes", .int(s.bytes))]) }
        func schemeStats(_ s: GroupStats) -> JSONValue {
            .object([("tensors", .int(s.tensors)), ("parameters", .int(s.parameters)), ("bytes", .int(s.bytes)), ("bits_per_weight", .number(formatFixed(Self.bpw(s), 3)))])
        }
        let head: [(String, JSONValue)] = [
            ("path", .string(path)),
            ("model_type", .string(modelType)),
            ("architecture", .object(architecture.map { ($0.0, .string($0.1)) })),
            ("parameters", .int(totalParameters)),
            ("bytes", .int(totalBytes)),
            ("groups", .object(groups.map { ($0.0.rawValue, stats($0.1)) })),
            ("dtypes", .object(dtypes.map { ($0.0.rawValue, stats($0.1)) })),
            ("schemes", .object(schemes.map { ($0.0, schemeStats($0.1)) })),
            ("bits_per_weight", .number(formatFixed(Self.bpw(GroupStats(tensors: 0, parameters: totalParameters, bytes: totalBytes)), 3))),
            ("shards", .array(shards.map { .object([("file", .string($0.file)), ("tensors", .int($0.tensors)), ("bytes", .int($0.bytes))]) })),
            ("problems", .array(problems.map { .string($0) })),
        ]
        return .object(head + mixedJSON
          + (provenance.map { [("provenance", $0.json)] } ?? [])
          + (i2q.map { f in [("i2q", .object([
                ("version", .string("\(f.header.versionMajor).\(f.header.versionMinor)")),
                ("alignment", .int(f.header.alignment)),
                ("file_size", .int(f.header.fileSize)),
                ("metadata_compressed", .bool(f.header.flags & I2QSpec.flagMetadataZstd != 0)),
                ("files", .array(f.metadata.files.map { .string($0.name) })),
                ("directory", .array(f.entries.map { e in .object([
                    ("name", .string(e.name)), ("scheme", .string(e.scheme)), ("dtype", .string(e.dtype.rawValue)),
                    ("shape", .array(e.shape.map { .int($0) })),
                    ("components", .array(e.components.map { c in .object([
                        ("role", .string(c.role)), ("dtype", .string(c.dtype.rawValue)), ("shape", .array(c.shape.map { .int($0) })),
                        ("offset", .int(f.header.dataOffset + c.offset)), ("size", .int(c.size)), ("xxh3", .string(XXH3.hex(c.checksum))),
                    ]) })),
                ] + (e.parts.isEmpty ? [] : [("parts", .array(e.parts.map { .object([("name", .string($0.name)), ("start", .int($0.start)), ("length", .int($0.length))]) }))])) })),
            ]))] } ?? []))
    }

    var mixedJSON: [(String, JSONValue)] {
        guard let x = mixed else { return [] }
        let tensors: [JSONValue] = x.tensors.map {
            .object([("name", .string($0.name)), ("scheme", .string($0.scheme)), ("bits_per_weight", .number(formatFixed($0.bpw, 4)))])
        }
        return [("mixed", .object([
            ("target_bpw", x.target.map { .number("\($0)") } ?? .null),
            ("achieved_bpw", .number(formatFixed(x.achieved, 4))),
            ("tensors", .array(tensors)),
        ]))]
    }

    public var showDirectory = true

    public var text: String {
        var s = "\(path)\n  model_type: \(modelType)\n"
        for (k, v) in architecture { s += "  \(k): \(v)\n" }
        s += "  parameters: \(formatCount(totalParameters)) (\(totalParameters)), \(formatBytes(totalBytes)), \(formatFixed(Self.bpw(GroupStats(tensors: 0, parameters: totalParameters, bytes: totalBytes)), 2)) bits/weight\n"
        s += "  by module:\n"
        for (k, v) in groups {
            s += "    \(pad(k.rawValue, 10)) \(pad(formatCount(v.parameters), 9)) params  \(pad(formatBytes(v.bytes), 9))  \(v.tensors) tensors\n"
        }
        s += "  by scheme (as stored; bits/weight include scales, absmax, zeros):\n"
        for (k, v) in schemes {
            s += "    \(pad(k, 12)) \(pad(formatCount(v.parameters), 9)) params  \(pad(formatBytes(v.bytes), 9))  \(pad(formatFixed(Self.bpw(v), 2) + " bits/weight", 17))  \(v.tensors) tensors\n"
        }
        if let x = mixed {
            var counts: [String: (tensors: Int, params: Int)] = [:]
            for t in x.tensors { counts[t.scheme, default: (0, 0)].tensors += 1 }
            s += "  mixed precision: \(formatFixed(x.achieved, 3)) bits/weight over \(x.tensors.count) tensors" + (x.target.map { " (target \(formatFixed($0, 3)))" } ?? "")
                + ": " + counts.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value.tensors)" }.joined(separator: ", ") + "\n"
            if showDirectory {
                for t in x.tensors { s += "    \(pad(t.name, 48)) \(pad(t.scheme, 9)) \(formatFixed(t.bpw, 3)) bits/weight\n" }
            }
        }
        s += "  shards: \(shards.count)\n"
        for sh in shards { s += "    \(sh.file)  \(sh.tensors) tensors  \(formatBytes(sh.bytes))\n" }
        if let p = provenance {
            s += "  provenance (i2q \(p.i2qVersion)):\n"
            s += "    source: \(p.source["kind"]?.stringValue ?? "?") \(p.source["path"]?.stringValue ?? "")\n"
            for (i, r) in p.passes.enumerated() { s += "    pass \(i + 1): \(r.summary) (i2q \(r.i2qVersion))\n" }
        }
        if let f = i2q {
            s += "  i2q file: version \(f.header.versionMajor).\(f.header.versionMinor), alignment \(f.header.alignment), \(formatBytes(f.header.fileSize)), metadata \(formatBytes(f.header.metadataSize))\(f.header.flags & I2QSpec.flagMetadataZstd != 0 ? " (zstd)" : "")\n"
            s += "    files: \(f.metadata.files.map(\.name).joined(separator: ", "))\n"
            if showDirectory {
                s += "  directory:\n"
                for e in f.entries {
                    s += "    \(e.name)  \(e.scheme) \(e.dtype.rawValue) \(e.shape)"
                    for c in e.components { s += "  [\(c.role) \(c.dtype.rawValue) @\(f.header.dataOffset + c.offset) +\(c.size) xxh3 \(XXH3.hex(c.checksum))]" }
                    if !e.parts.isEmpty { s += "  parts: " + e.parts.map { "\($0.name)[\($0.start)..<\($0.start + $0.length)]" }.joined(separator: ", ") }
                    s += "\n"
                }
            }
        }
        if problems.isEmpty { s += "  problems: none\n" } else {
            s += "  problems:\n"
            for p in problems { s += "    - \(p)\n" }
        }
        return s
    }
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }

/// The first values of one plain tensor, read in place from the mapping (no copy of the tensor).
public struct TensorPeek: Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let offset: Int
    public let values: [Double]

    public init(source: any ModelSource, name: String, count: Int = 8) throws {
        guard let t = source.tensor(name) else {
            if source.quantizedTensorNames.contains(name) {
                throw PassError.quantizedInput(path: source.path, tensors: [name], verb: "--tensor")
            }
            throw SafetensorsError.missingTensor(tensor: name, where: source.path)
        }
        self.name = name; dtype = t.dtype; shape = t.shape; offset = t.offset
        let n = min(count, t.elementCount)
        let head = UnsafeMutableRawBufferPointer.allocate(byteCount: max(n * t.dtype.size, 1), alignment: 64)
        defer { head.deallocate() }
        try t.read(elements: 0, count: n, into: head.baseAddress!)
        let b = UnsafeRawBufferPointer(head)
        values = {
            (0..<n).map { i -> Double in
                switch t.dtype {
                case .f32: return Double(b.loadUnaligned(fromByteOffset: i * 4, as: Float.self))
                case .f16: return Double(b.loadUnaligned(fromByteOffset: i * 2, as: Float16.self))
                case .bf16: return Double(FloatConversion.float(fromBF16: b.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
                case .f64: return b.loadUnaligned(fromByteOffset: i * 8, as: Double.self)
                case .i64: return Double(b.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))
                case .i32: return Double(b.loadUnaligned(fromByteOffset: i * 4, as: Int32.self))
                case .i16: return Double(b.loadUnaligned(fromByteOffset: i * 2, as: Int16.self))
                case .i8: return Double(b.loadUnaligned(fromByteOffset: i, as: Int8.self))
                default: return Double(b[i * t.dtype.size])
                }
            }
        }()
    }

    public var text: String {
        "\(name): \(dtype.rawValue) \(shape) at byte \(offset)\n  first values: " + values.map { "\($0)" }.joined(separator: ", ")
    }
}
