import I2QCore
import I2QFormats
import I2QQuant

/// One tensor of the export plan.
public struct GGUFPlannedTensor: Sendable {
    /// llama.cpp name (`blk.0.attn_q.weight`).
    public let name: String
    /// HF name in the source.
    public let source: String
    public let shape: [Int]
    public let type: GGMLType
    /// q/k rows are permuted for llama.cpp's rotary layout with this many heads (nil: rows as is).
    public let permuteHeads: Int?
    /// A tensor the export computes (`rope_freqs.weight`), written as these f32 values; `source` is "".
    public var values: [Float]? = nil
}

/// The tensors of a text-model GGUF export (`GGUFExportPass`) — llama.cpp names, shapes, GGML types and
/// order — as convert_hf_to_gguf.py's LlamaModel plans them: per-tensor types from `GGUFTypeChoice`
/// (or a ggml input's stored types, `GGUFStoredBlocks`), the converter's order, and llama3 RoPE
/// scaling as a generated `rope_freqs.weight` first.
struct GGUFExportPlan {
    var tensors: [GGUFPlannedTensor]
    /// What the user should know (modules not written, type fallbacks), in the order found.
    var notes: [String] = []

    /// (llama.cpp name, checkpoint name, heads q/k rows are permuted with).
    typealias Name = (gguf: String, hf: String, heads: Int?)
    /// A name with the tensor's shape, checked.
    typealias Checked = (g: String, hf: String, heads: Int?, shape: [Int])

    init(source: any ModelSource, blocks: GGUFStoredBlocks?, type: GGUFExportType, intermediate: GGUFExportType,
         overrides: [TensorTypeOverride], hasImportance: Bool) throws {
        let t = source.config.textConfig
        let names = try Self.names(source, blocks: blocks)
        if let n = Self.otherModulesNote(source) { notes.append(n) }
        let checked = try Self.checked(names, source: source, blocks: blocks)
        let types: [String: GGMLType]
        if let blocks {
            types = blocks.types(checked.map { ($0.g, $0.hf, $0.shape, source.tensor($0.hf)?.dtype) })
        } else {
            let choice = try GGUFTypeChoice(type, tensors: checked.map { ($0.g, $0.shape) }, intermediate: intermediate, text: t,
                                            overrides: overrides, hasImatrix: hasImportance)
            notes += choice.notes
            types = choice.types
        }
        var plan = Self.converterOrder(checked, source: source).map {
            GGUFPlannedTensor(name: $0.g, source: $0.hf, shape: $0.shape, type: types[$0.g]!, permuteHeads: $0.heads)
        }
        if let f = Self.llama3RopeFactors(t) {
            plan.insert(GGUFPlannedTensor(name: "rope_freqs.weight", source: "", shape: [f.count], type: .f32, permuteHeads: nil, values: f), at: 0)
        }
        tensors = plan
    }

    /// The text decoder's names in this checkpoint: the embedding, every layer's (GGUFNames.llamaLayer),
    /// the final norm, and `output` unless the embeddings are tied.
    static func names(_ source: any ModelSource, blocks: GGUFStoredBlocks?) throws -> [Name] {
        let cfg = source.config
        let t = cfg.textConfig
        // Names: the text decoder's prefix in this checkpoint.
        let arch = cfg.architecture
        func has(_ n: String) -> Bool { source.tensor(n) != nil || blocks?.views[n] != nil }
        guard let prefix = arch.textPrefix(where: has) else {
            throw ModelError.missingTensor(model: source.path, tensor: arch.textPrefix + "embed_tokens.weight")
        }
        let tied = !has("lm_head.weight") || t.tieWordEmbeddings  // as the runtime (and transformers) decide
        var names: [Name] = [(GGUFNames.embedding.0, prefix + GGUFNames.embedding.1, nil)]
        for i in 0..<t.numHiddenLayers {
            let b = "blk.\(i).", l = "\(prefix)layers.\(i)."
            names += GGUFNames.llamaLayer.map { e in
                (b + e.gguf, l + e.hf, e.permute == "q" ? t.numAttentionHeads : e.permute == "k" ? t.numKeyValueHeads : nil)
            }
        }
        names.append((GGUFNames.finalNorm.0, prefix + GGUFNames.finalNorm.1, nil))
        if !tied { names.append((GGUFNames.output.0, GGUFNames.output.1, nil)) }
        return names
    }

