import I2QCore

/// One storage scheme a tensor may get under `quantize --target-bpw` (issue 22): affine int4/int3/int2
/// with a group size (`affine_int4`/`affine_int3`/`affine_int2`, AutoAWQ's codec, round to nearest), a
/// ggml block type (llama.cpp's quantizers, bit-exact), or a 16-bit float. Names as the `--candidates`
/// flag spells them: `int4g128`, `int4g64`, `int4g32`, `int3g128`, `int3g64`, `int3g32`, `int2g128`,
/// `int2g64`, `int2g32`, `q4_0`, `q4_1`, `q5_0`, `q5_1`, `q8_0`, `q2_k`, `q3_k`, `q4_k`, `q5_k`, `q6_k`,
/// `bf16`, `f16`.
public enum MixedCandidate: Hashable, Sendable, CustomStringConvertible {
    case affine(bits: Int, groupSize: Int)
    case ggml(GGMLType)
    case float(DType)

    /// The issue's default list.
    public static let defaultList = "int4g128,int4g64,q4_k,q5_k,q6_k,q8_0,bf16"
    public static let allNames = ["int4g128", "int4g64", "int4g32", "int3g128", "int3g64", "int3g32", "int2g128", "int2g64", "int2g32", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "bf16", "f16"]

    public init?(name raw: String) {
        let s = raw.lowercased()
        if s.hasPrefix("int"), s.dropFirst(4).hasPrefix("g"), let b = Int(s.dropFirst(3).prefix(1)), AffineInt4.supportedBits.contains(b),
           let g = Int(s.dropFirst(5)), [32, 64, 128].contains(g) { self = .affine(bits: b, groupSize: g); return }
        switch s {
        case "bf16": self = .float(.bf16)
        case "f16": self = .float(.f16)
        default:
            guard let t = GGMLQuantize.blockTypes.first(where: { $0.name.lowercased() == s }) else { return nil }
            self = .ggml(t)
        }
    }

    /// Parses a comma-separated list (order kept, duplicates dropped); throws naming an unknown entry.
    public static func parseList(_ list: String) throws -> [MixedCandidate] {
        var out: [MixedCandidate] = []
        for part in list.split(separator: ",", omittingEmptySubsequences: false) {
            let p = String(part.filter { $0 != " " })
            guard let c = MixedCandidate(name: p) else { throw MixedCandidateError.unknown(name: p) }
            if !out.contains(c) { out.append(c) }
        }
        guard !out.isEmpty else { throw MixedCandidateError.unknown(name: list) }
        return out
    }

    public var name: String {
        switch self {
        case let .affine(b, g): return "int\(b)g\(g)"
        case let .ggml(t): return t.name.lowercased()
        case let .float(d): return d == .bf16 ? "bf16" : "f16"
        }
    }
    public var description: String { name }

    /// Whether a [rows, cols] tensor can be stored this way: the row must hold whole groups/blocks.
    public func fits(columns cols: Int) -> Bool {
        switch self {
        case let .affine(b, g): return cols % g == 0 && cols * b % 8 == 0
        case let .ggml(t): return cols % t.blockSize == 0
        case .float: return true
        }
    }

    /// What this candidate means for rows of `cols`: itself where it fits; a K-quant that does not fit
    /// becomes llama.cpp's width fallback (q2_k, q3_k → q4_0, q4_k → q5_0, q5_k → q5_1, q6_k → q8_0), as llama-quantize's
    /// q4_k_m does for such tensors; otherwise nil.
    public func resolved(columns cols: Int) -> MixedCandidate? {
        if fits(columns: cols) { return self }
        if case let .ggml(t) = self, let f = LlamaQuantRecipe.widthFallback(t), f.blockSize > 0, cols % f.blockSize == 0 { return .ggml(f) }
        return nil
    }

    /// The options a tensor with rows of `cols` has under `list`: each candidate resolved, duplicates
    /// dropped, order kept.
    public static func options(_ list: [MixedCandidate], columns cols: Int) -> [MixedCandidate] {
        var out: [MixedCandidate] = []
        for c in list { if let r = c.resolved(columns: cols), !out.contains(r) { out.append(r) } }
        return out
    }

    /// Bytes stored for a [rows, cols] tensor, scales / zeros / block headers included (`fits` first):
    /// affine: rows·cols·bits/8 packed codes + per group an f16 scale and a u8 zero; ggml: the blocks;
    /// floats: 2 bytes per value.
    public func bytes(rows: Int, cols: Int) -> Int {
        switch self {
        case let .affine(b, g): return rows * cols * b / 8 + rows * (cols / g) * 3
        case let .ggml(t): return rows * (cols / t.blockSize) * t.typeSize
        case let .float(d): return rows * cols * d.size
        }
    }

    /// Whether the ggml quantizer starts from the values rounded through the default GGUF export's
    /// 16-bit type (as llama-quantize does on i2q's f16/bf16 export; `GGMLQuantizePass`).
    public var roundsThroughIntermediate: Bool { if case .ggml = self { return true }; return false }

    /// `dst` := the values a reader gets back after storing `src` this way: src, dst [rows, cols] f32
    /// (may alias). ggml: `GGMLQuantize.encode` with `importance` ([cols] or nil, as llama-quantize
    /// uses it) then `GGMLDequant.blocks`; affine: `AffineInt4.fakeQuantize` (quantizeRows +
    /// dequantizeRows bit for bit); floats: rounded to nearest even.
    public func roundTrip(_ src: UnsafePointer<Float>, rows: Int, cols: Int, importance: UnsafePointer<Float>?,
                          into dst: UnsafeMutablePointer<Float>) throws {
        let n = rows * cols
        switch self {
        case let .affine(b, g):
            if UnsafePointer(dst) != src { dst.update(from: src, count: n) }
            AffineInt4.fakeQuantize(dst, rows: rows, cols: cols, groupSize: g, bits: b)
        case let .ggml(t):
            let bytes = UnsafeMutableRawPointer.allocate(byteCount: max(1, bytes(rows: rows, cols: cols)), alignment: 64)  // [rows, cols/block·typeSize]
            defer { bytes.deallocate() }
            try GGMLQuantize.encode(t, src, rows: rows, rowLength: cols, bytes, importance: importance)
            try GGMLDequant.blocks(t, bytes, n / t.blockSize, dst)
        case let .float(d):
            let raw = UnsafeMutableRawPointer.allocate(byteCount: max(1, n * 2), alignment: 64)  // [n] 16-bit
            defer { raw.deallocate() }
            _ = try FloatConversion.convert(from: .f32, to: d, count: n, src: src, dst: raw)
            FloatConversion.widenToF32(from: d, count: n, src: raw, dst: dst)
        }
    }
}

public enum MixedCandidateError: I2QError, Equatable {
    case unknown(name: String)
    public var description: String {
        switch self {
        case let .unknown(n): return "unknown candidate scheme \"\(n)\"; --candidates takes a comma-separated list of \(MixedCandidate.allNames.joined(separator: ", "))"
        }
    }
}
