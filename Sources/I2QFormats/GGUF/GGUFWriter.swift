import I2QCore
import I2QQuant

/// Why a GGUF file could not be written. Messages name the file and the key or tensor concerned.
public enum GGUFWriteError: I2QError, Equatable {
    /// Calls out of order (a bug in the caller, reported rather than trapped).
    case state(file: String, detail: String)
    case key(file: String, key: String, detail: String)
    case tensor(file: String, tensor: String, detail: String)

    public var description: String {
        switch self {
        case let .state(f, d): return "\(f): GGUF writer used out of order: \(d)"
        case let .key(f, k, d): return "\(f): metadata key \"\(k)\": \(d)"
        case let .tensor(f, t, d): return "\(f): tensor \"\(t)\": \(d)"
        }
    }
}

/// A tensor as the writer declares it: GGML dims (ne0 first) and type.
public struct GGUFTensorDecl: Sendable, Equatable {
    public let name: String
    /// numpy / torch order (what callers hold); stored reversed.
    public let shape: [Int]
    public let type: GGMLType
    public init(name: String, shape: [Int], type: GGMLType) { self.name = name; self.shape = shape; self.type = type }
    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { elementCount / type.blockSize * type.typeSize }
}

/// Writes a GGUF v3 file (little-endian) as gguf-py's `GGUFWriter` lays it out: header → metadata
/// key/values → tensor infos → padding to the alignment → each tensor's data, each padded to the
/// alignment. Reference: llama.cpp `ggml/src/gguf.cpp` (`gguf_write_to_buf`) and gguf-py
/// `gguf_writer.py` (`write_header_to_file`, `write_kv_data_to_file`, `write_tensors_to_file`).
///
/// A small state machine: `.declaring` (add metadata and tensor declarations) → `writeHeader()` →
/// `.data` (for each declared tensor in order: `beginTensor`, `append`…, `endTensor`) → `finish()`.
/// Tensor data is streamed: the writer never holds more than the caller's chunk. Everything it
/// writes obeys the rules `GGUFFile` checks (unique keys and names, names < 64 bytes, ≤ 4 dims,
/// ne0 a multiple of the block size, offsets the running padded total), so a file it finishes is
/// one i2q and llama.cpp read back. The caller stages the path (StagedOutput) and renames it.
public final class GGUFWriter {
    enum State: Equatable { case declaring, data(tensor: Int, written: Int, open: Bool), finished, failed }

    public let path: String
    public let alignment: Int
    private let out: OutputFile
    private var state = State.declaring
    private var kv: [(key: String, value: GGUFValue)] = []
    private var keys: Set<String> = []
    public private(set) var tensors: [GGUFTensorDecl] = []
    private var names: Set<String> = []

    public static let version: UInt32 = 3

    /// `alignment`: the data alignment; a value other than 32 is recorded as `general.alignment`.
    public init(path: String, alignment: Int = GGUFFile.defaultAlignment) throws {
        precondition(alignment > 0 && alignment & (alignment - 1) == 0, "alignment must be a power of two")
        self.path = path
        self.alignment = alignment
        out = try OutputFile(creating: path, direct: true)
        if alignment != GGUFFile.defaultAlignment { try add("general.alignment", .uint32(UInt32(alignment))) }
    }

    private func fail(_ detail: String) -> GGUFWriteError {
        state = .failed
        return .state(file: path, detail: detail)
    }

    /// Adds one metadata entry (file order = call order).
    public func add(_ key: String, _ value: GGUFValue) throws {
        guard state == .declaring else { throw fail("metadata \"\(key)\" added after the header was written") }
        guard !key.isEmpty else { throw GGUFWriteError.key(file: path, key: key, detail: "keys must not be empty") }
        guard !keys.contains(key) else { throw GGUFWriteError.key(file: path, key: key, detail: "added twice") }
        if case let .array(t, items) = value {
            guard t != .array else { throw GGUFWriteError.key(file: path, key: key, detail: "nested arrays are not allowed in GGUF") }
            guard items.allSatisfy({ $0.type == t }) else {
                throw GGUFWriteError.key(file: path, key: key, detail: "array items must all be \(t.name)")
            }
        }
        keys.insert(key)
        kv.append((key, value))
    }

    /// Declares the next tensor (data order = declaration order).
    public func declare(_ t: GGUFTensorDecl) throws {
        guard state == .declaring else { throw fail("tensor \"\(t.name)\" declared after the header was written") }
        guard !t.name.isEmpty, t.name.utf8.count < GGUFFile.maxNameLength else {
            throw GGUFWriteError.tensor(file: path, tensor: t.name, detail: "names must be 1–\(GGUFFile.maxNameLength - 1) bytes (GGML_MAX_NAME)")
        }
        guard !names.contains(t.name) else { throw GGUFWriteError.tensor(file: path, tensor: t.name, detail: "declared twice") }
        guard t.shape.count >= 1, t.shape.count <= GGUFFile.maxDims, t.shape.allSatisfy({ $0 >= 0 }) else {
            throw GGUFWriteError.tensor(file: path, tensor: t.name, detail: "shape \(t.shape) must have 1–\(GGUFFile.maxDims) non-negative dimensions")
        }
        guard t.shape.last! % t.type.blockSize == 0 else {
            throw GGUFWriteError.tensor(file: path, tensor: t.name, detail: "row length \(t.shape.last!) is not a multiple of the \(t.type.name) block size \(t.type.blockSize)")
        }
        names.insert(t.name)
        tensors.append(t)
    }

    private static func padded(_ n: Int, _ a: Int) -> Int { (n + a - 1) / a * a }

