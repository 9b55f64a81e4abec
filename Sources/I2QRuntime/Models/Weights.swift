import I2QCore
import I2QFormats
import I2QQuant

public enum RuntimeError: I2QError {
    case missingWeight(model: String, name: String)
    case wrongShape(model: String, name: String, expected: [Int], actual: [Int])
    case unsupportedDType(model: String, name: String, dtype: DType)
    case quantized(model: String, name: String)
    case contextTooLong(tokens: Int, capacity: Int)
    case contextLimit(detail: String)
    case badQuantized(model: String, name: String, detail: String)

    public var description: String {
        switch self {
        case let .missingWeight(m, n): return "\(m): weight \"\(n)\" is missing; the checkpoint does not match its config.json."
        case let .wrongShape(m, n, e, a): return "\(m): weight \"\(n)\" has shape \(a), config.json implies \(e)."
        case let .unsupportedDType(m, n, d): return "\(m): weight \"\(n)\" is \(d.rawValue); the runtime reads F32, F16 and BF16 weights."
        case let .quantized(m, n): return "\(m): weight \"\(n)\" is quantized; this runtime path needs plain weights."
        case let .contextLimit(d): return d
        case let .contextTooLong(t, c): return "\(t) tokens exceed the KV cache capacity of \(c); use a shorter prompt or a larger --max-context."
        case let .badQuantized(m, n, d): return "\(m): quantized weight \"\(n)\" is malformed: \(d). The file is damaged or was not written by i2q; quantize the model again."
        }
    }
}

/// A weight of the model, read in place from the mapped file when it is aligned float32, otherwise
/// widened to float32 on use (16-bit weights: per use, into a shared scratch buffer — no whole-model
/// float32 copy is ever held). 4-bit weights (nf4/fp4/affine_int4) stay packed in the mapping:
/// decoding runs fused dequant-dot kernels over the packed bytes, prefill dequantizes bounded tiles
/// of rows (`QuantGemv`). ggml-block weights (scheme `ggml`) likewise stay in the mapping (`GGMLGemv`).
public final class Weight: @unchecked Sendable {
    public let name: String
    public let shape: [Int]
    public let tensor: SourceTensor
    /// Set when the mapped bytes are usable directly.
    let direct: UnsafePointer<Float>?
    /// Set for 4-bit weights: the packed codes and scales, in place.
    let packed: PackedFourBit?
    /// Set for ggml-block weights: the rows' blocks, in place.
    let ggml: GGMLRows?
    /// A bf16 weight's prefill panels, kept from its second prefill on when the budget allows (`BF16Gemm`).
    let repacked = RepackedWeight()
    public var count: Int { tensor.elementCount }

    init(_ t: SourceTensor, packed p: PackedFourBit? = nil, ggml g: GGMLRows? = nil) throws {
        name = t.name
        shape = t.shape
        tensor = t
        packed = p
        ggml = g
        guard [.f32, .f16, .bf16].contains(t.dtype) else {
            throw RuntimeError.unsupportedDType(model: "", name: t.name, dtype: t.dtype)
        }
        try t.check?()  // an .i2q weight: its checksum, once, before any kernel reads it in place
        if t.dtype == .f32, let f = t.file {
            direct = f.withBytes(t.offset, t.byteCount) { b in
                b.baseAddress.flatMap { Int(bitPattern: $0) % 4 == 0 ? $0.assumingMemoryBound(to: Float.self) : nil }
            }
        } else {
            direct = nil
        }
    }

    /// Calls `body` with this weight as float32 (`scratch` must hold `count` floats when the weight is not direct).
    func withF32<R>(_ scratch: Scratch, _ body: (UnsafePointer<Float>) throws -> R) throws -> R {
        if let direct { return try body(direct) }
        let p = scratch.buffer(count)
        try rows(0, shape.first ?? 1, into: p)
        return try body(p)
    }

