/// Double quantization of the 4-bit absmax values (bitsandbytes `quantize_4bit(...,
/// compress_statistics=True)`):
///
///     offset = absmax.mean()                      # torch float32 mean
///     codes, nested_absmax = quantize_blockwise(absmax - offset, code=dynamic map, blocksize=256)
///
/// and on restore `absmax = dynamic[codes] * nested_absmax[i / 256] + offset` (float32).
///
/// `quantize_blockwise` on CPU is bnb's C kernel (csrc/cpu_ops.cpp `quantize_cpu_impl`), which maps
/// through a 65536-entry lookup table rather than to the exact nearest code:
///
///     nested_absmax = max(0, max over non-NaN |v|)       (NaNs are skipped, unlike the 4-bit absmax)
///     if nested_absmax == 0: every code 0
///     y = clamp(v * (1 / nested_absmax), -1, 1)        (NaN stays NaN)
///     i = uint16(trunc(fma((y + 1) * 0.5, 65535, 0.5)))  (NaN -> 0; the compiled kernel fuses the FMA)
///     code = DynamicMap.lut[i]
///
/// The offset reproduces torch's single-threaded float32 `sum` (its cascade summation over
/// 8-lane vectors, AVX2 width, which is what torch 2.15 runs on x86-64 here) divided by n. torch
/// splits reductions over more than 32768 elements across its threads, so for tensors with more
/// than 32768 blocks a multi-threaded bnb run can give an offset one ulp away (and then, rarely, a
/// different code); `compress(_:offset:)` accepts an explicit offset for such comparisons.
public struct DoubleQuantizedAbsmax: Sendable, Equatable {
    public static let nestedBlockSize = 256

    /// One uint8 code per 4-bit block (bnb's `weight.absmax` with double quantization).
    public var codes: [UInt8]
    /// float32, one per 256 codes (`weight.nested_absmax`).
    public var nestedAbsmax: [Float]
    /// float32 mean of the original absmax (`nested_offset` in the quant state).
    public var offset: Float

    public init(codes: [UInt8], nestedAbsmax: [Float], offset: Float) {
        self.codes = codes
        self.nestedAbsmax = nestedAbsmax
        self.offset = offset
    }

    /// `dynamic[codes[i]] * nestedAbsmax[i / 256] + offset`, float32 (bnb's `dequantize_blockwise`
    /// followed by `absmax += offset`).
    public func restore() -> [Float] {
        let code = DynamicMap.code
        var out = [Float](repeating: 0, count: codes.count)
        for i in 0 ..< codes.count {
            out[i] = code[Int(codes[i])] * nestedAbsmax[i / Self.nestedBlockSize] + offset
        }
        return out
    }
}

public enum DoubleQuant {
    /// Double-quantizes `absmax`; `offset` defaults to `torchMean(absmax)`.
    public static func compress(_ absmax: UnsafeBufferPointer<Float>, offset: Float? = nil) -> DoubleQuantizedAbsmax {
        let off = offset ?? torchMean(absmax)
        let n = absmax.count
        let bs = DoubleQuantizedAbsmax.nestedBlockSize
        var codes = [UInt8](repeating: 0, count: n)
        var nested = [Float](repeating: 0, count: (n + bs - 1) / bs)
        var v = [Float](repeating: 0, count: n)
        for i in 0 ..< n { v[i] = absmax[i] - off }
        v.withUnsafeBufferPointer { vp in
            codes.withUnsafeMutableBufferPointer { c in
                nested.withUnsafeMutableBufferPointer { a in
                    quantizeBlockwise8(vp, blockSize: bs, codes: c.baseAddress!, absmax: a.baseAddress!)
                }
            }
        }
        return DoubleQuantizedAbsmax(codes: codes, nestedAbsmax: nested, offset: off)
    }

    public static func compress(_ absmax: [Float], offset: Float? = nil) -> DoubleQuantizedAbsmax {
        absmax.withUnsafeBufferPointer { compress($0, offset: offset) }
    }

