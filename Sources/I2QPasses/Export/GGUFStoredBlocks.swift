import I2QCore
import I2QFormats
import I2QQuant

/// The `ggml` entries of an .i2q (blocks stored exactly as GGUF stores them; `i2q quantize --type
/// q4_k_m|…`, GGMLBlockLayout) as `export --to gguf` writes them: each with its stored type, its
/// bytes copied as they are — never dequantized or re-quantized. q/k rows are permuted for
/// llama.cpp's rotary layout as whole rows of blocks (a block never crosses a row), so the bytes
/// stay the ones stored. Fused entries (`i2q fuse`) are read as their parts.
///
/// `general.file_type`: the file type the .i2q records it was made with (the last provenance pass
/// named "quantize" with a string param `ggml_file_type`, e.g. "q4_k_m"). Without one, llama.cpp's
/// own guess for a GGUF lacking the key (`llama_model_loader`): the most common type among the
/// written tensors — here counting only the block-quantized ones, so that a small model's F32 norms
/// do not make it "all F32" — ties to the type that reached the count first in tensor order,
/// mapped Q4_0→q4_0, Q4_1→q4_1, Q5_0→q5_0, Q5_1→q5_1, Q8_0→q8_0, Q2_K→q2_k, Q3_K→q3_k_m,
/// Q4_K→q4_k_m, Q5_K→q5_k_m, Q6_K→q6_k. (The guess cannot tell q4_k_m from q4_k_s, nor a K-type
/// whose every tensor fell back to Q5_0/Q8_0 from q5_0; a recorded type has no such doubt.)
///
/// Plain tensors next to them: 1-D and `*_norm.weight` F32 (as convert_hf_to_gguf and llama-quantize
/// write them); other 2-D weights keep their stored float type (F32/F16/BF16: what the quantizer
/// chose to leave unquantized, e.g. llama-quantize's `--tensor-type attn_k=f16`), any other dtype
/// the default export's type (`intermediate`).
struct GGUFStoredBlocks {
    /// One ggml tensor (or fused part): `rows` rows of `rowBytes` bytes at absolute file offset `offset`.
    struct View {
        let type: GGMLType
        let rows: Int
        let cols: Int
        let rowBytes: Int
        let offset: Int
        /// The stored entry holding the bytes (the fused entry for a part): its checksums are verified.
        let owner: I2QTensorEntry
        var byteCount: Int { rows * rowBytes }
    }

    let file: I2QFile
    /// By checkpoint name (a fused entry's parts by their own names).
    let views: [String: View]
    /// The recorded `ggml_file_type`, if any.
    let recordedFileType: String?
    /// The default export's type the quantizer rounded through: the recorded `intermediate`
    /// ("f16"/"bf16"), else bf16 when the first ≥2-D entry (quantized or not) is bf16, else f16 —
    /// convert_hf_to_gguf's `auto` on the model the file was made from.
    let intermediate: GGUFExportType

    /// nil when `source` is not an .i2q holding ggml entries.
    init?(_ source: any ModelSource) throws {
        guard let f = source as? I2QFile, f.entries.contains(where: { $0.scheme == GGMLBlockLayout.scheme }) else { return nil }
        file = f
        var views: [String: View] = [:]
        for e in f.entries where e.scheme == GGMLBlockLayout.scheme {
            do {
                let parts = e.parts.isEmpty ? [e] : try FusedTensors.partEntries(e, path: f.path)
                for p in parts {
                    let l = try GGMLBlockLayout(p)
                    views[p.name] = View(type: l.type, rows: l.rows, cols: l.cols, rowBytes: l.rowBytes,
                                         offset: f.header.dataOffset + l.blocks.offset, owner: e)
                }
            } catch let x as SchemeLayoutError {
                throw GGUFExportError.unsupportedModel(path: f.path, detail: "ggml tensor \"\(e.name)\": \(x.detail). The file is damaged or from a newer i2q; quantize the model again.")
            }
        }
        self.views = views
        let pass = f.provenance?.passes.last { $0.name == "quantize" && $0.params.contains { $0.0 == "ggml_file_type" } }
        func param(_ k: String) -> String? { pass?.params.first { $0.0 == k }?.1.stringValue }
        recordedFileType = param("ggml_file_type")
        intermediate = param("intermediate").flatMap { GGUFExportType(rawValue: $0) }.flatMap { $0 == .f16 || $0 == .bf16 ? $0 : nil }
            ?? (f.entries.first { $0.shape.count >= 2 }?.dtype == .bf16 ? .bf16 : .f16)
    }

