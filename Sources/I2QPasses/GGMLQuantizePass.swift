import I2QCore
import I2QFormats
import I2QQuant

/// `i2q quantize --type q4_k_m|q4_k_s|q5_k_m|q5_k_s|q6_k|q3_k_m|q3_k_s|q3_k_l|q2_k|q4_0|q4_1|q5_0|q5_1 [--imatrix FILE]
/// [--tensor-type REGEX=TYPE]`: llama.cpp's file types into an .i2q (scheme `ggml`, the blocks as
/// GGUF stores them), so the model runs and is verified in i2q and exports to GGUF without
/// re-quantizing.
///
/// Per tensor, the same choice and the same bytes as `export --to gguf --type T` (and so as
/// llama-quantize on i2q's default f16/bf16 GGUF export): the decoder's weights, token embedding
/// and output get llama-quantize's types (`LlamaQuantRecipe`, fallbacks printed), their values are
/// rounded through the default export's type (f16, or bf16 for a bf16 model) and encoded by the
/// llama.cpp-exact quantizers, with the importance vector when one is given. Rows are quantized in
/// checkpoint order — each block lies inside one row, so the q/k row permutation of the GGUF
/// export moves whole rows of blocks and the bytes stay llama.cpp's. Everything else (norms, a
/// vision tower, the connector) is kept as it is (llama.cpp keeps a vision tower in its mmproj).
public struct GGMLQuantizeOptions: Sendable {
    public var fileType: LlamaFileType
    public var overrides: [TensorTypeOverride] = []
    public var importance: (any ImportanceSource & Sendable)?
    public var importancePath: String?
    public init(fileType: LlamaFileType) { self.fileType = fileType }
}

public enum GGMLQuantizePass {
    public static func run(source: any ModelSource, output: String, options o: GGMLQuantizeOptions, settings: OutputSettings,
                           note: (String) -> Void = { _ in }) throws -> PassReport {
        let q = source.quantizedTensorNames
        if !q.isEmpty { throw PassError.quantizedInput(path: source.path, tensors: q, verb: "quantize --type") }
        let arch = source.config.architecture
        let t = source.config.textConfig
        // Decoder tensors by GGUF name (llama.cpp's view of the model); the rest stay as they are.
        var gguf: [String: String] = [:]  // checkpoint name → GGUF name
        for s in source.tensors {
            let g = ImatrixNames.name(checkpoint: s.name, architecture: arch)
            if g.hasPrefix("blk.") || g == "token_embd.weight" || g == "output.weight" { gguf[s.name] = g }
        }
        let recipe = LlamaQuantRecipe(fileType: o.fileType, model: .init(layers: t.numHiddenLayers, heads: t.numAttentionHeads, kvHeads: t.numKeyValueHeads),
                                      overrides: o.overrides, hasImatrix: o.importance != nil)
        let planned = source.tensors.compactMap { s in gguf[s.name].map { LlamaQuantRecipe.Tensor(name: $0, columns: s.shape.last!, dims: s.shape.count == 2 && s.shape[0] == 1 ? 1 : s.shape.count) } }
        let chosen = try recipe.choose(planned)
        for p in planned { if let n = chosen[p.name]?.note { note("\(p.name): \(n)") } }
        let intermediate: DType = GGUFExportType.auto(for: source) == .bf16 ? .bf16 : .f16

        let pipeline = try PassPipeline(source: source, output: output, settings: settings, record: PassRecord(name: "quantize", params: [
            ("ggml_file_type", .string(o.fileType.rawValue)), ("tensor_type", .array(o.overrides.map { .string($0.pattern + "=" + $0.type.name) })),
            ("imatrix", .string(o.importancePath ?? "")), ("intermediate", .string(intermediate.rawValue)),
        ]), directory: false)
        return try pipeline.run { temp in
            let w = try I2QWriter(path: temp, alignment: settings.alignment)
            let progress = ProgressBar(label: "quantize", totalBytes: source.tensorBytes, enabled: settings.showProgress)
            let copier = CastCopier()
            var results: [TensorCastResult] = []
            var written = 0
            var unweighted: [String] = []
            for s in source.tensors {
                let n = s.elementCount
                if let g = gguf[s.name], let type = chosen[g]?.type, GGMLBlockLayout.types.contains(type), s.shape.count == 2, s.dtype.isCastableFloat {
                    let cols = s.shape[1]
                    let weights = try LlamaImportance.vector(o.importance, tensor: g, columns: cols, type: type)
                    if o.importance != nil, weights == nil, type != .q8_0 { unweighted.append(g) }
                    try writeBlocks(w, s, type: type, intermediate: intermediate, weights: weights, progress: progress)
                    let bytes = s.shape[0] * cols / type.blockSize * type.typeSize
                    written += bytes
                    results.append(TensorCastResult(name: s.name, from: s.dtype, to: .u8, elements: n, stats: CastStats()))
                } else if let g = gguf[s.name], let type = chosen[g]?.type, let dt = DType.matching(type), dt != s.dtype,
                          s.shape.count == 2, s.dtype.isCastableFloat {
                    // A plain type chosen for a 2-D weight (e.g. --tensor-type attn_k=f16): the values
                    // llama-quantize writes — the default export's, converted to that type.
                    try w.beginTensor(name: s.name, dtype: dt, shape: s.shape)
                    try w.beginComponent(role: PlainLayout.dataRole, dtype: dt, shape: s.shape)
                    let chunk = 1 << 20
                    let raw = UnsafeMutableRawPointer.allocate(byteCount: chunk * 8, alignment: 64)  // [chunk] source / output dtype
                    let f = UnsafeMutablePointer<Float>.allocate(capacity: chunk)                    // [chunk] f32
                    defer { raw.deallocate(); f.deallocate() }
                    var i = 0
                    while i < n {
                        let m = min(chunk, n - i)
                        try s.read(elements: i, count: m, into: raw)
                        FloatConversion.widenToF32(from: s.dtype, count: m, src: raw, dst: f)
                        _ = try FloatConversion.convert(from: .f32, to: intermediate, count: m, src: f, dst: raw)
                        _ = try FloatConversion.convert(from: intermediate, to: .f32, count: m, src: raw, dst: f)
                        _ = try FloatConversion.convert(from: .f32, to: dt, count: m, src: f, dst: raw)
                        try w.append(UnsafeRawBufferPointer(start: raw, count: m * dt.size))
                        progress.advance(m * s.dtype.size)
                        i += m
                    }
                    try w.endComponent()
                    try w.endTensor()
                    written += n * dt.size
                    results.append(TensorCastResult(name: s.name, from: s.dtype, to: dt, elements: n, stats: CastStats()))
                } else {
                    try w.beginTensor(name: s.name, dtype: s.dtype, shape: s.shape)
                    try w.beginComponent(role: PlainLayout.dataRole, dtype: s.dtype, shape: s.shape)
                    let stats = try copier.copy(s, count: n, to: s.dtype, append: { try w.append($0) }, advance: { progress.advance($0) })
                    try w.endComponent()
                    try w.endTensor()
                    written += n * s.dtype.size
                    results.append(TensorCastResult(name: s.name, from: s.dtype, to: s.dtype, elements: n, stats: stats))
                }
            }
            if !unweighted.isEmpty {
                note("the importance matrix has no entry for \(unweighted.count) tensor(s), quantized without it as llama-quantize does (first: \(unweighted[0])).")
            }
            return try pipeline.finishI2Q(w, progress: progress, tensors: results, bytesWritten: written)
        }
    }

