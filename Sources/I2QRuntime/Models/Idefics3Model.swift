import I2QCore
import I2QFormats

/// Idefics3 / SmolVLM end to end (transformers 5.24 `Idefics3ForConditionalGeneration`,
/// `SmolVLMForConditionalGeneration`, float32): the SigLIP tower on every real (not all-zero) tile,
/// the connector (pixel shuffle by `scale_factor`, then `modality_projection.proj`, no bias), the
/// features replace the `<image>` token embeddings in order, then the Llama decoder.
/// Tolerance on the tiny goldens: connector outputs and logits max|Δ| ≤ 1e-4·std.
public final class Idefics3Model: @unchecked Sendable {
    public let config: Idefics3Config
    public let vision: VisionTransformer
    /// [textHidden, visionHidden·scale²]
    let proj: Weight
    public let text: TextDecoder
    let ws = Workspace()

    public init(source: any ModelSource) throws {
        guard let c = source.config.as(Idefics3Config.self) else {
            throw ConfigError.unsupportedModelType(path: source.path, modelType: source.config.modelType)
        }
        config = c
        let w = try WeightLoader(source)
        vision = try VisionTransformer(w, config: c.vision)
        proj = try w.weight("model.connector.modality_projection.proj.weight",
                            [c.text.hiddenSize, c.vision.hiddenSize * c.scaleFactor * c.scaleFactor])
        let prefix = ModelArchitecture.idefics3.textPrefix(where: { w.byName[$0] != nil || w.quantized[$0] != nil })
            ?? ModelArchitecture.idefics3.textPrefix
        text = try TextDecoder(source: source, config: c.text, prefix: prefix)
    }

    /// `Idefics3Connector.pixel_shuffle` of one tile's [side², D] hidden states: output token (i, j)
    /// of the (side/s)² grid is the concatenation over a, b < s of input patch (i·s + a, j·s + b),
    /// feature index (a·s + b)·D + d. Returns [(side/s)², D·s²].
    public static func pixelShuffle(_ x: [Float], side: Int, width d: Int, scale s: Int) -> [Float] {
        let o = side / s
        var out = [Float](repeating: 0, count: side * side * d)
        for i in 0..<o { for j in 0..<o { for a in 0..<s { for b in 0..<s {
            let src = ((i * s + a) * side + j * s + b) * d
            let dst = (i * o + j) * d * s * s + (a * s + b) * d
            for c in 0..<d { out[dst + c] = x[src + c] }
        } } } }
        return out
    }

    public typealias MergeError = ImageFeatureMerge.MergeError

    public enum ShapeError: I2QError {
        case tile(height: Int, width: Int, patch: Int, scale: Int)
        public var description: String {
            switch self {
            case let .tile(h, w, p, s):
                return "a \(w)x\(h) image tile does not make a square grid of \(p)-pixel patches whose side is a multiple of scale_factor \(s); the processor's max_image_size must be a multiple of patch_size × scale_factor (processor_config.json)"
            }
        }
    }

    /// Connector outputs of every real tile, concatenated: [tiles·seq, textHidden].
    public func imageFeatures(_ images: [VisionInput]) throws -> [Float] {
        var out: [Float] = []
        let p = config.vision.patchSize, s = config.scaleFactor, d = config.vision.hiddenSize
        for im in images where im.pixels.contains(where: { $0 != 0 }) {
            guard im.height == im.width, im.height % p == 0, (im.height / p) % s == 0 else {
                throw ShapeError.tile(height: im.height, width: im.width, patch: p, scale: s)
            }
            // Tiles are whole (the processor resizes every one to max_image_size²): every patch is
            // real under both transformers' rule (any real pixel) and VisionTransformer's (all real).
            let (hidden, _) = try vision.encode(pixels: im.pixels, mask: im.mask, height: im.height, width: im.width)
            let side = im.height / p
            let shuffled = Self.pixelShuffle(hidden, side: side, width: d, scale: s)
            let n = side * side / (s * s), h = config.text.hiddenSize
            var y = [Float](repeating: 0, count: n * h)  // [n, textHidden]
            try shuffled.withUnsafeBufferPointer { xp in
                try y.withUnsafeMutableBufferPointer { yp in
                    try proj.linear(x: xp.baseAddress!, y: yp.baseAddress!, m: n, scratch: ws.scratch)
                }
            }
            out += y
        }
        return out
    }

    /// Prompt embeddings [ids, textHidden] with `features` merged in at the `<image>` positions, in
    /// order (transformers' `inputs_merger`).
    public func embeddings(ids: [Int], features: [Float]) throws -> [Float] {
        var emb = try text.embed(ids)
        try ImageFeatureMerge.merge(&emb, ids: ids, imageTokenId: config.imageTokenId, hidden: config.text.hiddenSize, features: features)
        return emb
    }
}
