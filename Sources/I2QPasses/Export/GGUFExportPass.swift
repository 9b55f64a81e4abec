import I2QCore
import I2QFormats
import I2QQuant

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
/// RoPE scaling is written as llama.cpp's `rope_freqs.weight` factors (`GGUFExportPlan.llama3RopeFactors`).
/// Mistral's sliding window has no llama-architecture key: llama.cpp attends to the whole context
/// (as convert_hf_to_gguf's output does); a note says so.
///
/// An .i2q holding `ggml` entries (`i2q quantize --type …`) is written as it is: every ggml tensor in
/// its stored type with its stored bytes, `general.file_type` the recorded one (GGUFStoredBlocks);
/// `--type` must then be that file type or absent, and --tensor-type / an importance matrix are refused.
///
/// The pieces: the input's checks (GGUFExportInput), the tensors (GGUFExportPlan, GGUFTypeChoice),
/// the metadata (GGUFLlamaMetadata, GGUFGeneralMetadata, GGUFVocabulary); here, the writing loop.
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
        try Self.refuseQuantizedInput(source)
        let source = try Self.unfused(source)
        self.blocks = blocks
        self.source = source
        outputPath = output
        self.settings = settings
        let requested = type
        let type = type ?? GGUFExportType.auto(for: source)
        let intermediate = blocks?.intermediate ?? GGUFExportType.auto(for: source)
        self.intermediate = intermediate
        self.importance = importance
        if blocks == nil && importance != nil && type.llama == nil {
            throw GGUFExportError.importance(tensor: "(all)", detail: "an importance matrix is used by llama-quantize's types (q4_0 … q6_k, q4_k_m …), not by --type \(type.rawValue).")
        }
        var notes = try Self.checkDecoder(source)

        let plan = try GGUFExportPlan(source: source, blocks: blocks, type: type, intermediate: intermediate, overrides: overrides,
                                      hasImportance: importance != nil)
        notes += plan.notes
        self.plan = plan.tensors
        let ft = try Self.fileType(plan.tensors, blocks: blocks, source: source, requested: requested, type: type, intermediate: intermediate,
                                   overrides: overrides, hasImportance: importance != nil)
        (self.type, fileType, fileTypeName) = (ft.type, ft.fileType, ft.name)
        if let n = ft.note { notes.append(n) }

        let md = try Self.metadata(source: source, plan: plan.tensors, fileType: ft.fileType)
        metadata = md.metadata
        self.notes = notes + md.notes

        pipeline = try PassPipeline(source: source, output: output, settings: settings, record: nil, directory: false,
                                    neededBytes: plan.tensors.reduce(0) { $0 + $1.shape.reduce(1, *) / $1.type.blockSize * $1.type.typeSize } + (4 << 20))
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

extension Optional where Wrapped == [Float] {
    /// `body` gets the array's storage, or nil when there is no array.
    func withUnsafeBufferPointerIfAny<R>(_ body: (UnsafePointer<Float>?) throws -> R) rethrows -> R {
        guard let a = self else { return try body(nil) }
        return try a.withUnsafeBufferPointer { try body($0.baseAddress) }
    }
}