    /// bnb's CPU `quantize_blockwise` with the signed dynamic map (see the type comment).
    public static func quantizeBlockwise8(_ x: UnsafeBufferPointer<Float>, blockSize: Int,
                                          codes: UnsafeMutablePointer<UInt8>, absmax: UnsafeMutablePointer<Float>) {
        precondition(blockSize > 0)
        let lut = DynamicMap.lut
        var start = 0
        var blk = 0
        while start < x.count {
            let end = min(start + blockSize, x.count)
            var m = -Float.infinity
            for i in start ..< end {
                let a = abs(x[i])
                if m < a { m = a }  // std::max(m, a): a NaN never replaces m
            }
            if 0 > m { m = 0 }  // vmaxss(0, m): (0 > m) ? 0 : m (m is -inf when all are NaN)
            absmax[blk] = m
            if m == 0 {
                for i in start ..< end { codes[i] = 0 }
            } else {
                let inv = 1 / m
                for i in start ..< end {
                    var y = x[i] * inv
                    if !y.isNaN { y = min(max(y, -1), 1) }
                    let t = (y + 1) * 0.5
                    let r = Float(0.5).addingProduct(t, 65535)
                    let idx = r.isNaN ? 0 : Int(UInt16(truncatingIfNeeded: Int32(r)))
                    codes[i] = lut[idx]
                }
            }
            start = end
            blk += 1
        }
    }

    // MARK: - torch's float32 mean

    /// torch 2.15's CPU `x.mean()` for a contiguous float32 vector, one thread: cascade sum
    /// (aten/src/ATen/native/cpu/SumKernel.cpp `vectorized_inner_sum` / `row_sum` /
    /// `multi_row_sum`, 8-lane vectors, float accumulators) divided by `n` in float32.
    public static func torchMean(_ x: UnsafeBufferPointer<Float>) -> Float {
        torchSum(x) / Float(x.count)
    }

    public static func torchSum(_ x: UnsafeBufferPointer<Float>) -> Float {
        let n = x.count
        guard n > 0, let base = x.baseAddress else { return 0 }
        let w = 8
        if n < w {
            return 0 + rowSum(count: n) { i in base[i] }
        }
        let vs = n / w
        let raw = UnsafeRawPointer(base)
        let vacc: SIMD8<Float> = rowSum(count: vs) { i in raw.loadUnaligned(fromByteOffset: i * 32, as: SIMD8<Float>.self) }
        var fa: Float = 0
        for k in vs * w ..< n { fa += base[k] }
        for k in 0 ..< w { fa += vacc[k] }
        return 0 + fa
    }

    /// torch `row_sum`: the row seen as (-1, 4) for four interleaved partial sums (multi_row_sum),
    /// the leftover items added to the first, then the four added in order.
    @inline(__always)
    static func rowSum<T: Summable>(count size: Int, _ load: (Int) -> T) -> T {
        let ilp = 4
        let sizeIlp = size / ilp
        var ps = multiRowSum4(count: sizeIlp) { i, k in load(i * ilp + k) }
        for i in sizeIlp * ilp ..< size { ps.0 = ps.0 + load(i) }
        ps.0 = ps.0 + ps.1
        ps.0 = ps.0 + ps.2
        ps.0 = ps.0 + ps.3
        return ps.0
    }

    static func ceilLog2(_ x: Int) -> Int {
        if x <= 2 { return 1 }
        return Int.bitWidth - (x - 1).leadingZeroBitCount
    }

    /// torch `multi_row_sum` with nrows = 4 and 4 levels.
    @inline(__always)
    static func multiRowSum4<T: Summable>(count size: Int, _ load: (Int, Int) -> T) -> (T, T, T, T) {
        let numLevels = 4
        let levelPower = max(4, ceilLog2(size) / numLevels)
        let levelStep = 1 << levelPower
        let levelMask = levelStep - 1
        var acc = [[T]](repeating: [T](repeating: .zero, count: 4), count: numLevels)
        var i = 0
        while i + levelStep <= size {
            for _ in 0 ..< levelStep {
                for k in 0 ..< 4 { acc[0][k] = acc[0][k] + load(i, k) }
                i += 1
            }
            for j in 1 ..< numLevels {
                for k in 0 ..< 4 {
                    acc[j][k] = acc[j][k] + acc[j - 1][k]
                    acc[j - 1][k] = .zero
                }
                let mask = levelMask << (j * levelPower)
                if i & mask != 0 { break }
            }
        }
        while i < size {
            for k in 0 ..< 4 { acc[0][k] = acc[0][k] + load(i, k) }
            i += 1
        }
        for j in 1 ..< numLevels {
            for k in 0 ..< 4 { acc[0][k] = acc[0][k] + acc[j][k] }
        }
        return (acc[0][0], acc[0][1], acc[0][2], acc[0][3])
    }
}

protocol Summable {
    static var zero: Self { get }
    static func + (a: Self, b: Self) -> Self
}

extension Float: Summable {}
extension SIMD8: Summable where Scalar == Float {}
