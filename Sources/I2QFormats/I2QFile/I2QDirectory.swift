import I2QCore

/// One stored buffer of a tensor (plain data, or packed weights / scales / zeros / absmax…).
public struct I2QComponent: Sendable, Equatable {
    public var role: String
    public var dtype: DType
    public var shape: [Int]
    /// Offset relative to the start of the data section (a multiple of the file's alignment).
    public var offset: Int
    public var size: Int
    public var checksum: UInt64

    public init(role: String, dtype: DType, shape: [Int], offset: Int = 0, size: Int = 0, checksum: UInt64 = 0) {
        self.role = role; self.dtype = dtype; self.shape = shape; self.offset = offset; self.size = size; self.checksum = checksum
    }
}

/// A typed scheme parameter (block size, group size, packing order…).
public enum I2QParam: Sendable, Equatable {
    case int(Int64)
    case float(Double)
    case string(String)
}

/// For fused tensors: the logical tensor held in rows [start, start+length) of dimension 0.
public struct I2QPart: Sendable, Equatable {
    public var name: String
    public var start: Int
    public var length: Int
    public init(name: String, start: Int, length: Int) { self.name = name; self.start = start; self.length = length }
}

/// A directory entry: one logical tensor.
public struct I2QTensorEntry: Sendable, Equatable {
    public var name: String
    public var scheme: String
    /// The logical element type (for quantized schemes: the type dequantisation produces).
    public var dtype: DType
    public var shape: [Int]
    public var params: [(String, I2QParam)]
    public var parts: [I2QPart]
    public var components: [I2QComponent]

    public init(name: String, scheme: String = I2QSpec.Scheme.plain, dtype: DType, shape: [Int],
                params: [(String, I2QParam)] = [], parts: [I2QPart] = [], components: [I2QComponent] = []) {
        self.name = name; self.scheme = scheme; self.dtype = dtype; self.shape = shape
        self.params = params; self.parts = parts; self.components = components
    }

    public static func == (a: I2QTensorEntry, b: I2QTensorEntry) -> Bool {
        a.name == b.name && a.scheme == b.scheme && a.dtype == b.dtype && a.shape == b.shape
            && a.params.count == b.params.count && zip(a.params, b.params).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
            && a.parts == b.parts && a.components == b.components
    }

    public func component(_ role: String) -> I2QComponent? { components.first { $0.role == role } }
}

// MARK: - Binary encoding (Formats/i2q-format.md, "Tensor directory")

enum I2QDirectoryCodec {
    static func encode(_ entries: [I2QTensorEntry]) -> [UInt8] {
        var w = ByteWriter()
        for e in entries {
            w.string(e.name)
            w.string(e.scheme)
            w.u8(I2QSpec.code(of: e.dtype))
            w.dims(e.shape)
            w.u32(UInt32(e.params.count))
            for (k, v) in e.params {
                w.string(k)
                switch v {
                case let .int(i): w.u8(0); w.u64(UInt64(bitPattern: i))
                case let .float(d): w.u8(1); w.u64(d.bitPattern)
                case let .string(s): w.u8(2); w.string(s)
                }
            }
            w.u32(UInt32(e.parts.count))
            for p in e.parts { w.string(p.name); w.u64(UInt64(p.start)); w.u64(UInt64(p.length)) }
            w.u32(UInt32(e.components.count))
            for c in e.components {
                w.string(c.role)
                w.u8(I2QSpec.code(of: c.dtype))
                w.dims(c.shape)
                w.u64(UInt64(c.offset)); w.u64(UInt64(c.size)); w.u64(c.checksum)
            }
        }
        return w.bytes
    }

