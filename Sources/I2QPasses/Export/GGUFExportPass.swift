import I2QCore
import I2QFormats
import I2QQuant

public enum GGUFExportError: I2QError {
    case unsupportedModel(path: String, detail: String)
    case tokenizer(path: String, detail: String)
    /// An .i2q holding 4-bit (AWQ int4 / NF4 / FP4) tensors: GGUF cannot take them as they are.
    case quantizedInput(path: String, schemes: [String], first: String, source: String?)
    case importance(tensor: String, detail: String)
    /// A `quantize --target-bpw` output with affine int4 tensors: no GGUF type holds them.
    case mixedInt4(path: String, tensor: String, scheme: String, count: Int)
    /// `--type` (or `--tensor-type` / an importance matrix) given for an .i2q whose weights are
    /// already ggml blocks, asking for other bytes than the stored ones.
    case requantize(path: String, stored: String, recorded: Bool, requested: String, source: String?)

    public var description: String {
        switch self {
        case let .unsupportedModel(p, d): return "\(p): cannot export to GGUF: \(d)"
        case let .tokenizer(p, d): return "\(p): cannot build the GGUF vocabulary: \(d)"
        case let .quantizedInput(p, schemes, first, src):
            let from = src.map { "the unquantized model it was made from (\($0))" } ?? "the unquantized (f32/f16/bf16) model it was made from"
            var alt: [String] = []
            if schemes.contains(where: { $0 == "affine_int4" }) { alt.append("--to hf-awq (AutoAWQ GEMM: transformers, vLLM)") }
            if schemes.contains(where: { $0.contains("nf4") || $0.contains("fp4") }) { alt.append("--to hf-bnb (transformers + bitsandbytes)") }
            return "\(p): its weights are stored as \(schemes.joined(separator: ", ")) (first: \(first)), which no GGUF block type holds, and i2q does not re-quantize 4-bit weights (a second rounding on top of the first). Instead, export \(from) with `i2q export MODEL --to gguf --type q4_k_m` (or q4_0, q5_k_m, q6_k, q8_0)" + (alt.isEmpty ? "." : ", or export this file with " + alt.joined(separator: " or ") + ".")
        case let .importance(t, d): return "importance matrix for \(t): \(d)"
        case let .mixedInt4(p, t, g, n):
            return "\(p): \(n) tensor(s) of this mixed-precision file are not ggml blocks (first: \(t), affine \(g)), which no GGUF block type holds (q4_1 is affine but with blocks of 32 and other scales), and i2q does not re-quantize them. For GGUF, quantize again with candidates GGUF can hold, e.g. `i2q quantize MODEL --target-bpw X --candidates q4_0,q4_1,q5_0,q5_1,q8_0,q4_k,q5_k,q6_k,bf16 …`; the ggml and float tensors of a mixed file are written as they are."
        case let .requantize(p, stored, recorded, requested, src):
            let how = recorded ? "as \(stored) (recorded by `i2q quantize`)" : "in ggml blocks (mostly \(stored))"
            let from = src ?? "MODEL"
            return "\(p): its weights are already quantized \(how), and \(requested) asks for other bytes. i2q writes a quantized model's blocks to GGUF as they are and does not convert them: re-quantizing adds a second rounding on top of the first (quality lost), and dequantizing cannot restore what the first dropped. Export this file as it is with `i2q export \(p) --to gguf` (no --type), or export the unquantized model it was made from with `i2q export \(from) --to gguf --type TYPE` (--tensor-type and --imatrix apply there too)."
        }
    }
}

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

public struct GGUFExportReport: Sendable {
    public let output: String
    public let type: GGUFExportType
    /// llama.cpp's name of `general.file_type` (`type`'s, or a ggml input's file type).
    public let fileTypeName: String
    public let tensors: [GGUFPlannedTensor]
    public let bytesRead: Int
    public let bytesWritten: Int
    public let seconds: Double
    /// What the user should know (dropped settings, fallbacks, overflow to inf).
    public let notes: [String]

    public var summary: String {
        let counts = Dictionary(grouping: tensors, by: \.type.name).map { "\($0.value.count) \($0.key)" }.sorted().joined(separator: ", ")
        var s = "exported \(tensors.count) tensors (\(counts)) to gguf \(fileTypeName): \(formatBytes(bytesRead)) -> \(formatBytes(bytesWritten)) in \(formatFixed(seconds, 1))s -> \(output)"
        for n in notes { s += "\nnote: " + n }
        return s
    }
}

