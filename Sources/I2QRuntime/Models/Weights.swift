import I2QCore
import I2QFormats
import I2QQuant

public enum RuntimeError: I2QError {
    case missingWeight(model: String, name: String)
    case wrongShape(model: String, name: String, expected: [Int], actual: [Int])
    case unsupportedDType(model: String, name: String, dtype: DType)
    case quantized(model: String, name: String)
    case contextTooLong(tokens: Int, capacity: Int)

    public var description: String {
        switch self {
        case let .missingWeight(m, n): return "\(m): weight \"\(n)\" is missing; the checkpoint does not match its config.json."
        case let .wrongShape(m, n, e, a): return "\(m): weight \"\(n)\" has shape \(a), config.json implies \(e)."
        case let .unsupportedDType(m, n, d): return "\(m): weight \"\(n)\" is \(d.rawValue); the runtime reads F32, F16 and BF16 weights."
        case let .quantized(m, n): return "\(m): weight \"\(n)\" is quantized; this runtime path needs plain weights."
        case let .contextTooLong(t, c): return "\(t) tokens exceed the KV cache capacity of \(c); use a shorter prompt or a larger --max-context."
        }
    }
}

/// A weight of the model, read in place from the mapped file when it is aligned float32, otherwise
/// widened to float32 on use (16-bit weights: per use, into a shared scratch buffer — no whole-model
/// float32 copy is ever held).
public final class Weight: @unchecked Sendable {
    public let name: String
    public let shape: [Int]
    public let tensor: SourceTensor
    /// Set when the mapped bytes are usable directly.
    let direct: UnsafePointer<Float>?
    public var count: Int { tensor.elementCount }

    init(_ t: SourceTensor) throws {
        name = t.name
        shape = t.shape
        tensor = t
        guard [.f32, .f16, .bf16].contains(t.dtype) else {
            throw RuntimeError.unsupportedDType(model: "", name: t.name, dtype: t.dtype)
        }
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
    /// the memory traffic); otherwise 16-bit weights are widened into `scratch` first.
    func linear(x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, m: Int, accumulate: Bool = false, scratch: Scratch) throws {
        let out = shape[0], inDim = shape.count >= 2 ? shape.dropFirst().reduce(1, *) : 1
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
        try withF32(scratch) { Matmul.linear(x: x, w: $0, y: y, m: m, k: inDim, n: out, accumulate: accumulate) }
    }

    /// Rows [first, first+n) of a 2-D weight (or elements of a 1-D one) as float32 into `dst`.
    func rows(_ first: Int, _ n: Int, into dst: UnsafeMutablePointer<Float>) throws {
        let width = shape.count >= 2 ? shape.dropFirst().reduce(1, *) : 1
        if let direct {
            dst.update(from: direct + first * width, count: n * width)
            return
        }
        let count = n * width
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

    init(_ source: any ModelSource) {
        self.source = source
        var m: [String: SourceTensor] = [:]
        for t in source.tensors { m[t.name] = t }
        if let f = source as? I2QFile {
            for e in f.entries where e.scheme == I2QSpec.Scheme.nf4 || e.scheme == I2QSpec.Scheme.fp4 {
                if let t = FourBitWeight.sourceTensor(e, file: f) { m[e.name] = t }
            }
        }
        byName = m
    }

    func weight(_ name: String, _ shape: [Int]) throws -> Weight {
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
        byName[name] == nil ? nil : try weight(name, shape)
    }
}

/// NF4/FP4 weights of an .i2q file read as float32 on demand: `code[q] · absmax[block]` in float32,
/// as bitsandbytes' `dequantize_4bit` computes (absmax restored from the double-quantised codes as
/// `dynamic[code] · nested_absmax + offset`, float32). Only the requested elements are produced.
enum FourBitWeight {
    static func sourceTensor(_ e: I2QTensorEntry, file f: I2QFile) -> SourceTensor? {
        guard let packed = e.component("packed"), let absmax = e.component("absmax") else { return nil }
        func int(_ k: String) -> Int? { e.params.first { $0.0 == k }.flatMap { if case let .int(v) = $0.1 { return Int(v) }; return nil } }
        func dbl(_ k: String) -> Double? { e.params.first { $0.0 == k }.flatMap { if case let .float(v) = $0.1 { return v }; return nil } }
        let bs = int("blocksize") ?? 64
        let code = (e.scheme == I2QSpec.Scheme.nf4 ? FourBitType.nf4 : FourBitType.fp4).code
        let base = f.header.dataOffset
        let nested = e.component("nested_absmax")
        let offset = Float(dbl("nested_offset") ?? 0)
        let file = f.file
        return SourceTensor(name: e.name, dtype: .f32, shape: e.shape) { first, count, dst in
            let out = dst.assumingMemoryBound(to: Float.self)
            file.withBytes(base + packed.offset, packed.size) { pk in
                file.withBytes(base + absmax.offset, absmax.size) { am in
                    let nb = nested.map { file.withBytes(base + $0.offset, $0.size) { Array($0.bindMemory(to: Float.self)) } }
                    for i in 0..<count {
                        let idx = first + i
                        let byte = pk[idx / 2]
                        let q = idx % 2 == 0 ? byte >> 4 : byte & 15
                        let blk = idx / bs
                        let scale: Float
                        if let nb, absmax.dtype == .u8 {
                            scale = DynamicMap.code[Int(am[blk])] * nb[blk / DoubleQuantizedAbsmax.nestedBlockSize] + offset
                        } else {
                            scale = am.loadUnaligned(fromByteOffset: blk * 4, as: Float.self)
                        }
                        out[i] = code[Int(q)] * scale
                    }
                }
            }
        }
    }
}
