import Foundation
import I2QCore

/// A llama.cpp GGUF file as a model source: the transformers model that
/// `AutoModelForCausalLM.from_pretrained(dir, gguf_file=…)` builds from it (transformers 5.24,
/// `modeling_gguf_pytorch_utils.load_gguf_checkpoint`), with float32 tensors dequantized on demand.
///
/// - Tensor names: the llama map of gguf-py (`token_embd` → `model.embed_tokens.weight`,
///   `blk.N.attn_q` → `model.layers.N.self_attn.q_proj.weight`, …, `output` → `lm_head.weight`).
///   Tensors transformers has no parameter for (biases of a llama, `rope_freqs`, layers beyond
///   `block_count`) are skipped, as transformers skips them, and listed in `problems`.
/// - `attn_q` / `attn_k` rows are put back in HF order: llama.cpp's converter permuted them for its
///   interleaved RoPE; transformers' `LlamaTensorProcessor._reverse_permute_weights` undoes it.
/// - config.json: the keys transformers derives from the metadata (`GGUF_CONFIG_MAPPING`) over the
///   defaults of LlamaConfig, written as `config.save_pretrained` writes them (keys
///   sorted, with `architectures`), without `quantization_config`.
/// - Every tensor is float32, produced from the mapped file in the range asked for (float32 tensors
///   that need no reordering are read in place): memory stays bounded.
/// - Tokenizer: tokenizer.json / tokenizer_config.json built from `tokenizer.ggml.*` as transformers'
///   `AutoTokenizer.from_pretrained(dir, gguf_file=…)` builds them (`GGUFTokenizer`), on first use; a
///   file without a vocabulary i2q builds still converts, and `problems` says why it has none.
public final class GGUFModel: ModelSource, @unchecked Sendable {
    public let path: String
    public let gguf: GGUFFile
    public let rawConfig: JSONValue
    public let config: ModelConfig
    public let tensors: [SourceTensor]
    public let problems: [String]
    /// HF name → GGUF tensor name, for every tensor of `tensors`.
    public let sourceNames: [String: String]
    public let generationConfig: JSONValue
    /// Whether `tokenizer.ggml.*` names a vocabulary i2q turns into tokenizer files (`GGUFTokenizer.check`).
    public let hasTokenizer: Bool
    private let tokenizerLock = NSLock()
    private var tokenizerCache: GGUFTokenizer?

    /// The transformers release whose GGUF loader this reproduces (written as `transformers_version`).
    public static let transformersVersion = "5.24.0"

    public convenience init(path: String) throws {
        try self.init(file: try GGUFFile(path: path))
    }

