/// bitsandbytes 4-bit blockwise quantization (NF4 / FP4), byte-identical to bitsandbytes 0.50's
/// CPU `quantize_4bit` (its `backends/default/ops.py` kernel, which the CPU backend uses), and its
/// dequantization.
///
/// Quantization of a flat float32 tensor `x` of `n` elements with block size `B`:
/// - blocks are runs of `B` consecutive elements; the last one may be shorter (the "tail");
/// - `absmax[b] = max |x|` over the block, float32, NaN if the block holds a NaN (torch.max
///   propagates NaN), +inf if it holds an infinity and no NaN;
/// - full blocks: `s = clamp(x * (1 / max(absmax, 1e-38)), -1, 1)` — a reciprocal then a multiply;
///   the tail block: `s = clamp(x / max(absmax, 1e-38), -1, 1)` — a true division (bnb computes the
///   two differently and the results can differ in the last bit); `1e-38` is the float32 rounding of
///   the double 1e-38 (a subnormal), so blocks of zeros or subnormals are scaled by ~1e38;
/// - bucket `k = #{ bounds[i] < s }` (torch.bucketize, right=False: a value exactly on a midpoint
///   goes to the lower code; NaN goes to bucket 15); code = `order[k]` (identity for NF4);
/// - packing: `byte[j] = code[2j] << 4 | code[2j+1]`; for odd `n` the missing element is a scaled
///   0.0, so the last low nibble is the type's `zeroCode` (NF4: 7, FP4: 0).
///
/// NaN / inf policy (bnb's, reproduced): a block containing a NaN gets absmax NaN and every one of
/// its elements the NaN bucket (code 15 for NF4, 3 for FP4); a block containing ±inf (and no NaN)
/// gets absmax +inf, its finite elements become code-of-0.0 and its infinities the NaN bucket.
/// Such a block dequantizes to NaN everywhere (0 * inf). Other blocks are unaffected; with double
/// quantization, the NaN/inf absmax makes the mean offset NaN/inf, which poisons every absmax of the
/// tensor (see `DoubleQuant`). Callers that want to reject non-finite weights must check first.
public enum FourBitCodec {
    /// The block sizes bitsandbytes' `quantize_4bit` accepts.
    public static let validBlockSizes: [Int] = [32, 64, 128, 256, 512, 1024, 2048, 4096]

    /// float32(1e-38): bnb's `absmax.clamp(min=1e-38)` lower bound for the scale.
    @usableFromInline static let tinyAbsmax = Float(1e-38 as Double)

    public static func blockCount(count: Int, blockSize: Int) -> Int { (count + blockSize - 1) / blockSize }
    public static func packedCount(count: Int) -> Int { (count + 1) / 2 }

    // MARK: - Whole-tensor API

    /// Quantizes `x` (the row-major flattened tensor, already widened to float32: bnb upcasts bf16
    /// and f16 inputs exactly with `.float()`). With `doubleQuant`, the absmax values are also
    /// double-quantized as bnb's `compress_statistics=True` does.
    public static func quantize(_ x: UnsafeBufferPointer<Float>, type: FourBitType, blockSize: Int = 64,
                                doubleQuant: Bool = false) -> FourBitQuantized {
        precondition(validBlockSizes.contains(blockSize), "invalid 4-bit block size \(blockSize)")
        let n = x.count
        var packed = [UInt8](repeating: 0, count: packedCount(count: n))
        var absmax = [Float](repeating: 0, count: blockCount(count: n, blockSize: blockSize))
        packed.withUnsafeMutableBufferPointer { p in
            absmax.withUnsafeMutableBufferPointer { a in
                quantizeBlocks(x, type: type, blockSize: blockSize, packed: p.baseAddress!, absmax: a.baseAddress!)
            }
        }
        let dq = doubleQuant ? absmax.withUnsafeBufferPointer { DoubleQuant.compress($0) } : nil
        return FourBitQuantized(type: type, blockSize: blockSize, count: n, packed: packed, absmax: absmax,
                                doubleQuant: dq)
    }

    public static func quantize(_ x: [Float], type: FourBitType, blockSize: Int = 64,
                                doubleQuant: Bool = false) -> FourBitQuantized {
        x.withUnsafeBufferPointer { quantize($0, type: type, blockSize: blockSize, doubleQuant: doubleQuant) }
    }

