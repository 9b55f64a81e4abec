import I2QCore
import I2QQuant

/// Why a GGUF file was rejected. Every message names the file, and the key or tensor concerned.
public enum GGUFError: I2QError, Equatable {
    case notGGUF(file: String)
    case unsupportedVersion(file: String, version: UInt32)
    case truncated(file: String, what: String, offset: Int, fileSize: Int)
    case header(file: String, detail: String)
    case key(file: String, key: String, detail: String)
    case tensor(file: String, tensor: String, detail: String)
    case unsupportedType(file: String, tensor: String, type: String)
    case architecture(file: String, detail: String)

    public var description: String {
        switch self {
        case let .notGGUF(f):
            return "\(f): not a GGUF file (the first 4 bytes are not \"GGUF\")."
        case let .unsupportedVersion(f, v):
            if v == 1 { return "\(f): GGUF version 1 (32-bit counts) is not supported; convert the model again with a current llama.cpp (versions 2 and 3 are read)." }
            if v & 0xFFFF == 0 { return "\(f): this GGUF file is big-endian (version field \(v)); only little-endian GGUF files are read." }
            return "\(f): GGUF version \(v) is not supported (versions 2 and 3 are read)."
        case let .truncated(f, w, o, s):
            return "\(f): \(w) at byte \(o) runs past the end of the \(s)-byte file. The file is truncated or corrupt: download or copy it again."
        case let .header(f, d):
            return "\(f): \(d)"
        case let .key(f, k, d):
            return "\(f): metadata key \"\(k)\": \(d)"
        case let .tensor(f, t, d):
            return "\(f): tensor \"\(t)\": \(d)"
        case let .unsupportedType(f, t, ty):
            return "\(f): tensor \"\(t)\" is stored as \(ty), which i2q cannot dequantize (supported: \(GGMLType.dequantizable.map(\.name).joined(separator: ", ")))."
        case let .architecture(f, d):
            return "\(f): \(d)"
        }
    }
}

/// One tensor of a GGUF file, as its tensor-info record describes it (validated).
public struct GGUFTensorInfo: Sendable {
    public let name: String
    /// Dimensions in GGML order: `dims[0]` (ne0) is the contiguous one. Reversed vs numpy/torch.
    public let dims: [Int]
    public let type: GGMLType
    /// Offset relative to the start of the data section, as stored.
    public let relativeOffset: Int
    /// Absolute offset in the file.
    public let offset: Int
    public let byteCount: Int
    public let elementCount: Int
    /// numpy / torch order (what gguf-py's reader and transformers use).
    public var shape: [Int] { dims.reversed() }
}

