import CI2QKernels
/// Floating-point conversions that reproduce torch's CPU `Tensor.to(dtype)` bit for bit.
///
/// Reference: PyTorch 2.15 on x86-64 (c10/util/Half.h, c10/util/BFloat16.h and the vectorised copy
/// kernels in aten/src/ATen/cpu/vec). Checked bit-exactly against tensors produced by torch itself
/// (Tests/Fixtures/cast/special.safetensors: NaN payloads, ±inf, ±0, subnormals, fp16 overflow,
/// rounding ties, vector body and scalar tail) — tolerance: 0 ulp, every bit.
///
/// - f32 → f16: IEEE round-to-nearest-even (F16C `vcvtps2ph` when built for the native CPU); values
///   with |x| ≥ 65520 become ±inf; NaN stays NaN.
/// - f32 → bf16: round-to-nearest-even on the upper 16 bits (`(x + 0x7FFF + lsb) >> 16`).
/// - Widening (f16/bf16 → f32) is exact. Conversions between the 16-bit types go through f32, and
///   f64 sources are first rounded to f32, as torch does (checked: no double-rounding difference).
///
/// NaN bit patterns are the one thing torch does not do uniformly: its vectorised body and its scalar
/// tail differ for some directions (see `TorchNaNPolicy`). i2q reproduces torch's result for a
/// contiguous tensor converted by one thread; with several torch threads, tensors above torch's
/// 32768-element grain get a scalar tail per thread chunk, so NaN payloads in the middle of large
/// tensors can differ from a multi-threaded torch run. Every non-NaN value is identical on all paths.
public enum FloatConversion {
    /// The bf16 bit pattern of torch's scalar `c10::BFloat16(float)` for a NaN input.
    public static let bf16NaN: UInt16 = 0x7FC0

    @inline(__always)
    public static func bf16Bits(_ x: Float) -> UInt16 {
        let u = x.bitPattern
        if x.isNaN { return bf16NaN }
        let lsb = (u >> 16) & 1
        return UInt16(truncatingIfNeeded: (u &+ 0x7FFF &+ lsb) >> 16)
    }

    @inline(__always)
    public static func float(fromBF16 b: UInt16) -> Float {
        Float(bitPattern: UInt32(b) << 16)
    }

    @inline(__always)
    public static func f16Bits(_ x: Float) -> UInt16 {
        Float16(x).bitPattern
    }

    @inline(__always)
    public static func float(fromF16 h: UInt16) -> Float {
        Float(Float16(bitPattern: h))
    }

    /// Reads element `i` of `src` (of type `dt`, little-endian, possibly unaligned) as a Float.
    /// f64 is rounded to f32 first, like torch's conversion to the 16-bit types.
    @inline(__always)
    static func loadFloat(_ src: UnsafeRawPointer, _ i: Int, _ dt: DType) -> Float {
        switch dt {
        case .f32: return src.loadUnaligned(fromByteOffset: i * 4, as: Float.self)
        case .f16: return Float(src.loadUnaligned(fromByteOffset: i * 2, as: Float16.self))
        case .bf16: return float(fromBF16: src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
        case .f64: return Float(src.loadUnaligned(fromByteOffset: i * 8, as: Double.self))
        default: return 0
        }
    }
}

/// What a cast changed, per tensor.
public struct CastStats: Sendable, Equatable {
    /// Finite inputs that became ±inf (out of the target's range).
    public var overflowed = 0
    /// NaN inputs (kept as NaN).
    public var nans = 0
    /// Non-zero finite inputs that became ±0 (underflow).
    public var flushedToZero = 0
    public init() {}
    public static func += (a: inout CastStats, b: CastStats) {
        a.overflowed += b.overflowed; a.nans += b.nans; a.flushedToZero += b.flushedToZero
    }
}

public struct UnsupportedCast: I2QError {
    public let from: DType, to: DType
    public var description: String { "cannot cast \(from.rawValue) to \(to.rawValue): only F64/F32/F16/BF16 are cast" }
}

extension FloatConversion {
    /// Converts `count` elements from `src` (type `from`) to `dst` (type `to`). Both buffers may be
    /// unaligned. Returns the statistics of what the rounding did.
    ///
    /// `first` and `total` place this chunk in the whole tensor (element `first` of `total`), which
    /// decides which NaNs torch would have converted in its scalar tail.
    public static func convert(from: DType, to: DType, count: Int,
                               src: UnsafeRawPointer, dst: UnsafeMutableRawPointer,
                               first: Int = 0, total: Int? = nil) throws -> CastStats {
        let st = try convertValues(from: from, to: to, count: count, src: src, dst: dst)
        if st.nans > 0 {
            TorchNaNPolicy.patch(from: from, to: to, count: count, src: src, dst: dst, first: first, total: total ?? (first + count))
        }
        return st
    }