    /// Dequantizes to float32, as bnb's `dequantize_4bit` computes (`code[q] * absmax` in float32;
    /// with double quantization the absmax restored by `DoubleQuant.restore`). bnb then casts to the
    /// tensor's dtype (round to nearest even); do that with `FloatConversion` when needed.
    public static func dequantize(_ q: FourBitQuantized) -> [Float] {
        let absmax = q.effectiveAbsmax
        var out = [Float](repeating: 0, count: q.count)
        q.packed.withUnsafeBufferPointer { p in
            absmax.withUnsafeBufferPointer { a in
                out.withUnsafeMutableBufferPointer { o in
                    dequantizeBlocks(packed: p.baseAddress!, absmax: a.baseAddress!, type: q.type,
                                     blockSize: q.blockSize, count: q.count, into: o.baseAddress!)
                }
            }
        }
        return out
    }

    // MARK: - Streaming kernels (no allocation)

    /// Quantizes `x` into `packed` (`packedCount(x.count)` bytes) and `absmax`
    /// (`blockCount(x.count, blockSize)` floats). `x` must start on a block boundary of the tensor;
    /// its last partial block, if any, is treated as the tensor's tail. A tensor can therefore be
    /// streamed in chunks whose lengths are multiples of `blockSize` (the last chunk any length),
    /// giving exactly the bytes of one call over the whole tensor.
    public static func quantizeBlocks(_ x: UnsafeBufferPointer<Float>, type: FourBitType, blockSize: Int,
                                      packed: UnsafeMutablePointer<UInt8>, absmax: UnsafeMutablePointer<Float>) {
        precondition(blockSize > 0 && blockSize % 8 == 0, "block size must be a positive multiple of 8")
        let n = x.count
        guard n > 0, let base = x.baseAddress else { return }
        let full = n / blockSize
        let bounds = type == .nf4 ? FourBitTables.nf4Bounds : FourBitTables.fp4Bounds
        let pairMap = type == .nf4 ? FourBitTables.nf4PairMap : FourBitTables.fp4PairMap
        bounds.withUnsafeBufferPointer { bp in
            pairMap.withUnsafeBufferPointer { pm in
                let b = Bounds(bp)
                for blk in 0 ..< full {
                    let src = base + blk * blockSize
                    let dst = packed + blk * (blockSize / 2)
                    let am = blockAbsmax(src, blockSize)
                    absmax[blk] = am
                    if am.isFinite {
                        quantizeFinite(src, blockSize, reciprocal: 1 / max(am, tinyAbsmax), bounds: b,
                                       pairMap: pm.baseAddress!, dst: dst)
                    } else {
                        quantizeScalar(src, blockSize, absmax: am, tail: false, bounds: b, pairMap: pm.baseAddress!, dst: dst)
                    }
                }
                let rem = n - full * blockSize
                if rem > 0 {
                    let src = base + full * blockSize
                    let am = scalarAbsmax(src, rem)
                    absmax[full] = am
                    quantizeScalar(src, rem, absmax: am, tail: true, bounds: b, pairMap: pm.baseAddress!,
                                   dst: packed + full * (blockSize / 2))
                }
            }
        }
    }

    /// `out[i] = code[q_i] * absmax[i / blockSize]` for `i < count` (float32).
    public static func dequantizeBlocks(packed: UnsafePointer<UInt8>, absmax: UnsafePointer<Float>, type: FourBitType,
                                        blockSize: Int, count: Int, into out: UnsafeMutablePointer<Float>) {
        precondition(blockSize > 0 && blockSize % 2 == 0, "block size must be positive and even")
        let code = type.code
        var scaled = (Float(0), Float(0), Float(0), Float(0), Float(0), Float(0), Float(0), Float(0),
                      Float(0), Float(0), Float(0), Float(0), Float(0), Float(0), Float(0), Float(0))
        withUnsafeMutableBytes(of: &scaled) { raw in
            let t = raw.baseAddress!.assumingMemoryBound(to: Float.self)
            var start = 0
            var blk = 0
            while start < count {
                let len = min(blockSize, count - start)
                let s = absmax[blk]
                for k in 0 ..< 16 { t[k] = code[k] * s }
                let src = packed + start / 2
                let dst = out + start
                let pairs = len / 2
                for j in 0 ..< pairs {
                    let byte = Int(src[j])
                    dst[2 * j] = t[byte >> 4]
                    dst[2 * j + 1] = t[byte & 15]
                }
                if len & 1 == 1 { dst[len - 1] = t[Int(src[pairs]) >> 4] }
                start += len
                blk += 1
            }
        }
    }

