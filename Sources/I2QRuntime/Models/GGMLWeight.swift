import I2QCore
import I2QFormats
import I2QQuant

/// ggml-block weights of an .i2q file (scheme `ggml`, `GGMLBlockLayout`; Formats/i2q-format.md,
/// "ggml"): `rows` gives the in-place view the kernels use (`GGMLGemv`), `sourceTensor` the weight
/// as a float32 `SourceTensor` computed on demand — gguf-py's `quants.dequantize` values, bit for
/// bit (`GGMLDequant`), not rounded to the entry's dtype.
enum GGMLWeight {
    static let schemes: Set<String> = GGMLBlockLayout.schemes

    /// The in-place view of ggml entry `e`, after checking it against `GGMLBlockLayout`.
    static func rows(_ e: I2QTensorEntry, file f: I2QFile) throws -> GGMLRows {
        let l: GGMLBlockLayout
        do { l = try GGMLBlockLayout(e) } catch let x as SchemeLayoutError {
            throw RuntimeError.badQuantized(model: f.path, name: e.name, detail: x.detail)
        }
        let p = f.file.withBytes(f.header.dataOffset + l.blocks.offset, l.blocks.size) { UnsafeRawPointer($0.baseAddress!) }
        return GGMLRows(type: l.type, rows: l.rows, cols: l.cols, rowBytes: l.rowBytes, blocks: p, owner: f.file)
    }

    static func sourceTensor(_ e: I2QTensorEntry, file f: I2QFile) throws -> SourceTensor {
        let g = try rows(e, file: f)
        return SourceTensor(name: e.name, dtype: .f32, shape: e.shape) { first, count, dst in
            g.dequantize(first: first, count: count, into: dst.assumingMemoryBound(to: Float.self))
        }
    }
}