    static func convertValues(from: DType, to: DType, count: Int,
                              src: UnsafeRawPointer, dst: UnsafeMutableRawPointer) throws -> CastStats {
        guard from.isCastableFloat, to.isCastableFloat else { throw UnsupportedCast(from: from, to: to) }
        if from == to {
            dst.copyMemory(from: src, byteCount: count * from.size)
            return CastStats()
        }
        switch (from, to) {
        case (.f32, .f16): return f32ToF16(count, src, dst)
        case (.f32, .bf16): return f32ToBF16(count, src, dst)
        case (.bf16, .f16): return bf16ToF16(count, src, dst)
        case (.f16, .bf16): return f16ToBF16(count, src, dst)
        case (.bf16, .f32): return bf16ToF32(count, src, dst)
        case (.f16, .f32): return f16ToF32(count, src, dst)
        default: break
        }
        var st = CastStats()
        for i in 0..<count {
            switch to {
            case .f32:
                let x: Float = (from == .f64) ? Float(src.loadUnaligned(fromByteOffset: i * 8, as: Double.self))
                    : loadFloat(src, i, from)
                dst.storeBytes(of: x, toByteOffset: i * 4, as: Float.self)
                if from == .f64 { account(src.loadUnaligned(fromByteOffset: i * 8, as: Double.self), Double(x), &st) }
                else if x.isNaN { st.nans += 1 }
            case .f64:
                let x = Double(loadFloat(src, i, from))
                dst.storeBytes(of: x, toByteOffset: i * 8, as: Double.self)
                if x.isNaN { st.nans += 1 }
            case .f16:
                let x = loadFloat(src, i, from)
                let h = Float16(x)
                dst.storeBytes(of: h.bitPattern, toByteOffset: i * 2, as: UInt16.self)
                account(Double(from == .f64 ? src.loadUnaligned(fromByteOffset: i * 8, as: Double.self) : Double(x)), Double(h), &st)
            case .bf16:
                let x = loadFloat(src, i, from)
                let b = bf16Bits(x)
                dst.storeBytes(of: b, toByteOffset: i * 2, as: UInt16.self)
                account(Double(from == .f64 ? src.loadUnaligned(fromByteOffset: i * 8, as: Double.self) : Double(x)),
                        Double(float(fromBF16: b)), &st)
            default: break
            }
        }
        return st
    }

    @inline(__always)
    static func account(_ x: Double, _ y: Double, _ st: inout CastStats) {
        if x.isNaN { st.nans += 1; return }
        if x.isFinite && y.isInfinite { st.overflowed += 1 }
        if x != 0 && y == 0 { st.flushedToZero += 1 }
    }

    // Hot paths (fp32/bf16 checkpoints → 16 bits). Each block of 64 Ki elements is converted by a
    // plain loop over typed pointers, which LLVM vectorises (AVX-512 vcvtps2ph / integer ops, ≈ 6 G
    // elements/s), and scanned with a max/min reduction of the magnitude bits (≈ 8 G/s). Only a
    // block whose range reaches an overflow, NaN or underflow threshold is counted exactly by the
    // scalar routine (same formulas). Unaligned buffers take the scalar routine.

    static let block = 1 << 16

