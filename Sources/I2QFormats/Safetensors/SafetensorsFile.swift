import I2QCore

/// One tensor's entry in a safetensors header.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Absolute byte offset of the tensor's data in the file.
    public let offset: Int
    /// Byte length of the data (= product(shape) × dtype.size, validated).
    public let byteCount: Int

    public var elementCount: Int { shape.reduce(1, *) }

    public init(name: String, dtype: DType, shape: [Int], offset: Int, byteCount: Int) {
        self.name = name; self.dtype = dtype; self.shape = shape; self.offset = offset; self.byteCount = byteCount
    }
}

/// A memory-mapped, validated safetensors file. Tensor data is accessed without copying.
///
/// Validation follows huggingface/safetensors 0.5 (`SafeTensors::read_metadata`, `Metadata::validate`):
/// header length ≤ 100,000,000; header inside the file; UTF-8 JSON starting with '{'; known dtypes;
/// no duplicate names; data_offsets sorted are contiguous from 0 with no gaps or overlaps; each
/// span equals product(shape) × dtype size (overflow-checked); the last offset equals the data length.
public final class SafetensorsFile: @unchecked Sendable {
    public static let maxHeaderLength: UInt64 = 100_000_000

    public let path: String
    public let file: MappedFile
    /// Tensors in data order (ascending offset).
    public let tensors: [TensorInfo]
    /// `__metadata__` (string → string), in file order.
    public let metadata: [(String, String)]
    private let byName: [String: Int]

    public convenience init(path: String) throws {
        try self.init(file: MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        self.file = file
        self.path = file.path
        let (tensors, metadata) = try SafetensorsFile.parseHeader(file)
        self.tensors = tensors
        self.metadata = metadata
        var m: [String: Int] = [:]
        for (i, t) in tensors.enumerated() { m[t.name] = i }
        byName = m
    }

    public func info(_ name: String) -> TensorInfo? {
        byName[name].map { tensors[$0] }
    }

    /// Zero-copy access to a tensor's bytes.
    public func withData<R>(_ t: TensorInfo, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try file.withBytes(t.offset, t.byteCount, body)
    }

    static func parseHeader(_ file: MappedFile) throws -> ([TensorInfo], [(String, String)]) {
        let f = file.path
        guard file.count >= 8 else { throw SafetensorsError.tooSmall(file: f, size: file.count) }
        let n: UInt64 = file.withBytes(0, 8) { $0.loadUnaligned(as: UInt64.self).littleEndian }
        guard n <= maxHeaderLength else { throw SafetensorsError.headerTooLarge(file: f, length: n) }
        guard n <= UInt64(file.count - 8) else { throw SafetensorsError.headerPastEnd(file: f, length: n, fileSize: file.count) }
        let hlen = Int(n)
        let dataStart = 8 + hlen
        let json: JSONValue = try file.withBytes(8, hlen) { raw in
            guard String(validating: raw, as: UTF8.self) != nil else { throw SafetensorsError.headerNotUTF8(file: f) }
            guard raw.first == UInt8(ascii: "{") else { throw SafetensorsError.headerStart(file: f) }
            do {
                return try JSONParser.parse(raw, source: f)
            } catch let e as JSONError {
                if let name = e.duplicateKey, e.depth == 1 {
                    throw SafetensorsError.duplicateTensor(file: f, tensor: name)
                }
                throw SafetensorsError.headerJSON(file: f, detail: "byte \(e.offset): \(e.message)")
            }
        }
        guard let entries = json.objectEntries else { throw SafetensorsError.headerStart(file: f) }

        var metadata: [(String, String)] = []
        var raw: [(name: String, dtype: DType, shape: [Int], begin: UInt64, end: UInt64)] = []
        raw.reserveCapacity(entries.count)
        for (name, v) in entries {
            if name == "__metadata__" {
                guard let m = v.objectEntries else {
                    throw SafetensorsError.headerShape(file: f, tensor: nil, detail: "__metadata__ must be an object of strings")
                }
                for (k, mv) in m {
                    guard let s = mv.stringValue else {
                        throw SafetensorsError.headerShape(file: f, tensor: nil, detail: "__metadata__ value for \"\(k)\" must be a string")
                    }
                    metadata.append((k, s))
                }
                continue
            }
            guard v.objectEntries != nil else {
                throw SafetensorsError.headerShape(file: f, tensor: name, detail: "entry must be an object with dtype, shape and data_offsets")
            }
            guard let ds = v["dtype"]?.stringValue else {
                throw SafetensorsError.headerShape(file: f, tensor: name, detail: "missing or non-string \"dtype\"")
            }
            guard let dt = DType(rawValue: ds) else { throw SafetensorsError.unknownDType(file: f, tensor: name, dtype: ds) }
            guard let sh = v["shape"]?.arrayValue else {
                throw SafetensorsError.headerShape(file: f, tensor: name, detail: "missing or non-array \"shape\"")
            }
            var shape: [Int] = []
            for d in sh {
                guard let x = d.intValue, x >= 0 else {
                    throw SafetensorsError.headerShape(file: f, tensor: name, detail: "shape \(JSONWriter.string(v["shape"]!)) must hold non-negative integers")
                }
                shape.append(x)
            }
            guard let off = v["data_offsets"]?.arrayValue, off.count == 2,
                  let b = off[0].uint64Value, let e = off[1].uint64Value else {
                throw SafetensorsError.headerShape(file: f, tensor: name, detail: "\"data_offsets\" must be two non-negative integers")
            }
            raw.append((name, dt, shape, b, e))
        }

        // Contiguity, as the reference checks it: sort by offsets, each must start where the last ended.
        raw.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        let dataLength = UInt64(file.count - dataStart)
        var expected: UInt64 = 0
        var out: [TensorInfo] = []
        out.reserveCapacity(raw.count)
        for t in raw {
            guard t.begin == expected, t.end >= t.begin else {
                throw SafetensorsError.offsetsOverlapOrGap(file: f, tensor: t.name, expectedBegin: expected, begin: t.begin, end: t.end)
            }
            var elems: UInt64 = 1
            var overflow = false
            for d in t.shape {
                let (p, o) = elems.multipliedReportingOverflow(by: UInt64(d))
                overflow = overflow || o
                elems = p
            }
            let (bytes, o2) = elems.multipliedReportingOverflow(by: UInt64(t.dtype.size))
            if overflow || o2 || bytes != t.end - t.begin {
                throw SafetensorsError.sizeMismatch(file: f, tensor: t.name, shape: t.shape, dtype: t.dtype.rawValue,
                                                    expectedBytes: (overflow || o2) ? UInt64.max : bytes, actualBytes: t.end - t.begin)
            }
            if t.end > dataLength {
                throw SafetensorsError.dataLengthMismatch(file: f, dataEnd: t.end, dataLength: dataLength)
            }
            expected = t.end
            out.append(TensorInfo(name: t.name, dtype: t.dtype, shape: t.shape,
                                  offset: dataStart + Int(t.begin), byteCount: Int(t.end - t.begin)))
        }
        guard expected == dataLength else {
            throw SafetensorsError.dataLengthMismatch(file: f, dataEnd: expected, dataLength: dataLength)
        }
        return (out, metadata)
    }
}
