import I2QCore
import I2QFormats
import I2QQuant

extension MixedQuantizePass {
    /// Writes the .i2q in the source's tensor order: each planned tensor in its scheme, the rest
    /// copied as they are. ggml: `GGMLQuantizePass.writeBlocks` (llama-quantize's bytes for the type,
    /// with the importance vector as llama-quantize takes it); int4/int3/int2: `affine_int4/3/2` rounded
    /// to nearest from the source values (the bytes of `quantize --rtn --bits B --group-size G`); floats: a cast.
    static func write(source: any ModelSource, planned: [Planned], schemes: [String: MixedCandidate], importance: ImportanceMatrix?,
                      intermediate: DType, to temp: String, pipeline: PassPipeline, settings: OutputSettings) throws -> PassReport {
        let w = try I2QWriter(path: temp, alignment: settings.alignment)
        let progress = ProgressBar(label: "quantize", totalBytes: source.tensorBytes, enabled: settings.showProgress)
        let copier = CastCopier()
        let gguf = Dictionary(uniqueKeysWithValues: planned.map { ($0.tensor.name, $0.gguf) })
        var results: [TensorCastResult] = []
        var written = 0
        for s in source.tensors {
            let n = s.elementCount
            let scheme = schemes[s.name]
            switch scheme {
            case let .ggml(type)?:
                let weights = try LlamaImportance.vector(importance, tensor: gguf[s.name]!, columns: s.shape[1], type: type)
                try GGMLQuantizePass.writeBlocks(w, s, type: type, intermediate: intermediate, weights: weights, progress: progress)
                written += scheme!.bytes(rows: s.shape[0], cols: s.shape[1])
                results.append(TensorCastResult(name: s.name, from: s.dtype, to: .u8, elements: n, stats: CastStats()))
            case let .affine(b, g)?:
                try writeAffine(w, s, bits: b, groupSize: g, progress: progress)
                written += scheme!.bytes(rows: s.shape[0], cols: s.shape[1])
                results.append(TensorCastResult(name: s.name, from: s.dtype, to: .u8, elements: n, stats: CastStats()))
            case let .float(dt)?:
                try w.beginTensor(name: s.name, dtype: dt, shape: s.shape)
                try w.beginComponent(role: PlainLayout.dataRole, dtype: dt, shape: s.shape)
                let stats = try copier.copy(s, count: n, to: dt, append: { try w.append($0) }, advance: { progress.advance($0) })
                try w.endComponent()
                try w.endTensor()
                written += n * dt.size
                results.append(TensorCastResult(name: s.name, from: s.dtype, to: dt, elements: n, stats: stats))
            case nil:
                try w.beginTensor(name: s.name, dtype: s.dtype, shape: s.shape)
                try w.beginComponent(role: PlainLayout.dataRole, dtype: s.dtype, shape: s.shape)
                let stats = try copier.copy(s, count: n, to: s.dtype, append: { try w.append($0) }, advance: { progress.advance($0) })
                try w.endComponent()
                try w.endTensor()
                written += n * s.dtype.size
                results.append(TensorCastResult(name: s.name, from: s.dtype, to: s.dtype, elements: n, stats: stats))
            }
        }
        return try pipeline.finishI2Q(w, progress: progress, tensors: results, bytesWritten: written)
    }

    /// `affine_int{bits}` of the 2-D float tensor `t` (entry dtype: the source's), streamed in row chunks:
    /// `AffineInt4.quantizeRows` + `pack`, as `AffineQuantizePass.write` quantizes a tensor without
    /// an AWQ replacement.
    static func writeAffine(_ w: I2QWriter, _ t: SourceTensor, bits: Int, groupSize gs: Int, progress: ProgressBar) throws {
        let (rows, cols) = (t.shape[0], t.shape[1])
        try AffineInt4.check(tensor: t.name, shape: t.shape, groupSize: gs, bits: bits)
        let groups = cols / gs
        try w.beginTensor(name: t.name, scheme: AffineInt4Layout.scheme(bits: bits), dtype: t.dtype, shape: t.shape, params: AffineInt4Layout.params(groupSize: gs))
        var scales = [Float16](repeating: 0, count: rows * groups)  // [rows, groups]
        var zeros = [UInt8](repeating: 0, count: rows * groups)     // [rows, groups]
        try w.beginComponent(role: AffineInt4Layout.Role.qweight, dtype: .u8, shape: [rows, cols * bits / 8])
        try AffineQuantizePass.appendRTNRows(t, first: 0, count: rows, groupSize: gs, bits: bits, to: w,
                                             scales: &scales, zeros: &zeros, progress: progress)
        try AffineQuantizePass.appendScalesAndZeros(w, rows: rows, groups: groups, scales: scales, zeros: zeros)
        try w.endTensor()
    }
}