    /// Each planned tensor's GGUF type: a ggml tensor's stored type; plain ones as described above.
    /// tensors: GGUF name, checkpoint name, shape and (plain ones) stored dtype.
    func types(_ tensors: [(name: String, source: String, shape: [Int], dtype: DType?)]) -> [String: GGMLType] {
        var out: [String: GGMLType] = [:]
        for t in tensors {
            if let v = views[t.source] { out[t.name] = v.type; continue }
            if t.shape.count <= 1 || t.name.hasSuffix("_norm.weight") { out[t.name] = .f32; continue }
            out[t.name] = [GGMLType.f32, .f16, .bf16].first { DType.matching($0) == t.dtype } ?? intermediate.ggml
        }
        return out
    }

    /// `general.file_type` and its llama.cpp name for the written tensors (rule above), and a note
    /// when it was guessed.
    func fileType(_ plan: [GGUFPlannedTensor]) -> (ftype: UInt32, name: String, note: String?) {
        var unknown: String? = nil
        if let r = recordedFileType {
            if let t = GGUFExportType(rawValue: r) { return (t.fileType, r, nil) }
            unknown = r
        }
        var count: [GGMLType: Int] = [:]
        var best: (type: GGMLType, n: Int)? = nil
        for p in plan where views[p.source] != nil {
            count[p.type, default: 0] += 1
            if count[p.type]! > (best?.n ?? 0) { best = (p.type, count[p.type]!) }
        }
        let (ftype, name) = best.flatMap { Self.guessTable[$0.type] } ?? (GGUFExportType.f16.fileType, "f16")
        let why = unknown.map { "it records file type \"\($0)\", which this i2q does not know" } ?? "it does not record the file type it was quantized as"
        return (ftype, name, "general.file_type is \(ftype) (\(name)), guessed from the most common tensor type as llama.cpp does: \(why).")
    }

    /// llama.cpp `llama_model_loader`: the file type guessed from the most common tensor type.
    static let guessTable: [GGMLType: (UInt32, String)] = [
        .q4_0: (2, "q4_0"), .q4_1: (3, "q4_1"), .q8_0: (7, "q8_0"), .q5_0: (8, "q5_0"), .q5_1: (9, "q5_1"),
        .q2_K: (10, "q2_k"), .q3_K: (12, "q3_k_m"), .q4_K: (15, "q4_k_m"), .q5_K: (17, "q5_k_m"), .q6_K: (18, "q6_k"),
    ]

    /// Streams `v`'s bytes to `append` in chunks of at most `buffer.count` bytes, rows permuted for
    /// `permuteHeads` heads when set; `advance` gets the bytes done.
    func copy(_ v: View, permuteHeads: Int?, buffer: UnsafeMutableRawBufferPointer,
              append: (UnsafeRawBufferPointer) throws -> Void, advance: (Int) -> Void) throws {
        try file.ensureVerified(v.owner)  // once per stored entry
        let mf = file.file
        let rowsPerChunk = max(1, buffer.count / v.rowBytes)
        precondition(buffer.count >= v.rowBytes, "copy buffer smaller than one row")
        var r = 0
        while r < v.rows {
            let m = min(rowsPerChunk, v.rows - r)
            if let heads = permuteHeads {
                for k in 0..<m {
                    let src = GGUFStoredBlocks.permutedSourceRow(r + k, rows: v.rows, heads: heads)
                    mf.withBytes(v.offset + src * v.rowBytes, v.rowBytes) {
                        (buffer.baseAddress! + k * v.rowBytes).copyMemory(from: $0.baseAddress!, byteCount: v.rowBytes)
                    }
                }
                try append(UnsafeRawBufferPointer(rebasing: buffer[0..<(m * v.rowBytes)]))
            } else {
                try mf.withBytes(v.offset + r * v.rowBytes, m * v.rowBytes) { try append($0) }
                mf.release(v.offset + r * v.rowBytes, m * v.rowBytes)
            }
            advance(m * v.rowBytes)
            r += m
        }
        if permuteHeads != nil { mf.release(v.offset, v.byteCount) }
    }

    /// convert_hf_to_gguf LlamaModel.permute (reshape(heads, 2, dim, cols).swapaxes(1, 2)): output
    /// row h·2·dim + i·2 + j comes from input row h·2·dim + j·dim + i.
    static func permutedSourceRow(_ o: Int, rows: Int, heads: Int) -> Int {
        let dim = rows / heads / 2
        let h = o / (2 * dim), rem = o % (2 * dim)
        return h * 2 * dim + (rem % 2) * dim + rem / 2
    }
}
