import I2QCore

/// Why an affine int4 (AWQ-style) quantization cannot be applied to a tensor.
public enum AffineInt4Error: I2QError {
    case notMatrix(tensor: String, shape: [Int])
    case groupSize(tensor: String, cols: Int, groupSize: Int)
    case oddColumns(tensor: String, cols: Int)
    case rowBits(tensor: String, cols: Int, bits: Int)
    case bits(tensor: String, bits: Int)

    public var description: String {
        switch self {
        case let .notMatrix(t, s):
            return "\(t): affine int4 quantizes 2-D [out, in] weights, this one has shape \(s); leave it unquantized (exclude it)."
        case let .groupSize(t, c, g):
            return "\(t): group size \(g) does not divide the input dimension \(c); choose a group size that divides \(c) (e.g. 32, 64 or 128) or exclude this tensor."
        case let .oddColumns(t, c):
            return "\(t): the input dimension \(c) is odd; affine_int4 packs two codes per byte along a row, so exclude this tensor."
        case let .rowBits(t, c, b):
            return "\(t): a row of \(c) \(b)-bit codes is not a whole number of bytes (affine_int\(b) packs rows densely); choose another scheme for this tensor or exclude it."
        case let .bits(t, b):
            return "\(t): affine quantization to \(b) bits is not supported (2, 3 or 4)."
        }
    }
}

/// Affine (asymmetric, zero-point) b-bit quantization (b = 4, and 3 or 2) in groups of consecutive
/// elements of a row: AutoAWQ 0.2.9 `pseudo_quantize_tensor` (awq/quantize/quantizer.py,
/// `zero_point=True`, `w_bit=b`; GPTQModel 7.7's `AwqProcessor.pseudo_quantize_tensor` is the same
/// formula with `bits`), with M = 2^b − 1 (15 for int4, 7 for int3, 3 for int2):
///
///     max_val, min_val = w.amax(dim=1), w.amin(dim=1)          # per group, float32
///     scales = (max_val - min_val).clamp(min=1e-5) / M
///     zeros  = (-torch.round(min_val / scales)).clamp_(0, M)
///     w_hat  = (torch.clamp(torch.round(w / scales) + zeros, 0, M) - zeros) * scales
///
/// with one documented change: the scale is rounded to Float16 (the dtype AutoAWQ stores, and the
/// `.i2q` `affine_int4` component) BEFORE the zero point and the codes are computed, so the stored
/// codes / scales / zeros reproduce `w_hat` exactly:
///
///     s = Float(Float16(max(mx - mn, 1e-5) / M))       (the division in float32, then to f16, nearest-even)
///     z = clamp(-round(mn / s), 0, M)                  (round: half to even, like torch.round)
///     q = clamp(round(w / s) + z, 0, M)
///     w_hat = (Float(q) - Float(z)) * s                (float32)
///
/// Every step is one float32 operation in the same order as torch, so results are bit-identical to
/// the reference script `scripts/fixtures/make_int4_fixtures.py` (tested on its fixtures,
/// Tests/Fixtures/int4: b = 4, and b = 3, 2 in `lowbit.safetensors`). `bits` defaults to 4 everywhere
/// (the int4 results and bytes are those of the 4-bit-only version).
///
/// Non-finite values: a group holding a NaN gets a NaN scale, codes 0 and zero 0, and dequantizes to
/// NaN (torch: NaN everywhere). A group whose range overflows Float16 after `/ M` (for int4 max − min >
/// 982,560, e.g. an infinity) gets an infinite scale, codes 0 and zero 0, and `w_hat` NaN — exactly
/// what the formula gives in torch (`round(w / inf) = 0`, `(0 − 0) · inf = NaN`). Callers that want to
/// reject such weights must check first.
///
/// Packing (Formats/i2q-format.md, "affine_int4" / "affine_int3" / "affine_int2"): the codes of a row
/// are one little-endian bit stream, element i in bits [b·i, b·i + b) — int4: two per byte, the first
/// in the LOW nibble; int2: four per byte, the first in bits 0–1; int3: eight in three bytes, read as
/// the 24-bit little-endian word Σ q[8k+j] << 3j. Rows hold `cols · b / 8` bytes (a whole number).
///
/// All functions are pure and allocation-free; they may run concurrently on disjoint rows.
public enum AffineInt4 {
    /// float32(1e-5): AutoAWQ's lower bound of `max - min`.
    public static let minRange = Float(1e-5 as Double)
    /// The code widths this codec implements.
    public static let supportedBits = [2, 3, 4]

