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
    public let shards: [ShardStats]
    public let totalParameters: Int
    public let totalBytes: Int
    public let problems: [String]

    public init(_ m: ModelDirectory) {
        path = m.path
        modelType = m.config.modelType
        var arch: [(String, String)] = []
        let t = m.config.textConfig
        if case let .idefics2(c) = m.config {
            arch.append(("vision", "\(c.vision.numHiddenLayers) layers, hidden \(c.vision.hiddenSize), \(c.vision.numAttentionHeads) heads, patch \(c.vision.patchSize), image \(c.vision.imageSize)"))
            arch.append(("perceiver", "\(c.perceiver.resamplerDepth) layers, \(c.perceiver.resamplerNLatents) latents, \(c.perceiver.resamplerNHeads) heads × \(c.perceiver.resamplerHeadDim), \(c.perceiver.numKeyValueHeads) kv heads, eps \(c.perceiver.rmsNormEps)"))
            arch.append(("image_token_id", "\(c.imageTokenId)"))
        }
        arch.append(("text", "\(t.modelType): \(t.numHiddenLayers) layers, hidden \(t.hiddenSize), intermediate \(t.intermediateSize), \(t.numAttentionHeads) heads, \(t.numKeyValueHeads) kv heads, head_dim \(t.headDim), vocab \(t.vocabSize)"))
        arch.append(("rope", "\(t.rope.ropeType), theta \(t.rope.theta)"))
        arch.append(("rms_norm_eps", "\(t.rmsNormEps)"))
        arch.append(("sliding_window", t.slidingWindow.map(String.init) ?? "none"))
        arch.append(("tie_word_embeddings", "\(t.tieWordEmbeddings)"))
        if let d = m.config.textConfig.dtype ?? { if case let .idefics2(c) = m.config { return c.dtype }; return nil }() {
            arch.append(("config dtype", d))
        }
        if let p = m.processor {
            arch.append(("image processor", "longest_edge \(p.longestEdge), shortest_edge \(p.shortestEdge), splitting \(p.doImageSplitting), image_seq_len \(p.imageSeqLen) (from \(p.source))"))
        }
        architecture = arch

        var g: [ModuleGroup: GroupStats] = [:]
        var d: [DType: GroupStats] = [:]
        for s in m.weights.tensors {
            let grp = ModelRegistry.group(of: s.name, modelType: modelType)
            g[grp, default: .init()].tensors += 1
            g[grp, default: .init()].parameters += s.info.elementCount
            g[grp, default: .init()].bytes += s.info.byteCount
            d[s.info.dtype, default: .init()].tensors += 1
            d[s.info.dtype, default: .init()].parameters += s.info.elementCount
            d[s.info.dtype, default: .init()].bytes += s.info.byteCount
        }
        groups = ModuleGroup.allCases.compactMap { k in g[k].map { (k, $0) } }
        dtypes = DType.allCases.compactMap { k in d[k].map { (k, $0) } }
        shards = m.weights.shards.map { ShardStats(file: FileSystem.basename($0.path), tensors: $0.tensors.count, bytes: $0.tensors.reduce(0) { $0 + $1.byteCount }) }
        totalParameters = m.weights.tensors.reduce(0) { $0 + $1.info.elementCount }
        totalBytes = m.weights.totalBytes
        var problems = m.problems
        if !m.config.textConfig.tieWordEmbeddings && m.weights.tensor("lm_head.weight") == nil {
            problems.append("lm_head.weight is missing and tie_word_embeddings is false")
        }
        self.problems = problems
    }

    public var json: JSONValue {
        func stats(_ s: GroupStats) -> JSONValue { .object([("tensors", .int(s.tensors)), ("parameters", .int(s.parameters)), ("bytes", .int(s.bytes))]) }
        return .object([
            ("path", .string(path)),
            ("model_type", .string(modelType)),
            ("architecture", .object(architecture.map { ($0.0, .string($0.1)) })),
            ("parameters", .int(totalParameters)),
            ("bytes", .int(totalBytes)),
            ("groups", .object(groups.map { ($0.0.rawValue, stats($0.1)) })),
            ("dtypes", .object(dtypes.map { ($0.0.rawValue, stats($0.1)) })),
            ("shards", .array(shards.map { .object([("file", .string($0.file)), ("tensors", .int($0.tensors)), ("bytes", .int($0.bytes))]) })),
            ("problems", .array(problems.map { .string($0) })),
        ])
    }

    public var text: String {
        var s = "\(path)\n  model_type: \(modelType)\n"
        for (k, v) in architecture { s += "  \(k): \(v)\n" }
        s += "  parameters: \(formatCount(totalParameters)) (\(totalParameters)), \(formatBytes(totalBytes))\n"
        s += "  by module:\n"
        for (k, v) in groups {
            s += "    \(pad(k.rawValue, 10)) \(pad(formatCount(v.parameters), 9)) params  \(pad(formatBytes(v.bytes), 9))  \(v.tensors) tensors\n"
        }
        s += "  by dtype:\n"
        for (k, v) in dtypes {
            s += "    \(pad(k.rawValue, 10)) \(pad(formatCount(v.parameters), 9)) params  \(pad(formatBytes(v.bytes), 9))  \(v.tensors) tensors\n"
        }
        s += "  shards: \(shards.count)\n"
        for sh in shards { s += "    \(sh.file)  \(sh.tensors) tensors  \(formatBytes(sh.bytes))\n" }
        if problems.isEmpty { s += "  problems: none\n" } else {
            s += "  problems:\n"
            for p in problems { s += "    - \(p)\n" }
        }
        return s
    }
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }

/// "8.40B", "135M", "12.3K".
public func formatCount(_ n: Int) -> String {
    let v = Double(n)
    if v >= 1e9 { return formatFixed(v / 1e9, 2) + "B" }
    if v >= 1e6 { return formatFixed(v / 1e6, 1) + "M" }
    if v >= 1e3 { return formatFixed(v / 1e3, 1) + "K" }
    return String(n)
}