/// `i2q export --to gguf`: the text decoder of a Llama / Mistral model (or of an Idefics2 model) as a
/// llama-architecture GGUF v3 file that llama.cpp runs, matching llama.cpp's
/// `convert_hf_to_gguf.py` (LlamaModel, gguf-py 0.19) in names, q/k permutation, tensor types and
/// metadata, with these documented differences:
/// - llama-quantize's types (`--type q4_0 q4_1 q5_0 q5_1 q2_k q3_k_s q3_k_m q3_k_l q4_k_s q4_k_m q5_k_s q5_k_m q6_k`; convert_hf_to_gguf
///   has none of them): the file llama-quantize makes from i2q's default export (f16, or bf16 for
///   bf16 models) — per-tensor types by its recipe (LlamaQuantRecipe, `--tensor-type` overrides),
///   values rounded to that export's type first, then ggml's quantizers (GGMLQuantize), with an
///   importance matrix when given. Tensor data is byte-identical to llama-quantize's; the tensor
///   order is i2q's (llama-quantize sorts by layer, then name).
/// - A weight whose rows are not a multiple of 32 falls back to F16 under q8_0 (convert's
///   QuantError fallback); under llama-quantize's types the recipe decides (K-quants fall back to
///   Q5_0/Q5_1/Q8_0, then F16; the 32-element types stop with an error, as llama.cpp does).
/// - "llama" (SentencePiece-style) vocabularies built from tokenizer.json get scores from the merge
///   ranks (token made by merge r: −r) instead of gguf-py LlamaHfVocab's −1000 for every token:
///   llama.cpp's SPM tokenizer merges by score, and with equal scores it tokenizes differently from
///   the HF tokenizer (measured: "fox jumps", "internationalization").
/// - `tokenizer.ggml.add_bos_token` is written whenever the tokenizer decides it (a
///   TemplateProcessing without a leading special token means false).
/// Tensors are in the converter's order (generated `rope_freqs.weight` first, then the checkpoint's
/// names shard by shard, sorted); `general.*` as gguf-py derives it (GGUFGeneralMetadata); llama3
/// RoPE scaling is written as llama.cpp's `rope_freqs.weight` factors (`llama3RopeFactors`).
/// Mistral's sliding window has no llama-architecture key: llama.cpp attends to the whole context
/// (as convert_hf_to_gguf's output does); a note says so.
///
/// An .i2q holding `ggml` entries (`i2q quantize --type …`) is written as it is: every ggml tensor in
/// its stored type with its stored bytes, `general.file_type` the recorded one (GGUFStoredBlocks);
/// `--type` must then be that file type or absent, and --tensor-type / an importance matrix are refused.
public struct GGUFExportPass {
    public let source: any ModelSource
    public let outputPath: String
    /// The export type; for a ggml input, its file type when i2q names it, else the default export's.
    public let type: GGUFExportType
    /// `general.file_type` and llama.cpp's name for it.
    public let fileType: UInt32
    public let fileTypeName: String
    public let settings: OutputSettings
    let pipeline: PassPipeline
    public let plan: [GGUFPlannedTensor]
    public let metadata: [(key: String, value: GGUFValue)]
    public let notes: [String]
    /// llama-quantize types: the default export (f16 or bf16) whose values are quantized.
    let intermediate: GGUFExportType
    let importance: (any ImportanceSource)?
    /// The ggml entries of an .i2q input, copied as stored; nil for float inputs.
    let blocks: GGUFStoredBlocks?