    @inline(__always)
    static func aligned(_ p: UnsafeRawPointer, _ a: Int) -> Bool { Int(bitPattern: p) % a == 0 }

    /// (max |bits|, min(|bits| - 1)) over `n` f32 bit patterns.
    @inline(never)
    static func magnitudeRange(_ p: UnsafePointer<UInt32>, _ n: Int) -> (UInt32, UInt32) {
        var mx: UInt32 = 0, mn: UInt32 = .max
        for i in 0..<n {
            let a = p[i] & 0x7FFF_FFFF
            mx = max(mx, a)
            mn = min(mn, a &- 1)
        }
        return (mx, mn)
    }

    @inline(never)
    static func magnitudeRange(_ p: UnsafePointer<UInt16>, _ n: Int) -> (UInt16, UInt16) {
        var mx: UInt16 = 0, mn: UInt16 = .max
        for i in 0..<n {
            let a = p[i] & 0x7FFF
            mx = max(mx, a)
            mn = min(mn, a &- 1)
        }
        return (mx, mn)
    }

    static func f32ToF16(_ n: Int, _ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer) -> CastStats {
        guard aligned(src, 4), aligned(dst, 2) else { return f32ToF16Scalar(n, src, dst) }
        let s = src.assumingMemoryBound(to: Float.self), d = dst.assumingMemoryBound(to: UInt16.self)
        var st = CastStats()
        var i = 0
        while i < n {
            let m = min(block, n - i)
            i2q_f32_to_f16(s + i, d + i, Int64(m), Int32(I2Q_IMPL_AUTO))  // F16C or portable, bit-identical (half.c)
            let (mx, mn) = magnitudeRange(UnsafeRawPointer(s + i).assumingMemoryBound(to: UInt32.self), m)
            // |x| ≥ 65520 (0x477FF000) overflows or is inf/NaN; 0 < |x| ≤ 2^-25 (0x33000000) flushes.
            if mx >= 0x477F_F000 || mn < 0x3300_0000 { st += f32ToF16Scalar(m, s + i, d + i) }
            i += m
        }
        return st
    }

    static func f32ToF16Scalar(_ n: Int, _ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer) -> CastStats {
        var st = CastStats()
        for i in 0..<n {
            let x = src.loadUnaligned(fromByteOffset: i * 4, as: Float.self)
            dst.storeBytes(of: Float16(x).bitPattern, toByteOffset: i * 2, as: UInt16.self)
            let a = x.bitPattern & 0x7FFF_FFFF
            st.overflowed += (a >= 0x477F_F000 && a < 0x7F80_0000) ? 1 : 0
            st.nans += a > 0x7F80_0000 ? 1 : 0
            st.flushedToZero += (a != 0 && a <= 0x3300_0000) ? 1 : 0
        }
        return st
    }

