/// Dequantization of ggml block formats to float32, bit-exact to gguf-py's `quants.py`
/// (`dequantize_blocks`, numpy float32 arithmetic).
///
/// numpy evaluates every expression one rounded float32 operation at a time (no fused
/// multiply-add), in the order written there; each kernel below keeps that order, e.g. Q4_1 is
/// `(d * q) + m` and Q4_K is `(d * sc) * q - (dmin * m)`. f16 scales are widened the way numpy's
/// `astype(np.float32)` does it (exact; NaN payloads kept without quieting). Swift does not
/// contract `a * b + c` into an FMA, so the arithmetic below is the same IEEE sequence. Where two
/// operands can both be NaN (the `+ m` of Q4_1 / Q5_1), the NaN numpy keeps (the first operand's)
/// is chosen explicitly: LLVM may commute an addition. Subtractions are not commuted.
public enum GGMLDequant {
    /// numpy's `npy_halfbits_to_floatbits`: exact, NaN payload kept (not quieted).
    @inline(__always)
    static func half(_ h: UInt16) -> Float {
        if h & 0x7C00 == 0x7C00 && h & 0x03FF != 0 {
            return Float(bitPattern: (UInt32(h & 0x8000) << 16) | 0x7F80_0000 | (UInt32(h & 0x03FF) << 13))
        }
        return Float(Float16(bitPattern: h))
    }

    @inline(__always)
    static func half(_ p: UnsafeRawPointer, _ off: Int) -> Float {
        half(UInt16(littleEndian: p.loadUnaligned(fromByteOffset: off, as: UInt16.self)))
    }

    /// `a + b` with numpy's NaN propagation on x86 (`vaddps a, b`: the first NaN operand, quieted).
    /// LLVM may commute an addition, so which NaN survives when both are NaN is made explicit.
    @inline(__always)
    static func add(_ a: Float, _ b: Float) -> Float {
        let s = a + b
        if _slowPath(s.isNaN) {
            if a.isNaN { return Float(bitPattern: a.bitPattern | 0x0040_0000) }
            if b.isNaN { return Float(bitPattern: b.bitPattern | 0x0040_0000) }
        }
        return s
    }

    @inline(__always)
    static func byte(_ p: UnsafeRawPointer, _ off: Int) -> UInt8 { p.load(fromByteOffset: off, as: UInt8.self) }

    /// Dequantizes `n` consecutive blocks of `type` at `src` into `dst` (`n * blockSize` floats).
    public static func blocks(_ type: GGMLType, _ src: UnsafeRawPointer, _ n: Int, _ dst: UnsafeMutablePointer<Float>) throws {
        switch type {
        case .f32:
            UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: n * 4)
        case .f16:
            for i in 0..<n { dst[i] = half(src, 2 * i) }
        case .bf16:
            // (int16 → int32) << 16, viewed as float32: a bit shift, every pattern kept.
            for i in 0..<n {
                dst[i] = Float(bitPattern: UInt32(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16)
            }
        case .q4_0: q4_0(src, n, dst)
        case .q4_1: q4_1(src, n, dst)
        case .q5_0: q5_0(src, n, dst)
        case .q5_1: q5_1(src, n, dst)
        case .q8_0: q8_0(src, n, dst)
        case .q2_K: q2_K(src, n, dst)
        case .q3_K: q3_K(src, n, dst)
        case .q4_K: q4_K(src, n, dst)
        case .q5_K: q5_K(src, n, dst)
        case .q6_K: q6_K(src, n, dst)
        default:
            throw GGMLCodecError.unsupported(type.name)  // callers check `isDequantizable` first and name the tensor
        }
    }

    // MARK: 32-element blocks

    /// d (f16), qs[16]: element j = low nibble of qs[j], element 16 + j = high nibble. `d * (q - 8)`.
    static func q4_0(_ src: UnsafeRawPointer, _ n: Int, _ dst: UnsafeMutablePointer<Float>) {
        for b in 0..<n {
            let p = src + b * 18, o = dst + b * 32
            let d = half(p, 0)
            for j in 0..<16 {
                let q = byte(p, 2 + j)
                o[j] = d * Float(Int8(q & 0x0F) - 8)
                o[j + 16] = d * Float(Int8(q >> 4) - 8)
            }
        }
    }