    public init(file g: GGUFFile) throws {
        gguf = g
        path = g.path
        var problems: [String] = []

        guard let arch = g.value("general.architecture")?.stringValue else {
            throw GGUFError.architecture(file: path, detail: "no general.architecture key: not a model GGUF file.")
        }
        guard arch == "llama" else {
            throw GGUFError.architecture(file: path, detail: "architecture \"\(arch)\" is not supported; i2q reads llama-architecture GGUF files (Llama, Mistral, SmolLM…).")
        }
        // transformers 5.24 would turn a file whose general.name is exactly "mistral" into a
        // MistralConfig and then fail (gguf-py has no "mistral" tensor map); llama.cpp runs every
        // llama-architecture file as a llama (no sliding window), and so does i2q.
        let modelType = "llama"

        let (cfg, nHeads, nKV) = Self.buildConfig(g, arch: arch, modelType: modelType)
        rawConfig = cfg
        let cfgBytes = Array((JSONWriter.string(cfg, indent: 2) + "\n").utf8)
        config = try ModelRegistry.decode(Data(cfgBytes), path: path + " (config.json built from the GGUF metadata)")
        generationConfig = Self.buildGenerationConfig(cfg)
        let t = config.textConfig

        // Every layer has 9 tensors: a block_count the file cannot hold is an error (before any
        // per-layer work; transformers would initialise the missing weights at random).
        guard t.numHiddenLayers >= 0, t.numHiddenLayers <= g.tensors.count / 9 else {
            throw GGUFError.architecture(file: path, detail: "\(arch).block_count is \(t.numHiddenLayers) but the file holds \(g.tensors.count) tensors, too few for that many layers. The file is corrupt or incomplete.")
        }
        // Names: gguf-py's llama tensor map, over the layers transformers builds.
        let prefix = ModelArchitecture.llama.textPrefix
        var wanted: [(gguf: String, hf: String)] = [(GGUFNames.embedding.0, prefix + GGUFNames.embedding.1)]
        let layer = GGUFNames.llamaLayerReadOrder
        for i in 0..<t.numHiddenLayers {
            let b = "blk.\(i).", l = "\(prefix)layers.\(i)."
            wanted += layer.map { (b + $0.gguf, l + $0.hf) }
        }
        wanted.append((GGUFNames.finalNorm.0, prefix + GGUFNames.finalNorm.1))
        if !t.tieWordEmbeddings { wanted.append(GGUFNames.output) }
        let mapped = Set(wanted.map(\.gguf))
        for info in g.tensors where !mapped.contains(info.name) {
            problems.append("GGUF tensor \"\(info.name)\" has no transformers counterpart and is skipped (as transformers does).")
        }

        var out: [SourceTensor] = []
        var names: [String: String] = [:]
        for (gname, hf) in wanted {
            guard let info = g.tensor(gname) else {
                throw ModelError.missingTensor(model: path, tensor: "\(hf) (GGUF \"\(gname)\")")
            }
            guard info.type.isDequantizable else {
                throw GGUFError.unsupportedType(file: path, tensor: gname, type: info.type.name)
            }
            // LlamaTensorProcessor: q with num_attention_heads, k with num_key_value_heads; no
            // permutation at all when either is absent from the metadata.
            var heads: Int? = nil
            if let h = nHeads, let kv = nKV {
                if gname.contains(".attn_q.") { heads = h } else if gname.contains(".attn_k.") { heads = kv }
            }
            out.append(try Self.sourceTensor(g, info, hfName: hf, permuteHeads: heads))
            names[hf] = gname
        }
        tensors = out
        sourceNames = names
        // The tokenizer is built on first use (auxiliaryFiles); here only whether there is one.
        do {
            problems += try GGUFTokenizer.check(g)
            hasTokenizer = true
        } catch let e as GGUFTokenizerError {
            hasTokenizer = false
            problems.append("no tokenizer.json: " + e.description)
        }
        self.problems = problems
        try checkShapes()
    }

    /// The tensor as transformers holds it: shape reversed from GGML order, float32, q/k rows
    /// un-permuted.
    static func sourceTensor(_ g: GGUFFile, _ info: GGUFTensorInfo, hfName: String, permuteHeads: Int?) throws -> SourceTensor {
        let shape = info.shape
        if let nh = permuteHeads {
            // w.reshape(n_head, dim, 2, *rest).swapaxes(2, 1).reshape(shape), dim = rows / n_head / 2:
            // output row h*2*dim + j*dim + i comes from input row h*2*dim + i*2 + j.
            let rows = shape.first ?? 1
            guard shape.count >= 1, nh > 0, rows % (2 * nh) == 0 else {
                throw GGUFError.tensor(file: g.path, tensor: info.name, detail: "\(rows) rows cannot be split into \(nh) heads × 2 rotary halves; the head counts in the metadata do not match this tensor.")
            }
            let dim = rows / nh / 2
            let cols = rows == 0 ? 0 : info.elementCount / rows
            return SourceTensor(name: hfName, dtype: .f32, shape: shape) { first, count, dst in
                var out = dst.assumingMemoryBound(to: Float.self)
                var e = first
                let end = first + count
                while e < end {
                    let r = e / cols, c = e % cols
                    let n = min(cols - c, end - e)
                    let h = r / (2 * dim), rem = r % (2 * dim)
                    let src = h * 2 * dim + (rem % dim) * 2 + rem / dim
                    try g.dequantize(info, first: src * cols + c, count: n, into: out)
                    out += n
                    e += n
                }
            }
        }
        if info.type == .f32 {
            return SourceTensor(name: hfName, dtype: .f32, shape: shape, file: g.file, offset: info.offset, byteCount: info.byteCount)
        }
        return SourceTensor(name: hfName, dtype: .f32, shape: shape) { first, count, dst in
            try g.dequantize(info, first: first, count: count, into: dst.assumingMemoryBound(to: Float.self))
            // Streaming readers go through a tensor once: drop the source pages from RSS.
            let bs = info.type.blockSize, ts = info.type.typeSize
            let start = info.offset + first / bs * ts
            g.file.release(start, (first + count + bs - 1) / bs * ts + info.offset - start)
        }
    }