    /// y[m, out] (+)= x[m, in] · Wᵀ for this [out, in] weight. Float32 weights are used in place;
    /// a single row (decoding) against mapped 16-bit weights reads them directly (`Gemv.run16`, half
    /// the memory traffic); several rows (prefill) against a mapped bf16 weight round x to bf16 and
    /// multiply in place when asked (`BF16Gemm`); otherwise 16-bit weights are widened into `scratch` first.
    /// `observe`: report x to `LinearInputTap.observer` (false when a `ProjectionGroup` already did).
    /// `int8`: false keeps this product in float32 under `--int8-activations` (the patch embedding, a
    /// convolution in the reference, not an nn.Linear).
    func linear(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, m: Int, accumulate: Bool = false, scratch: Scratch,
                observe: Bool = true, int8: Bool = true) throws {
        let out = shape[0], inDim = shape.count >= 2 ? shape.dropFirst().reduce(1, *) : 1
        if observe, let o = LinearInputTap.observer { o.observe(weights: [name], x: x, rows: m, columns: inDim) }
        if let packed {
            if m == 1 {
                QuantGemv.run(packed, x: x, y: y, accumulate: accumulate)
            } else {
                let tile = QuantGemv.tileRows(rows: out, cols: inDim)
                QuantGemv.linear(packed, x: x, y: y, m: m, accumulate: accumulate,
                                 scratch: scratch.buffer(tile * inDim), tileRows: tile)  // [tile, in] f32
            }
            return
        }
        if let ggml {
            if m == 1 {
                GGMLGemv.run(ggml, x: x, y: y, accumulate: accumulate)
            } else {
                let tile = QuantGemv.tileRows(rows: out, cols: inDim)
                GGMLGemv.linear(ggml, x: x, y: y, m: m, accumulate: accumulate,
                                scratch: scratch.buffer(tile * inDim), tileRows: tile)  // [tile, in] f32
            }
            return
        }
        if m > 1, int8, Int8Gemm.enabled,
           try withMappedFloat({ Int8Gemm.linear(x: x, w: $0, dtype: tensor.dtype, y: y, m: m, k: inDim, n: out, accumulate: accumulate) }) {
            return  // prefill with int8 activations × the float weight quantized per row on the fly (Int8Gemm)
        }
        if let direct {
            Matmul.linear(x: x, w: direct, y: y, m: m, k: inDim, n: out, accumulate: accumulate)
            return
        }
        if m == 1, tensor.dtype == .bf16 || tensor.dtype == .f16, let f = tensor.file {
            f.withBytes(tensor.offset, tensor.byteCount) { b in
                Gemv.run16(w: b.baseAddress!, dtype: tensor.dtype, x: x, y: y, n: out, k: inDim, accumulate: accumulate)
            }
            return
        }
        if m > 1, tensor.dtype == .bf16, BF16Gemm.enabled, let f = tensor.file {
            // Prefill with a mapped bf16 weight: bf16 activations × the weight in place (BF16Gemm).
            try f.withBytes(tensor.offset, tensor.byteCount) { b in
                try BF16Gemm.linear(x: x, w: b.baseAddress!, y: y, m: m, k: inDim, n: out, accumulate: accumulate,
                                    scratch: scratch, repacked: repacked) { try rows(0, out, into: $0) }
            }
            return
        }
        try withF32(scratch) { Matmul.linear(x: x, w: $0, y: y, m: m, k: inDim, n: out, accumulate: accumulate) }
    }

    /// Calls `body` with the float weight in place (f32, bf16 or f16, mapped) and returns true; false
    /// (body not called) for 4-bit/ggml weights and unmapped ones. For `Int8Gemm`.
    func withMappedFloat(_ body: (UnsafeRawPointer) throws -> Void) throws -> Bool {
        guard packed == nil, ggml == nil else { return false }
        if let direct { try body(UnsafeRawPointer(direct)); return true }
        guard tensor.dtype == .bf16 || tensor.dtype == .f16, let f = tensor.file else { return false }
        try f.withBytes(tensor.offset, tensor.byteCount) { b in try body(b.baseAddress!) }
        return true
    }