    /// Writes the 2-D float tensor `s` as ggml `type`: each row chunk rounded through `intermediate`
    /// (the default GGUF export's f16/bf16, as llama-quantize starts from it), then encoded by the
    /// llama.cpp-exact quantizer with `weights` (the importance vector, or nil).
    static func writeBlocks(_ w: I2QWriter, _ s: SourceTensor, type: GGMLType, intermediate: DType, weights: [Float]?,
                            progress: ProgressBar) throws {
        let cols = s.shape[1]
        let cap = max(1 << 20, cols)  // the writer's chunk: ≤ max(2^20, cols) elements
        let mid = UnsafeMutableRawPointer.allocate(byteCount: cap * 2, alignment: 64)  // [chunk] f16/bf16
        let f = UnsafeMutablePointer<Float>.allocate(capacity: cap)                     // [chunk] f32, rounded
        defer { mid.deallocate(); f.deallocate() }
        try w.writeGGML(s, type: type, dtype: s.dtype) { rows, m, cols, dst in
            let st = try FloatConversion.convert(from: .f32, to: intermediate, count: m * cols, src: rows, dst: mid)
            if st.overflowed > 0 {
                throw GGMLQuantizeError.overflow(tensor: s.name, count: st.overflowed)
            }
            _ = try FloatConversion.convert(from: intermediate, to: .f32, count: m * cols, src: mid, dst: f)
            do {
                try weights.withUnsafeBufferPointerIfAny { wp in
                    try GGMLQuantize.encode(type, f, rows: m, rowLength: cols, dst, importance: wp)
                }
            } catch let e as GGUFQuantizeError {
                throw GGMLQuantizeError.encode(tensor: s.name, detail: e.description)
            }
            progress.advance(m * cols * s.dtype.size)
        }
    }
}

public enum GGMLQuantizeError: I2QError {
    case overflow(tensor: String, count: Int)
    case encode(tensor: String, detail: String)
    public var description: String {
        switch self {
        case let .overflow(t, c): return "tensor \"\(t)\": \(c) value(s) exceed f16's range (±65504), so the f16 values llama-quantize starts from would be infinite. Convert the model to bf16 first (i2q cast --dtype bf16)."
        case let .encode(t, d): return "tensor \"\(t)\": \(d)"
        }
    }
}
