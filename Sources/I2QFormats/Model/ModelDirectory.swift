import Foundation
import I2QCore

/// An HF model directory: config files, tokenizer and processor files, and safetensors weights.
///
/// Opening it reads and validates everything small (configs, shard headers, the index) and maps the
/// shards; no tensor data is read.
public final class ModelDirectory: ModelSource, @unchecked Sendable {
    public let path: String
    /// config.json as written (key order and spelling kept), for rewriting.
    public let rawConfig: JSONValue
    public let config: ModelConfig
    public let generation: GenerationConfig?
    public let processor: ProcessorConfig?
    public let weights: SafetensorsCheckpoint
    /// Files other than weights and config.json that travel with the model (tokenizer, processor,
    /// generation config, chat template, README…), as names relative to `path`.
    public let auxiliaryFileNames: [String]
    public let tensors: [SourceTensor]
    public private(set) var problems: [String] = []

    /// Weight files of other formats: never copied next to converted safetensors.
    static let foreignWeightSuffixes = [".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".onnx", ".safetensors"]

    public init(path: String) throws {
        guard FileSystem.exists(path) else { throw FileSystem.whyMissing(path) }
        guard FileSystem.isDirectory(path) else {
            throw ConfigError.missingFile(path: path, why: "expected a model directory (with config.json and safetensors weights) or an .i2q file")
        }
        self.path = path
        let cfgPath = path + "/config.json"
        guard FileSystem.exists(cfgPath) else {
            throw ConfigError.missingFile(path: cfgPath, why: "every HF model directory has one; copy it from the checkpoint's repository")
        }
        let cfgBytes = try FileSystem.readFile(cfgPath)
        do { rawConfig = try JSONParser.parse(cfgBytes, source: cfgPath) } catch let e as JSONError {
            throw ConfigError.invalid(path: cfgPath, detail: "not valid JSON (byte \(e.offset): \(e.message))")
        }
        config = try ModelRegistry.decode(Data(cfgBytes), path: cfgPath)
        generation = try GenerationConfig.load(path: path + "/generation_config.json")
        processor = try ProcessorConfig.load(directory: path)
        weights = try SafetensorsCheckpoint(path: path)

        for name in ["tokenizer.json", "tokenizer_config.json"] where FileSystem.exists(path + "/" + name) {
            do { _ = try JSONParser.parse(FileSystem.readFile(path + "/" + name), source: path + "/" + name) } catch let e as JSONError {
                throw ConfigError.invalid(path: path + "/" + name, detail: "not valid JSON (byte \(e.offset): \(e.message))")
            }
        }

        tensors = weights.tensors.map {
            SourceTensor(name: $0.name, dtype: $0.info.dtype, shape: $0.info.shape, file: $0.shard.file,
                         offset: $0.info.offset, byteCount: $0.info.byteCount)
        }
        auxiliaryFileNames = try FileSystem.listDirectory(path).filter { name in
            if name == "config.json" || name == SafetensorsCheckpoint.indexName || name.hasPrefix(".") { return false }
            if Self.foreignWeightSuffixes.contains(where: { name.hasSuffix($0) }) { return false }
            return !FileSystem.isDirectory(path + "/" + name)
        }
        problems = weights.problems
        if !FileSystem.exists(path + "/tokenizer.json") && !FileSystem.exists(path + "/tokenizer.model") {
            problems.append("no tokenizer.json or tokenizer.model: the model can be converted but not run")
        }
        try checkShapes()
    }

    /// Checks the tensors every architecture must have against the config (a wrong-config or
    /// wrong-checkpoint pairing is caught here, before any pass writes anything).
    func checkShapes() throws {
        let t = config.textConfig
        let prefix = config.architecture.textPrefix
        let expect: [(String, [Int])] = [
            (prefix + "embed_tokens.weight", [t.vocabSize, t.hiddenSize]),
            (prefix + "norm.weight", [t.hiddenSize]),
            (prefix + "layers.0.self_attn.q_proj.weight", [t.numAttentionHeads * t.headDim, t.hiddenSize]),
            (prefix + "layers.0.self_attn.k_proj.weight", [t.numKeyValueHeads * t.headDim, t.hiddenSize]),
            (prefix + "layers.0.mlp.gate_proj.weight", [t.intermediateSize, t.hiddenSize]),
        ]
        for (name, shape) in expect {
            guard let st = weights.tensor(name) else {
                throw ModelError.missingTensor(model: path, tensor: name)
            }
            if st.info.shape != shape {
                throw ModelError.shapeMismatch(model: path, tensor: name, expected: shape, actual: st.info.shape)
            }
        }
        if let lm = weights.tensor("lm_head.weight"), lm.info.shape != [t.vocabSize, t.hiddenSize] {
            throw ModelError.shapeMismatch(model: path, tensor: "lm_head.weight", expected: [t.vocabSize, t.hiddenSize], actual: lm.info.shape)
        }
    }

    // MARK: ModelSource

    public var quantizedTensorNames: [String] { [] }
    public var provenance: Provenance? { nil }

    public func auxiliaryFiles() throws -> [(name: String, bytes: [UInt8])] {
        try auxiliaryFileNames.map { ($0, try FileSystem.readFile(path + "/" + $0)) }
    }

    /// Shard names, sizes and header checksums: enough to tell two checkpoints apart without
    /// reading tensor data.
    public var identity: JSONValue {
        .object([
            ("kind", .string("hf-safetensors")),
            ("path", .string(path)),
            ("model_type", .string(config.modelType)),
            ("tensor_count", .int(tensors.count)),
            ("tensor_bytes", .int(weights.totalBytes)),
            ("shards", .array(weights.shards.map { s in
                .object([("file", .string(FileSystem.basename(s.path))), ("size", .int(s.file.count)),
                         ("header_xxh3", .string(XXH3.hex(s.file.withBytes(0, s.tensors.first?.offset ?? s.file.count) { XXH3.hash($0) })))])
            })),
        ])
    }
}

public enum ModelError: I2QError {
    case missingTensor(model: String, tensor: String)
    case shapeMismatch(model: String, tensor: String, expected: [Int], actual: [Int])

    public var description: String {
        switch self {
        case let .missingTensor(m, t):
            return "\(m): tensor \"\(t)\" is missing but config.json requires it. The weights and config.json belong to different models, or shards are missing."
        case let .shapeMismatch(m, t, e, a):
            return "\(m): tensor \"\(t)\" has shape \(a) but config.json implies \(e). The weights and config.json belong to different models."
        }
    }
}