    /// overrides: `--tensor-type REGEX=TYPE` (llama-quantize types only); importance: per-tensor
    /// importance vectors for the imatrix-weighted quantizers (llama-quantize types only).
    public init(source: any ModelSource, output: String, type: GGUFExportType? = nil, settings: OutputSettings,
                overrides: [TensorTypeOverride] = [], importance: (any ImportanceSource)? = nil) throws {
        // ggml entries are written as stored (GGUFStoredBlocks); other quantized layouts are refused.
        let blocks = try GGUFStoredBlocks(source)
        self.blocks = blocks
        let ggmlEntries = Set((source as? I2QFile)?.entries.filter { $0.scheme == GGMLBlockLayout.scheme }.map(\.name) ?? [])
        let q = source.quantizedTensorNames.filter { !ggmlEntries.contains($0) }
        if !q.isEmpty, let f = source as? I2QFile,
           f.provenance?.passes.contains(where: { $0.name == "quantize" && $0.params.contains { $0.0 == "type" && $0.1 == .string("mixed") } }) == true,
           let e = f.entries.first(where: { q.contains($0.name) && AffineInt4Layout.schemes.contains($0.scheme) }) {
            // Deliberately quiet: the group size only details the message (0 when unreadable).
            throw GGUFExportError.mixedInt4(path: source.path, tensor: e.name, scheme: "int\(AffineInt4Layout.bits(scheme: e.scheme) ?? 4)g\((try? AffineInt4Layout(e))?.groupSize ?? 0)",
                                            count: f.entries.filter { q.contains($0.name) }.count)
        }
        if !q.isEmpty {
            let schemes = (source as? I2QFile).map { f in Array(Set(f.entries.filter { q.contains($0.name) }.map(\.scheme))).sorted() } ?? ["a quantized layout"]
            throw GGUFExportError.quantizedInput(path: source.path, schemes: schemes, first: q[0], source: source.provenance?.source["path"]?.stringValue)
        }
        // A fused .i2q (i2q fuse) is read as the tensors its fused entries hold (zero-copy row
        // views): llama.cpp's llama architecture has separate attn_q/k/v and ffn_gate/up tensors.
        let source: any ModelSource = try (source as? I2QFile).flatMap { UnfusedSource.hasFused($0) ? try UnfusedSource($0) : nil } ?? source
        self.source = source
        outputPath = output
        self.settings = settings
        let requested = type
        let type = type ?? GGUFExportType.auto(for: source)
        intermediate = blocks?.intermediate ?? GGUFExportType.auto(for: source)
        self.importance = importance
        if blocks == nil && importance != nil && type.llama == nil {
            throw GGUFExportError.importance(tensor: "(all)", detail: "an importance matrix is used by llama-quantize's types (q4_0 … q6_k, q4_k_m …), not by --type \(type.rawValue).")
        }
        var notes: [String] = []

        let cfg = source.config
        let t = cfg.textConfig
        let path = source.path
        guard ModelArchitecture.llama.modelTypes.contains(t.modelType) else {
            throw GGUFExportError.unsupportedModel(path: path, detail: "model_type \"\(cfg.modelType)\" (text \"\(t.modelType)\"); GGUF export handles llama, mistral and idefics2's text decoder.")
        }
        guard t.hiddenAct == "silu" else { throw GGUFExportError.unsupportedModel(path: path, detail: "hidden_act \"\(t.hiddenAct)\"; llama.cpp's llama architecture uses silu.") }
        guard !t.attentionBias, !t.mlpBias else { throw GGUFExportError.unsupportedModel(path: path, detail: "attention_bias/mlp_bias are set; i2q exports bias-free llama decoders only.") }
        guard ["default", "llama3"].contains(t.rope.ropeType) else {
            throw GGUFExportError.unsupportedModel(path: path, detail: "rope_type \"\(t.rope.ropeType)\" is not exported yet (the default RoPE and llama3 scaling are).")
        }
        guard t.headDim > 0, t.headDim % 2 == 0 else { throw GGUFExportError.unsupportedModel(path: path, detail: "head_dim \(t.headDim) must be even and positive.") }
        if let w = t.slidingWindow {
            notes.append("sliding_window \(w) is not representable in a llama GGUF: llama.cpp attends to the whole context, so outputs differ from transformers once a sequence is longer than \(w) tokens (convert_hf_to_gguf.py drops it too).")
        }

        // Names: the text decoder's prefix in this checkpoint.
        let arch = cfg.architecture
        func has(_ n: String) -> Bool { source.tensor(n) != nil || blocks?.views[n] != nil }
        guard let prefix = arch.textPrefix(where: has) else {
            throw ModelError.missingTensor(model: path, tensor: arch.textPrefix + "embed_tokens.weight")
        }
        let tied = !has("lm_head.weight") || t.tieWordEmbeddings  // as the runtime (and transformers) decide
        var names: [(gguf: String, hf: String, heads: Int?)] = [(GGUFNames.embedding.0, prefix + GGUFNames.embedding.1, nil)]
        for i in 0..<t.numHiddenLayers {
            let b = "blk.\(i).", l = "\(prefix)layers.\(i)."
            names += GGUFNames.llamaLayer.map { e in
                (b + e.gguf, l + e.hf, e.permute == "q" ? t.numAttentionHeads : e.permute == "k" ? t.numKeyValueHeads : nil)
            }
        }
        names.append((GGUFNames.finalNorm.0, prefix + GGUFNames.finalNorm.1, nil))
        if !tied { names.append((GGUFNames.output.0, GGUFNames.output.1, nil)) }
        // Modules outside the text decoder (Idefics2: the vision tower and the connector) have no
        // place in a llama GGUF: say so instead of dropping them silently.
        let others = arch.otherModules.map { m in (m.prefix, source.tensors.filter { $0.name.hasPrefix(m.prefix) }) }.filter { !$0.1.isEmpty }
        if !others.isEmpty {
            let what = others.map { "\($0.0)* (\($0.1.count) tensors, \(formatCount($0.1.reduce(0) { $0 + $1.elementCount })) params)" }.joined(separator: ", ")
            notes.append("only the text decoder is written: \(what) are not in the GGUF, so it runs text-only prompts — llama.cpp reads a vision tower from a separate projector file, which --mmproj FILE writes for Idefics3/SmolVLM (llama.cpp has no \(cfg.modelType) projector otherwise).")
        }

        var checked: [(g: String, hf: String, heads: Int?, shape: [Int])] = []
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
        let types: [String: GGMLType]
        if let blocks {
            types = blocks.types(checked.map { ($0.g, $0.hf, $0.shape, source.tensor($0.hf)?.dtype) })
        } else {
            let choice = try GGUFTypeChoice(type, tensors: checked.map { ($0.g, $0.shape) }, intermediate: intermediate, text: t,
                                            overrides: overrides, hasImatrix: importance != nil)
            notes += choice.notes
            types = choice.types
        }
        // convert_hf_to_gguf's order: generated tensors (rope_freqs) first, then the checkpoint's tensors
        // shard by shard (sorted shard names), each shard's names sorted (gguf-py SafetensorsLocal).
        let shardOf: (String) -> String = FileSystem.isDirectory(path) ? { source.tensor($0)?.file?.path ?? "" } : { _ in "" }
        let ordered = checked.map { (c: $0, shard: Array(shardOf($0.hf).utf8), name: Array($0.hf.utf8)) }.sorted {
            $0.shard != $1.shard ? $0.shard.lexicographicallyPrecedes($1.shard) : $0.name.lexicographicallyPrecedes($1.name)
        }.map(\.c)
        var plan = ordered.map { GGUFPlannedTensor(name: $0.g, source: $0.hf, shape: $0.shape, type: types[$0.g]!, permuteHeads: $0.heads) }
        if let f = Self.llama3RopeFactors(t) {
            plan.insert(GGUFPlannedTensor(name: "rope_freqs.weight", source: "", shape: [f.count], type: .f32, permuteHeads: nil, values: f), at: 0)
        }
        self.plan = plan
        if let blocks {
            let ft = blocks.fileType(plan)
            let refuse = { (what: String) in
                GGUFExportError.requantize(path: path, stored: ft.name, recorded: ft.note == nil, requested: what,
                                           source: source.provenance?.source["path"]?.stringValue)
            }
            if let r = requested, r.rawValue != ft.name { throw refuse("--type \(r.rawValue)") }
            if let o = overrides.first { throw refuse("--tensor-type \(o.pattern)=\(o.type.name)") }
            if importance != nil { throw refuse("an importance matrix (--imatrix)") }
            self.type = GGUFExportType(rawValue: ft.name) ?? intermediate
            (fileType, fileTypeName) = (ft.ftype, ft.name)
            if let n = ft.note { notes.append(n) }
        } else {
            self.type = type
            (fileType, fileTypeName) = (type.fileType, type.rawValue)
        }

        // Metadata, in convert_hf_to_gguf's order.
        var md: [(key: String, value: GGUFValue)] = []
        func put(_ k: String, _ v: GGUFValue) { md.append((k, v)) }
        put("general.architecture", .text("llama"))
        put("general.type", .text("model"))
        let general = try GGUFGeneralMetadata.entries(source: source, totalParams: plan.reduce(0) { $0 + $1.shape.reduce(1, *) })
        md += general.metadata
        notes += general.notes
        put("llama.block_count", .uint32(UInt32(t.numHiddenLayers)))
        put("llama.context_length", .uint32(UInt32(t.maxPositionEmbeddings)))
        put("llama.embedding_length", .uint32(UInt32(t.hiddenSize)))
        put("llama.feed_forward_length", .uint32(UInt32(t.intermediateSize)))
        put("llama.attention.head_count", .uint32(UInt32(t.numAttentionHeads)))
        put("llama.attention.head_count_kv", .uint32(UInt32(t.numKeyValueHeads)))
        put("llama.rope.freq_base", .float32(Float(t.rope.theta)))
        put("llama.attention.layer_norm_rms_epsilon", .float32(Float(t.rmsNormEps)))
        put("llama.attention.key_length", .uint32(UInt32(t.headDim)))
        put("llama.attention.value_length", .uint32(UInt32(t.headDim)))
        put("general.file_type", .uint32(fileType))
        put("llama.vocab_size", .uint32(UInt32(t.vocabSize)))
        put("llama.rope.dimension_count", .uint32(UInt32(t.headDim)))
        put("general.quantization_version", .uint32(2))  // GGML_QNT_VERSION
        let vocab = try GGUFVocabulary(source: source, vocabSize: t.vocabSize, config: t)
        md += vocab.metadata
        notes += vocab.notes
        metadata = md
        self.notes = notes

        pipeline = try PassPipeline(source: source, output: output, settings: settings, record: nil, directory: false,
                                    neededBytes: plan.reduce(0) { $0 + $1.shape.reduce(1, *) / $1.type.blockSize * $1.type.typeSize } + (4 << 20))
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

    /// Rows per step: bounds the buffers to ~`chunkElements` elements.
    static let chunkElements = 1 << 20

    public func run() throws -> GGUFExportReport {
        var unweighted: [String] = []
        let (bytesIn, overflowed, seconds) = try pipeline.run { temp in
            let r = try write(to: temp)
            unweighted = r.3
            return (r.0, r.1, r.2)
        }
        var notes = self.notes
        if !unweighted.isEmpty {
            notes.append("the importance matrix has no entry for \(unweighted.count) tensor(s), quantized without it as llama-quantize does (first: \(unweighted[0])).")
        }
        if !overflowed.isEmpty {
            notes.append("finite values became ±inf in \(type.rawValue): \(overflowed.joined(separator: "; ")). Export with --type bf16 or f32 instead.")
        }
        return GGUFExportReport(output: outputPath, type: type, fileTypeName: fileTypeName, tensors: plan, bytesRead: bytesIn,
                                bytesWritten: FileSystem.fileSize(outputPath) ?? 0, seconds: seconds, notes: notes)
    }

    /// Writes the GGUF under `temp`; returns (source bytes read, tensors with overflows, seconds,
    /// tensors quantized without importance although an importance source was given).
    private func write(to temp: String) throws -> (Int, [String], Double, [String]) {
        let w = try GGUFWriter(path: temp)
        for (k, v) in metadata { try w.add(k, v) }
        for p in plan { try w.declare(GGUFTensorDecl(name: p.name, shape: p.shape, type: p.type)) }
        try w.writeHeader()

        let bytesIn = plan.reduce(0) { $0 + (source.tensor($1.source)?.byteCount ?? blocks?.views[$1.source]?.byteCount ?? 0) }
        let progress = ProgressBar(label: "export", totalBytes: bytesIn, enabled: settings.showProgress)
        let maxCols = plan.map { $0.shape.last ?? 1 }.max() ?? 1
        let capacity = max(Self.chunkElements, maxCols)
        // raw: [capacity × ≤ 8 bytes] source dtype; f32: [capacity] f32; out: [capacity × ≤ 4 bytes] encoded.
        let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity * 8, alignment: 64)
        let f32 = UnsafeMutablePointer<Float>.allocate(capacity: capacity)
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity * 4, alignment: 64)
        // mid: [capacity] f16/bf16 — the default export's values, for llama-quantize's types.
        let mid = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity * 2, alignment: 64)
        defer { raw.deallocate(); f32.deallocate(); out.deallocate(); mid.deallocate() }
        var overflowed: [String] = []
        var unweighted: [String] = []

        for p in plan {
            try w.beginTensor(p.name)
            if let blocks, let v = blocks.views[p.source] {  // stored ggml blocks: copied as they are
                try blocks.copy(v, permuteHeads: p.permuteHeads, buffer: out, append: { try w.append($0) }, advance: { progress.advance($0) })
                try w.endTensor()
                continue
            }
            if let v = p.values {  // a computed f32 tensor (rope_freqs)
                try v.withUnsafeBytes { try w.append($0) }
                try w.endTensor()
                continue
            }
            guard let st = source.tensor(p.source) else { throw ModelError.missingTensor(model: source.path, tensor: p.source) }
            let cols = p.shape.count == 2 ? p.shape[1] : p.shape[0]
            let rows = p.shape.count == 2 ? p.shape[0] : 1
            let rowsPerChunk = max(1, capacity / max(cols, 1))
            var stats = CastStats()
            let weights = try importanceVector(p, columns: cols)
            if importance != nil, weights == nil, GGMLQuantize.blockTypes.contains(p.type), p.type != .q8_0 { unweighted.append(p.name) }
            var r = 0
            while r < rows {
                let m = min(rowsPerChunk, rows - r)
                let n = m * cols
                // Gather rows [r, r + m) of the (permuted) tensor into raw, in the source dtype.
                if let heads = p.permuteHeads {
                    for k in 0..<m {
                        let src = GGUFStoredBlocks.permutedSourceRow(r + k, rows: rows, heads: heads)
                        try st.read(elements: src * cols, count: cols, into: raw.baseAddress! + k * cols * st.dtype.size)
                    }
                } else {
                    try st.read(elements: r * cols, count: n, into: raw.baseAddress!)
                }
                let bytes: Int
                if let same = DType.matching(p.type), same == st.dtype {
                    out.baseAddress!.copyMemory(from: raw.baseAddress!, byteCount: n * st.dtype.size)  // exact copy
                    bytes = n * st.dtype.size
                } else {
                    _ = try FloatConversion.convert(from: st.dtype, to: .f32, count: n, src: raw.baseAddress!, dst: f32)
                    do {
                        if type.llama != nil && GGMLQuantize.blockTypes.contains(p.type) {
                            try roundThroughIntermediate(f32, n, mid.baseAddress!, tensor: p, rows: r..<(r + m))
                            try weights.withUnsafeBufferPointerIfAny { w in
                                try GGMLQuantize.encode(p.type, f32, rows: m, rowLength: cols, out.baseAddress!, importance: w)
                            }
                        } else {
                            stats += try GGMLQuantize.encode(p.type, f32, count: n, out.baseAddress!, first: r * cols, total: rows * cols)
                        }
                    } catch let e as GGUFQuantizeError {
                        throw GGUFWriteError.tensor(file: outputPath, tensor: "\(p.source) (GGUF \(p.name))", detail: "rows \(r)..<\(r + m): \(e.description)")
                    }
                    bytes = n / p.type.blockSize * p.type.typeSize
                }
                try w.append(UnsafeRawBufferPointer(rebasing: out[0..<bytes]))
                progress.advance(n * st.dtype.size)
                r += m
            }
            if stats.overflowed > 0 { overflowed.append("\(p.source): \(stats.overflowed) value(s)") }
            try w.endTensor()
        }
        try w.finish()
        progress.finish()
        return (bytesIn, overflowed, progress.elapsed, unweighted)
    }

    /// The importance vector llama-quantize would use for a tensor (`LlamaImportance.vector`), looked up
    /// — and its length checked — for every tensor llama-quantize converts, whether or not the target
    /// type uses it (Q8_0 and F16 do not). nil when the tensor is not quantized with importance.
    private func importanceVector(_ p: GGUFPlannedTensor, columns: Int) throws -> [Float]? {
        guard importance != nil, type.llama != nil, p.shape.count == 2, p.type != intermediate.ggml else { return nil }
        return try LlamaImportance.vector(importance, tensor: p.name, columns: columns, type: p.type)
    }

    /// Rounds f32[0..<n] to the default export's type (f16 or bf16) and back in place: the values
    /// llama-quantize reads from that export. Finite values that overflow f16 are an error.
    private func roundThroughIntermediate(_ f32: UnsafeMutablePointer<Float>, _ n: Int, _ mid: UnsafeMutableRawPointer,
                                          tensor p: GGUFPlannedTensor, rows: Range<Int>) throws {
        let dt: DType = intermediate == .bf16 ? .bf16 : .f16
        let st = try FloatConversion.convert(from: .f32, to: dt, count: n, src: f32, dst: mid)
        if st.overflowed > 0 {
            throw GGUFWriteError.tensor(file: outputPath, tensor: "\(p.source) (GGUF \(p.name))",
                                        detail: "rows \(rows): \(st.overflowed) value(s) exceed f16's range (±65504): the f16 export that \(type.rawValue) starts from (as llama-quantize does) would hold infinities. Convert the model to bf16 first (i2q cast --dtype bf16), or export with --type bf16.")
        }
        _ = try FloatConversion.convert(from: dt, to: .f32, count: n, src: mid, dst: f32)
    }
}

