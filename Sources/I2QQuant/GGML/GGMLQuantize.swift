import I2QCore

/// Why values could not be quantized.
public enum GGUFQuantizeError: I2QError, Equatable {
    /// A block holds NaN or ±inf: its scale would be meaningless (gguf-py and ggml produce garbage).
    case nonFinite(block: Int, type: String)
    case unsupported(type: String)

    public var description: String {
        switch self {
        case let .nonFinite(b, t):
            return "block \(b) holds NaN or infinity, which \(t) cannot represent. Fix or clean the weights first, or export with --type f16/bf16."
        case let .unsupported(t):
            return "quantizing to \(t) is not supported (i2q writes F32, F16, BF16, Q8_0 and Q4_0)."
        }
    }
}

/// Float32 → ggml block formats, bit-exact to gguf-py 0.19's numpy reference
/// (`gguf.quants.quantize`, classes `Q8_0` and `Q4_0`; Q8_0 there is itself bit-exact to ggml's
/// `quantize_row_q8_0_ref`). Checked byte for byte against
/// Tests/Fixtures/gguf-export/quants.expected.safetensors (scripts/fixtures/make_gguf_export_fixtures.py).
/// Every step is the same float32 operation numpy performs, in the same order (no FMA, no
/// reassociation); scales are rounded to f16 with round-to-nearest-even as `astype(np.float16)`.
public enum GGMLQuantize {
    /// Types this module writes.
    public static let writable: [GGMLType] = [.f32, .f16, .bf16, .q8_0, .q4_0]

    /// Q8_0: per 32 values, `d = amax / 127` (f32), `id = d == 0 ? 0 : 1 / d`, `q = roundf(x * id)`
    /// (half away from zero: gguf-py `np_roundf`), stored as f16 `d` + 32 int8.
    /// src: [blocks × 32] f32; dst: [blocks × 34] bytes.
    public static func q8_0(_ src: UnsafePointer<Float>, blocks: Int, _ dst: UnsafeMutableRawPointer) throws {
        for b in 0..<blocks {
            let x = src + b * 32
            let o = dst + b * 34
            var amax: Float = 0
            for i in 0..<32 {
                guard x[i].isFinite else { throw GGUFQuantizeError.nonFinite(block: b, type: "Q8_0") }
                amax = max(amax, abs(x[i]))
            }
            let d = amax / 127
            let id: Float = d == 0 ? 0 : 1 / d
            o.storeBytes(of: FloatConversion.f16Bits(d).littleEndian, as: UInt16.self)
            for i in 0..<32 {
                let q = (x[i] * id).rounded(.toNearestOrAwayFromZero)  // |q| ≤ 127 unless 1 / d overflowed
                o.storeBytes(of: numpyInt8(q), toByteOffset: 2 + i, as: Int8.self)
            }
        }
    }

    /// Q4_0: per 32 values, `max` = the value of largest magnitude (the first one on ties, as
    /// `argmax`), `d = max / -8`, `id = d == 0 ? 0 : 1 / d`, `q = min(15, trunc(x * id + 8.5))`;
    /// stored as f16 `d` + 16 bytes, byte j = q[j] | q[j + 16] << 4.
    /// src: [blocks × 32] f32; dst: [blocks × 18] bytes.
    public static func q4_0(_ src: UnsafePointer<Float>, blocks: Int, _ dst: UnsafeMutableRawPointer) throws {
        for b in 0..<blocks {
            let x = src + b * 32
            let o = dst + b * 18
            var amax: Float = -1, m: Float = 0
            for i in 0..<32 {
                guard x[i].isFinite else { throw GGUFQuantizeError.nonFinite(block: b, type: "Q4_0") }
                if abs(x[i]) > amax { amax = abs(x[i]); m = x[i] }
            }
            let d = m / -8
            let id: Float = d == 0 ? 0 : 1 / d
            o.storeBytes(of: FloatConversion.f16Bits(d).littleEndian, as: UInt16.self)
            // [32] nibbles
            func nib(_ v: Float) -> UInt8 {
                let t = (v * id + Float(8.5)).rounded(.towardZero)  // in [0, 17) unless 1 / d overflowed
                return t.isFinite ? UInt8(min(t, 15)) : 0
            }
            for j in 0..<16 {
                o.storeBytes(of: nib(x[j]) | (nib(x[j + 16]) << 4), toByteOffset: 2 + j, as: UInt8.self)
            }
        }
    }

    /// numpy's `astype(np.int8)` on x86-64 for the values Q8_0 can produce: in-range values exactly;
    /// NaN (from `0 × inf` when `1 / d` overflows for blocks of |x| < ~4e-37) becomes 0, the low byte
    /// of `cvttss2si`'s 0x80000000.
    @inline(__always)
    static func numpyInt8(_ q: Float) -> Int8 {
        guard q.isFinite, abs(q) < 2_147_483_648 else { return 0 }
        return Int8(truncatingIfNeeded: Int32(q))
    }

    /// Encodes `count` float32 values as `type` (count a multiple of the block size). F16/BF16 use
    /// torch's rounding (FloatConversion; equal to numpy's for every non-NaN value).
    /// src: [count] f32; dst: [count / blockSize × typeSize] bytes.
    public static func encode(_ type: GGMLType, _ src: UnsafePointer<Float>, count: Int, _ dst: UnsafeMutableRawPointer,
                              first: Int = 0, total: Int? = nil) throws -> CastStats {
        switch type {
        case .f32:
            dst.copyMemory(from: src, byteCount: count * 4)
            return CastStats()
        case .f16:
            return try FloatConversion.convert(from: .f32, to: .f16, count: count, src: src, dst: dst, first: first, total: total)
        case .bf16:
            return try FloatConversion.convert(from: .f32, to: .bf16, count: count, src: src, dst: dst, first: first, total: total)
        case .q8_0:
            precondition(count % 32 == 0, "Q8_0 encodes whole blocks")
            try q8_0(src, blocks: count / 32, dst)
            return CastStats()
        case .q4_0:
            precondition(count % 32 == 0, "Q4_0 encodes whole blocks")
            try q4_0(src, blocks: count / 32, dst)
            return CastStats()
        default:
            throw GGUFQuantizeError.unsupported(type: type.name)
        }
    }
}
