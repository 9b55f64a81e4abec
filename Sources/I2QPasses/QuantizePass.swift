import I2QCore
import I2QFormats
import I2QQuant

public struct QuantizeOptions: Sendable {
    public var type: FourBitType = .nf4
    public var blockSize = 64
    public var doubleQuant = true
    /// The dtype dequantisation produces (bitsandbytes' compute dtype); recorded in the directory.
    public var computeDType: DType = .bf16
    /// Substrings of tensor names to keep unquantized (in addition to the defaults).
    public var skip: [String] = []
    /// Cast for the tensors kept unquantized (nil: keep their dtype).
    public var dtype: DType?
    public init() {}
}

/// `i2q quantize --nf4 / --fp4`: bitsandbytes-style 4-bit blockwise quantization of the linear
/// layers into an .i2q file (scheme nf4/fp4, Formats/i2q-format.md), byte-identical to
/// bitsandbytes 0.50 `quantize_4bit` (I2QQuant). Streams tensor by tensor, chunk by chunk; only a
/// tensor's absmax values (one float per block) are held whole, for double quantization.
public enum QuantizePass {
    /// Which tensors transformers' bitsandbytes integration quantizes: the weights of nn.Linear
    /// modules (2-D `*_proj.weight`, `fc1/fc2.weight`), never lm_head, embeddings, norms, convs or
    /// the perceiver latents.
    public static func quantizes(_ name: String, shape: [Int], skip: [String]) -> Bool {
        guard shape.count == 2, name.hasSuffix(".weight") else { return false }
        if name.hasPrefix("lm_head.") || name.contains("embed") || name.contains("norm") { return false }
        if skip.contains(where: { name.contains($0) }) { return false }
        return name.hasSuffix("_proj.weight") || name.hasSuffix(".fc1.weight") || name.hasSuffix(".fc2.weight")
    }

    static let chunkElements = 1 << 20  // a multiple of every valid block size