    /// Rows [first, first+n) of a 2-D weight (or elements of a 1-D one) as float32 into `dst`.
    func rows(_ first: Int, _ n: Int, into dst: UnsafeMutablePointer<Float>) throws {
        let width = shape.count >= 2 ? shape.dropFirst().reduce(1, *) : 1
        if let direct {
            dst.update(from: direct + first * width, count: n * width)
            return
        }
        if let packed {
            packed.dequantizeRows(first, n, into: dst)
            return
        }
        if let ggml {
            ggml.dequantizeRows(first, n, into: dst)
            return
        }
        let count = n * width
        if tensor.dtype == .bf16 || tensor.dtype == .f16, let f = tensor.file {
            // Mapped 16-bit rows widened straight from the mapping, split over the cores (prefill
            // with float32 activations widens every weight of every window).
            let dtype = tensor.dtype
            f.withBytes(tensor.offset + 2 * first * width, 2 * count) { b in
                let s = UnsafeSendable(b.baseAddress!), d = UnsafeSendable(dst)
                Kernels.parallelRows(count, cost: count) { r in
                    FloatConversion.widenToF32(from: dtype, count: r.count, src: s.p + 2 * r.lowerBound, dst: d.p + r.lowerBound)
                }
            }
            return
        }
        switch tensor.dtype {
        case .f32:
            try tensor.read(elements: first * width, count: count, into: UnsafeMutableRawPointer(dst))
        default:
            // Read the 16-bit values into the upper half of dst, then widen front to back (the
            // output never overtakes unread input: element i is written at byte 4i, read at 2count+2i).
            let raw = UnsafeMutableRawPointer(dst)
            try tensor.read(elements: first * width, count: count, into: raw + 2 * count)
            FloatConversion.widenToF32(from: tensor.dtype, count: count, src: raw + 2 * count, dst: dst)
        }
    }
}

/// A growable float32 buffer for widening 16-bit weights.
final class Scratch: @unchecked Sendable {
    private var storage: UnsafeMutablePointer<Float>
    private var capacity: Int
    init() { capacity = 0; storage = UnsafeMutablePointer<Float>.allocate(capacity: 1) }
    deinit { storage.deallocate() }
    func buffer(_ n: Int) -> UnsafeMutablePointer<Float> {
        if n > capacity {
            storage.deallocate()
            storage = UnsafeMutablePointer<Float>.allocate(capacity: n)
            capacity = n
        }
        return storage
    }
}

/// Looks weights up by checkpoint name and checks their shapes against the config.
struct WeightLoader {
    let source: any ModelSource
    let byName: [String: SourceTensor]
    /// 4-bit (nf4, fp4, affine_int4) and ggml-block entries of an .i2q source, read in place.
    let quantized: [String: I2QTensorEntry]

    init(_ source: any ModelSource) throws {
        self.source = source
        var m: [String: SourceTensor] = [:]
        var q: [String: I2QTensorEntry] = [:]
        for t in source.tensors { m[t.name] = t }
        if let f = source as? I2QFile {
            for e in f.entries where FourBitWeight.schemes.contains(e.scheme) {
                q[e.name] = e
                if e.parts.isEmpty {
                    m[e.name] = try FourBitWeight.sourceTensor(e, file: f)  // a malformed entry is an error naming it
                } else if let t = try? FourBitWeight.sourceTensor(e, file: f) {
                    m[e.name] = t  // deliberate: fused groups are read part by part (FusedWeights), each part validated with its error named; the whole view is optional
                }
            }
            for e in f.entries where GGMLWeight.schemes.contains(e.scheme) {
                q[e.name] = e
                if e.parts.isEmpty {
                    m[e.name] = try GGMLWeight.sourceTensor(e, file: f)  // a malformed entry is an error naming it
                } else if let t = try? GGMLWeight.sourceTensor(e, file: f) {
                    m[e.name] = t  // deliberate, as above: each part is validated (and its error named) when read
                }
            }
        }
        byName = m
        quantized = q
    }

    func weight(_ name: String, _ shape: [Int]) throws -> Weight {
        if let e = quantized[name], let f = source as? I2QFile {
            guard e.shape == shape else { throw RuntimeError.wrongShape(model: source.path, name: name, expected: shape, actual: e.shape) }
            try f.ensureVerified(e)
            guard let t0 = byName[name] else { throw RuntimeError.badQuantized(model: source.path, name: name, detail: "unreadable components") }
            if GGMLWeight.schemes.contains(e.scheme) { return try Weight(t0, ggml: try GGMLWeight.rows(e, file: f)) }
            let p = try FourBitWeight.packed(e, file: f)
            guard let t = byName[name] else { throw RuntimeError.badQuantized(model: source.path, name: name, detail: "unreadable components") }
            return try Weight(t, packed: p)
        }
        guard let t = byName[name] else {
            if source.quantizedTensorNames.contains(name) { throw RuntimeError.quantized(model: source.path, name: name) }
            throw RuntimeError.missingWeight(model: source.path, name: name)
        }
        guard t.shape == shape else { throw RuntimeError.wrongShape(model: source.path, name: name, expected: shape, actual: t.shape) }
        do { return try Weight(t) } catch RuntimeError.unsupportedDType(_, let n, let d) {
            throw RuntimeError.unsupportedDType(model: source.path, name: n, dtype: d)
        }
    }