    /// M = 2^bits − 1, the largest code (and zero point).
    @inlinable
    public static func maxCode(bits: Int) -> Int { (1 << bits) - 1 }

    /// Bytes of `count` packed `bits`-bit codes (a row: `cols · bits / 8`, exact where `check` passed).
    @inlinable
    public static func packedBytes(count: Int, bits: Int = 4) -> Int { (count * bits + 7) / 8 }

    /// Checks that a weight of `shape` can be stored as affine int`bits` with `groupSize`.
    public static func check(tensor: String, shape: [Int], groupSize: Int, bits: Int = 4) throws {
        guard supportedBits.contains(bits) else { throw AffineInt4Error.bits(tensor: tensor, bits: bits) }
        guard shape.count == 2 else { throw AffineInt4Error.notMatrix(tensor: tensor, shape: shape) }
        let cols = shape[1]
        guard groupSize > 0, cols % groupSize == 0 else {
            throw AffineInt4Error.groupSize(tensor: tensor, cols: cols, groupSize: groupSize)
        }
        if bits == 4 {
            guard cols % 2 == 0 else { throw AffineInt4Error.oddColumns(tensor: tensor, cols: cols) }
        } else {
            guard cols * bits % 8 == 0 else { throw AffineInt4Error.rowBits(tensor: tensor, cols: cols, bits: bits) }
        }
    }

    /// The stored scale of a group with minimum `mn` and maximum `mx` (float32, not NaN).
    @inlinable
    public static func scale(min mn: Float, max mx: Float, bits: Int = 4) -> Float16 {
        let r = mx - mn
        // torch clamp(min=): NaN stays NaN; Swift.max(NaN, x) would not.
        return Float16((r.isNaN ? r : Swift.max(r, minRange)) / Float(maxCode(bits: bits)))
    }

    /// Quantizes a row-major float32 matrix [rows, cols] group by group along each row.
    /// `cols` must be a multiple of `groupSize` (see `check`).
    public static func quantizeRows(_ w: UnsafePointer<Float>, rows: Int, cols: Int, groupSize: Int, bits: Int = 4,
                                    codes: UnsafeMutablePointer<UInt8>,   // [rows, cols] one code 0..M per byte
                                    scales: UnsafeMutablePointer<Float16>, // [rows, cols/groupSize]
                                    zeros: UnsafeMutablePointer<UInt8>) {  // [rows, cols/groupSize]
        precondition(groupSize > 0 && cols % groupSize == 0, "AffineInt4: group size \(groupSize) must divide \(cols)")
        let groups = rows * (cols / groupSize)
        let m = Float(maxCode(bits: bits))
        for g in 0 ..< groups {
            let src = w + g * groupSize
            let p = params(src, groupSize, bits: bits)
            scales[g] = p.stored
            zeros[g] = UInt8(p.z)
            let dst = codes + g * groupSize
            if !p.s.isFinite {
                dst.update(repeating: 0, count: groupSize)
            } else {
                groupCodes(src, groupSize, s: p.s, z: p.z, m: m) { i, q in dst[i] = UInt8(q) }
            }
        }
    }

    /// In place `w := w_hat` (the AWQ search calls this thousands of times). Same arithmetic as
    /// `quantizeRows` followed by `dequantizeRows`, bit for bit.
    public static func fakeQuantize(_ w: UnsafeMutablePointer<Float>, rows: Int, cols: Int, groupSize: Int, bits: Int = 4) {
        precondition(groupSize > 0 && cols % groupSize == 0, "AffineInt4: group size \(groupSize) must divide \(cols)")
        let groups = rows * (cols / groupSize)
        let m = Float(maxCode(bits: bits))
        for g in 0 ..< groups {
            let p0 = w + g * groupSize
            let p = params(p0, groupSize, bits: bits)
            if !p.s.isFinite {
                p0.update(repeating: .nan, count: groupSize)
                continue
            }
            let s = p.s, z = p.z
            if groupSize % 8 == 0 {
                let raw = UnsafeMutableRawPointer(p0)
                let sv = SIMD8<Float>(repeating: s), zv = SIMD8<Float>(repeating: z)
                var i = 0
                while i < groupSize {
                    let v = raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
                    let q = codeVector(v, sv, zv, m)
                    raw.storeBytes(of: (q - zv) * sv, toByteOffset: 4 * i, as: SIMD8<Float>.self)
                    i += 8
                }
            } else {
                groupCodes(p0, groupSize, s: s, z: z, m: m) { i, q in p0[i] = (q - z) * s }
            }
        }
    }

