import I2QCore

/// Why values could not be quantized.
public enum GGUFQuantizeError: I2QError, Equatable {
    /// A block holds NaN or ±inf: its scale would be meaningless (gguf-py and ggml produce garbage).
    case nonFinite(block: Int, type: String)
    case unsupported(type: String)
    /// Rows of `rowLength` values do not split into `type`'s blocks.
    case width(rowLength: Int, type: String, blockSize: Int)
    /// The importance vector holds NaN, ±inf or a negative value at `index`.
    case badImportance(index: Int)

    public var description: String {
        switch self {
        case let .nonFinite(b, t):
            return "block \(b) holds NaN or infinity, which \(t) cannot represent. Fix or clean the weights first, or export with --type f16/bf16."
        case let .unsupported(t):
            return "quantizing to \(t) is not supported (i2q writes \(GGMLQuantize.writable.map(\.name).joined(separator: ", ")))."
        case let .width(n, t, b):
            return "rows of \(n) values cannot be stored as \(t), whose blocks hold \(b) values; choose a type whose block size divides \(n) (llama.cpp falls back to Q5_0/Q5_1/Q8_0 for K-quants), or f16/bf16."
        case let .badImportance(i):
            return "importance value \(i) is NaN, infinite or negative; recompute the importance matrix."
        }
    }
}

/// Float32 → ggml block formats, bit-exact to ggml's own quantizers (`ggml_quantize_chunk` of the
/// libggml-base bundled with llama-cpp-python 0.3.36): `quantize_row_*_ref` without an importance
/// vector, the importance-weighted `quantize_row_*_impl` with one. One codec per block type
/// (GGMLQ4_0 … GGMLQ2_K … GGMLQ6_K; shared math in GGMLQuantMath). Checked byte for byte against
/// Tests/Fixtures/kquant (scripts/fixtures/make_kquant_fixtures.py); Q8_0 also against gguf-py 0.19
/// (Tests/Fixtures/gguf-export/quants.safetensors, whose Q4_0 differs from ggml's only in the sign
/// of d for all-(-0) blocks). Every step is the same float32 operation, in the same order (no FMA, no
/// reassociation); scales are rounded to f16 with round-to-nearest-even as GGML_FP32_TO_FP16.
public enum GGMLQuantize {
    /// Types this module writes.
    public static let writable: [GGMLType] = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K]

    /// Block types `encode(_:_:rows:rowLength:_:importance:)` quantizes.
    public static let blockTypes: [GGMLType] = [.q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K]

    /// `ggml_quantize_chunk(type, src, dst, 0, rows, rowLength, importance)`: `rows` rows of
    /// `rowLength` float32 values as `type`, with ggml's reference quantizer (`quantize_row_*_ref`)
    /// when `importance` is nil, else its importance-weighted one (`quantize_row_*_impl`; Q8_0 ignores
    /// the importance, as ggml does). Throws on a width that is not a whole number of blocks, on
    /// NaN/±inf in the input (naming the first such block) and on a bad importance value.
    /// src: [rows × rowLength] f32; importance: [rowLength] f32 or nil;
    /// dst: [rows × rowLength / blockSize × typeSize] bytes.
    public static func encode(_ type: GGMLType, _ src: UnsafePointer<Float>, rows: Int, rowLength: Int,
                              _ dst: UnsafeMutableRawPointer, importance: UnsafePointer<Float>?) throws {
        guard blockTypes.contains(type) else { throw GGUFQuantizeError.unsupported(type: type.name) }
        guard rowLength > 0, rowLength % type.blockSize == 0 else {
            throw GGUFQuantizeError.width(rowLength: rowLength, type: type.name, blockSize: type.blockSize)
        }
        let n = rows * rowLength
        for i in 0..<n where !src[i].isFinite { throw GGUFQuantizeError.nonFinite(block: i / type.blockSize, type: type.name) }
        if let w = importance {
            for i in 0..<rowLength where !(w[i].isFinite && w[i] >= 0) { throw GGUFQuantizeError.badImportance(index: i) }
        }
        let rowBytes = rowLength / type.blockSize * type.typeSize
        let s = GGMLQuantScratch()
        guard let qw = importance, type != .q8_0 else {
            let blocks = n / type.blockSize
            switch type {
            case .q8_0: try q8_0(src, blocks: blocks, dst)
            case .q4_0: GGMLQ4_0.ref(src, blocks: blocks, dst)
            case .q4_1: GGMLQ4_1.ref(src, blocks: blocks, dst)
            case .q5_0: GGMLQ5_0.ref(src, blocks: blocks, dst)
            case .q5_1: GGMLQ5_1.ref(src, blocks: blocks, dst)
            case .q2_K: GGMLQ2_K.ref(src, blocks: blocks, dst, s)
            case .q3_K: GGMLQ3_K.ref(src, blocks: blocks, dst, s)
            case .q4_K: GGMLQ4_K.ref(src, blocks: blocks, dst, s)
            case .q5_K: GGMLQ5_K.ref(src, blocks: blocks, dst, s)
            default: GGMLQ6_K.ref(src, blocks: blocks, dst, s)
            }
            return
        }
        let impl: (UnsafePointer<Float>, Int, UnsafeMutableRawPointer, UnsafePointer<Float>, GGMLQuantScratch) -> Void
        switch type {
        case .q4_0: impl = GGMLQ4_0.impl
        case .q4_1: impl = GGMLQ4_1.impl
        case .q5_0: impl = GGMLQ5_0.impl
        case .q5_1: impl = GGMLQ5_1.impl
        case .q2_K: impl = GGMLQ2_K.impl
        case .q3_K: impl = GGMLQ3_K.impl
        case .q4_K: impl = GGMLQ4_K.impl
        case .q5_K: impl = GGMLQ5_K.impl
        default: impl = GGMLQ6_K.impl
        }
        for r in 0..<rows { impl(src + r * rowLength, rowLength, dst + r * rowBytes, qw, s) }
    }

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

    /// numpy's `astype(np.int8)` on x86-64 for the values Q8_0 can produce: in-range values exactly;
    /// NaN (from `0 × inf` when `1 / d` overflows for blocks of |x| < ~4e-37) becomes 0, the low byte
    /// of `cvttss2si`'s 0x80000000.
    @inline(__always)
    static func numpyInt8(_ q: Float) -> Int8 {
        guard q.isFinite, abs(q) < 2_147_483_648 else { return 0 }
        return Int8(truncatingIfNeeded: Int32(q))
    }

    /// Encodes `count` float32 values as `type` (count a multiple of the block size; block types
    /// without importance). F16/BF16 use
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
        default:
            try encode(type, src, rows: 1, rowLength: count, dst, importance: nil)
            return CastStats()
        }
    }
}
