import Foundation
import I2QCore

/// A memory-mapped `.i2q` file (Formats/i2q-format.md).
///
/// Opening validates the fixed header (every offset and size against the file length, with
/// overflow-checked arithmetic), the header+directory checksum, the directory (every component
/// inside the data section, aligned, sized by its shape, no overlaps) and the metadata checksum.
/// Tensor data is not read: views are zero-copy, and per-component checksums are verified lazily
/// (`verify`, `verifyAll`).
public final class I2QFile: ModelSource, @unchecked Sendable {
    public struct Header: Sendable, Equatable {
        public var versionMajor: UInt16, versionMinor: UInt16, flags: UInt32
        public var fileSize: Int, alignment: Int
        public var dataOffset: Int, dataSize: Int
        public var metadataOffset: Int, metadataSize: Int, metadataRawSize: Int
        public var directoryOffset: Int, directorySize: Int
        public var tensorCount: Int
        public var metadataChecksum: UInt64, headerChecksum: UInt64
    }

    public let path: String
    public let file: MappedFile
    public let header: Header
    public let entries: [I2QTensorEntry]
    public let metadata: I2QMetadata
    public let rawConfig: JSONValue
    public let config: ModelConfig
    public let tensors: [SourceTensor]
    public private(set) var problems: [String] = []
    private let ledger: ChecksumLedger