    /// Decodes and validates `count` entries from `bytes`. Every size and count is checked against
    /// the bytes that remain and against the data section before it is used.
    static func decode(_ bytes: UnsafeRawBufferPointer, count: Int, dataSize: Int, alignment: Int, path: String) throws -> [I2QTensorEntry] {
        var r = ByteReader(bytes: bytes, path: path)
        var out: [I2QTensorEntry] = []
        out.reserveCapacity(min(count, bytes.count / 16))
        var names = Set<String>()
        var spans: [(Int, Int, String)] = []
        for i in 0..<count {
            let name = try r.string("tensor \(i) name")
            guard !name.isEmpty else { throw r.fail("tensor \(i) has an empty name") }
            guard names.insert(name).inserted else { throw I2QFormatError.directory(path: path, detail: "tensor \"\(name)\" appears twice") }
            let scheme = try r.string("tensor \"\(name)\" scheme")
            let dtype = try r.dtype("tensor \"\(name)\" dtype")
            let shape = try r.dims("tensor \"\(name)\" shape")
            let np = Int(try r.u32("tensor \"\(name)\" param count"))
            guard np <= I2QSpec.maxParams else { throw r.fail("tensor \"\(name)\" has \(np) params (max \(I2QSpec.maxParams))") }
            var params: [(String, I2QParam)] = []
            for _ in 0..<np {
                let k = try r.string("tensor \"\(name)\" param key")
                guard !params.contains(where: { $0.0 == k }) else { throw r.fail("tensor \"\(name)\" has param \"\(k)\" twice") }
                switch try r.u8("param type") {
                case 0: params.append((k, .int(Int64(bitPattern: try r.u64("param value")))))
                case 1: params.append((k, .float(Double(bitPattern: try r.u64("param value")))))
                case 2: params.append((k, .string(try r.string("param value"))))
                case let t: throw r.fail("tensor \"\(name)\" param \"\(k)\" has unknown type \(t)")
                }
            }
            let nparts = Int(try r.u32("tensor \"\(name)\" part count"))
            guard nparts <= I2QSpec.maxParts else { throw r.fail("tensor \"\(name)\" has \(nparts) parts") }
            var parts: [I2QPart] = []
            guard nparts == 0 || !shape.isEmpty else { throw r.fail("tensor \"\(name)\" is a scalar and cannot have parts") }
            let rows = shape.first ?? 0
            for _ in 0..<nparts {
                let pn = try r.string("part name")
                let s = try r.u64("part start"), l = try r.u64("part length")
                guard s <= UInt64(rows), l <= UInt64(rows) - s else {
                    throw r.fail("tensor \"\(name)\" part \"\(pn)\" rows [\(s), \(s)+\(l)) exceed its \(rows) rows")
                }
                parts.append(I2QPart(name: pn, start: Int(s), length: Int(l)))
            }
            let nc = Int(try r.u32("tensor \"\(name)\" component count"))
            guard nc >= 1, nc <= I2QSpec.maxComponents else { throw r.fail("tensor \"\(name)\" has \(nc) components (1…\(I2QSpec.maxComponents))") }
            var comps: [I2QComponent] = []
            for _ in 0..<nc {
                let role = try r.string("tensor \"\(name)\" component role")
                guard !comps.contains(where: { $0.role == role }) else { throw r.fail("tensor \"\(name)\" has component \"\(role)\" twice") }
                let cd = try r.dtype("tensor \"\(name)\" component \(role) dtype")
                let cs = try r.dims("tensor \"\(name)\" component \(role) shape")
                let off = try r.u64("component offset"), size = try r.u64("component size"), sum = try r.u64("component checksum")
                let expected = try checkedBytes(cs, cd)
                guard let expected, UInt64(expected) == size else {
                    throw r.fail("tensor \"\(name)\" component \(role): size \(size) does not match shape \(cs) of \(cd.rawValue)")
                }
                guard off % UInt64(alignment) == 0 else { throw r.fail("tensor \"\(name)\" component \(role): offset \(off) is not aligned to \(alignment)") }
                guard off <= UInt64(dataSize), size <= UInt64(dataSize) - off else {
                    throw r.fail("tensor \"\(name)\" component \(role): bytes [\(off), \(off)+\(size)) lie outside the \(dataSize)-byte data section")
                }
                comps.append(I2QComponent(role: role, dtype: cd, shape: cs, offset: Int(off), size: Int(size), checksum: sum))
                spans.append((Int(off), Int(size), name))
            }
            if scheme == I2QSpec.Scheme.plain {
                guard nc == 1, comps[0].role == "data", comps[0].dtype == dtype, comps[0].shape == shape, params.isEmpty else {
                    throw r.fail("plain tensor \"\(name)\" must have one \"data\" component of its own dtype and shape, and no params")
                }
            }
            out.append(I2QTensorEntry(name: name, scheme: scheme, dtype: dtype, shape: shape, params: params, parts: parts, components: comps))
        }
        guard r.remaining == 0 else { throw r.fail("\(r.remaining) unexpected bytes after the last entry") }
        spans.sort { $0.0 < $1.0 }
        for (a, b) in zip(spans, spans.dropFirst()) where a.1 > 0 && b.1 > 0 && a.0 + a.1 > b.0 {
            throw I2QFormatError.directory(path: path, detail: "tensors \"\(a.2)\" and \"\(b.2)\" overlap in the data section")
        }
        return out
    }

