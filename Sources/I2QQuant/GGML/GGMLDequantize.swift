import CI2QKernels
/// Dequantization of ggml block formats to float32, bit-exact to gguf-py's `quants.py`
/// (`dequantize_blocks`, numpy float32 arithmetic).
///
/// numpy evaluates every expression one rounded float32 operation at a time (no fused
/// multiply-add), in the order written there; the block kernels (C, Sources/CI2QKernels/ggml_dequant.c,
/// compiled without FMA contraction) keep that order, e.g. Q4_1 is `(d * q) + m` and Q4_K is
/// `(d * sc) * q - (dmin * m)`. f16 scales are widened the way numpy's
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
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K:
            // C port, same float32 operations (Sources/CI2QKernels/ggml_dequant.c).
            _ = i2q_ggml_dequantize(Int32(type.rawValue), src, Int64(n), dst)
        default:
            throw GGMLCodecError.unsupported(type.name)  // callers check `isDequantizable` first and name the tensor
        }
    }
}

public enum GGMLCodecError: Error, CustomStringConvertible {
    case unsupported(String)
    public var description: String {
        switch self { case let .unsupported(t): return "ggml type \(t) has no codec in this version of i2q" }
    }
}