    /// Writes header, metadata and tensor infos, and pads to the start of the data section.
    public func writeHeader() throws {
        guard state == .declaring else { throw fail("writeHeader called twice") }
        var b = GGUFByteBuffer()
        b.bytes(GGUFFile.magic)
        b.u32(Self.version)
        b.u64(UInt64(tensors.count))
        b.u64(UInt64(kv.count))
        for (k, v) in kv {
            b.string(Array(k.utf8))
            b.u32(v.type.rawValue)
            b.value(v)
        }
        var offset = 0
        for t in tensors {
            b.string(Array(t.name.utf8))
            b.u32(UInt32(t.shape.count))
            for d in t.shape.reversed() { b.u64(UInt64(d)) }
            b.u32(t.type.rawValue)
            b.u64(UInt64(offset))
            offset += Self.padded(t.byteCount, alignment)
        }
        b.zeros(Self.padded(b.data.count, alignment) - b.data.count)
        do { try out.write(b.data) } catch { state = .failed; throw error }
        state = .data(tensor: 0, written: 0, open: false)
    }

    /// Starts the data of the next declared tensor; `name` must be that tensor's.
    public func beginTensor(_ name: String) throws {
        guard case let .data(i, _, open) = state, !open else { throw fail("beginTensor(\"\(name)\") outside the data section or inside another tensor") }
        guard i < tensors.count else { throw fail("beginTensor(\"\(name)\"): all \(tensors.count) declared tensors are written") }
        guard tensors[i].name == name else { throw fail("beginTensor(\"\(name)\"): the next declared tensor is \"\(tensors[i].name)\"") }
        state = .data(tensor: i, written: 0, open: true)
    }

    public func append(_ bytes: UnsafeRawBufferPointer) throws {
        guard case let .data(i, w, true) = state else { throw fail("append outside a tensor") }
        let t = tensors[i]
        guard w + bytes.count <= t.byteCount else {
            state = .failed
            throw GGUFWriteError.tensor(file: path, tensor: t.name, detail: "more data than its \(t.byteCount) bytes (\(t.type.name) \(t.shape))")
        }
        do { try out.write(bytes) } catch { state = .failed; throw error }
        state = .data(tensor: i, written: w + bytes.count, open: true)
    }

    public func append(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try append($0) } }

    /// Ends the current tensor (which must be complete) and writes its padding.
    public func endTensor() throws {
        guard case let .data(i, w, true) = state else { throw fail("endTensor outside a tensor") }
        let t = tensors[i]
        guard w == t.byteCount else {
            state = .failed
            throw GGUFWriteError.tensor(file: path, tensor: t.name, detail: "ended after \(w) of its \(t.byteCount) bytes")
        }
        do { try out.writeZeros(Self.padded(w, alignment) - w) } catch { state = .failed; throw error }
        state = .data(tensor: i + 1, written: 0, open: false)
    }

    /// Checks that every declared tensor was written and closes the file (fsync).
    public func finish() throws {
        guard case let .data(i, _, false) = state, i == tensors.count else {
            throw fail("finish before every declared tensor was written")
        }
        do { try out.close() } catch { state = .failed; throw error }
        state = .finished
    }

    /// Bytes of the finished file for the current declarations (header + padded data).
    public var plannedSize: Int {
        var n = 4 + 4 + 8 + 8
        for (k, v) in kv { n += 8 + k.utf8.count + 4 + GGUFByteBuffer.size(of: v) }
        for t in tensors { n += 8 + t.name.utf8.count + 4 + 8 * t.shape.count + 4 + 8 }
        return Self.padded(n, alignment) + tensors.reduce(0) { $0 + Self.padded($1.byteCount, alignment) }
    }
}

/// Little-endian serialisation of GGUF header fields.
struct GGUFByteBuffer {
    var data: [UInt8] = []
    mutating func bytes(_ b: [UInt8]) { data += b }
    mutating func u8(_ v: UInt8) { data.append(v) }
    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { data += $0 } }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { data += $0 } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { data += $0 } }
    mutating func string(_ s: [UInt8]) { u64(UInt64(s.count)); data += s }
    mutating func zeros(_ n: Int) { if n > 0 { data += [UInt8](repeating: 0, count: n) } }

    /// A value's payload (without its type tag); arrays carry their item type and count.
    mutating func value(_ v: GGUFValue) {
        switch v {
        case let .uint8(x): u8(x)
        case let .int8(x): u8(UInt8(bitPattern: x))
        case let .uint16(x): u16(x)
        case let .int16(x): u16(UInt16(bitPattern: x))
        case let .uint32(x): u32(x)
        case let .int32(x): u32(UInt32(bitPattern: x))
        case let .uint64(x): u64(x)
        case let .int64(x): u64(UInt64(bitPattern: x))
        case let .float32(x): u32(x.bitPattern)
        case let .float64(x): u64(x.bitPattern)
        case let .bool(x): u8(x ? 1 : 0)
        case let .string(s): string(s)
        case let .array(t, items):
            u32(t.rawValue)
            u64(UInt64(items.count))
            for i in items { value(i) }
        }
    }

    static func size(of v: GGUFValue) -> Int {
        switch v {
        case let .string(s): return 8 + s.count
        case let .array(_, items): return 12 + items.reduce(0) { $0 + size(of: $1) }
        default: return v.type.minimumSize
        }
    }
}

extension GGUFValue {
    /// A GGUF STRING from Swift text (UTF-8).
    public static func text(_ s: String) -> GGUFValue { .string(Array(s.utf8)) }
    /// An ARRAY of STRINGs.
    public static func strings(_ a: [[UInt8]]) -> GGUFValue { .array(.string, a.map { .string($0) }) }
}