extension DType {
    /// The DType whose bytes equal a GGML type's (plain float types only).
    static func matching(_ g: GGMLType) -> DType? {
        switch g {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        default: return nil
        }
    }
}

/// The `tokenizer.ggml.*` metadata of a model, built from its tokenizer.json / tokenizer_config.json
/// (and config.json for fallback token ids) as gguf-py's `SpecialVocab` and convert_hf_to_gguf's
/// `_set_vocab_gpt2` / `_set_vocab_llama_hf` do (differences: see `GGUFExportPass`).
struct GGUFVocabulary {
    var metadata: [(key: String, value: GGUFValue)] = []
    var notes: [String] = []

    /// gguf-py `TokenType`.
    enum TokenType: Int32 { case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6 }

    init(source: any ModelSource, vocabSize: Int, config t: TextConfig) throws {
        let path = source.path
        if let g = source as? GGUFModel, g.gguf.value("tokenizer.ggml.model") != nil {
            // A GGUF source already holds llama.cpp's vocabulary: carried over unchanged.
            metadata = g.gguf.metadata.filter { $0.key.hasPrefix("tokenizer.") }
            return
        }
        let files = try source.auxiliaryFiles()
        func file(_ n: String) -> [UInt8]? { files.first { $0.name == n }?.bytes }
        func json(_ n: String) throws -> JSONValue? {
            guard let b = file(n) else { return nil }
            do { return try JSONParser.parse(b, source: path + "/" + n) } catch let e as JSONError {
                throw GGUFExportError.tokenizer(path: path, detail: "\(n) is not valid JSON (byte \(e.offset): \(e.message))")
            }
        }
        guard let tok = try json("tokenizer.json") else {
            throw GGUFExportError.tokenizer(path: path, detail: "the model has no tokenizer.json; llama.cpp needs the vocabulary in the GGUF. Put the model's tokenizer.json (and tokenizer_config.json) next to it and convert again.")
        }
        let tcfg = try json("tokenizer_config.json")
        guard let model = tok["model"], model["type"]?.stringValue == "BPE",
              let vocabEntries = model["vocab"]?.objectEntries, let mergesJSON = model["merges"]?.arrayValue else {
            throw GGUFExportError.tokenizer(path: path, detail: "tokenizer.json's model is not BPE with a vocab and merges (WordPiece/Unigram vocabularies are not exported).")
        }
        let byteFallback = model["byte_fallback"]?.boolValue ?? false

        // id → (text, type, score)
        var tokens = [String?](repeating: nil, count: vocabSize)
        var types = [TokenType](repeating: .unused, count: vocabSize)
        var ids: [String: Int] = [:]
        for (text, v) in vocabEntries {
            guard let id = v.intValue, id >= 0 else { throw GGUFExportError.tokenizer(path: path, detail: "vocab entry \"\(text)\" has no valid id") }
            guard id < vocabSize else {
                throw GGUFExportError.tokenizer(path: path, detail: "token \"\(text)\" has id \(id) but the model's vocab_size is \(vocabSize).")
            }
            tokens[id] = text; types[id] = .normal; ids[text] = id
        }
        var added: [(id: Int, content: String, special: Bool)] = []
        for a in tok["added_tokens"]?.arrayValue ?? [] {
            guard let id = a["id"]?.intValue, let c = a["content"]?.stringValue, id >= 0 else { continue }
            guard id < vocabSize else {
                throw GGUFExportError.tokenizer(path: path, detail: "added token \"\(c)\" has id \(id) but the model's vocab_size is \(vocabSize).")
            }
            added.append((id, c, a["special"]?.boolValue ?? false))
        }

        // gguf-py SpecialVocab: the post-processor decides add_bos/add_eos/add_sep (and may name the
        // bos/eos tokens), tokenizer_config's add_*_token fill the rest; special ids come from
        // tokenizer_config's *_token looked up in added_tokens, then config.json's *_token_id (top
        // level, then text_config), in gguf-py's order of types.
        func content(_ v: JSONValue?) -> String? { v?.stringValue ?? v?["content"]?.stringValue }
        let typeOrder = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"]
        var text: [String: String] = [:]
        for typ in typeOrder { if let c = content(tcfg?["\(typ)_token"]) { text[typ] = c } }
        if text["bos"] == nil, let c = text["cls"], tcfg != nil { text["bos"] = c }
        if text["eos"] == nil, let c = text["sep"], tcfg != nil { text["eos"] = c }
        var add: [(String, Bool)] = []  // insertion-ordered, as the Python dict
        func setAdd(_ k: String, _ v: Bool, ifAbsent: Bool = false) {
            if let i = add.firstIndex(where: { $0.0 == k }) { if !ifAbsent { add[i].1 = v } } else { add.append((k, v)) }
        }
        if let pp = tok["post_processor"], pp != .null {
            for proc in pp["processors"]?.arrayValue ?? [pp] {
                switch proc["type"]?.stringValue {
                case "ByteLevel":
                    setAdd("bos", false, ifAbsent: true); setAdd("eos", false, ifAbsent: true)
                case "RobertaProcessing":
                    setAdd("bos", true); setAdd("eos", true); setAdd("sep", true)
                case "TemplateProcessing":
                    let single = proc["single"]?.arrayValue ?? [], pair = proc["pair"]?.arrayValue ?? []
                    var first: String? = nil, last: String? = nil
                    if single.count > 1 {
                        first = single[0]["SpecialToken"]?["id"]?.stringValue
                        if let f = first {
                            if tcfg == nil { text["bos"] = f } else if f != text["bos"] && f != text["cls"] {
                                if text["bos"] == nil { text["bos"] = f }
                                if text["cls"] == nil { text["cls"] = f }
                            }
                            setAdd("bos", f == text["bos"] || f == text["cls"])
                        }
                        last = single[single.count - 1]["SpecialToken"]?["id"]?.stringValue
                        if let l = last {
                            text["eos"] = l  // (gguf-py also keeps a replaced eos as eot/eom: not done here)
                            setAdd("eos", true)
                        }
                    }
                    // i2q: no leading special token means no BOS (gguf-py leaves add_bos unset here, and
                    // llama.cpp would then add one: see the type's doc comment)
                    if first == nil { setAdd("bos", false) }
                    if !pair.isEmpty {
                        let start = first != nil && pair[0]["SpecialToken"]?["id"]?.stringValue == first ? 1 : 0
                        let stop = last != nil && pair[pair.count - 1]["SpecialToken"]?["id"]?.stringValue == last ? pair.count - 1 : pair.count
                        if start < stop {
                            let sub = Array(pair[start..<stop])
                            if sub[0]["Sequence"]?["id"]?.stringValue == "A", sub[sub.count - 1]["Sequence"]?["id"]?.stringValue == "B", sub.count > 2 {
                                let mid = Array(sub[1..<(sub.count - 1)])
                                var addSep = false
                                if let e = mid[0]["SpecialToken"]?["id"]?.stringValue, e == text["sep"] || e == text["eos"], last == nil { addSep = true }
                                if mid.count == 2, let e = mid[1]["SpecialToken"]?["id"]?.stringValue, e == text["sep"] || e == text["eos"] { addSep = true }
                                setAdd("sep", addSep)
                            }
                        }
                    }
                default: break
                }
            }
        }
        if tcfg != nil {
            for typ in typeOrder { if let b = tcfg?["add_\(typ)_token"]?.boolValue { setAdd(typ, b, ifAbsent: true) } }
        }
        var special: [(String, Int)] = []
        func setSpecial(_ typ: String, _ id: Int?) {
            guard let id, id >= 0, id < vocabSize, !special.contains(where: { $0.0 == typ }) else { return }
            special.append((typ, id))
        }
        if tcfg != nil { for typ in typeOrder { if let c = text[typ] { setSpecial(typ, added.first { $0.content == c }?.id) } } }
        for typ in typeOrder {
            setSpecial(typ, source.rawConfig["\(typ)_token_id"]?.intValue ?? source.rawConfig["text_config"]?["\(typ)_token_id"]?.intValue)
        }
        let specialIds = Set(special.map(\.1))

        func looksSpecial(_ s: String) -> Bool {  // convert_hf_to_gguf does_token_look_special
            ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].contains(s) || (s.hasPrefix("<|") && s.hasSuffix("|>"))
                || (s.hasPrefix("<｜") && s.hasSuffix("｜>")) || (s.hasPrefix("<unused") && s.hasSuffix(">"))
        }
        var merges: [String] = []
        merges.reserveCapacity(mergesJSON.count)
        for m in mergesJSON {
            if let s = m.stringValue { merges.append(s); continue }
            guard let pair = m.arrayValue, pair.count == 2, let a = pair[0].stringValue, let b = pair[1].stringValue else {
                throw GGUFExportError.tokenizer(path: path, detail: "tokenizer.json has a merge that is neither \"a b\" nor [\"a\", \"b\"].")
            }
            // gguf-py: spaces inside a part are written as U+0120 so that "a b" stays splittable.
            func enc(_ s: String) -> String { String(s.unicodeScalars.map { $0 == " " ? "\u{120}" : Character($0) }) }
            merges.append(enc(a) + " " + enc(b))
        }

