import Foundation
import I2QCore

/// What every family's decoded config offers the families-agnostic code: its `model_type` and the
/// text decoder's config. A new family's config conforms and is carried as `ModelConfig.family` —
/// nothing here changes (the two cases below predate this and stay for their users' pattern matches).
public protocol FamilyConfig: Sendable {
    var modelType: String { get }
    var textConfig: TextConfig { get }
    /// Equality with a config of any family (the extension gives it to every Equatable config).
    func isEqual(to other: any FamilyConfig) -> Bool
}

public extension FamilyConfig where Self: Equatable {
    func isEqual(to other: any FamilyConfig) -> Bool { (other as? Self) == self }
}

/// A decoded model configuration, by architecture.
public enum ModelConfig: Sendable, Equatable {
    case idefics2(Idefics2Config)
    case text(TextConfig)
    /// Any other family's config (its `ModelArchitecture.decode` makes it).
    case family(any FamilyConfig)

    /// The config as a family's type: `config.as(Idefics2Config.self)`.
    public func `as`<C: FamilyConfig>(_ type: C.Type) -> C? {
        switch self {
        case let .idefics2(c): return c as? C
        case let .text(t): return t as? C
        case let .family(f): return f as? C
        }
    }

    private var config: any FamilyConfig {
        switch self {
        case let .idefics2(c): return c
        case let .text(t): return t
        case let .family(f): return f
        }
    }

    public var modelType: String { config.modelType }

    /// The family this config belongs to (`ModelRegistry`).
    public var architecture: ModelArchitecture { ModelRegistry.architecture(of: self) }

    public var textConfig: TextConfig { config.textConfig }

    public static func == (a: ModelConfig, b: ModelConfig) -> Bool { a.config.isEqual(to: b.config) }
}

extension TextConfig: FamilyConfig {
    public var textConfig: TextConfig { self }
}

extension Idefics2Config: FamilyConfig {
    public var modelType: String { "idefics2" }
    public var textConfig: TextConfig { text }
}

/// Parameter groups that `inspect` reports.
public enum ModuleGroup: String, CaseIterable, Sendable, Codable {
    case vision, connector, text, lmHead = "lm_head", other
}

/// The one place that knows architectures: every family's `ModelArchitecture`, keyed by `model_type`.
/// A new family: its file in Architectures/ and one entry here.
public enum ModelRegistry {
    public static let architectures: [ModelArchitecture] = [.idefics2, .idefics3, .llama]

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