    /// d, m (f16), qs[16]: `(d * q) + m`.
    static func q4_1(_ src: UnsafeRawPointer, _ n: Int, _ dst: UnsafeMutablePointer<Float>) {
        for b in 0..<n {
            let p = src + b * 20, o = dst + b * 32
            let d = half(p, 0), m = half(p, 2)
            for j in 0..<16 {
                let q = byte(p, 4 + j)
                o[j] = add(d * Float(q & 0x0F), m)
                o[j + 16] = add(d * Float(q >> 4), m)
            }
        }
    }

    /// d (f16), qh (u32: bit i is bit 4 of element i), qs[16]: `d * (q - 16)`.
    static func q5_0(_ src: UnsafeRawPointer, _ n: Int, _ dst: UnsafeMutablePointer<Float>) {
        for b in 0..<n {
            let p = src + b * 22, o = dst + b * 32
            let d = half(p, 0)
            let qh = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
            for j in 0..<16 {
                let q = byte(p, 6 + j)
                let lo = (q & 0x0F) | UInt8((qh >> UInt32(j)) & 1) << 4
                let hi = (q >> 4) | UInt8((qh >> UInt32(j + 16)) & 1) << 4
                o[j] = d * Float(Int8(lo) - 16)
                o[j + 16] = d * Float(Int8(hi) - 16)
            }
        }
    }

    /// d, m (f16), qh (u32), qs[16]: `(d * q) + m`.
    static func q5_1(_ src: UnsafeRawPointer, _ n: Int, _ dst: UnsafeMutablePointer<Float>) {
        for b in 0..<n {
            let p = src + b * 24, o = dst + b * 32
            let d = half(p, 0), m = half(p, 2)
            let qh = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
            for j in 0..<16 {
                let q = byte(p, 8 + j)
                let lo = (q & 0x0F) | UInt8((qh >> UInt32(j)) & 1) << 4
                let hi = (q >> 4) | UInt8((qh >> UInt32(j + 16)) & 1) << 4
                o[j] = add(d * Float(lo), m)
                o[j + 16] = add(d * Float(hi), m)
            }
        }
    }

    /// d (f16), qs[32] int8: `x * d`.
    static func q8_0(_ src: UnsafeRawPointer, _ n: Int, _ dst: UnsafeMutablePointer<Float>) {
        for b in 0..<n {
            let p = src + b * 34, o = dst + b * 32
            let d = half(p, 0)
            for j in 0..<32 { o[j] = Float(Int8(bitPattern: byte(p, 2 + j))) * d }
        }
    }

    // MARK: K-quants (256-element super-blocks)

    /// scales[16], qs[64], d, dmin: element e (group e / 16) = `(d * (sc & 15)) * q - (dmin * (sc >> 4))`,
    /// q = (qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3.
    static func q2_K(_ src: UnsafeRawPointer, _ n: Int, _ dst: UnsafeMutablePointer<Float>) {
        var dl = [Float](repeating: 0, count: 16), ml = dl
        for b in 0..<n {
            let p = src + b * 84, o = dst + b * 256
            let d = half(p, 80), dmin = half(p, 82)
            for g in 0..<16 {
                let s = byte(p, g)
                dl[g] = d * Float(s & 0x0F)
                ml[g] = dmin * Float(s >> 4)
            }
            for e in 0..<256 {
                let q = (byte(p, 16 + 32 * (e / 128) + e % 32) >> UInt8(2 * ((e / 32) % 4))) & 3
                o[e] = dl[e / 16] * Float(q) - ml[e / 16]
            }
        }
    }

    /// hmask[32], qs[64], scales[12] (16 six-bit scales), d: `(d * (scale - 32)) * (ql - 4 * !hbit)`.
    static func q3_K(_ src: UnsafeRawPointer, _ n: Int, _ dst: UnsafeMutablePointer<Float>) {
        var dl = [Float](repeating: 0, count: 16)
        for b in 0..<n {
            let p = src + b * 110, o = dst + b * 256
            let d = half(p, 108)
            for i in 0..<16 {
                let l = i < 8 ? byte(p, 96 + i) & 0x0F : byte(p, 96 + i - 8) >> 4
                let h = (byte(p, 104 + i % 4) >> UInt8(2 * (i / 4))) & 0x03
                let sc = Int8(bitPattern: l | (h << 4)) &- 32
                dl[i] = d * Float(sc)
            }
            for e in 0..<256 {
                let ql = (byte(p, 32 + 32 * (e / 128) + e % 32) >> UInt8(2 * ((e / 32) % 4))) & 3
                let qh = ((byte(p, e % 32) >> UInt8(e / 32)) & 1) ^ 1
                let q = Int8(ql) - Int8(qh << 2)
                o[e] = dl[e / 16] * Float(q)
            }
        }
    }