    /// config.json as transformers builds it from the metadata (`load_gguf_checkpoint` →
    /// LlamaConfig) and `save_pretrained` writes it. Returns the config and the head
    /// counts the tensor processor sees (nil when the key is absent).
    static func buildConfig(_ g: GGUFFile, arch: String, modelType: String) -> (JSONValue, Int?, Int?) {
        // LlamaConfig defaults, as `to_json_string(use_diff=True)` lists them.
        var c: [String: JSONValue] = [
            "attention_bias": .bool(false), "attention_dropout": .number("0.0"), "bos_token_id": .int(1),
            "eos_token_id": .int(2), "hidden_act": .string("silu"), "hidden_size": .int(4096),
            "initializer_range": .number("0.02"), "intermediate_size": .int(11008),
            "max_position_embeddings": .int(2048), "mlp_bias": .bool(false), "num_attention_heads": .int(32),
            "num_hidden_layers": .int(32), "pad_token_id": .null, "pretraining_tp": .int(1),
            "rms_norm_eps": .number("1e-06"), "tie_word_embeddings": .bool(false), "use_cache": .bool(true),
            "vocab_size": .int(32000),
        ]
        var ropeTheta: JSONValue = .number("10000.0")
        var headDim: JSONValue? = nil
        // GGUF_CONFIG_MAPPING for llama, general and tokenizer keys.
        let map: [String: String] = [
            "context_length": "max_position_embeddings", "block_count": "num_hidden_layers",
            "feed_forward_length": "intermediate_size", "embedding_length": "hidden_size",
            "rope.dimension_count": "head_dim", "rope.freq_base": "rope_theta",
            "attention.head_count": "num_attention_heads", "attention.head_count_kv": "num_key_value_heads",
            "attention.layer_norm_rms_epsilon": "rms_norm_eps", "vocab_size": "vocab_size",
        ]
        let tokenizerMap: [String: String] = [
            "tokenizer.ggml.bos_token_id": "bos_token_id", "tokenizer.ggml.eos_token_id": "eos_token_id",
            "tokenizer.ggml.unknown_token_id": "unk_token_id", "tokenizer.ggml.padding_token_id": "pad_token_id",
        ]
        var heads: Int? = nil, kvHeads: Int? = nil
        for (key, value) in g.metadata {
            var hfKey: String? = nil
            if key.hasPrefix(arch + "."), let k = map[String(key.dropFirst(arch.count + 1))] { hfKey = k }
            if let k = tokenizerMap[key] { hfKey = k }
            if key == "general.name" { hfKey = "_model_name_or_path" }
            guard let k = hfKey else { continue }
            // `[parse(part) for part in data]`, unwrapped when it has one element.
            var v = value.json
            if case let .array(a) = v, a.count == 1 { v = a[0] }
            if k == "_model_name_or_path", case let .string(s) = v, s.contains(arch), arch != modelType {
                v = .string(s.replacingOccurrences(of: arch, with: modelType))
            }
            switch k {
            case "rope_theta": ropeTheta = v
            case "head_dim": headDim = v
            default: c[k] = v
            }
            if k == "num_attention_heads" { heads = value.intValue }
            if k == "num_key_value_heads" { kvHeads = value.intValue }
        }
        c["tie_word_embeddings"] = .bool(g.tensor("output.weight") == nil)
        if g.value(arch + ".vocab_size") == nil, let tokens = g.value("tokenizer.ggml.tokens")?.arrayValue {
            c["vocab_size"] = .int(tokens.count)
        }
        // Derived as the config classes derive them.
        let h = c["num_attention_heads"]?.intValue ?? 32
        if c["num_key_value_heads"] == nil || c["num_key_value_heads"] == .null { c["num_key_value_heads"] = .int(h) }
        if let hd = headDim { c["head_dim"] = hd } else {
            let hs = c["hidden_size"]?.intValue ?? 4096
            c["head_dim"] = .int(h > 0 ? hs / h : 0)
        }
        // rope_theta may be an int in odd files: transformers keeps the Python value as is.
        c["rope_parameters"] = .object([("rope_theta", ropeTheta), ("rope_type", .string("default"))])
        c["model_type"] = .string(modelType)
        c["architectures"] = .array([.string("LlamaForCausalLM")])
        c["dtype"] = .string("float32")
        c["transformers_version"] = .string(transformersVersion)
        let sorted = c.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        return (.object(sorted.map { ($0, c[$0]!) }), heads, kvHeads)
    }

