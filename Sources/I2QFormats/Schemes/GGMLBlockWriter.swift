import I2QCore
import I2QQuant

/// Encodes float32 rows [n, cols] into ggml blocks at `dst` (n · rowBytes bytes): a llama.cpp-exact
/// encoder (`quantize_row_*_ref` or an imatrix-weighted path) bound to one ggml type.
public typealias GGMLRowEncoder = (_ rows: UnsafePointer<Float>, _ n: Int, _ cols: Int, _ dst: UnsafeMutableRawPointer) throws -> Void

/// Writes `ggml` entries (`GGMLBlockLayout`; Formats/i2q-format.md, "ggml").
public extension I2QWriter {
    /// Weight `name` [rows, cols] of `type` whose blocks are already encoded: `blocks` holds
    /// rows · `GGMLBlockLayout.rowBytes(type, cols:)` bytes, row-major, as ggml stores them.
    /// `dtype` is the entry's logical dtype (what dequantization is cast to; float32 by default).
    func writeGGML(name: String, rows: Int, cols: Int, type: GGMLType, dtype: DType = .f32, parts: [I2QPart] = [],
                   blocks: UnsafeRawBufferPointer) throws {
        let rb = try Self.ggmlRowBytes(name, rows: rows, cols: cols, type: type)
        guard blocks.count == rows * rb else {
            throw WriterError.wrongByteCount(tensor: name, expected: rows * rb, got: blocks.count)
        }
        try beginTensor(name: name, scheme: GGMLBlockLayout.scheme, dtype: dtype, shape: [rows, cols],
                        params: GGMLBlockLayout.params(type), parts: parts)
        try beginComponent(role: GGMLBlockLayout.Role.blocks, dtype: .u8, shape: [rows, rb])
        try append(blocks)
        try endComponent()
        try endTensor()
    }

    /// The float 2-D tensor `t` [rows, cols] encoded as `type` by `encode`, streamed in row chunks of
    /// at most ~1 Mi elements (bounded memory; the source is read once).
    func writeGGML(_ t: SourceTensor, type: GGMLType, dtype: DType = .f32, parts: [I2QPart] = [],
                   encode: GGMLRowEncoder) throws {
        guard t.shape.count == 2, t.dtype.isCastableFloat else {
            throw GGMLWriteError.unfit(tensor: t.name, detail: "ggml blocks need a 2-D float tensor, it is \(t.dtype.rawValue) \(t.shape)")
        }
        let (rows, cols) = (t.shape[0], t.shape[1])
        let rb = try Self.ggmlRowBytes(t.name, rows: rows, cols: cols, type: type)
        let chunk = max(1, (1 << 20) / cols)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: chunk * cols * 8, alignment: 64)  // [chunk, cols] source dtype
        let f32 = UnsafeMutablePointer<Float>.allocate(capacity: chunk * cols)                 // [chunk, cols] f32
        let out = UnsafeMutableRawPointer.allocate(byteCount: chunk * rb, alignment: 64)        // [chunk, rb] blocks
        defer { raw.deallocate(); f32.deallocate(); out.deallocate() }
        try beginTensor(name: t.name, scheme: GGMLBlockLayout.scheme, dtype: dtype, shape: [rows, cols],
                        params: GGMLBlockLayout.params(type), parts: parts)
        try beginComponent(role: GGMLBlockLayout.Role.blocks, dtype: .u8, shape: [rows, rb])
        var r = 0
        while r < rows {
            let n = min(chunk, rows - r)
            try t.read(elements: r * cols, count: n * cols, into: raw)
            FloatConversion.widenToF32(from: t.dtype, count: n * cols, src: raw, dst: f32)
            try encode(f32, n, cols, out)
            try append(UnsafeRawBufferPointer(start: out, count: n * rb))
            r += n
        }
        try endComponent()
        try endTensor()
    }

    private static func ggmlRowBytes(_ name: String, rows: Int, cols: Int, type: GGMLType) throws -> Int {
        guard GGMLBlockLayout.types.contains(type) else {
            throw GGMLWriteError.unfit(tensor: name, detail: "ggml type \(type.name) is not a block type the ggml scheme holds (\(GGMLBlockLayout.types.map(\.name).joined(separator: ", ")))")
        }
        guard rows > 0, cols > 0, cols % type.blockSize == 0 else {
            throw GGMLWriteError.unfit(tensor: name, detail: "its \(cols) columns are not a multiple of \(type.name)'s block size \(type.blockSize); choose a type whose block divides them (llama.cpp's fallback)")
        }
        return GGMLBlockLayout.rowBytes(type, cols: cols)
    }
}

/// A tensor that cannot be stored as the requested ggml type.
public enum GGMLWriteError: I2QError {
    case unfit(tensor: String, detail: String)
    public var description: String {
        switch self { case let .unfit(t, d): return "tensor \"\(t)\": \(d)" }
    }
}
