import I2QCore
import I2QFormats

/// Idefics2 end to end (transformers 5.24 `Idefics2ForConditionalGeneration`): vision encoder and
/// connector per real image (all-zero padding images are dropped), image features replace the
/// `<image>` token embeddings in order, then the Mistral decoder. Vision runs at prefill only.
public final class Idefics2Model: @unchecked Sendable {
    public let config: Idefics2Config
    public let vision: VisionTransformer
    public let connector: Connector
    public let text: TextDecoder

    public init(source: any ModelSource) throws {
        guard case let .idefics2(c) = source.config else {
            throw ConfigError.unsupportedModelType(path: source.path, modelType: source.config.modelType)
        }
        config = c
        let w = try WeightLoader(source)
        vision = try VisionTransformer(w, config: c.vision)
        connector = try Connector(w, config: c)
        text = try TextDecoder(source: source, config: c.text, prefix: ModelArchitecture.idefics2.textPrefix)
    }

    public typealias ImageInput = VisionInput

    public typealias MergeError = ImageFeatureMerge.MergeError

    /// Connector outputs of every real image, concatenated: [images·latents, textHidden].
    public func imageFeatures(_ images: [ImageInput]) throws -> [Float] {
        var out: [Float] = []
        for im in images where im.pixels.contains(where: { $0 != 0 }) {
            let (hidden, patchMask) = try vision.encode(pixels: im.pixels, mask: im.mask, height: im.height, width: im.width)
            out += try connector(hidden, patchMask: patchMask)
        }
        return out
    }

    /// Prompt embeddings with the image features merged in at the `<image>` positions.
    public func embeddings(ids: [Int], images: [ImageInput]) throws -> [Float] {
        try embeddings(ids: ids, features: try imageFeatures(images))
    }

    /// Prompt embeddings [ids, textHidden] with `features` ([images·latents, textHidden], from
    /// `imageFeatures`) merged in at the `<image>` positions, in order (transformers' `inputs_merger`).
    public func embeddings(ids: [Int], features: [Float]) throws -> [Float] {
        var emb = try text.embed(ids)
        try ImageFeatureMerge.merge(&emb, ids: ids, imageTokenId: config.imageTokenId, hidden: config.text.hiddenSize, features: features)
        return emb
    }
}