    /// `out[r, c] = (q - z) · s` in float32 from the stored components (`packed`: [rows, cols·bits/8],
    /// see "Packing" above; `scales`, `zeros`: [rows, cols/groupSize]).
    public static func dequantizeRows(packed: UnsafePointer<UInt8>, scales: UnsafePointer<Float16>,
                                      zeros: UnsafePointer<UInt8>, rows: Int, cols: Int, groupSize: Int, bits: Int = 4,
                                      into out: UnsafeMutablePointer<Float>) {  // [rows, cols] f32
        precondition(groupSize > 0 && cols % groupSize == 0 && cols * bits % 8 == 0, "AffineInt4: bad shape")
        let gpr = cols / groupSize, rowBytes = cols * bits / 8
        for r in 0 ..< rows {
            let row = packed + r * rowBytes
            for c in 0 ..< cols {
                let g = r * gpr + c / groupSize
                out[r * cols + c] = (Float(code(row, c, bits: bits)) - Float(zeros[g])) * Float(scales[g])
            }
        }
    }

    /// Code `i` of a packed bit stream (element i in bits [b·i, b·i + b), little-endian); reads no
    /// byte past the one holding the code's last bit.
    @inline(__always)
    public static func code(_ packed: UnsafePointer<UInt8>, _ i: Int, bits: Int) -> UInt8 {
        let bit = i * bits, byte = bit >> 3, shift = bit & 7
        var v = UInt16(packed[byte])
        if shift + bits > 8 { v |= UInt16(packed[byte + 1]) << 8 }
        return UInt8(truncatingIfNeeded: (v >> UInt16(shift)) & UInt16(maxCode(bits: bits)))
    }

    /// `.i2q` packing (Formats/i2q-format.md; see "Packing" above): `count` codes as a little-endian
    /// bit stream of `bits` per code. int4: byte k = q[2k] | q[2k+1] << 4 (first element in the LOW
    /// nibble). Writes `packedBytes(count:bits:)` bytes; unused high bits of the last byte are 0.
    public static func pack(_ codes: UnsafePointer<UInt8>, count: Int, bits: Int = 4, into: UnsafeMutablePointer<UInt8>) {
        if bits == 4 {
            var k = 0
            while 2 * k + 1 < count {
                into[k] = (codes[2 * k] & 15) | (codes[2 * k + 1] << 4)
                k += 1
            }
            if count & 1 == 1 { into[k] = codes[count - 1] & 15 }
            return
        }
        let mask = UInt32(maxCode(bits: bits))
        var acc: UInt32 = 0, have = 0, k = 0
        for i in 0 ..< count {
            acc |= (UInt32(codes[i]) & mask) << UInt32(have)
            have += bits
            while have >= 8 {
                into[k] = UInt8(truncatingIfNeeded: acc)
                acc >>= 8
                have -= 8
                k += 1
            }
        }
        if have > 0 { into[k] = UInt8(truncatingIfNeeded: acc) }
    }

    /// Inverse of `pack`: `count` codes from `packedBytes(count:bits:)` bytes.
    public static func unpack(_ packed: UnsafePointer<UInt8>, count: Int, bits: Int = 4, into: UnsafeMutablePointer<UInt8>) {
        if bits == 4 {
            for i in 0 ..< count {
                let b = packed[i / 2]
                into[i] = i & 1 == 0 ? b & 15 : b >> 4
            }
            return
        }
        for i in 0 ..< count { into[i] = code(packed, i, bits: bits) }
    }

    // MARK: - Kernels

