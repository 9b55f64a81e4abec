import I2QCore

/// Streaming writer of an `.i2q` file (Formats/i2q-format.md).
///
/// Tensors are appended as a pass produces them; the metadata, the directory and the header (with
/// its checksum) are written by `finish`. The file is written at a temporary name; the caller
/// renames it into place (see `StagedOutput`).
///
/// States: `.ready` →beginTensor→ `.tensor` →beginComponent→ `.component` →append*→ endComponent →
/// `.tensor` … endTensor → `.ready` … finish → `.finished`. Any error moves to `.failed`.
public final class I2QWriter {
    enum State { case ready, tensor, component, finished, failed }

    public let path: String
    public let alignment: Int
    private let out: OutputFile
    private var state = State.ready
    private var entries: [I2QTensorEntry] = []
    private var current: I2QTensorEntry?
    private var component: I2QComponent?
    private var hasher: XXH3.Stream?
    private var written = 0
    private var names: Set<String> = []
    /// Position in the file (= bytes written so far).
    private var position: Int
    public let dataOffset: Int

    public init(path: String, alignment: Int = I2QSpec.defaultAlignment) throws {
        precondition(alignment >= I2QSpec.minAlignment && alignment <= I2QSpec.maxAlignment && alignment & (alignment - 1) == 0,
                     "alignment must be a power of two in 64…1 MiB")
        self.path = path
        self.alignment = alignment
        out = try OutputFile(creating: path, direct: true)
        dataOffset = (I2QSpec.headerSize + alignment - 1) / alignment * alignment
        try out.writeZeros(dataOffset)  // header placeholder + padding; patched by finish()
        position = dataOffset
    }

    private func fail(_ s: String) -> WriterError { state = .failed; return WriterError.state(s) }

    public func beginTensor(name: String, scheme: String = I2QSpec.Scheme.plain, dtype: DType, shape: [Int],
                            params: [(String, I2QParam)] = [], parts: [I2QPart] = []) throws {
        guard state == .ready else { throw fail("beginTensor(\(name)) while another tensor is open") }
        if !names.insert(name).inserted { state = .failed; throw WriterError.duplicateName(name) }  // O(1): cast scales linearly in tensors
        current = I2QTensorEntry(name: name, scheme: scheme, dtype: dtype, shape: shape, params: params, parts: parts)
        state = .tensor
    }

    /// Replaces the open tensor's params (values known only after its data, e.g. a mean).
    public func setParams(_ params: [(String, I2QParam)]) throws {
        guard state == .tensor else { throw fail("setParams outside a tensor") }
        current!.params = params
    }

    public func beginComponent(role: String, dtype: DType, shape: [Int]) throws {
        guard state == .tensor else { throw fail("beginComponent(\(role)) outside a tensor") }
        let pad = (alignment - position % alignment) % alignment
        try out.writeZeros(pad)
        position += pad
        component = I2QComponent(role: role, dtype: dtype, shape: shape, offset: position - dataOffset)
        hasher = XXH3.Stream()
        written = 0
        state = .component
    }

    public func append(_ bytes: UnsafeRawBufferPointer) throws {
        guard state == .component, let c = component else { throw fail("append outside a component") }
        let expected = c.shape.reduce(c.dtype.size, *)
        guard written + bytes.count <= expected else {
            state = .failed
            throw WriterError.wrongByteCount(tensor: current?.name ?? "?", expected: expected, got: written + bytes.count)
        }
        hasher!.update(bytes)
        try out.write(bytes)
        written += bytes.count
        position += bytes.count
    }

    public func endComponent() throws {
        guard state == .component, var c = component else { throw fail("endComponent without beginComponent") }
        let expected = c.shape.reduce(c.dtype.size, *)
        guard written == expected else {
            state = .failed
            throw WriterError.wrongByteCount(tensor: current?.name ?? "?", expected: expected, got: written)
        }
        c.size = written
        c.checksum = hasher!.digest()
        current!.components.append(c)
        component = nil; hasher = nil
        state = .tensor
    }

    public func endTensor() throws {
        guard state == .tensor, let e = current, !e.components.isEmpty else { throw fail("endTensor with no component") }
        entries.append(e)
        current = nil
        state = .ready
    }

    /// A plain tensor in one call.
    public func writePlain(name: String, dtype: DType, shape: [Int], _ bytes: UnsafeRawBufferPointer) throws {
        try beginTensor(name: name, dtype: dtype, shape: shape)
        try beginComponent(role: PlainLayout.dataRole, dtype: dtype, shape: shape)
        try append(bytes)
        try endComponent()
        try endTensor()
    }

    /// Writes metadata, directory and header, then flushes and closes the file.
    public func finish(metadata: I2QMetadata, compressMetadata: Bool = true) throws {
        guard state == .ready else { throw fail("finish with a tensor still open") }
        let dataSize = position - dataOffset
        let (meta, rawSize) = try metadata.encode(compress: compressMetadata)
        let metadataOffset = position
        try out.write(meta)
        position += meta.count
        let dir = I2QDirectoryCodec.encode(entries)
        let directoryOffset = position
        try out.write(dir)
        position += dir.count

        let header = Self.encodeHeader(compressed: compressMetadata, fileSize: position, alignment: alignment,
                                       dataOffset: dataOffset, dataSize: dataSize, metadataOffset: metadataOffset,
                                       metadata: meta, metadataRawSize: rawSize, directoryOffset: directoryOffset,
                                       directory: dir, tensorCount: entries.count)
        try out.write(header, at: 0)
        try out.close()
        state = .finished
    }

    public var tensorCount: Int { entries.count }

    /// The 128-byte header (spec section 2), its checksum over the first 120 bytes + the directory.
    static func encodeHeader(compressed: Bool, fileSize: Int, alignment: Int, dataOffset: Int, dataSize: Int,
                             metadataOffset: Int, metadata meta: [UInt8], metadataRawSize rawSize: Int,
                             directoryOffset: Int, directory dir: [UInt8], tensorCount: Int) -> [UInt8] {
        var h = ByteWriter()
        h.bytes = I2QSpec.magic
        h.u16(I2QSpec.versionMajor); h.u16(I2QSpec.versionMinor)
        h.u32(compressed ? I2QSpec.flagMetadataZstd : 0)
        h.u64(UInt64(fileSize))
        h.u64(UInt64(alignment))
        h.u64(UInt64(dataOffset)); h.u64(UInt64(dataSize))
        h.u64(UInt64(metadataOffset)); h.u64(UInt64(meta.count)); h.u64(UInt64(rawSize))
        h.u64(UInt64(directoryOffset)); h.u64(UInt64(dir.count))
        h.u64(UInt64(tensorCount))
        h.u64(XXH3.hash(meta))
        h.u64(0); h.u64(0)
        precondition(h.bytes.count == I2QSpec.headerChecksummed)
        h.u64(XXH3.hash(h.bytes + dir))
        return h.bytes
    }
}