    /// The 8 six-bit scales and mins of Q4_K / Q5_K (`Q4_K.get_scale_min`).
    @inline(__always)
    static func scaleMin(_ p: UnsafeRawPointer, _ off: Int, _ d: Float, _ dmin: Float,
                         _ sc: inout [Float], _ mn: inout [Float]) {
        for j in 0..<4 {
            let a = byte(p, off + j), m = byte(p, off + 4 + j), md = byte(p, off + 8 + j)
            sc[j] = d * Float(a & 0x3F)
            mn[j] = dmin * Float(m & 0x3F)
            sc[4 + j] = d * Float((md & 0x0F) | ((a >> 2) & 0x30))
            mn[4 + j] = dmin * Float((md >> 4) | ((m >> 2) & 0x30))
        }
    }

    /// d, dmin, scales[12], qs[128]: group g = e / 32: `sc[g] * q - mn[g]`,
    /// q = (qs[32 * (g / 2) + e % 32] >> (4 * (g % 2))) & 15.
    static func q4_K(_ src: UnsafeRawPointer, _ n: Int, _ dst: UnsafeMutablePointer<Float>) {
        var sc = [Float](repeating: 0, count: 8), mn = sc
        for b in 0..<n {
            let p = src + b * 144, o = dst + b * 256
            scaleMin(p, 4, half(p, 0), half(p, 2), &sc, &mn)
            for e in 0..<256 {
                let g = e / 32
                let q = (byte(p, 16 + 32 * (g / 2) + e % 32) >> UInt8(4 * (g % 2))) & 0x0F
                o[e] = sc[g] * Float(q) - mn[g]
            }
        }
    }

    /// d, dmin, scales[12], qh[32], qs[128]: as Q4_K with bit 4 = (qh[e % 32] >> g) & 1.
    static func q5_K(_ src: UnsafeRawPointer, _ n: Int, _ dst: UnsafeMutablePointer<Float>) {
        var sc = [Float](repeating: 0, count: 8), mn = sc
        for b in 0..<n {
            let p = src + b * 176, o = dst + b * 256
            scaleMin(p, 4, half(p, 0), half(p, 2), &sc, &mn)
            for e in 0..<256 {
                let g = e / 32
                let ql = (byte(p, 48 + 32 * (g / 2) + e % 32) >> UInt8(4 * (g % 2))) & 0x0F
                let qh = (byte(p, 16 + e % 32) >> UInt8(g)) & 1
                o[e] = sc[g] * Float(ql | (qh << 4)) - mn[g]
            }
        }
    }

    /// ql[128], qh[64], scales[16] int8, d: `(d * scale[e / 16]) * (q - 32)` with
    /// ql = (ql[64 * h + e % 64] >> (4 * s)) & 15 (h = e / 128, s = (e / 64) % 2),
    /// qh = (qh[32 * h + e % 32] >> (2 * ((e / 32) % 4))) & 3.
    static func q6_K(_ src: UnsafeRawPointer, _ n: Int, _ dst: UnsafeMutablePointer<Float>) {
        var ds = [Float](repeating: 0, count: 16)
        for b in 0..<n {
            let p = src + b * 210, o = dst + b * 256
            let d = half(p, 208)
            for g in 0..<16 { ds[g] = d * Float(Int8(bitPattern: byte(p, 192 + g))) }
            for e in 0..<256 {
                let h = e / 128
                let ql = (byte(p, 64 * h + e % 64) >> UInt8(4 * ((e / 64) % 2))) & 0x0F
                let qh = (byte(p, 128 + 32 * h + e % 32) >> UInt8(2 * ((e / 32) % 4))) & 0x03
                let q = Int8(bitPattern: ql | (qh << 4)) - 32
                o[e] = ds[e / 16] * Float(q)
            }
        }
    }
}

/// A block type this version has no codec for (`GGMLType.isDequantizable` is false).
public enum GGMLCodecError: Error, CustomStringConvertible {
    case unsupported(String)
    public var description: String {
        switch self { case let .unsupported(t): return "ggml type \(t) has no codec in this version of i2q" }
    }
}
