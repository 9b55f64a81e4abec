import Foundation
import I2QCore

/// A decoded model configuration, by architecture.
public enum ModelConfig: Sendable, Equatable {
    case idefics2(Idefics2Config)
    case text(TextConfig)

    public var modelType: String {
        switch self {
        case .idefics2: return "idefics2"
        case let .text(t): return t.modelType
        }
    }

    /// The family this config belongs to (`ModelRegistry`).
    public var architecture: ModelArchitecture { ModelRegistry.architecture(of: self) }

    public var textConfig: TextConfig {
        switch self {
        case let .idefics2(c): return c.text
        case let .text(t): return t
        }
    }
}

/// Parameter groups that `inspect` reports.
public enum ModuleGroup: String, CaseIterable, Sendable, Codable {
    case vision, connector, text, lmHead = "lm_head", other
}

/// The one place that knows architectures: every family's `ModelArchitecture`, keyed by `model_type`.
/// A new family: its file in Architectures/ and one entry here.
public enum ModelRegistry {
    public static let architectures: [ModelArchitecture] = [.idefics2, .llama]

    static let byType: [String: ModelArchitecture] = {
        var m: [String: ModelArchitecture] = [:]
        for a in architectures { for t in a.modelTypes { m[t] = a } }
        return m
    }()

    public static var modelTypes: [String] { byType.keys.sorted() }

    /// The family of a decoded config (every decoded config has one).
    public static func architecture(of config: ModelConfig) -> ModelArchitecture {
        byType[config.modelType] ?? .llama
    }

    /// Decodes `config.json` bytes by their `model_type`.
    public static func decode(_ data: Data, path: String) throws -> ModelConfig {
        let json: JSONValue
        do { json = try JSONParser.parse(Array(data), source: path) } catch let e as JSONError {
            throw ConfigError.invalid(path: path, detail: "not valid JSON (byte \(e.offset): \(e.message))")
        }
        guard json.objectEntries != nil else { throw ConfigError.invalid(path: path, detail: "must hold a JSON object") }
        let type = json["model_type"]?.stringValue
        guard let t = type, let a = byType[t] else { throw ConfigError.unsupportedModelType(path: path, modelType: type) }
        return try a.decode(data, path)
    }

    /// The module group of a checkpoint tensor name.
    public static func group(of name: String, modelType: String) -> ModuleGroup {
        (byType[modelType] ?? .llama).group(of: name)
    }
}
