import Foundation
import I2QCore
import I2QFormats
import I2QQuant

/// Tests/Fixtures/ggml-blocks (scripts/fixtures/make_ggml_block_fixtures.py): llama.cpp's encoded
/// blocks of some weights of a model, and transformers' logits with those weights dequantized by gguf-py.
public struct GGMLBlocksFixture {
    public let blocks: SafetensorsFile
    /// Tensor name → ggml type, as the fixture's `__metadata__["ggml_types"]` says.
    public let types: [String: GGMLType]

    public init(_ model: String) throws {
        blocks = try SafetensorsFile(path: fixturesDir + "/ggml-blocks/\(model).blocks.safetensors")
        guard let js = blocks.metadata.first(where: { $0.0 == "ggml_types" })?.1,
              case let .object(kv) = try JSONParser.parse(Array(js.utf8), source: "ggml_types") else {
            throw GGMLWriteError.unfit(tensor: model, detail: "fixture without ggml_types")
        }
        var t: [String: GGMLType] = [:]
        for (k, v) in kv {
            guard let s = v.stringValue, let type = GGMLBlockLayout.types.first(where: { $0.name == s }) else {
                throw GGMLWriteError.unfit(tensor: k, detail: "unknown ggml type \(v)")
            }
            t[k] = type
        }
        types = t
    }

    /// llama.cpp's bytes of weight `name` [rows, bytes per row].
    public func bytes(_ name: String) -> [UInt8] { blocks.withData(blocks.info(name)!) { Array($0) } }

    /// Writes `source`'s tensors to `out` in order: the fixture's weights as `ggml` entries holding
    /// llama.cpp's bytes (`I2QWriter.writeGGML`), every other tensor plain in its own dtype; metadata:
    /// config.json and the source's other files (tokenizer…). `plainValues`: instead of the ggml
    /// entries, plain float32 tensors with these values (e.g. gguf-py's dequantization).
    public func writeModel(_ source: any ModelSource, configPath: String, to out: String,
                           plainValues: [String: [Float]]? = nil) throws {
        let w = try I2QWriter(path: out)
        for t in source.tensors {
            if let type = types[t.name] {
                if let v = plainValues?[t.name] {
                    try v.withUnsafeBytes { try w.writePlain(name: t.name, dtype: .f32, shape: t.shape, $0) }
                } else {
                    try bytes(t.name).withUnsafeBytes { try w.writeGGML(name: t.name, rows: t.shape[0], cols: t.shape[1], type: type, blocks: $0) }
                }
            } else {
                var raw = [UInt8](repeating: 0, count: t.byteCount)
                try raw.withUnsafeMutableBytes { try t.read(elements: 0, count: t.elementCount, into: $0.baseAddress!) }
                try raw.withUnsafeBytes { try w.writePlain(name: t.name, dtype: t.dtype, shape: t.shape, $0) }
            }
        }
        let config = try Array(Data(contentsOf: URL(fileURLWithPath: configPath)))
        try w.finish(metadata: I2QMetadata(files: [("config.json", config)] + (try source.auxiliaryFiles()),
                                           provenance: Provenance(source: .null, passes: [])))
    }
}

/// Float32 tensors of a safetensors file, by name (e.g. the fixtures' expected logits).
public func f32Tensors(_ path: String) throws -> [String: [Float]] {
    let f = try SafetensorsFile(path: path)
    var out: [String: [Float]] = [:]
    for t in f.tensors where t.dtype == .f32 {
        out[t.name] = f.withData(t) { b in (0..<(b.count / 4)).map { b.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
    }
    return out
}

/// The i64 tensor `name` of a safetensors file as Ints.
public func i64Tensor(_ path: String, _ name: String) throws -> [Int] {
    let f = try SafetensorsFile(path: path)
    return f.withData(f.info(name)!) { b in (0..<(b.count / 8)).map { Int(b.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) } }
}