    /// Scale (float32 and as stored) and zero point of one group.
    @inline(__always)
    static func params(_ p: UnsafePointer<Float>, _ n: Int, bits: Int = 4) -> (s: Float, stored: Float16, z: Float) {
        let (mn, mx, nan) = minMax(p, n)
        if nan { return (.nan, .nan, 0) }
        let stored = scale(min: mn, max: mx, bits: bits)
        let s = Float(stored)
        guard s.isFinite else { return (s, stored, 0) }
        // -round(mn / s) clamped to [0, M]; the clamp also turns -0.0 into a plain 0 for UInt8.
        let z = Swift.min(Swift.max(-(mn / s).rounded(.toNearestOrEven), 0), Float(maxCode(bits: bits)))
        return (s, stored, z == 0 ? 0 : z)
    }
    /// min, max of a group and whether it holds a NaN.
    @inline(__always)
    static func minMax(_ p: UnsafePointer<Float>, _ n: Int) -> (Float, Float, Bool) {
        var i = 0
        var mn = Float.infinity, mx = -Float.infinity
        var nan = false
        if n >= 8 {
            let raw = UnsafeRawPointer(p)
            var vmn = SIMD8<Float>(repeating: .infinity), vmx = SIMD8<Float>(repeating: -.infinity)
            var bad = SIMDMask<SIMD8<Int32>>()
            while i + 8 <= n {
                let v = raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
                bad .|= v .!= v
                vmn = vmin(vmn, v)
                vmx = vmax(vmx, v)
                i += 8
            }
            nan = any(bad)
            // Horizontal reductions by halves (SIMD.min()/max() are not inlined).
            let mn4 = vmn.lowHalf.replacing(with: vmn.highHalf, where: vmn.highHalf .< vmn.lowHalf)
            let mx4 = vmx.lowHalf.replacing(with: vmx.highHalf, where: vmx.highHalf .> vmx.lowHalf)
            mn = Swift.min(Swift.min(mn4[0], mn4[1]), Swift.min(mn4[2], mn4[3]))
            mx = Swift.max(Swift.max(mx4[0], mx4[1]), Swift.max(mx4[2], mx4[3]))
        }
        while i < n {
            let v = p[i]
            if v.isNaN { nan = true }
            mn = Swift.min(mn, v)
            mx = Swift.max(mx, v)
            i += 1
        }
        return (mn, mx, nan)
    }

    /// clamp(round(w / s) + z, 0, M) per lane (finite s > 0, `m` = M). Clamping w / s to
    /// [-(M+1), 2M+1] before rounding cannot change the result (z ∈ [0, M]) and keeps ±inf quotients
    /// harmless (int4: [-16, 31]).
    @inline(__always)
    static func codeVector(_ v: SIMD8<Float>, _ sv: SIMD8<Float>, _ zv: SIMD8<Float>, _ m: Float = 15) -> SIMD8<Float> {
        let lo = SIMD8<Float>(repeating: -(m + 1)), hi = SIMD8<Float>(repeating: 2 * m + 1)
        // Round half to even by adding and subtracting 1.5·2²³ (exact for |x| < 2²²; the default
        // rounding mode is nearest-even): several times faster than per-lane `rounded`.
        let magic = SIMD8<Float>(repeating: 12_582_912)
        let t = ((vmin(vmax(v / sv, lo), hi) + magic) - magic) + zv
        return vmin(vmax(t, SIMD8<Float>(repeating: 0)), SIMD8<Float>(repeating: m))
    }

    // Lane-wise min / max as selects (the stdlib's pointwiseMin/Max on SIMD8<Float> are not inlined
    // and run lane by lane). Operands are never NaN where these are used for results.
    @inline(__always) static func vmin(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { a.replacing(with: b, where: b .< a) }
    @inline(__always) static func vmax(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> { a.replacing(with: b, where: b .> a) }

    /// Calls `body(i, q)` with the code (as a float 0...M, `m` = M) of every element of a group.
    @inline(__always)
    static func groupCodes(_ p: UnsafePointer<Float>, _ n: Int, s: Float, z: Float, m: Float = 15, _ body: (Int, Float) -> Void) {
        var i = 0
        if n % 8 == 0 {
            let raw = UnsafeRawPointer(p)
            let sv = SIMD8<Float>(repeating: s), zv = SIMD8<Float>(repeating: z)
            while i < n {
                let q = codeVector(raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self), sv, zv, m)
                for l in 0 ..< 8 { body(i + l, q[l]) }
                i += 8
            }
            return
        }
        while i < n {
            let t = Swift.min(Swift.max(p[i] / s, -(m + 1)), 2 * m + 1).rounded(.toNearestOrEven) + z
            body(i, Swift.min(Swift.max(t, 0), m))
            i += 1
        }
    }
}