    /// generation_config.json as transformers derives it from the model config
    /// (`GenerationConfig.from_model_config`, saved with `use_diff`).
    static func buildGenerationConfig(_ cfg: JSONValue) -> JSONValue {
        var e: [(String, JSONValue)] = [("_from_model_config", .bool(true))]
        for k in ["bos_token_id", "eos_token_id"] { if let v = cfg[k], v != .null { e.append((k, v)) } }
        e += [("output_attentions", .bool(false)), ("output_hidden_states", .bool(false))]
        if let v = cfg["pad_token_id"], v != .null { e.append(("pad_token_id", v)) }
        e += [("transformers_version", .string(transformersVersion)), ("use_cache", .bool(true))]
        return .object(e)
    }

    func checkShapes() throws {
        let t = config.textConfig
        let p = ModelArchitecture.llama.textPrefix
        let expect: [(String, [Int])] = [
            (p + "embed_tokens.weight", [t.vocabSize, t.hiddenSize]),
            (p + "norm.weight", [t.hiddenSize]),
            (p + "layers.0.self_attn.q_proj.weight", [t.numAttentionHeads &* t.headDim, t.hiddenSize]),
            (p + "layers.0.self_attn.k_proj.weight", [t.numKeyValueHeads &* t.headDim, t.hiddenSize]),
            (p + "layers.0.mlp.gate_proj.weight", [t.intermediateSize, t.hiddenSize]),
        ] + (t.tieWordEmbeddings ? [] : [("lm_head.weight", [t.vocabSize, t.hiddenSize])])
        for (name, shape) in expect {
            guard let st = tensor(name) else { continue }  // 0 layers: nothing to check
            if st.shape != shape {
                throw ModelError.shapeMismatch(model: path, tensor: "\(name) (GGUF \"\(sourceNames[name] ?? "?")\")", expected: shape, actual: st.shape)
            }
        }
    }

    // MARK: ModelSource

    public var quantizedTensorNames: [String] { [] }
    public var provenance: Provenance? { nil }

    /// The tokenizer built from `tokenizer.ggml.*` (once; nil when the file has none i2q builds, see
    /// `problems`). Throws `GGUFTokenizerError.invalid` for corrupt tokenizer metadata.
    public func tokenizer() throws -> GGUFTokenizer? {
        guard hasTokenizer else { return nil }
        tokenizerLock.lock()
        defer { tokenizerLock.unlock() }
        if let t = tokenizerCache { return t }
        let t = try GGUFTokenizer(file: gguf)
        tokenizerCache = t
        return t
    }

    /// generation_config.json (token ids from the GGUF), tokenizer.json and tokenizer_config.json
    /// (`GGUFTokenizer`: transformers' tokenizer for this GGUF) and chat_template.jinja (the GGUF's
    /// `tokenizer.chat_template`, byte for byte as transformers saves it).
    public func auxiliaryFiles() throws -> [(name: String, bytes: [UInt8])] {
        var files: [(name: String, bytes: [UInt8])] = [
            ("generation_config.json", Array((JSONWriter.string(generationConfig, indent: 2) + "\n").utf8)),
        ]
        if let t = try tokenizer() { files += t.files }
        if case let .string(b)? = gguf.value("tokenizer.chat_template") {
            files.append(("chat_template.jinja", b))
        }
        return files
    }

    /// File size, version, counts and a checksum of everything before the tensor data.
    public var identity: JSONValue {
        .object([
            ("kind", .string("gguf")),
            ("path", .string(path)),
            ("model_type", .string(config.modelType)),
            ("gguf_version", .int(Int(gguf.version))),
            ("size", .int(gguf.file.count)),
            ("tensor_count", .int(gguf.tensors.count)),
            ("header_xxh3", .string(XXH3.hex(gguf.file.withBytes(0, min(gguf.dataOffset, gguf.file.count)) { XXH3.hash($0) }))),
        ])
    }

    /// The GGML type of every GGUF tensor (for reports): name → type name.
    public var storedTypes: [(String, String)] { gguf.tensors.map { ($0.name, $0.type.name) } }
}