        let preTok = tok["pre_tokenizer"]
        let modelName: String, pre: String
        var scores: [Float]? = nil
        let isByteLevel: (JSONValue?) -> Bool = { $0?["type"]?.stringValue == "ByteLevel" && ($0?["use_regex"]?.boolValue ?? true) }
        if !byteFallback {
            // GPT-2 byte-level BPE (SmolLM2, Llama 3 style): _set_vocab_gpt2.
            modelName = "gpt2"
            if isByteLevel(preTok) {
                pre = "gpt-2"
            } else if preTok?["type"]?.stringValue == "Sequence", let seq = preTok?["pretokenizers"]?.arrayValue, seq.count == 2,
                      seq[0]["type"]?.stringValue == "Digits", seq[0]["individual_digits"]?.boolValue == true, isByteLevel(seq[1]) {
                pre = "smollm"  // \p{N} split, then the GPT-2 regex
            } else {
                throw GGUFExportError.tokenizer(path: path, detail: "tokenizer.json's pre_tokenizer \(JSONWriter.string(preTok ?? .null)) has no llama.cpp pre-tokenizer i2q knows (it maps plain ByteLevel to \"gpt-2\" and Digits+ByteLevel to \"smollm\").")
            }
            for a in added {
                var c = a.content
                let isControl = a.special || looksSpecial(c)
                if !isControl { c = c.replacingOccurrences(of: "\u{2581}", with: " ") }
                tokens[a.id] = c
                types[a.id] = isControl ? .control : .userDefined
            }
        } else {
            // SentencePiece-style BPE with byte fallback (Llama 2, Mistral, Idefics2): _set_vocab_llama_hf.
            modelName = "llama"
            pre = "default"
            guard tok["decoder"]?["type"]?.stringValue == "Sequence" else {
                throw GGUFExportError.tokenizer(path: path, detail: "a byte-fallback BPE tokenizer without a Sequence decoder is not a Llama/Mistral SentencePiece tokenizer.")
            }
            let addedIds = Set(added.map(\.id))
            for (id, text) in tokens.enumerated() {
                guard let text else { continue }
                if Self.isByteToken(text) { types[id] = .byte } else if specialIds.contains(id) || (addedIds.contains(id) && added.first(where: { $0.id == id })!.special) { types[id] = .control }
            }
            for a in added where tokens[a.id] == nil {
                tokens[a.id] = a.content
                types[a.id] = a.special || specialIds.contains(a.id) ? .control : .userDefined
            }
            // Score of a token made by merge r: −r (llama.cpp merges the highest-scored bigram first);
            // tokens no merge makes rank below every merge; control/byte/user tokens −1000 as gguf-py.
            var s = [Float](repeating: -Float(merges.count + 1), count: vocabSize)
            for (r, m) in merges.enumerated() {
                guard let sp = m.firstIndex(of: " ") else { continue }
                let joined = String(m[..<sp]) + String(m[m.index(after: sp)...])
                if let id = ids[joined], s[id] == -Float(merges.count + 1) { s[id] = -Float(r) }
            }
            for i in 0..<vocabSize where types[i] != .normal { s[i] = -1000 }
            scores = s
            merges = []  // llama.cpp's SPM tokenizer does not use merges; gguf-py writes none here
        }
        var padded = 0
        let tokenBytes: [[UInt8]] = tokens.enumerated().map { i, s in
            if let s { return Array(s.utf8) }
            padded += 1
            return Array("[PAD\(i)]".utf8)
        }
        if padded > 0 { notes.append("\(padded) id(s) below vocab_size \(vocabSize) have no token; written as [PADn] (unused), as convert_hf_to_gguf does.") }

