import I2QCore
import I2QFormats

/// Output container of a pass.
public enum OutputFormat: String, CaseIterable, Sendable {
    /// The i2q file (Formats/i2q-format.md): one self-checking, mmap-ready file.
    case i2q
    /// An HF directory that transformers loads unchanged.
    case safetensors
}

/// Where a streaming pass puts plain tensors. Tensors arrive in plan order.
protocol TensorSink: AnyObject {
    func begin(_ t: PlannedTensor) throws
    func append(_ bytes: UnsafeRawBufferPointer) throws
    func end() throws
    /// Writes the model's small files and provenance, and completes the output.
    func finish(files: [(name: String, bytes: [UInt8])], provenance: Provenance) throws
    var outputFiles: [String] { get }
}

final class SafetensorsSink: TensorSink {
    let writer: SafetensorsWriter
    let dir: String
    init(directory: String, plan: [PlannedTensor], maxShardSize: Int) throws {
        dir = directory
        writer = try SafetensorsWriter(directory: directory, tensors: plan, maxShardSize: maxShardSize)
    }
    func begin(_ t: PlannedTensor) throws { try writer.begin(t.name) }
    func append(_ bytes: UnsafeRawBufferPointer) throws { try writer.append(bytes) }
    func end() throws { try writer.end() }
    func finish(files: [(name: String, bytes: [UInt8])], provenance: Provenance) throws {
        try writer.finish()
        // An HF directory has no place for provenance; transformers ignores extra keys nowhere safe,
        // so it is not written (the i2q format keeps it).
        for f in files { try FileSystem.writeFile(dir + "/" + f.name, f.bytes) }
    }
    var outputFiles: [String] { writer.shards.map(\.fileName) }
}

final class I2QSink: TensorSink {
    let writer: I2QWriter
    /// Fused tensor name → the parts it holds (i2q fuse), kept in the output.
    var parts: [String: [I2QPart]] = [:]
    init(path: String, alignment: Int) throws { writer = try I2QWriter(path: path, alignment: alignment) }
    func begin(_ t: PlannedTensor) throws {
        try writer.beginTensor(name: t.name, dtype: t.dtype, shape: t.shape, parts: parts[t.name] ?? [])
        try writer.beginComponent(role: PlainLayout.dataRole, dtype: t.dtype, shape: t.shape)
    }
    func append(_ bytes: UnsafeRawBufferPointer) throws { try writer.append(bytes) }
    func end() throws { try writer.endComponent(); try writer.endTensor() }
    func finish(files: [(name: String, bytes: [UInt8])], provenance: Provenance) throws {
        try writer.finish(metadata: I2QMetadata(files: files, provenance: provenance))
    }
    var outputFiles: [String] { [FileSystem.basename(writer.path)] }
}