    public static func run(source: any ModelSource, output: String, options o: QuantizeOptions, settings: OutputSettings) throws -> PassReport {
        let q = source.quantizedTensorNames
        if !q.isEmpty { throw PassError.quantizedInput(path: source.path, tensors: q, verb: "quantize") }
        let pipeline = try PassPipeline(source: source, output: output, settings: settings, record: PassRecord(name: "quantize", params: [
            ("type", .string(o.type.rawValue)), ("block_size", .int(o.blockSize)), ("double_quant", .bool(o.doubleQuant)),
            ("compute_dtype", .string(o.computeDType.rawValue)), ("skip", .array(o.skip.map { .string($0) })),
        ]), directory: false)
        return try pipeline.run { temp in
        let w = try I2QWriter(path: temp, alignment: settings.alignment)
        let progress = ProgressBar(label: "quantize", totalBytes: source.tensorBytes, enabled: settings.showProgress)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: chunkElements * 8, alignment: 64)   // [chunk] source dtype
        let f32 = UnsafeMutablePointer<Float>.allocate(capacity: chunkElements)                    // [chunk] float32
        let out = UnsafeMutableRawPointer.allocate(byteCount: chunkElements * 8, alignment: 64)   // [chunk] output bytes
        defer { raw.deallocate(); f32.deallocate(); out.deallocate() }
        let copier = CastCopier()  // tensors kept unquantized
        var results: [TensorCastResult] = []
        var written = 0
        // A fused input (i2q fuse) stays fused when its parts quantize alike and block-aligned; each
        // part is then quantized as its own tensor (FusePass, "Fused tensors" in the spec).
        func quantizesPart(_ p: I2QPart, _ e: I2QTensorEntry) -> Bool { quantizes(p.name, shape: [p.length] + e.shape.dropFirst(), skip: o.skip) }
        let inputs = try FusePass.plainInputs(source) { e in
            let q = e.parts.map { quantizesPart($0, e) }
            return q.allSatisfy { $0 == q[0] } && (!q[0] || e.parts.allSatisfy { $0.length * e.shape.dropFirst().reduce(1, *) % o.blockSize == 0 })
        }
        for (t, parts) in inputs {
            let n = t.elementCount
            let quantize = parts.isEmpty ? quantizes(t.name, shape: t.shape, skip: o.skip)
                : quantizes(parts[0].name, shape: [parts[0].length] + t.shape.dropFirst(), skip: o.skip)
            if t.dtype.isCastableFloat && quantize {
                var params = BnbFourBitLayout.params(blockSize: o.blockSize, doubleQuant: o.doubleQuant)
                try w.beginTensor(name: t.name, scheme: BnbFourBitLayout.scheme(nf4: o.type == .nf4),
                                  dtype: o.computeDType, shape: t.shape, params: params, parts: parts)
                let blocks = FourBitCodec.blockCount(count: n, blockSize: o.blockSize)
                var absmax = [Float](repeating: 0, count: blocks)  // [blocks]
                try w.beginComponent(role: BnbFourBitLayout.Role.packed, dtype: .u8, shape: [FourBitCodec.packedCount(count: n)])
                var i = 0
                while i < n {
                    let m = min(chunkElements, n - i)
                    try t.read(elements: i, count: m, into: raw)
                    FloatConversion.widenToF32(from: t.dtype, count: m, src: raw, dst: f32)
                    let packedOut = out.assumingMemoryBound(to: UInt8.self)
                    absmax.withUnsafeMutableBufferPointer { a in
                        FourBitCodec.quantizeBlocks(UnsafeBufferPointer(start: f32, count: m), type: o.type, blockSize: o.blockSize,
                                                    packed: packedOut, absmax: a.baseAddress! + i / o.blockSize)
                    }
                    try w.append(UnsafeRawBufferPointer(start: out, count: (m + 1) / 2))
                    progress.advance(m * t.dtype.size)
                    i += m
                }
                try w.endComponent()
                if o.doubleQuant && !parts.isEmpty {
                    // Per part: codes and nested absmax one after another, offsets nested_offset.<i>.
                    let cols = t.shape.dropFirst().reduce(1, *)
                    let dqs = parts.map { p in DoubleQuant.compress(Array(absmax[(p.start * cols / o.blockSize)..<((p.start + p.length) * cols / o.blockSize)])) }
                    for (role, dt, arrays) in [(BnbFourBitLayout.Role.absmax, DType.u8, dqs.map { $0.codes.withUnsafeBytes { Array($0) } }),
                                               (BnbFourBitLayout.Role.nestedAbsmax, .f32, dqs.map { $0.nestedAbsmax.withUnsafeBytes { Array($0) } })] {
                        try w.beginComponent(role: role, dtype: dt, shape: [arrays.reduce(0) { $0 + $1.count } / dt.size])
                        for a in arrays { try a.withUnsafeBytes { try w.append($0) } }
                        try w.endComponent()
                    }
                    try w.beginComponent(role: BnbFourBitLayout.Role.nestedCode, dtype: .f32, shape: [BnbFourBitLayout.nestedCodeCount])
                    try DynamicMap.code.withUnsafeBytes { try w.append($0) }
                    try w.endComponent()
                    params += dqs.enumerated().map { (BnbFourBitLayout.nestedOffsetKey(part: $0.offset), .float(Double($0.element.offset))) }
                    try w.setParams(params)
                } else if o.doubleQuant {
                    let dq = DoubleQuant.compress(absmax)
                    try w.beginComponent(role: BnbFourBitLayout.Role.absmax, dtype: .u8, shape: [blocks])
                    try dq.codes.withUnsafeBytes { try w.append($0) }
                    try w.endComponent()
                    try w.beginComponent(role: BnbFourBitLayout.Role.nestedAbsmax, dtype: .f32, shape: [dq.nestedAbsmax.count])
                    try dq.nestedAbsmax.withUnsafeBytes { try w.append($0) }
                    try w.endComponent()
                    try w.beginComponent(role: BnbFourBitLayout.Role.nestedCode, dtype: .f32, shape: [BnbFourBitLayout.nestedCodeCount])
                    try DynamicMap.code.withUnsafeBytes { try w.append($0) }
                    try w.endComponent()
                    params.append((BnbFourBitLayout.nestedOffsetKey(), .float(Double(dq.offset))))
                    try w.setParams(params)
                } else {
                    try w.beginComponent(role: BnbFourBitLayout.Role.absmax, dtype: .f32, shape: [blocks])
                    try absmax.withUnsafeBytes { try w.append($0) }
                    try w.endComponent()
                }
                try w.endTensor()
                written += (n + 1) / 2 + blocks * (o.doubleQuant ? 1 : 4)
                results.append(TensorCastResult(name: t.name, from: t.dtype, to: .u8, elements: n, stats: CastStats()))
            } else {
                let to = (t.dtype.isCastableFloat ? o.dtype : nil) ?? t.dtype
                try w.beginTensor(name: t.name, dtype: to, shape: t.shape, parts: parts)
                try w.beginComponent(role: PlainLayout.dataRole, dtype: to, shape: t.shape)
                let stats = try copier.copy(t, count: n, to: to, append: { try w.append($0) }, advance: { progress.advance($0) })
                try w.endComponent()
                try w.endTensor()
                written += n * to.size
                results.append(TensorCastResult(name: t.name, from: t.dtype, to: to, elements: n, stats: stats))
            }
        }
        return try pipeline.finishI2Q(w, progress: progress, tensors: results, bytesWritten: written)
        }
    }
}