        func put(_ k: String, _ v: GGUFValue) { metadata.append((k, v)) }
        if let aps = tcfg?["add_prefix_space"]?.boolValue { put("tokenizer.ggml.add_space_prefix", .bool(aps)) }
        put("tokenizer.ggml.model", .text(modelName))
        put("tokenizer.ggml.pre", .text(pre))
        put("tokenizer.ggml.tokens", .strings(tokenBytes))
        if let scores { put("tokenizer.ggml.scores", .array(.float32, scores.map { .float32($0) })) }
        put("tokenizer.ggml.token_type", .array(.int32, types.map { .int32($0.rawValue) }))
        if !merges.isEmpty { put("tokenizer.ggml.merges", .strings(merges.map { Array($0.utf8) })) }
        let keyName = ["bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id", "sep": "seperator_token_id",
                       "pad": "padding_token_id", "cls": "cls_token_id", "mask": "mask_token_id"]  // gguf-py's spelling
        for (typ, id) in special { put("tokenizer.ggml.\(keyName[typ]!)", .uint32(UInt32(id))) }
        for (typ, v) in add { put("tokenizer.ggml.add_\(typ)_token", .bool(v)) }
        // Chat template: tokenizer_config's, else chat_template.jinja, else chat_template.json's.
        var template: [UInt8]? = nil
        if let s = tcfg?["chat_template"]?.stringValue { template = Array(s.utf8) }
        else if let b = file("chat_template.jinja") { template = b }
        else if let s = try json("chat_template.json")?["chat_template"]?.stringValue { template = Array(s.utf8) }
        if let template { put("tokenizer.chat_template", .string(template)) }
    }

    /// `<0xHH>`: a SentencePiece byte-fallback piece.
    static func isByteToken(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return false }
        func hex(_ c: UInt8) -> Bool { (0x30...0x39).contains(c) || (0x41...0x46).contains(c) || (0x61...0x66).contains(c) }
        return hex(u[3]) && hex(u[4])
    }
}

extension Optional where Wrapped == [Float] {
    /// `body` gets the array's storage, or nil when there is no array.
    func withUnsafeBufferPointerIfAny<R>(_ body: (UnsafePointer<Float>?) throws -> R) rethrows -> R {
        guard let a = self else { return try body(nil) }
        return try a.withUnsafeBufferPointer { try body($0.baseAddress) }
    }
}
