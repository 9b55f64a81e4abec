import I2QCore
import I2QFormats
import I2QQuant

/// What `GGUFExportPass` takes: the init's checks of the input and of what was asked of it.
extension GGUFExportPass {
    /// ggml entries are written as stored (GGUFStoredBlocks); other quantized layouts are refused: a
    /// mixed-precision file's affine int4 tensors, or any other quantized tensor.
    static func refuseQuantizedInput(_ source: any ModelSource) throws {
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
    }

    /// A fused .i2q (i2q fuse) is read as the tensors its fused entries hold (zero-copy row
    /// views): llama.cpp's llama architecture has separate attn_q/k/v and ffn_gate/up tensors.
    static func unfused(_ source: any ModelSource) throws -> any ModelSource {
        try (source as? I2QFile).flatMap { UnfusedSource.hasFused($0) ? try UnfusedSource($0) : nil } ?? source
    }

    /// A text decoder llama.cpp's llama architecture runs (silu, no biases, default or llama3 RoPE, an
    /// even head_dim); returns the notes on what it cannot represent (Mistral's sliding window).
    static func checkDecoder(_ source: any ModelSource) throws -> [String] {
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
        return notes
    }

    /// The export's type and `general.file_type` (with llama.cpp's name for it). A ggml input's are its
    /// stored file type (`GGUFStoredBlocks.fileType`), which `requested` may only repeat, and which
    /// --tensor-type or an importance matrix may not change; else `type`'s.
    static func fileType(_ plan: [GGUFPlannedTensor], blocks: GGUFStoredBlocks?, source: any ModelSource, requested: GGUFExportType?,
                         type: GGUFExportType, intermediate: GGUFExportType, overrides: [TensorTypeOverride],
                         hasImportance: Bool) throws -> (type: GGUFExportType, fileType: UInt32, name: String, note: String?) {
        guard let blocks else { return (type, type.fileType, type.rawValue, nil) }
        let ft = blocks.fileType(plan)
        let refuse = { (what: String) in
            GGUFExportError.requantize(path: source.path, stored: ft.name, recorded: ft.note == nil, requested: what,
                                       source: source.provenance?.source["path"]?.stringValue)
        }
        if let r = requested, r.rawValue != ft.name { throw refuse("--type \(r.rawValue)") }
        if let o = overrides.first { throw refuse("--tensor-type \(o.pattern)=\(o.type.name)") }
        if hasImportance { throw refuse("an importance matrix (--imatrix)") }
        return (GGUFExportType(rawValue: ft.name) ?? intermediate, ft.ftype, ft.name, ft.note)
    }
}
