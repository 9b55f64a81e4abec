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

/// The one place that knows architectures: decoders keyed by `model_type`, and how checkpoint
/// tensor names map to module groups.
public enum ModelRegistry {
    static let decoders: [String: @Sendable (Data, String) throws -> ModelConfig] = [
        "idefics2": { .idefics2(try Idefics2Config.decode($0, path: $1)) },
        "mistral": { .text(try TextConfig.decode($0, path: $1)) },
        "llama": { .text(try TextConfig.decode($0, path: $1)) },
    ]

    public static var modelTypes: [String] { decoders.keys.sorted() }

    /// Decodes `config.json` bytes by their `model_type`.
    public static func decode(_ data: Data, path: String) throws -> ModelConfig {
        let json: JSONValue
        do { json = try JSONParser.parse(Array(data), source: path) } catch let e as JSONError {
            throw ConfigError.invalid(path: path, detail: "not valid JSON (byte \(e.offset): \(e.message))")
        }
        guard json.objectEntries != nil else { throw ConfigError.invalid(path: path, detail: "must hold a JSON object") }
        let type = json["model_type"]?.stringValue
        guard let t = type, let d = decoders[t] else { throw ConfigError.unsupportedModelType(path: path, modelType: type) }
        return try d(data, path)
    }

    /// The module group of a checkpoint tensor name (HF names of Idefics2 / Llama / Mistral).
    public static func group(of name: String, modelType: String) -> ModuleGroup {
        if name.hasPrefix("lm_head.") { return .lmHead }
        switch modelType {
        case "idefics2":
            if name.hasPrefix("model.vision_model.") { return .vision }
            if name.hasPrefix("model.connector.") { return .connector }
            if name.hasPrefix("model.text_model.") { return .text }
            return .other
        default:
            if name.hasPrefix("model.") { return .text }
            return .other
        }
    }
}
