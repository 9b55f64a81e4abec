import CZstd
import I2QCore

/// The metadata section: the model's small files (config.json, generation_config.json,
/// tokenizer.json, processor configs…) byte for byte, and the provenance. See the spec, "Metadata".
public struct I2QMetadata: Sendable, Equatable {
    public var files: [(name: String, bytes: [UInt8])]
    public var provenance: Provenance

    public init(files: [(name: String, bytes: [UInt8])], provenance: Provenance) {
        self.files = files; self.provenance = provenance
    }

    public static func == (a: I2QMetadata, b: I2QMetadata) -> Bool {
        a.files.count == b.files.count && zip(a.files, b.files).allSatisfy { $0.name == $1.name && $0.bytes == $1.bytes }
            && a.provenance == b.provenance
    }

    public func file(_ name: String) -> [UInt8]? { files.first { $0.name == name }?.bytes }

    public var json: JSONValue {
        .object([
            ("files", .object(files.map { f in
                if let s = String(validating: f.bytes, as: UTF8.self) {
                    return (f.name, .object([("encoding", .string("utf8")), ("data", .string(s))]))
                }
                return (f.name, .object([("encoding", .string("base64")), ("data", .string(Base64.encode(f.bytes)))]))
            })),
            ("provenance", provenance.json),
        ])
    }

    public init(json: JSONValue) throws {
        guard let fs = json["files"]?.objectEntries else { throw I2QFormatError.metadata(detail: "no \"files\" object") }
        files = try fs.map { name, v in
            guard let enc = v["encoding"]?.stringValue, let data = v["data"]?.stringValue else {
                throw I2QFormatError.metadata(detail: "file \"\(name)\" needs encoding and data")
            }
            switch enc {
            case "utf8": return (name, Array(data.utf8))
            case "base64":
                guard let b = Base64.decode(data) else { throw I2QFormatError.metadata(detail: "file \"\(name)\" is not valid base64") }
                return (name, b)
            default: throw I2QFormatError.metadata(detail: "file \"\(name)\" has unknown encoding \"\(enc)\"")
            }
        }
        guard let p = json["provenance"] else { throw I2QFormatError.metadata(detail: "no \"provenance\" object") }
        provenance = try Provenance(json: p)
    }

    /// UTF-8 JSON, compressed with zstd (level 10) when `compress`.
    func encode(compress: Bool) throws -> (stored: [UInt8], rawSize: Int) {
        let raw = Array(JSONWriter.string(json, asciiOnly: false).utf8)
        guard compress else { return (raw, raw.count) }
        return (try Zstd.compress(raw, level: 10), raw.count)
    }
}

/// zstd one-shot compression (libzstd).
public enum Zstd {
    public struct Failure: I2QError {
        public let detail: String
        public var description: String { "zstd: \(detail)" }
    }

    public static func compress(_ src: [UInt8], level: Int32) throws -> [UInt8] {
        var dst = [UInt8](repeating: 0, count: ZSTD_compressBound(src.count))
        let n = src.withUnsafeBytes { s in dst.withUnsafeMutableBytes { d in
            ZSTD_compress(d.baseAddress, d.count, s.baseAddress, s.count, level)
        } }
        if ZSTD_isError(n) != 0 { throw Failure(detail: String(cString: ZSTD_getErrorName(n))) }
        dst.removeLast(dst.count - n)
        return dst
    }

    /// Decompresses a frame whose content size must equal `expectedSize` (bounded by the caller).
    public static func decompress(_ src: UnsafeRawBufferPointer, expectedSize: Int) throws -> [UInt8] {
        // Exactly one frame filling the input (the i2q spec, §5).
        let frame = ZSTD_findFrameCompressedSize(src.baseAddress, src.count)
        if ZSTD_isError(frame) != 0 { throw Failure(detail: String(cString: ZSTD_getErrorName(frame))) }
        guard frame == src.count else { throw Failure(detail: "\(src.count - frame) bytes follow the first frame; exactly one frame is allowed") }
        var dst = [UInt8](repeating: 0, count: expectedSize)
        let n = dst.withUnsafeMutableBytes { d in ZSTD_decompress(d.baseAddress, d.count, src.baseAddress, src.count) }
        if ZSTD_isError(n) != 0 { throw Failure(detail: String(cString: ZSTD_getErrorName(n))) }
        guard n == expectedSize else { throw Failure(detail: "decompressed \(n) bytes, header says \(expectedSize)") }
        return dst
    }
}

/// RFC 4648 base64 (for binary files such as tokenizer.model in the metadata).
public enum Base64 {
    static let table = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    public static func encode(_ b: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((b.count + 2) / 3 * 4)
        var i = 0
        while i + 3 <= b.count {
            let v = UInt32(b[i]) << 16 | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2])
            for s in [18, 12, 6, 0] { out.append(table[Int((v >> UInt32(s)) & 63)]) }
            i += 3
        }
        let rest = b.count - i
        if rest > 0 {
            let v = UInt32(b[i]) << 16 | (rest == 2 ? UInt32(b[i + 1]) << 8 : 0)
            out.append(table[Int((v >> 18) & 63)]); out.append(table[Int((v >> 12) & 63)])
            out.append(rest == 2 ? table[Int((v >> 6) & 63)] : UInt8(ascii: "="))
            out.append(UInt8(ascii: "="))
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func decode(_ s: String) -> [UInt8]? {
        var rev = [Int16](repeating: -1, count: 256)
        for (i, c) in table.enumerated() { rev[Int(c)] = Int16(i) }
        let u = Array(s.utf8)
        guard u.count % 4 == 0 else { return nil }
        var out: [UInt8] = []
        var i = 0
        while i < u.count {
            var v: UInt32 = 0
            var pad = 0
            for k in 0..<4 {
                let c = u[i + k]
                if c == UInt8(ascii: "=") && i + 4 == u.count && k >= 2 { pad += 1; v <<= 6; continue }
                guard pad == 0, rev[Int(c)] >= 0 else { return nil }
                v = v << 6 | UInt32(rev[Int(c)])
            }
            out.append(UInt8(v >> 16))
            if pad < 2 { out.append(UInt8((v >> 8) & 0xFF)) }
            if pad < 1 { out.append(UInt8(v & 0xFF)) }
            i += 4
        }
        return out
    }
}
