import Foundation
import I2QCore
import I2QFormats
import I2QRuntime
import I2QTokenizer


/// The result of one verification; `json` is the documented, stable report (docs/verify.md).
public struct VerifyReport: Sendable {
    /// 2: "candidate" and "reference" are objects (`ModelStorage.json`; the path is their "path").
    /// 3: a report may be one shard of a run (`--shard I/N`: a "shard" key, statistics over its slice
    /// only, "passed" null); a merged report names its shards in "merged_from".
    public static let formatVersion = 3
    public let candidate: String
    public let reference: String
    public let modelType: String
    public let text: TextComparison?
    /// Per decoder layer (over the text windows).
    public let layers: [LayerErrorAccumulator.Layer]?
    public let layerPositions: Int
    public let docvqa: DocVQAComparison?
    public let options: VerifyOptions
    public let seconds: Double
    /// Messages of the thresholds that were broken (empty: passed).
    public let failures: [String]
    /// Per vision-encoder layer (Idefics2, over the distinct DocVQA images), with the images and real
    /// patches compared.
    public var visionLayers: [LayerErrorAccumulator.Layer]? = nil
    public var visionImages = 0
    public var visionPatches = 0
    /// Width of the vision encoder's layer outputs and of the decoder's (its hidden size).
    public var visionWidth = 0
    public var decoderWidth = 0
    /// The connector's output (Idefics2: the image features the decoder reads), over the same images
    /// as the vision layers: `connectorTokens` rows of width `decoderWidth`.
    public var connector: LayerErrorAccumulator.Layer? = nil
    public var connectorTokens = 0
    /// Storage of both models (file size, schemes, bits per weight).
    public var candidateModel: ModelStorage? = nil
    public var referenceModel: ModelStorage? = nil
    /// Set on a `--shard I/N` run: the report covers that slice only, checks no limits, and carries
    /// what `--merge` needs.
    public var shard: VerifyShardData? = nil
    /// Set on a `--merge` result: the shard reports it was made from.
    public var mergedFrom: [String]? = nil
    public var passed: Bool { failures.isEmpty }

    public var json: JSONValue {
        func opt(_ d: Double?) -> JSONValue { d.map { jsonNumber($0) } ?? .null }
        func layerArray(_ ls: [LayerErrorAccumulator.Layer]) -> JSONValue {
            .array(ls.map { l in
                .object([("layer", .int(l.layer)), ("rel_error", jsonNumber(l.relError)),
                         ("mean_token_rel_error", jsonNumber(l.meanTokenRelError)),
                         ("max_token_rel_error", jsonNumber(l.maxTokenRelError))])
            })
        }
        var layerEntries: [(String, JSONValue)] = []
        if let ls = layers {
            layerEntries += [("inputs", .string("text")), ("positions", .int(layerPositions)), ("width", .int(decoderWidth)),
                             ("decoder", layerArray(ls))]
        }
        if let v = visionLayers {
            layerEntries.append(("vision", .object([("inputs", .string("docvqa images")), ("images", .int(visionImages)),
                                                    ("patches", .int(visionPatches)), ("width", .int(visionWidth)),
                                                    ("layers", layerArray(v))])))
        }
        if let c = connector {
            layerEntries.append(("connector", .object([("inputs", .string("docvqa images")), ("images", .int(visionImages)),
                                                       ("tokens", .int(connectorTokens)), ("width", .int(decoderWidth)),
                                                       ("rel_error", jsonNumber(c.relError)),
                                                       ("mean_token_rel_error", jsonNumber(c.meanTokenRelError)),
                                                       ("max_token_rel_error", jsonNumber(c.maxTokenRelError))])))
        }
        let layerJSON: JSONValue = layerEntries.isEmpty ? .null : .object(layerEntries)
        var entries: [(String, JSONValue)] = [
            ("format", .string("i2q-verify")), ("format_version", .int(Self.formatVersion)),
            ("i2q_version", .string(I2QVersion.string)),
            ("candidate", candidateModel?.json ?? .object([("path", .string(candidate))])),
            ("reference", referenceModel?.json ?? .object([("path", .string(reference))])),
            ("model_type", .string(modelType)),
            ("text", text?.json ?? .null),
            ("layers", layerJSON),
            ("docvqa", docvqa?.json ?? .null),
            ("thresholds", .object([("max_ppl_ratio", opt(options.maxPPLRatio)), ("max_kld", opt(options.maxKLD)),
                                    ("min_anls", opt(options.minANLS))])),
            ("passed", shard == nil ? .bool(passed) : .null), ("failures", .array(failures.map { .string($0) })),
            ("seconds", jsonNumber(seconds)),
        ]
        if let m = mergedFrom { entries.append(("merged_from", .array(m.map { .string($0) }))) }
        if let sh = shard { entries.append(("shard", sh.json(docvqa: docvqa))) }
        return .object(entries)
    }

    /// The JSON report as text (2-space indentation).
    public func jsonString(indent: Int? = 2) -> String { JSONWriter.string(json, indent: indent, asciiOnly: false) }
}

/// A model opened for verification: a text model, or a vision-language one (whose text decoder
/// serves the text statistics), as `RuntimeRegistry` opens it.
public final class VerifyModel: @unchecked Sendable {
    public let path: String
    public let source: any ModelSource
    public let visionLanguage: (any VisionLanguageSession)?
    public let text: TextSession

    public init(path: String) throws {
        self.path = path
        source = try openModel(path)
        let m = try RuntimeRegistry.open(source)
        visionLanguage = m.visionLanguage
        text = m.text
    }

    var kind: String { source.config.modelType }
    var vocab: Int { text.decoder.config.vocabSize }
}