    static func f32ToBF16(_ n: Int, _ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer) -> CastStats {
        guard aligned(src, 4), aligned(dst, 2) else { return f32ToBF16Scalar(n, src, dst) }
        let s = src.assumingMemoryBound(to: UInt32.self), d = dst.assumingMemoryBound(to: UInt16.self)
        var st = CastStats()
        var i = 0
        while i < n {
            let m = min(block, n - i)
            for k in i..<(i + m) {
                let u = s[k]
                let r = UInt16(truncatingIfNeeded: (u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
                d[k] = (u & 0x7FFF_FFFF) > 0x7F80_0000 ? bf16NaN : r
            }
            let (mx, mn) = magnitudeRange(s + i, m)
            // ≥ 0x7F7F8000 rounds to inf (or is inf/NaN); only fp32 subnormals ≤ 2^-134 (0x8000) flush.
            if mx >= 0x7F7F_8000 || mn < 0x0000_8000 { st += f32ToBF16Scalar(m, s + i, d + i) }
            i += m
        }
        return st
    }

    static func f32ToBF16Scalar(_ n: Int, _ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer) -> CastStats {
        var st = CastStats()
        for i in 0..<n {
            let u = src.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)
            let a = u & 0x7FFF_FFFF
            let isNaN = a > 0x7F80_0000
            let r = UInt16(truncatingIfNeeded: (u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
            dst.storeBytes(of: isNaN ? bf16NaN : r, toByteOffset: i * 2, as: UInt16.self)
            st.overflowed += (a >= 0x7F7F_8000 && a < 0x7F80_0000) ? 1 : 0
            st.nans += isNaN ? 1 : 0
            st.flushedToZero += (a != 0 && a <= 0x0000_8000) ? 1 : 0
        }
        return st
    }

    /// bf16 → f16 as torch does it: widen exactly to f32, then round to nearest even.
    static func bf16ToF16(_ n: Int, _ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer) -> CastStats {
        guard aligned(src, 2), aligned(dst, 2) else { return bf16ToF16Scalar(n, src, dst) }
        let s = src.assumingMemoryBound(to: UInt16.self), d = dst.assumingMemoryBound(to: UInt16.self)
        var st = CastStats()
        var i = 0
        while i < n {
            let m = min(block, n - i)
            i2q_bf16_to_f16(s + i, d + i, Int64(m), Int32(I2Q_IMPL_AUTO))  // widen exactly, round (half.c)
            let (mx, mn) = magnitudeRange(s + i, m)
            // The f32 thresholds 0x477FF000 and 0x33000000, on bf16 bits (the low 16 bits are 0).
            if mx >= 0x4780 || mn < 0x3300 { st += bf16ToF16Scalar(m, s + i, d + i) }
            i += m
        }
        return st
    }

    static func bf16ToF16Scalar(_ n: Int, _ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer) -> CastStats {
        var st = CastStats()
        for i in 0..<n {
            let u = UInt32(src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)) << 16
            dst.storeBytes(of: Float16(Float(bitPattern: u)).bitPattern, toByteOffset: i * 2, as: UInt16.self)
            let a = u & 0x7FFF_FFFF
            st.overflowed += (a >= 0x477F_F000 && a < 0x7F80_0000) ? 1 : 0
            st.nans += a > 0x7F80_0000 ? 1 : 0
            st.flushedToZero += (a != 0 && a <= 0x3300_0000) ? 1 : 0
        }
        return st
    }

    /// f16 → bf16: widen exactly to f32, then round to nearest even (never overflows or flushes).
    static func f16ToBF16(_ n: Int, _ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer) -> CastStats {
        var nan = 0
        for i in 0..<n {
            let x = Float(src.loadUnaligned(fromByteOffset: i * 2, as: Float16.self))
            let u = x.bitPattern
            let isNaN = (u & 0x7FFF_FFFF) > 0x7F80_0000
            let r = UInt16(truncatingIfNeeded: (u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
            dst.storeBytes(of: isNaN ? bf16NaN : r, toByteOffset: i * 2, as: UInt16.self)
            nan &+= isNaN ? 1 : 0
        }
        var st = CastStats()
        st.nans = nan
        return st
    }

    static func bf16ToF32(_ n: Int, _ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer) -> CastStats {
        var nan = 0
        for i in 0..<n {
            let u = UInt32(src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)) << 16
            dst.storeBytes(of: u, toByteOffset: i * 4, as: UInt32.self)
            nan &+= (u & 0x7FFF_FFFF) > 0x7F80_0000 ? 1 : 0
        }
        var st = CastStats()
        st.nans = nan
        return st
    }

    static func f16ToF32(_ n: Int, _ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer) -> CastStats {
        var nan = 0
        if aligned(src, 2), aligned(dst, 4) {
            let s = src.assumingMemoryBound(to: UInt16.self)
            i2q_f16_to_f32(s, dst.assumingMemoryBound(to: Float.self), Int64(n), Int32(I2Q_IMPL_AUTO))  // half.c
            for i in 0..<n { nan &+= (s[i] & 0x7FFF) > 0x7C00 ? 1 : 0 }
            var st = CastStats()
            st.nans = nan
            return st
        }
        for i in 0..<n {
            let h = src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)
            dst.storeBytes(of: Float(Float16(bitPattern: h)), toByteOffset: i * 4, as: Float.self)
            nan &+= (h & 0x7FFF) > 0x7C00 ? 1 : 0
        }
        var st = CastStats()
        st.nans = nan
        return st
    }

}

/// The NaN bit patterns of torch 2.15's CPU `.to(dtype)` (AVX-512 build), measured by
/// scripts/fixtures/make_fixtures.py (Tests/Fixtures/cast/torch-cast-behaviour.json) for contiguous tensors
/// converted by one thread. Elements `[0, n - n % W)` take the vectorised kernel's result and the
/// last `n % W` the scalar one:
///
/// | direction  | vector body (W)         | scalar tail        |
/// |------------|-------------------------|--------------------|
/// | f32 → bf16 | 0xFFFF (any W)          | 0xFFFF             |
/// | f64 → bf16 | 0xFFFF (W = 16)         | 0x7FC0             |
/// | f16 → f32  | payload kept (W = 8)    | 0x7FFFFFFF         |
/// | f16 → bf16 | 0x7FC0                  | 0x7FC0             |
/// | others     | payload kept (F16C / shifts) on every path |
public enum TorchNaNPolicy {
    /// Rewrites the outputs of NaN inputs in one converted chunk.
    static func patch(from: DType, to: DType, count: Int, src: UnsafeRawPointer, dst: UnsafeMutableRawPointer,
                      first: Int, total: Int) {
        let rule: (vector: UInt64?, scalar: UInt64?, width: Int)
        switch (from, to) {
        case (.f32, .bf16): rule = (0xFFFF, 0xFFFF, 1)
        case (.f64, .bf16): rule = (0xFFFF, 0x7FC0, 16)
        case (.f16, .f32): rule = (nil, 0x7FFF_FFFF, 8)
        case (.f16, .bf16): rule = (0x7FC0, 0x7FC0, 1)
        default: return
        }
        let tailStart = total - total % rule.width
        for i in 0..<count {
            let isNaN: Bool
            switch from {
            case .f32: isNaN = src.loadUnaligned(fromByteOffset: i * 4, as: Float.self).isNaN
            case .f64: isNaN = src.loadUnaligned(fromByteOffset: i * 8, as: Double.self).isNaN
            case .f16: isNaN = src.loadUnaligned(fromByteOffset: i * 2, as: Float16.self).isNaN
            default: isNaN = false
            }
            guard isNaN, let bits = (first + i < tailStart ? rule.vector : rule.scalar) else { continue }
            switch to.size {
            case 2: dst.storeBytes(of: UInt16(bits), toByteOffset: i * 2, as: UInt16.self)
            case 4: dst.storeBytes(of: UInt32(bits), toByteOffset: i * 4, as: UInt32.self)
            default: break
            }
        }
    }
}

extension FloatConversion {
    /// Widens 16-bit floats (or copies f32) to float32 for computation: exact, NaN payloads not
    /// policed. Safe when `dst` starts at or before `src` and the two overlap (front-to-back).
    public static func widenToF32(from dt: DType, count n: Int, src: UnsafeRawPointer, dst: UnsafeMutablePointer<Float>) {
        switch dt {
        case .bf16:
            for i in 0..<n { dst[i] = Float(bitPattern: UInt32(src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)) << 16) }
        case .f16:
            // half.c (F16C where present): equal to `Float(Float16)` for every non-NaN half
            // (HalfConversionTests), without a library call per element. Front to back, loads before
            // stores per vector, so the runtime's in-place widening (output at 4i, input at 2n + 2i) is safe.
            i2q_f16_to_f32(src.assumingMemoryBound(to: UInt16.self), dst, Int64(n), Int32(I2Q_IMPL_AUTO))
        case .f32:
            for i in 0..<n { dst[i] = src.loadUnaligned(fromByteOffset: i * 4, as: Float.self) }
        case .f64:
            for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: i * 8, as: Double.self)) }
        default:
            for i in 0..<n { dst[i] = 0 }
        }
    }
}