    // MARK: - Scalar reference (exactly bnb's per-element arithmetic)

    /// Bucket of one scaled value: `#{bounds < s}`; NaN -> 15 (torch.bucketize).
    @inlinable
    public static func bucket(_ s: Float, bounds: [Float]) -> Int {
        if s.isNaN { return 15 }
        var k = 0
        for b in bounds where b < s { k += 1 }
        return k
    }

    /// The code bnb gives to element `x` of a block with the given absmax (`tail`: the tensor's last,
    /// partial block, which bnb scales by division).
    public static func code(of x: Float, absmax: Float, tail: Bool, type: FourBitType) -> UInt8 {
        type.order[bucket(scaled(x, absmax: absmax, tail: tail), bounds: type.bounds)]
    }

    @inline(__always)
    static func scaled(_ x: Float, absmax: Float, tail: Bool) -> Float {
        let denom = absmax.isNaN ? absmax : max(absmax, tinyAbsmax)
        let s = tail ? x / denom : x * (1 / denom)
        return s.isNaN ? s : min(max(s, -1), 1)
    }

    // MARK: - Kernels

    struct Bounds {
        let b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12, b13, b14: SIMD8<Float>
        let scalar: UnsafeBufferPointer<Float>
        init(_ p: UnsafeBufferPointer<Float>) {
            scalar = p
            b0 = .init(repeating: p[0]); b1 = .init(repeating: p[1]); b2 = .init(repeating: p[2])
            b3 = .init(repeating: p[3]); b4 = .init(repeating: p[4]); b5 = .init(repeating: p[5])
            b6 = .init(repeating: p[6]); b7 = .init(repeating: p[7]); b8 = .init(repeating: p[8])
            b9 = .init(repeating: p[9]); b10 = .init(repeating: p[10]); b11 = .init(repeating: p[11])
            b12 = .init(repeating: p[12]); b13 = .init(repeating: p[13]); b14 = .init(repeating: p[14])
        }
    }