    public convenience init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        let path = file.path
        self.path = path
        self.file = file
        let h = try Self.readHeader(file)
        header = h
        // Header + directory checksum before the directory is interpreted.
        let computed = file.withBytes(0, I2QSpec.headerChecksummed) { hb in
            file.withBytes(h.directoryOffset, h.directorySize) { db in
                let s = XXH3.Stream(); s.update(hb); s.update(db); return s.digest()
            }
        }
        guard computed == h.headerChecksum else { throw I2QFormatError.headerChecksum(path: path, stored: h.headerChecksum, computed: computed) }
        entries = try file.withBytes(h.directoryOffset, h.directorySize) {
            try I2QDirectoryCodec.decode($0, count: h.tensorCount, dataSize: h.dataSize, alignment: h.alignment, path: path)
        }
        // Metadata: checksum, then (bounded) decompression, then JSON.
        let metaBytes: [UInt8] = try file.withBytes(h.metadataOffset, h.metadataSize) { m in
            guard XXH3.hash(m) == h.metadataChecksum else { throw I2QFormatError.metadataChecksum(path: path) }
            if h.flags & I2QSpec.flagMetadataZstd != 0 {
                do { return try Zstd.decompress(m, expectedSize: h.metadataRawSize) } catch {
                    throw I2QFormatError.header(path: path, detail: "metadata does not decompress: \(error)")
                }
            }
            return Array(m)
        }
        do {
            metadata = try I2QMetadata(json: JSONParser.parse(metaBytes, source: path + " (metadata)"))
        } catch let e as JSONError {
            throw I2QFormatError.header(path: path, detail: "metadata is not valid JSON (\(e.message))")
        } catch I2QFormatError.metadata(let d) {
            throw I2QFormatError.metadata(detail: "\(path): \(d)")  // the parts above do not know the file
        }
        guard let cfg = metadata.file("config.json") else {
            throw I2QFormatError.metadata(detail: "\(path) holds no config.json; it was not written by i2q")
        }
        do { rawConfig = try JSONParser.parse(cfg, source: path + ":config.json") } catch let e as JSONError {
            throw ConfigError.invalid(path: path + ":config.json", detail: "not valid JSON (\(e.message))")
        }
        config = try ModelRegistry.decode(Data(cfg), path: path + ":config.json")
        let base = h.dataOffset
        let f = file
        let ledger = ChecksumLedger(file: file, dataOffset: base, path: path)
        self.ledger = ledger
        tensors = entries.filter { $0.scheme == I2QSpec.Scheme.plain }.map { e in
            let c = e.components[0]
            return SourceTensor(name: e.name, dtype: e.dtype, shape: e.shape, file: f, offset: base + c.offset, byteCount: c.size,
                                check: { try ledger.ensure(e) })
        }
    }

    /// Verifies every component of `e` against its checksum the first time any reader uses it
    /// (every verb reading tensor data goes through here or through `tensors`); throws naming the
    /// tensor when the bytes are damaged, so no verb writes fresh checksums over damage.
    public func ensureVerified(_ e: I2QTensorEntry) throws { try ledger.ensure(e) }

    /// Stops verifying tensors on first use (`i2q run --no-verify`): a reader then trusts the
    /// bytes. Only for verbs that write nothing derived from them.
    public func skipChecksumVerification() { ledger.disabled = true }

    static func readHeader(_ file: MappedFile) throws -> Header {
        let p = file.path
        guard file.count >= I2QSpec.headerSize else {
            if file.count >= 8, file.copyBytes(0, 8) == I2QSpec.magic {
                throw I2QFormatError.header(path: p, detail: "file is \(file.count) bytes, shorter than the 128-byte header")
            }
            throw I2QFormatError.notI2Q(path: p)
        }
        var r = file.withBytes(0, I2QSpec.headerSize) { b in ByteReaderCopy(Array(b)) }
        guard r.take(8) == I2QSpec.magic else { throw I2QFormatError.notI2Q(path: p) }
        let major = r.u16(), minor = r.u16()
        guard major == I2QSpec.versionMajor else { throw I2QFormatError.version(path: p, major: major, minor: minor) }
        let flags = r.u32()
        guard flags & ~I2QSpec.flagMetadataZstd == 0 else { throw I2QFormatError.header(path: p, detail: "unknown flags 0x\(String(flags, radix: 16))") }
        let fields = (0..<14).map { _ in r.u64() }
        let (fileSize, alignment, dOff, dSize, mOff, mSize, mRaw, dirOff, dirSize, count) =
            (fields[0], fields[1], fields[2], fields[3], fields[4], fields[5], fields[6], fields[7], fields[8], fields[9])
        let (mSum, res1, res2, hSum) = (fields[10], fields[11], fields[12], fields[13])
        func bad(_ d: String) -> I2QFormatError { .header(path: p, detail: d) }
        guard fileSize == UInt64(file.count) else {
            throw bad(fileSize > UInt64(file.count)
                ? "header says \(fileSize) bytes but the file has \(file.count) (truncated)"
                : "header says \(fileSize) bytes but the file has \(file.count) (trailing data)")
        }
        guard alignment >= UInt64(I2QSpec.minAlignment), alignment <= UInt64(I2QSpec.maxAlignment), alignment & (alignment - 1) == 0 else {
            throw bad("alignment \(alignment) is not a power of two in 64…1048576")
        }
        guard res1 == 0, res2 == 0 else { throw bad("reserved fields are not zero") }
        func section(_ name: String, _ off: UInt64, _ size: UInt64) throws -> (Int, Int) {
            let (end, o) = off.addingReportingOverflow(size)
            guard !o, off >= UInt64(I2QSpec.headerSize), end <= fileSize else {
                throw bad("\(name) section [\(off), +\(size)) lies outside the \(fileSize)-byte file")
            }
            return (Int(off), Int(size))
        }
        let d = try section("data", dOff, dSize)
        guard dOff % alignment == 0 else { throw bad("data offset \(dOff) is not aligned to \(alignment)") }
        let m = try section("metadata", mOff, mSize)
        let dir = try section("directory", dirOff, dirSize)
        let spans = [(d.0, d.1, "data"), (m.0, m.1, "metadata"), (dir.0, dir.1, "directory")].sorted { $0.0 < $1.0 }
        for (a, b) in zip(spans, spans.dropFirst()) where a.0 + a.1 > b.0 {
            throw bad("\(a.2) and \(b.2) sections overlap")
        }
        guard mRaw <= I2QSpec.maxMetadataRawSize else { throw bad("metadata raw size \(mRaw) exceeds 1 GiB") }
        if flags & I2QSpec.flagMetadataZstd == 0 && mRaw != mSize { throw bad("uncompressed metadata size \(mSize) ≠ raw size \(mRaw)") }
        // The smallest directory entry is 52 bytes: reject counts the directory cannot hold.
        guard count <= dirSize / 52 else { throw bad("tensor count \(count) cannot fit a \(dirSize)-byte directory") }
        return Header(versionMajor: major, versionMinor: minor, flags: flags, fileSize: Int(fileSize), alignment: Int(alignment),
                      dataOffset: d.0, dataSize: d.1, metadataOffset: m.0, metadataSize: m.1, metadataRawSize: Int(mRaw),
                      directoryOffset: dir.0, directorySize: dir.1, tensorCount: Int(count),
                      metadataChecksum: mSum, headerChecksum: hSum)
    }

    // MARK: checksums

    /// Checks one component's XXH3-64; throws naming the tensor if it differs.
    public func verify(_ e: I2QTensorEntry, _ c: I2QComponent) throws {
        try ledger.verify(e, c)
    }

    /// Checks every byte of tensor data; returns one error per damaged component (empty = intact).
    public func verifyAll(progress: ProgressBar? = nil) -> [I2QFormatError] {
        var bad: [I2QFormatError] = []
        for e in entries {
            for c in e.components {
                do { try verify(e, c) } catch let err as I2QFormatError { bad.append(err) } catch {}
                progress?.advance(c.size)
            }
        }
        return bad
    }

    // MARK: ModelSource

    /// Bytes of every entry's components (plain and quantized): what a verb reading the whole file reads.
    public var storedBytes: Int { entries.reduce(0) { $0 + $1.components.reduce(0) { $0 + $1.size } } }
    public var quantizedTensorNames: [String] { entries.filter { $0.scheme != I2QSpec.Scheme.plain }.map(\.name) }
    public var provenance: Provenance? { metadata.provenance }

    public func auxiliaryFiles() throws -> [(name: String, bytes: [UInt8])] {
        metadata.files.filter { $0.name != "config.json" }
    }

    public var identity: JSONValue {
        .object([
            ("kind", .string("i2q")),
            ("path", .string(path)),
            ("model_type", .string(config.modelType)),
            ("tensor_count", .int(entries.count)),
            ("file_size", .int(header.fileSize)),
            ("header_xxh3", .string(XXH3.hex(header.headerChecksum))),
        ])
    }
}

