import Foundation
import I2QCore

/// What the format layer knows of one model family, as data: the `model_type`s it reads, how its
/// config.json decodes, where its modules live in the checkpoint and which group each tensor counts
/// in. `ModelRegistry` holds one per family; passes ask it instead of branching on a model type.
/// (The runtime's half — sessions and forwards — is `I2QRuntime.RuntimeRegistry`.)
///
/// A new family is one file defining its `ModelArchitecture` value (plus its config type) and one
/// line in `ModelRegistry.architectures`.
public struct ModelArchitecture: Sendable {
    public let modelTypes: [String]
    public let decode: @Sendable (_ data: Data, _ path: String) throws -> ModelConfig
    /// Where the text decoder's tensors live, in every checkpoint layout of the family (the first one
    /// present in a checkpoint wins: `textPrefix(in:)`); the first is the canonical one.
    public let textPrefixes: [String]
    /// Modules outside the text decoder, by checkpoint prefix (with the trailing dot), in order:
    /// e.g. Idefics2's vision tower and connector. Empty for text models.
    public let otherModules: [(prefix: String, group: ModuleGroup)]
    /// The linear weights of the vision encoder's layers (for `--vision-int4`); nil: no vision tower.
    public let visionLinear: (@Sendable (_ name: String) -> Bool)?
    /// Lines `inspect` prints before the text decoder's (vision tower, connector…).
    public let describe: @Sendable (_ config: ModelConfig) -> [(String, String)]
    /// The config's dtype key when the text config has none (Idefics2 keeps it at the top level).
    public let topLevelDType: @Sendable (_ config: ModelConfig) -> String?
    /// AWQ's scale groups of one decoder layer, in application order.
    public let awqScaleGroups: [AWQScaleGroup]
    /// The GGUF-style name of a linear weight outside the text decoder (a vision tower's, a
    /// connector's), for importance-matrix entries (`ImatrixNames`); nil: none.
    public let otherGGUFName: @Sendable (_ name: String) -> String?

    public init(modelTypes: [String], decode: @escaping @Sendable (Data, String) throws -> ModelConfig,
                textPrefixes: [String], otherModules: [(prefix: String, group: ModuleGroup)] = [],
                visionLinear: (@Sendable (String) -> Bool)? = nil,
                describe: @escaping @Sendable (ModelConfig) -> [(String, String)] = { _ in [] },
                topLevelDType: @escaping @Sendable (ModelConfig) -> String? = { _ in nil },
                awqScaleGroups: [AWQScaleGroup] = AWQScaleGroup.llamaDecoder,
                otherGGUFName: @escaping @Sendable (String) -> String? = { _ in nil }) {
        self.modelTypes = modelTypes; self.decode = decode; self.textPrefixes = textPrefixes
        self.otherModules = otherModules; self.visionLinear = visionLinear; self.describe = describe
        self.topLevelDType = topLevelDType; self.awqScaleGroups = awqScaleGroups; self.otherGGUFName = otherGGUFName
    }

    /// The canonical text-decoder prefix ("model." / "model.text_model.").
    public var textPrefix: String { textPrefixes[0] }

    /// The text-decoder prefix this checkpoint uses (`has(name)`: whether a tensor exists), or nil.
    public func textPrefix(where has: (String) -> Bool) -> String? {
        textPrefixes.first { has($0 + "embed_tokens.weight") }
    }

    /// Whether the family has modules besides the text decoder (a vision tower…).
    public var isMultimodal: Bool { !otherModules.isEmpty }

    /// The module group of a checkpoint tensor name.
    public func group(of name: String) -> ModuleGroup {
        if name.hasPrefix("lm_head.") { return .lmHead }
        for m in otherModules where name.hasPrefix(m.prefix) { return m.group }
        if textPrefixes.contains(where: { name.hasPrefix($0) }) { return .text }
        return .other
    }
}
