import I2QCore
#if canImport(Glibc)
import Glibc
#endif

extension I2QFile {
    /// Replaces the metadata section of the .i2q file at `path` (e.g. to append a provenance record)
    /// and writes the directory and header after it; tensor data is not touched. The file is first
    /// opened and fully validated; the rewrite is done in place, so call it only on a file that is not
    /// yet visible under its final name (the passes do it on their staged temp file before the rename).
    public static func rewriteMetadata(path: String, _ change: (inout I2QMetadata) throws -> Void) throws {
        // Read what stays, then let the mapping go before writing.
        let (h, directory, oldMetadata): (Header, [UInt8], I2QMetadata) = try {
            let f = try I2QFile(path: path)
            return (f.header, f.file.copyBytes(f.header.directoryOffset, f.header.directorySize), f.metadata)
        }()
        var metadata = oldMetadata
        try change(&metadata)
        let compressed = h.flags & I2QSpec.flagMetadataZstd != 0
        let (meta, rawSize) = try metadata.encode(compress: compressed)
        let metadataOffset = h.metadataOffset  // the metadata section starts right after the data
        let directoryOffset = metadataOffset + meta.count
        let fileSize = directoryOffset + directory.count
        let header = I2QWriter.encodeHeader(compressed: compressed, fileSize: fileSize, alignment: h.alignment,
                                            dataOffset: h.dataOffset, dataSize: h.dataSize, metadataOffset: metadataOffset,
                                            metadata: meta, metadataRawSize: rawSize, directoryOffset: directoryOffset,
                                            directory: directory, tensorCount: h.tensorCount)
        let fd = open(path, O_WRONLY)
        guard fd >= 0 else { throw IOError.open(path: path, errno: errno) }
        defer { close(fd) }
        func put(_ bytes: [UInt8], at offset: Int) throws {
            var done = 0
            while done < bytes.count {
                let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, bytes.count - done, off_t(offset + done)) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw IOError.write(path: path, errno: errno)
                }
                done += n
            }
        }
        try put(meta, at: metadataOffset)
        try put(directory, at: directoryOffset)
        guard ftruncate(fd, off_t(fileSize)) == 0 else { throw IOError.write(path: path, errno: errno) }
        try put(header, at: 0)
        guard fsync(fd) == 0 else { throw IOError.write(path: path, errno: errno) }
    }
}