/// A validated, memory-mapped GGUF file (v2/v3, little-endian): header, metadata and tensor infos.
///
/// Reference: llama.cpp `ggml/src/gguf.cpp` (`gguf_init_from_file_impl`) and gguf-py `GGUFReader`.
/// Validation follows llama.cpp's hardened reader: every count, length and size is checked against
/// the bytes left in the file with overflow-checked arithmetic before it is used; keys and tensor
/// names are unique; tensor names are shorter than 64 bytes (GGML_MAX_NAME); at most 4 dimensions;
/// `ne0` is a multiple of the type's block size; tensor offsets are multiples of the alignment and
/// equal the running total of the padded tensor sizes; every tensor's data lies inside the file.
/// `general.alignment` must be a UINT32 non-zero power of two (default 32). Nested arrays are rejected.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let file: MappedFile
    public let version: UInt32
    /// Metadata in file order.
    public let metadata: [(key: String, value: GGUFValue)]
    private let index: [String: Int]
    public let tensors: [GGUFTensorInfo]
    private let tensorIndex: [String: Int]
    public let alignment: Int
    /// Absolute offset of the data section.
    public let dataOffset: Int

    public static let magic: [UInt8] = Array("GGUF".utf8)
    public static let defaultAlignment = 32
    /// GGML_MAX_NAME: tensor names are at most 63 bytes.
    public static let maxNameLength = 64
    /// GGML_MAX_DIMS.
    public static let maxDims = 4

    public convenience init(path: String) throws {
        try self.init(file: try MappedFile(path: path))
    }

    public init(file: MappedFile) throws {
        self.file = file
        path = file.path
        let size = file.count
        var r = Reader(file: file)
        guard size >= 4, file.copyBytes(0, 4) == Self.magic else {
            if size < 4 && size > 0 && Array(file.copyBytes(0, size)) == Array(Self.magic.prefix(size)) {
                throw GGUFError.truncated(file: file.path, what: "the header", offset: 0, fileSize: size)
            }
            throw GGUFError.notGGUF(file: file.path)
        }
        r.pos = 4
        let v = try r.u32("the version")
        guard v == 2 || v == 3 else { throw GGUFError.unsupportedVersion(file: file.path, version: v) }
        version = v
        let nTensors = try r.u64("the tensor count")
        let nKV = try r.u64("the metadata count")
        // Every key/value takes at least 13 bytes (8 length + 4 type + 1 value), every tensor info 24.
        let rest = size - r.pos
        guard nKV <= UInt64(rest / 13) else {
            throw GGUFError.header(file: file.path, detail: "the header declares \(nKV) metadata entries, more than a \(size)-byte file can hold. The file is truncated or corrupt.")
        }
        guard nTensors <= UInt64(rest / 24) else {
            throw GGUFError.header(file: file.path, detail: "the header declares \(nTensors) tensors, more than a \(size)-byte file can hold. The file is truncated or corrupt.")
        }

        var md: [(key: String, value: GGUFValue)] = []
        var idx: [String: Int] = [:]
        md.reserveCapacity(Int(nKV))
        for _ in 0..<Int(nKV) {
            let at = r.pos
            let key = try r.utf8String("a metadata key")
            if idx[key] != nil {
                throw GGUFError.key(file: file.path, key: key, detail: "appears twice (second at byte \(at)). The file is corrupt.")
            }
            let rawType = try r.u32("the type of key \"\(key)\"")
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw GGUFError.key(file: file.path, key: key, detail: "unknown value type \(rawType) (known: 0–12). The file is corrupt.")
            }
            let value = try r.value(type, key: key)
            idx[key] = md.count
            md.append((key, value))
        }
        metadata = md
        index = idx

        // general.alignment: UINT32, non-zero power of two.
        if let i = idx["general.alignment"] {
            guard case let .uint32(a) = md[i].value else {
                throw GGUFError.key(file: file.path, key: "general.alignment", detail: "must be a UINT32, found \(md[i].value.type.name).")
            }
            guard a != 0, a & (a - 1) == 0 else {
                throw GGUFError.key(file: file.path, key: "general.alignment", detail: "must be a non-zero power of two, found \(a).")
            }
            alignment = Int(a)
        } else {
            alignment = Self.defaultAlignment
        }

        struct RawInfo { let name: String; let dims: [Int]; let type: GGMLType; let offset: UInt64; let elements: Int }
        var raw: [RawInfo] = []
        raw.reserveCapacity(Int(nTensors))
        var names: [String: Int] = [:]
        for _ in 0..<Int(nTensors) {
            let at = r.pos
            let name = try r.utf8String("a tensor name")
            guard name.utf8.count < Self.maxNameLength else {
                throw GGUFError.tensor(file: file.path, tensor: name, detail: "name is \(name.utf8.count) bytes long; ggml allows at most \(Self.maxNameLength - 1).")
            }
            if names[name] != nil {
                throw GGUFError.tensor(file: file.path, tensor: name, detail: "appears twice in the tensor infos (second at byte \(at)). The file is corrupt.")
            }
            let nDims = try r.u32("the dimension count of tensor \"\(name)\"")
            guard nDims <= UInt32(Self.maxDims) else {
                throw GGUFError.tensor(file: file.path, tensor: name, detail: "has \(nDims) dimensions; ggml allows at most \(Self.maxDims).")
            }
            var dims: [Int] = []
            var elements = 1
            for d in 0..<Int(nDims) {
                let ne = try r.u64("dimension \(d) of tensor \"\(name)\"")
                guard ne <= UInt64(Int64.max) else {
                    throw GGUFError.tensor(file: file.path, tensor: name, detail: "dimension \(d) is \(ne), which is negative as ggml's int64. The file is corrupt.")
                }
                let (p, o) = elements.multipliedReportingOverflow(by: Int(ne))
                guard !o else {
                    throw GGUFError.tensor(file: file.path, tensor: name, detail: "the element count of shape \(dims + [Int(ne)]) overflows 64 bits. The file is corrupt.")
                }
                dims.append(Int(ne))
                elements = p
            }
            let rawType = try r.u32("the type of tensor \"\(name)\"")
            guard let type = GGMLType(rawValue: rawType) else {
                throw GGUFError.tensor(file: file.path, tensor: name, detail: "unknown ggml type \(rawType). The file is corrupt or from a newer llama.cpp.")
            }
            let ne0 = dims.first ?? 1
            guard ne0 % type.blockSize == 0 else {
                throw GGUFError.tensor(file: file.path, tensor: name, detail: "row length \(ne0) is not a multiple of the \(type.name) block size \(type.blockSize). The file is corrupt.")
            }
            let off = try r.u64("the data offset of tensor \"\(name)\"")
            names[name] = raw.count
            raw.append(RawInfo(name: name, dims: dims, type: type, offset: off, elements: elements))
        }

        // Data section: the end of the tensor infos, padded to the alignment.
        let (padded, o1) = r.pos.addingReportingOverflow(alignment - 1)
        guard !o1 else { throw GGUFError.header(file: file.path, detail: "the data section offset overflows.") }
        dataOffset = padded / alignment * alignment

        var infos: [GGUFTensorInfo] = []
        infos.reserveCapacity(raw.count)
        var running = 0  // running total of padded sizes (llama.cpp's ctx->size)
        for t in raw {
            let bytes = t.elements / t.type.blockSize
            let (nbytes, o2) = bytes.multipliedReportingOverflow(by: t.type.typeSize)
            guard !o2 else {
                throw GGUFError.tensor(file: file.path, tensor: t.name, detail: "the byte size of shape \(Array(t.dims.reversed())) of \(t.type.name) overflows 64 bits. The file is corrupt.")
            }
            guard t.offset % UInt64(alignment) == 0 else {
                throw GGUFError.tensor(file: file.path, tensor: t.name, detail: "data offset \(t.offset) is not a multiple of the alignment \(alignment). The file is corrupt.")
            }
            guard t.offset == UInt64(running) else {
                throw GGUFError.tensor(file: file.path, tensor: t.name, detail: "data offset \(t.offset) differs from \(running), the end of the previous tensor's padded data: tensors must be stored in order, without gaps or overlaps. The file is corrupt.")
            }
            let (abs, o3) = dataOffset.addingReportingOverflow(Int(t.offset))
            let (end, o4) = abs.addingReportingOverflow(nbytes)
            guard !o3, !o4, end <= size else {
                throw GGUFError.tensor(file: file.path, tensor: t.name, detail: "data [\(o3 ? "overflow" : String(abs)), +\(nbytes) bytes) runs past the end of the \(size)-byte file. The file is truncated: download or copy it again.")
            }
            let (pad, o5) = nbytes.addingReportingOverflow(alignment - 1)
            let (next, o6) = running.addingReportingOverflow(pad / alignment * alignment)
            guard !o5, !o6 else {
                throw GGUFError.tensor(file: file.path, tensor: t.name, detail: "the data section size overflows 64 bits. The file is corrupt.")
            }
            running = next
            infos.append(GGUFTensorInfo(name: t.name, dims: t.dims, type: t.type, relativeOffset: Int(t.offset),
                                        offset: abs, byteCount: nbytes, elementCount: t.elements))
        }
        tensors = infos
        tensorIndex = names
    }

    public func value(_ key: String) -> GGUFValue? { index[key].map { metadata[$0].value } }
    public func tensor(_ name: String) -> GGUFTensorInfo? { tensorIndex[name].map { tensors[$0] } }

    /// Dequantizes elements `[first, first + count)` of `t` (flat, row-major over `t.shape`) to
    /// float32, bit-exact to gguf-py's `dequantize`.
    public func dequantize(_ t: GGUFTensorInfo, first: Int, count: Int, into dst: UnsafeMutablePointer<Float>) throws {
        precondition(first >= 0 && count >= 0 && first + count <= t.elementCount, "dequantize out of bounds")
        guard t.type.isDequantizable else { throw GGUFError.unsupportedType(file: path, tensor: t.name, type: t.type.name) }
        if count == 0 { return }
        let bs = t.type.blockSize, ts = t.type.typeSize
        let firstBlock = first / bs, lastBlock = (first + count - 1) / bs
        try file.withBytes(t.offset + firstBlock * ts, (lastBlock - firstBlock + 1) * ts) { raw in
            var src = raw.baseAddress!
            var out = dst
            var e = first
            let end = first + count
            // A leading partial block.
            if e % bs != 0 || end - e < bs {
                let n = min(bs - e % bs, end - e)
                try withUnsafeTemporaryAllocation(of: Float.self, capacity: bs) { tmp in
                    try GGMLDequant.blocks(t.type, src, 1, tmp.baseAddress!)
                    out.update(from: tmp.baseAddress! + e % bs, count: n)
                }
                src += ts; out += n; e += n
            }
            let full = (end - e) / bs
            if full > 0 {
                try GGMLDequant.blocks(t.type, src, full, out)
                src += full * ts; out += full * bs; e += full * bs
            }
            if e < end {  // a trailing partial block
                let n = end - e
                try withUnsafeTemporaryAllocation(of: Float.self, capacity: bs) { tmp in
                    try GGMLDequant.blocks(t.type, src, 1, tmp.baseAddress!)
                    out.update(from: tmp.baseAddress!, count: n)
                }
            }
        }
    }

    /// Bounds-checked little-endian cursor over the mapped file.
    struct Reader {
        let file: MappedFile
        var pos = 0

        mutating func need(_ n: Int, _ what: String) throws {
            guard n >= 0, n <= file.count - pos else {
                throw GGUFError.truncated(file: file.path, what: what, offset: pos, fileSize: file.count)
            }
        }

        mutating func bytes(_ n: Int, _ what: String) throws -> [UInt8] {
            try need(n, what)
            defer { pos += n }
            return file.copyBytes(pos, n)
        }

        mutating func fixed<T: FixedWidthInteger>(_: T.Type, _ what: String) throws -> T {
            try need(MemoryLayout<T>.size, what)
            defer { pos += MemoryLayout<T>.size }
            return file.withBytes(pos, MemoryLayout<T>.size) { T(littleEndian: $0.loadUnaligned(as: T.self)) }
        }

        mutating func u32(_ what: String) throws -> UInt32 { try fixed(UInt32.self, what) }
        mutating func u64(_ what: String) throws -> UInt64 { try fixed(UInt64.self, what) }

        /// A length-prefixed byte string; the length is checked against the bytes left first.
        mutating func rawString(_ what: String) throws -> [UInt8] {
            let at = pos
            let n = try u64("the length of \(what)")
            guard n <= UInt64(file.count - pos) else {
                throw GGUFError.truncated(file: file.path, what: "\(what) (\(n) bytes)", offset: at, fileSize: file.count)
            }
            return try bytes(Int(n), what)
        }

        mutating func utf8String(_ what: String) throws -> String {
            let at = pos
            let b = try rawString(what)
            guard let s = String(validating: b, as: UTF8.self) else {
                throw GGUFError.header(file: file.path, detail: "\(what) at byte \(at) is not valid UTF-8. The file is corrupt.")
            }
            return s
        }

        mutating func value(_ type: GGUFValueType, key: String, inArray: Bool = false) throws -> GGUFValue {
            let what = "the value of key \"\(key)\""
            switch type {
            case .uint8: return .uint8(try fixed(UInt8.self, what))
            case .int8: return .int8(try fixed(Int8.self, what))
            case .uint16: return .uint16(try fixed(UInt16.self, what))
            case .int16: return .int16(try fixed(Int16.self, what))
            case .uint32: return .uint32(try fixed(UInt32.self, what))
            case .int32: return .int32(try fixed(Int32.self, what))
            case .uint64: return .uint64(try fixed(UInt64.self, what))
            case .int64: return .int64(try fixed(Int64.self, what))
            case .float32: return .float32(Float(bitPattern: try fixed(UInt32.self, what)))
            case .float64: return .float64(Double(bitPattern: try fixed(UInt64.self, what)))
            case .bool: return .bool(try fixed(UInt8.self, what) != 0)
            case .string: return .string(try rawString(what))
            case .array:
                if inArray {
                    throw GGUFError.key(file: file.path, key: key, detail: "nested arrays are not supported (llama.cpp rejects them too).")
                }
                let rawType = try u32("the element type of key \"\(key)\"")
                guard let et = GGUFValueType(rawValue: rawType) else {
                    throw GGUFError.key(file: file.path, key: key, detail: "array of unknown value type \(rawType). The file is corrupt.")
                }
                if et == .array {
                    throw GGUFError.key(file: file.path, key: key, detail: "nested arrays are not supported (llama.cpp rejects them too).")
                }
                let at = pos
                let n = try u64("the element count of key \"\(key)\"")
                guard n <= UInt64((file.count - pos) / et.minimumSize) else {
                    throw GGUFError.key(file: file.path, key: key, detail: "array of \(n) \(et.name) values (count at byte \(at)) cannot fit in the \(file.count - pos) bytes left in the file. The file is corrupt or truncated.")
                }
                var a: [GGUFValue] = []
                a.reserveCapacity(Int(n))
                for _ in 0..<Int(n) { a.append(try value(et, key: key, inArray: true)) }
                return .array(et, a)
            }
        }
    }
}