    /// Modules outside the text decoder (Idefics2: the vision tower and the connector) have no
    /// place in a llama GGUF: say so instead of dropping them silently. nil when there are none.
    static func otherModulesNote(_ source: any ModelSource) -> String? {
        let cfg = source.config
        let others = cfg.architecture.otherModules.map { m in (m.prefix, source.tensors.filter { $0.name.hasPrefix(m.prefix) }) }.filter { !$0.1.isEmpty }
        guard !others.isEmpty else { return nil }
        let what = others.map { "\($0.0)* (\($0.1.count) tensors, \(formatCount($0.1.reduce(0) { $0 + $1.elementCount })) params)" }.joined(separator: ", ")
        return "only the text decoder is written: \(what) are not in the GGUF, so it runs text-only prompts — llama.cpp reads a vision tower from a separate projector file, which --mmproj FILE writes for Idefics3/SmolVLM (llama.cpp has no \(cfg.modelType) projector otherwise)."
    }

    /// Each name with its tensor's shape: stored ggml blocks' [rows, cols], else a float tensor of 1 or
    /// 2 dimensions; q/k rows must split into the heads' rotary halves.
    static func checked(_ names: [Name], source: any ModelSource, blocks: GGUFStoredBlocks?) throws -> [Checked] {
        let t = source.config.textConfig
        let path = source.path
        var checked: [Checked] = []
        for (g, hf, heads) in names {
            let shape: [Int]
            if let v = blocks?.views[hf] {
                shape = [v.rows, v.cols]
            } else {
                guard let st = source.tensor(hf) else { throw ModelError.missingTensor(model: path, tensor: hf) }
                guard st.dtype.isCastableFloat else {
                    throw GGUFExportError.unsupportedModel(path: path, detail: "tensor \"\(hf)\" is \(st.dtype.rawValue); GGUF export needs float tensors.")
                }
                guard (1...2).contains(st.shape.count) else {
                    throw GGUFExportError.unsupportedModel(path: path, detail: "tensor \"\(hf)\" has shape \(st.shape); a llama decoder's tensors are 1-D or 2-D.")
                }
                shape = st.shape
            }
            if let h = heads, shape[0] % (2 * h) != 0 {
                throw ModelError.shapeMismatch(model: path, tensor: hf, expected: [h * t.headDim, t.hiddenSize], actual: shape)
            }
            checked.append((g, hf, heads, shape))
        }
        return checked
    }

    /// convert_hf_to_gguf's order: generated tensors (rope_freqs) first, then the checkpoint's tensors
    /// shard by shard (sorted shard names), each shard's names sorted (gguf-py SafetensorsLocal).
    static func converterOrder(_ checked: [Checked], source: any ModelSource) -> [Checked] {
        let shardOf: (String) -> String = FileSystem.isDirectory(source.path) ? { source.tensor($0)?.file?.path ?? "" } : { _ in "" }
        return checked.map { (c: $0, shard: Array(shardOf($0.hf).utf8), name: Array($0.hf.utf8)) }.sorted {
            $0.shard != $1.shard ? $0.shard.lexicographicallyPrecedes($1.shard) : $0.name.lexicographicallyPrecedes($1.name)
        }.map(\.c)
    }

    /// llama.cpp's `rope_freqs.weight` for llama3 RoPE scaling (convert_hf_to_gguf LlamaModel
    /// `generate_extra_tensors`): per frequency 1, factor, or 1 / ((1 − s)/factor + s) with
    /// s = (original/wavelen − low)/(high − low) — the wavelength bands of transformers'
    /// `_compute_llama3_parameters` (the runtime's RoPE), as a divisor of the frequency. float32 as torch computes it
    /// there: freq = 1 / base^(arange(0, d, 2)/d), python-float scalars rounded to float32 where they
    /// meet the float32 tensor. nil for other rope types. [headDim / 2]
    static func llama3RopeFactors(_ t: TextConfig) -> [Float]? {
        let r = t.rope
        guard r.ropeType.lowercased() == "llama3" else { return nil }
        let factor = r.factor ?? 8, low = r.lowFreqFactor ?? 1, high = r.highFreqFactor ?? 4
        let old = Double(r.originalMaxPositionEmbeddings ?? 8192)
        let lowWavelen = Float(old / low), highWavelen = Float(old / high)
        return RopeParameters.inverseFrequencies(headDim: t.headDim, theta: r.theta).map { freq -> Float in
            let wavelen = Float(2 * Double.pi) / freq
            if wavelen < highWavelen { return 1 }
            if wavelen > lowWavelen { return Float(factor) }
            let smooth = (Float(old) / wavelen - Float(low)) / Float(high - low)
            return 1 / ((1 - smooth) / Float(factor) + smooth)
        }
    }
}