    /// max |x| over a block of `n` (a multiple of 8) elements; NaN if any element is NaN.
    @inline(__always)
    static func blockAbsmax(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
        let raw = UnsafeRawPointer(p)
        let absMask = SIMD8<UInt32>(repeating: 0x7FFF_FFFF)
        var m0 = SIMD8<UInt32>(repeating: 0)
        var m1 = SIMD8<UInt32>(repeating: 0)
        var i = 0
        // |x| as bit patterns: for non-negative floats the integer order is the float order, and
        // NaN patterns (> 0x7F800000) are larger than every number, so an integer max finds both.
        while i + 16 <= n {
            let a = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<UInt32>.self) & absMask
            let b = raw.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<UInt32>.self) & absMask
            m0 = pointwiseMax(m0, a)
            m1 = pointwiseMax(m1, b)
            i += 16
        }
        while i < n {
            m0 = pointwiseMax(m0, raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<UInt32>.self) & absMask)
            i += 8
        }
        let m = pointwiseMax(m0, m1).max()
        return m > 0x7F80_0000 ? .nan : Float(bitPattern: m)
    }

    @inline(__always)
    static func scalarAbsmax(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
        var m: UInt32 = 0
        for i in 0 ..< n { m = max(m, p[i].bitPattern & 0x7FFF_FFFF) }
        return m > 0x7F80_0000 ? .nan : Float(bitPattern: m)
    }

    /// Full block with a finite absmax: every scaled value is finite, and clamping to [-1, 1] cannot
    /// change a bucket (all bounds lie inside (-1, 1)), so the bucket is a plain count of bounds below.
    @inline(__always)
    static func quantizeFinite(_ p: UnsafePointer<Float>, _ n: Int, reciprocal r: Float, bounds b: Bounds,
                               pairMap: UnsafePointer<UInt8>, dst: UnsafeMutablePointer<UInt8>) {
        let raw = UnsafeRawPointer(p)
        let rv = SIMD8<Float>(repeating: r)
        let one = SIMD8<Int32>(repeating: 1)
        let zero = SIMD8<Int32>(repeating: 0)
        var i = 0
        while i < n {
            let s = raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self) * rv
            var k = zero.replacing(with: one, where: s .> b.b0)
            k &+= zero.replacing(with: one, where: s .> b.b1)
            k &+= zero.replacing(with: one, where: s .> b.b2)
            k &+= zero.replacing(with: one, where: s .> b.b3)
            k &+= zero.replacing(with: one, where: s .> b.b4)
            k &+= zero.replacing(with: one, where: s .> b.b5)
            k &+= zero.replacing(with: one, where: s .> b.b6)
            k &+= zero.replacing(with: one, where: s .> b.b7)
            k &+= zero.replacing(with: one, where: s .> b.b8)
            k &+= zero.replacing(with: one, where: s .> b.b9)
            k &+= zero.replacing(with: one, where: s .> b.b10)
            k &+= zero.replacing(with: one, where: s .> b.b11)
            k &+= zero.replacing(with: one, where: s .> b.b12)
            k &+= zero.replacing(with: one, where: s .> b.b13)
            k &+= zero.replacing(with: one, where: s .> b.b14)
            let bytes = (k.evenHalf &<< 4) | k.oddHalf
            let o = dst + i / 2
            o[0] = pairMap[Int(bytes[0])]
            o[1] = pairMap[Int(bytes[1])]
            o[2] = pairMap[Int(bytes[2])]
            o[3] = pairMap[Int(bytes[3])]
            i += 8
        }
    }

    /// Any block (non-finite absmax, or the tail), element by element, with bnb's exact semantics.
    static func quantizeScalar(_ p: UnsafePointer<Float>, _ n: Int, absmax: Float, tail: Bool, bounds: Bounds,
                               pairMap: UnsafePointer<UInt8>, dst: UnsafeMutablePointer<UInt8>) {
        @inline(__always) func bucketOf(_ x: Float) -> Int {
            let s = scaled(x, absmax: absmax, tail: tail)
            if s.isNaN { return 15 }
            var k = 0
            for j in 0 ..< 15 where bounds.scalar[j] < s { k += 1 }
            return k
        }
        var j = 0
        while j + 1 < n {
            dst[j / 2] = pairMap[bucketOf(p[j]) << 4 | bucketOf(p[j + 1])]
            j += 2
        }
        if j < n {  // odd tail: bnb pads the scaled values with one 0.0
            dst[j / 2] = pairMap[bucketOf(p[j]) << 4 | bucketOf0(bounds)]
        }
    }

    @inline(__always)
    static func bucketOf0(_ b: Bounds) -> Int {
        var k = 0
        for j in 0 ..< 15 where b.scalar[j] < 0 { k += 1 }
        return k
    }
}

/// The result of 4-bit quantization of one tensor.
public struct FourBitQuantized: Sendable, Equatable {
    public var type: FourBitType
    public var blockSize: Int
    /// Number of elements (product of the tensor's shape).
    public var count: Int
    /// `ceil(count / 2)` bytes, first element in the high nibble (bnb stores them as uint8 [ceil(n/2), 1]).
    public var packed: [UInt8]
    /// The float32 absmax per block (what bnb stores without double quantization).
    public var absmax: [Float]
    /// With double quantization: what bnb stores instead of `absmax`.
    public var doubleQuant: DoubleQuantizedAbsmax?

    public init(type: FourBitType, blockSize: Int, count: Int, packed: [UInt8], absmax: [Float],
                doubleQuant: DoubleQuantizedAbsmax? = nil) {
        self.type = type
        self.blockSize = blockSize
        self.count = count
        self.packed = packed
        self.absmax = absmax
        self.doubleQuant = doubleQuant
    }

    /// The absmax dequantization uses: `absmax`, or with double quantization the restored values.
    public var effectiveAbsmax: [Float] { doubleQuant?.restore() ?? absmax }

    /// The 4-bit code of element `i`.
    public func code(at i: Int) -> UInt8 {
        let b = packed[i / 2]
        return i & 1 == 0 ? b >> 4 : b & 15
    }
}