    func optional(_ name: String, _ shape: [Int]) throws -> Weight? {
        byName[name] == nil && quantized[name] == nil ? nil : try weight(name, shape)
    }
}

/// 4-bit weights of an .i2q file (schemes nf4, fp4 — bitsandbytes — and affine_int4 — AWQ).
///
/// `sourceTensor` exposes one as a float32 `SourceTensor` computed on demand (only the requested
/// elements are produced): nf4/fp4 as bitsandbytes' `dequantize_4bit` computes, `code[q] · absmax`
/// in float32 (absmax restored from the double-quantized codes as `dynamic[code] · nested_absmax +
/// offset`, float32); affine_int4 as AutoAWQ dequantizes, `(q − z) · s` in float32. The values are
/// not rounded to the entry's dtype. `packed` gives the in-place view the kernels use.
enum FourBitWeight {
    static let schemes: Set<String> = BnbFourBitLayout.schemes.union(AffineInt4Layout.schemes)

    static func sourceTensor(_ e: I2QTensorEntry, file f: I2QFile) throws -> SourceTensor {
        let p = try packed(e, file: f)
        return SourceTensor(name: e.name, dtype: .f32, shape: e.shape) { first, count, dst in
            p.dequantize(first: first, count: count, into: dst.assumingMemoryBound(to: Float.self))
        }
    }

    /// The packed view of a 4-bit entry, after checking it against its scheme's layout
    /// (`BnbFourBitLayout`, `AffineInt4Layout`; Formats/i2q-format.md, "Schemes").
    static func packed(_ e: I2QTensorEntry, file f: I2QFile) throws -> PackedFourBit {
        func bad(_ d: String) -> RuntimeError { .badQuantized(model: f.path, name: e.name, detail: d) }
        func bytes(_ c: I2QComponent) -> UnsafeRawPointer {
            f.file.withBytes(f.header.dataOffset + c.offset, c.size) { UnsafeRawPointer($0.baseAddress!) }
        }
        let layout: any SchemeLayout
        do { layout = try SchemeLayouts.layout(e) } catch let x as SchemeLayoutError { throw bad(x.detail) }
        let rows = e.shape[0], cols = e.shape.reduce(1, *) / rows
        switch layout {
        case let l as BnbFourBitLayout:
            var nested: UnsafeRawPointer? = nil, offset: Float = 0
            if let n = l.nested {
                guard l.nestedBlockSize == 256 else { throw bad("nested_blocksize \(l.nestedBlockSize) is not supported (the kernels use bitsandbytes' 256)") }
                guard let o = n.offset else { throw bad("double quantization without a float nested_offset") }
                nested = bytes(n.absmax)
                offset = Float(o)
            }
            return PackedFourBit(layout: .table(l.isNF4 ? .nf4 : .fp4), rows: rows, cols: cols,
                                 packed: bytes(l.packed).assumingMemoryBound(to: UInt8.self), unit: l.blockSize, absmax: bytes(l.absmax),
                                 nested: nested, offset: offset, scales: nil, zeros: nil, owner: f.file)
        case let l as AffineInt4Layout:
            let zeros = l.zeros.map(bytes)
            let zmax = UInt8(AffineInt4.maxCode(bits: l.bits))
            if let zeros {
                let bad0 = (0..<(rows * l.groups)).first { zeros.load(fromByteOffset: $0, as: UInt8.self) > zmax }
                if let i = bad0 { throw bad("zero point \(zeros.load(fromByteOffset: i, as: UInt8.self)) at \(i) is outside 0…\(zmax)") }
            }
            return PackedFourBit(layout: .affine, rows: rows, cols: cols, packed: bytes(l.qweight).assumingMemoryBound(to: UInt8.self),
                                 unit: l.groupSize, absmax: nil, nested: nil, offset: 0,
                                 scales: bytes(l.scales).assumingMemoryBound(to: Float16.self),
                                 zeros: zeros?.assumingMemoryBound(to: UInt8.self), owner: f.file, bits: l.bits)
        default:
            throw bad("scheme \(e.scheme) is not a 4-bit scheme")
        }
    }
}