/// Which entries of one file have had their checksums verified (thread-safe; each entry hashed once).
final class ChecksumLedger: @unchecked Sendable {
    let file: MappedFile
    let dataOffset: Int
    let path: String
    private let lock = Lock()
    private var done: Set<String> = []
    /// Set by `skipChecksumVerification`: `ensure` returns without hashing.
    var disabled: Bool {
        get { lock.withLock { off } }
        set { lock.withLock { off = newValue } }
    }
    private var off = false

    init(file: MappedFile, dataOffset: Int, path: String) {
        self.file = file; self.dataOffset = dataOffset; self.path = path
    }

    func ensure(_ e: I2QTensorEntry) throws {
        if lock.withLock({ off || done.contains(e.name) }) { return }
        for c in e.components { try verify(e, c) }
        lock.withLock { _ = done.insert(e.name) }
    }

    func verify(_ e: I2QTensorEntry, _ c: I2QComponent) throws {
        // Hashed through pread-sized windows of the mapping, released behind: RSS stays flat.
        let window = 64 << 20
        let s = XXH3.Stream()
        var off = 0
        while off < c.size {
            let n = min(window, c.size - off)
            file.withBytes(dataOffset + c.offset + off, n) { s.update($0) }
            file.release(dataOffset + c.offset + off, n)
            off += n
        }
        let got = s.digest()
        if got != c.checksum {
            throw I2QFormatError.checksum(path: path, tensor: e.name, component: c.role, stored: c.checksum, computed: got)
        }
    }
}

/// Little-endian reads from a small copied buffer whose length the caller has checked.
struct ByteReaderCopy {
    let b: [UInt8]
    var i = 0
    init(_ b: [UInt8]) { self.b = b }
    mutating func take(_ n: Int) -> [UInt8] { defer { i += n }; return Array(b[i..<(i + n)]) }
    mutating func u16() -> UInt16 { UInt16(take(2)[0]) | UInt16(b[i - 1]) << 8 }
    mutating func u32() -> UInt32 { take(4).enumerated().reduce(0) { $0 | UInt32($1.1) << (8 * UInt32($1.0)) } }
    mutating func u64() -> UInt64 { take(8).enumerated().reduce(0) { $0 | UInt64($1.1) << (8 * UInt64($1.0)) } }
}
