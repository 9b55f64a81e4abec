/// Writes NumPy `.npy` files (format version 1.0): magic `\x93NUMPY`, version, a header dict
/// padded with spaces to a multiple of 64 bytes ending in `\n`, then the raw little-endian data.
/// Reference: numpy.lib.format (`write_array`, header alignment 64 since NumPy 1.14).
public enum Npy {
    public static func header(descr: String, shape: [Int]) -> [UInt8] {
        let dims = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var dict = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(dims), }"
        let fixed = 6 + 2 + 2  // magic + version + header length
        while (fixed + dict.utf8.count + 1) % 64 != 0 { dict += " " }
        dict += "\n"
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        let n = UInt16(dict.utf8.count)
        out += [UInt8(n & 0xFF), UInt8(n >> 8)]
        out += Array(dict.utf8)
        return out
    }

    /// Writes a float32 array of `shape` to `path` (via a temporary name, renamed when complete).
    public static func writeFloat32(_ values: [Float], shape: [Int], to path: String, overwrite: Bool = true) throws {
        precondition(shape.reduce(1, *) == values.count, "npy: shape does not match the data")
        try writeFloat32(values, shape: shape, into: StagedOutput(finalPath: path, directory: false, overwrite: overwrite))
    }

    /// The same into an output claimed before the computing (`StagedOutput`: its lock is held until
    /// commit, so two runs writing one path cannot both succeed).
    public static func writeFloat32(_ values: [Float], shape: [Int], into staged: StagedOutput) throws {
        precondition(shape.reduce(1, *) == values.count, "npy: shape does not match the data")
        let f = try OutputFile(creating: staged.tempPath)
        try f.write(header(descr: "<f4", shape: shape))
        try values.withUnsafeBytes { try f.write($0) }
        try f.close()
        try staged.commit()
    }
}