    /// product(shape) × size, or nil on overflow.
    static func checkedBytes(_ shape: [Int], _ dt: DType) throws -> Int? {
        var n = dt.size
        for d in shape {
            let (p, o) = n.multipliedReportingOverflow(by: d)
            if o { return nil }
            n = p
        }
        return n
    }
}

struct ByteWriter {
    var bytes: [UInt8] = []
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func string(_ s: String) { let u = Array(s.utf8); u32(UInt32(u.count)); bytes.append(contentsOf: u) }
    mutating func dims(_ d: [Int]) { u8(UInt8(d.count)); for x in d { u64(UInt64(x)) } }
}

/// Bounds-checked little-endian reads; every failure names the file and what was being read.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    let path: String
    var pos = 0
    var remaining: Int { bytes.count - pos }

    init(bytes: UnsafeRawBufferPointer, path: String) { self.bytes = bytes; self.path = path }

    func fail(_ d: String) -> I2QFormatError { .directory(path: path, detail: d) }

    mutating func take(_ n: Int, _ what: String) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= remaining else { throw fail("truncated while reading \(what) (\(n) bytes needed, \(remaining) left)") }
        defer { pos += n }
        return UnsafeRawBufferPointer(rebasing: bytes[pos..<(pos + n)])
    }
    mutating func u8(_ what: String) throws -> UInt8 { try take(1, what)[0] }
    mutating func u32(_ what: String) throws -> UInt32 { UInt32(littleEndian: try take(4, what).loadUnaligned(as: UInt32.self)) }
    mutating func u64(_ what: String) throws -> UInt64 { UInt64(littleEndian: try take(8, what).loadUnaligned(as: UInt64.self)) }
    mutating func string(_ what: String) throws -> String {
        let n = Int(try u32(what + " length"))
        guard n <= I2QSpec.maxStringLength else { throw fail("\(what) is \(n) bytes long (max \(I2QSpec.maxStringLength))") }
        let b = try take(n, what)
        guard let s = String(validating: b, as: UTF8.self) else { throw fail("\(what) is not valid UTF-8") }
        return s
    }
    mutating func dtype(_ what: String) throws -> DType {
        let c = try u8(what)
        guard let d = I2QSpec.dtype(code: c) else { throw fail("\(what) has unknown code \(c)") }
        return d
    }
    mutating func dims(_ what: String) throws -> [Int] {
        let rank = Int(try u8(what + " rank"))
        guard rank <= I2QSpec.maxRank else { throw fail("\(what) has rank \(rank) (max \(I2QSpec.maxRank))") }
        var d: [Int] = []
        for _ in 0..<rank {
            let v = try u64(what)
            guard v <= UInt64(Int32.max) * 64 else { throw fail("\(what) dimension \(v) is absurdly large") }
            d.append(Int(v))
        }
        return d
    }
}
