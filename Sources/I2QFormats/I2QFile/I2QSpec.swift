import I2QCore

/// Constants of the i2q file format, version 1.0. The normative description is Formats/i2q-format.md;
/// the names here follow it.
public enum I2QSpec {
    /// "\x89I2Q\r\n\x1a\n": a non-ASCII first byte and CR LF / EOF bytes catch text-mode mangling (as PNG does).
    public static let magic: [UInt8] = [0x89, 0x49, 0x32, 0x51, 0x0D, 0x0A, 0x1A, 0x0A]
    public static let versionMajor: UInt16 = 1
    public static let versionMinor: UInt16 = 0
    public static let headerSize = 128
    /// Bytes of the header covered by `header_xxh3` (everything before that field).
    public static let headerChecksummed = 120
    public static let minAlignment = 64
    public static let maxAlignment = 1 << 20
    /// The writer's default: one page (see the spec, "Alignment").
    public static let defaultAlignment = 4096

    public static let flagMetadataZstd: UInt32 = 1

    // Bounds on directory fields (reject absurd counts before allocating anything).
    public static let maxStringLength = 65_535
    public static let maxRank = 8
    public static let maxParams = 256
    public static let maxParts = 65_535
    public static let maxComponents = 16
    public static let maxMetadataRawSize: UInt64 = 1 << 30

    /// Dtype codes of the directory (one byte).
    public static let dtypeCodes: [(UInt8, DType)] = [
        (0, .bool), (1, .u8), (2, .i8), (3, .i16), (4, .u16), (5, .f16), (6, .bf16), (7, .i32),
        (8, .u32), (9, .f32), (10, .f64), (11, .i64), (12, .u64), (13, .f8e4m3), (14, .f8e5m2),
    ]
    public static func dtype(code: UInt8) -> DType? { dtypeCodes.first { $0.0 == code }?.1 }
    public static func code(of dt: DType) -> UInt8 { dtypeCodes.first { $0.1 == dt }!.0 }

    /// Quantization schemes (directory strings). A reader rejects a scheme it does not know by name,
    /// so new schemes need no new format version.
    public enum Scheme {
        public static let plain = "plain"
        public static let nf4 = "nf4"
        public static let fp4 = "fp4"
        public static let affineInt4 = "affine_int4"
        /// The same layout with 3- and 2-bit codes packed densely (AffineInt4Layout).
        public static let affineInt3 = "affine_int3"
        public static let affineInt2 = "affine_int2"
        /// ggml block encodings (Q4_0 … Q8_0, Q2_K … Q6_K), the type in param `ggml_type`.
        public static let ggml = "ggml"
    }
}

public enum I2QFormatError: I2QError {
    case notI2Q(path: String)
    case version(path: String, major: UInt16, minor: UInt16)
    case header(path: String, detail: String)
    case headerChecksum(path: String, stored: UInt64, computed: UInt64)
    case directory(path: String, detail: String)
    case metadata(detail: String)
    case metadataChecksum(path: String)
    case checksum(path: String, tensor: String, component: String, stored: UInt64, computed: UInt64)
    case quantized(path: String, tensor: String, scheme: String, verb: String)

    public var description: String {
        switch self {
        case let .notI2Q(p): return "\(p): not an i2q file (bad magic bytes). Pass an HF model directory or a file written by i2q."
        case let .version(p, a, b):
            return "\(p): i2q format version \(a).\(b) is newer than this i2q reads (\(I2QSpec.versionMajor).x). Update i2q."
        case let .header(p, d): return "\(p): corrupt i2q header: \(d). The file is damaged or truncated; re-create it."
        case let .headerChecksum(p, s, c):
            return "\(p): header/directory checksum mismatch (stored \(XXH3.hex(s)), computed \(XXH3.hex(c))). The file is damaged; re-create it."
        case let .directory(p, d): return "\(p): corrupt i2q tensor directory: \(d). The file is damaged; re-create it."
        case let .metadata(d): return "i2q metadata: \(d)"
        case let .metadataChecksum(p): return "\(p): metadata checksum mismatch. The file is damaged; re-create it."
        case let .checksum(p, t, c, s, x):
            return "\(p): tensor \"\(t)\" (\(c)) fails its checksum (stored \(XXH3.hex(s)), computed \(XXH3.hex(x))): its data is damaged. Re-create the file."
        case let .quantized(p, t, s, v):
            return "\(p): tensor \"\(t)\" is stored as \(s); \(v) needs plain tensors. Run it on the unquantized model."
        }
    }
}
