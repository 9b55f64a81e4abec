import Foundation
import I2QCore

/// Produces elements `[first, first + count)` of a tensor, in the tensor's dtype, into `dst`
/// (for sources whose bytes are computed, e.g. dequantized from a GGUF block format).
public typealias TensorLoader = @Sendable (_ first: Int, _ count: Int, _ dst: UnsafeMutableRawPointer) throws -> Void

/// A plain (unquantized) tensor of a source. Its bytes either lie in a mapped file (`file`,
/// `offset`: zero-copy for every reader) or are produced on demand by `loader`.
public struct SourceTensor: Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let file: MappedFile?
    /// Absolute offset of the data in `file`.
    public let offset: Int
    public let byteCount: Int
    public let loader: TensorLoader?
    /// Runs before the data is first used (an .i2q tensor: verifies its checksum, once per file).
    public let check: (@Sendable () throws -> Void)?
    public var elementCount: Int { shape.reduce(1, *) }

    public init(name: String, dtype: DType, shape: [Int], file: MappedFile, offset: Int, byteCount: Int,
                check: (@Sendable () throws -> Void)? = nil) {
        self.name = name; self.dtype = dtype; self.shape = shape; self.file = file; self.offset = offset
        self.byteCount = byteCount; self.loader = nil; self.check = check
    }

    public init(name: String, dtype: DType, shape: [Int], loader: @escaping TensorLoader) {
        self.name = name; self.dtype = dtype; self.shape = shape; self.file = nil; self.offset = 0
        self.byteCount = shape.reduce(1, *) * dtype.size; self.loader = loader; self.check = nil
    }

    /// Copies elements `[first, first + count)` into `dst` (pread for mapped tensors).
    public func read(elements first: Int, count: Int, into dst: UnsafeMutableRawPointer) throws {
        precondition(first >= 0 && count >= 0 && first + count <= elementCount, "read out of bounds")
        try check?()
        if let loader { return try loader(first, count, dst) }
        try file!.read(offset + first * dtype.size, count * dtype.size, into: dst)
    }

    /// Zero-copy access to a mapped tensor's bytes; a computed tensor is materialised into a
    /// temporary buffer for the duration of `body`.
    public func withData<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try check?()
        if let file { return try file.withBytes(offset, byteCount, body) }
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        defer { buf.deallocate() }
        try read(elements: 0, count: elementCount, into: buf.baseAddress!)
        return try body(UnsafeRawBufferPointer(rebasing: buf[0..<byteCount]))
    }
}

/// Anything a verb can read a model from: an HF directory or an `.i2q` file.
public protocol ModelSource: AnyObject, Sendable {
    var path: String { get }
    /// config.json as written (key order and number spelling kept).
    var rawConfig: JSONValue { get }
    var config: ModelConfig { get }
    /// Plain tensors, in storage order.
    var tensors: [SourceTensor] { get }
    /// Names of tensors stored quantized (not readable as plain bytes); empty for HF directories.
    var quantizedTensorNames: [String] { get }
    /// Files that travel with the model other than config.json and weights (tokenizer, processor,
    /// generation config, chat template…): name → bytes.
    func auxiliaryFiles() throws -> [(name: String, bytes: [UInt8])]
    /// Where this model came from and what was done to it (nil for an HF directory).
    var provenance: Provenance? { get }
    /// A compact identity of this source for the provenance of outputs made from it.
    var identity: JSONValue { get }
    var problems: [String] { get }
}

extension ModelSource {
    public var tensorBytes: Int { tensors.reduce(0) { $0 + $1.byteCount } }
    public func tensor(_ name: String) -> SourceTensor? { tensors.first { $0.name == name } }

    /// config.json with its dtype key(s) set to `dtype` (`torch_dtype` for 4.x files, `dtype` for
    /// 5.x; nested sub-configs that carry one are updated too). A file with neither gets `torch_dtype`.
    public func rewrittenConfig(dtype: DType) -> JSONValue {
        settingDType(rawConfig, dtype.torchName ?? dtype.rawValue, top: true)
    }
}

func settingDType(_ v: JSONValue, _ name: String, top: Bool) -> JSONValue {
    guard case let .object(entries) = v else { return v }
    var out = entries.map { k, x -> (String, JSONValue) in
        if k == "torch_dtype" || k == "dtype" { return (k, x == .null ? x : .string(name)) }
        if k.hasSuffix("_config"), case .object = x { return (k, settingDType(x, name, top: false)) }
        return (k, x)
    }
    if top && !entries.contains(where: { $0.0 == "torch_dtype" || $0.0 == "dtype" }) {
        out.append(("torch_dtype", .string(name)))
    }
    return .object(out)
}

/// Opens a model: a GGUF file (name ending in `.gguf` or starting with the GGUF magic), an `.i2q`
/// file (by its magic bytes) or an HF directory.
public func openModel(_ path: String) throws -> any ModelSource {
    guard FileSystem.exists(path) else { throw FileSystem.whyMissing(path) }
    if !FileSystem.isDirectory(path) {
        let file = try MappedFile(path: path)
        if path.lowercased().hasSuffix(".gguf") || (file.count >= 4 && file.copyBytes(0, 4) == GGUFFile.magic) {
            return try GGUFModel(file: try GGUFFile(file: file))
        }
        return try I2QFile(path: path)
    }
    return try ModelDirectory(path: path)
}

/// The record of where a model came from and which passes made it.
public struct Provenance: Sendable, Equatable {
    public var source: JSONValue
    public var passes: [PassRecord]
    public var i2qVersion: String

    public init(source: JSONValue, passes: [PassRecord], i2qVersion: String = I2QVersion.string) {
        self.source = source; self.passes = passes; self.i2qVersion = i2qVersion
    }

    public var json: JSONValue {
        .object([("i2q_version", .string(i2qVersion)), ("source", source), ("passes", .array(passes.map(\.json)))])
    }

    public init(json: JSONValue) throws {
        guard let p = json["passes"]?.arrayValue else { throw I2QFormatError.metadata(detail: "provenance.passes missing") }
        source = json["source"] ?? .null
        i2qVersion = json["i2q_version"]?.stringValue ?? "unknown"
        passes = try p.map(PassRecord.init(json:))
    }
}

public struct PassRecord: Sendable, Equatable {
    public var name: String
    public var params: [(String, JSONValue)]
    public var i2qVersion: String

    public init(name: String, params: [(String, JSONValue)], i2qVersion: String = I2QVersion.string) {
        self.name = name; self.params = params; self.i2qVersion = i2qVersion
    }

    public static func == (a: PassRecord, b: PassRecord) -> Bool { a.json == b.json }

    public var json: JSONValue {
        .object([("name", .string(name)), ("params", .object(params)), ("i2q_version", .string(i2qVersion))])
    }

    init(json: JSONValue) throws {
        guard let n = json["name"]?.stringValue else { throw I2QFormatError.metadata(detail: "a provenance pass has no name") }
        name = n
        params = json["params"]?.objectEntries ?? []
        i2qVersion = json["i2q_version"]?.stringValue ?? "unknown"
    }

    public var summary: String {
        // A long object (e.g. quantize --target-bpw's per-tensor recipe) is summarised by its size.
        func short(_ v: JSONValue) -> String { if let e = v.objectEntries, e.count > 8 { return "{\(e.count) entries}" }; return JSONWriter.string(v) }
        return name + (params.isEmpty ? "" : " " + params.map { "\($0.0)=\(short($0.1))" }.joined(separator: " "))
    }
}

public enum I2QVersion {
    public static let string = "0.1.0"
}
