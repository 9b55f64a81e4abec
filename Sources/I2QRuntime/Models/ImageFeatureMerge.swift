import I2QCore

/// transformers' `inputs_merger` (Idefics2, Idefics3/SmolVLM): the prompt's token embeddings with the
/// image features written, in order, at the image-token positions. Shared by the vision-language models.
public enum ImageFeatureMerge {
    public enum MergeError: I2QError {
        case count(imageTokens: Int, features: Int)
        public var description: String {
            switch self {
            case let .count(t, f):
                return "the prompt has \(t) <image> tokens but the images give \(f) feature rows; each <image> in the text needs one image"
            }
        }
    }

    /// emb [ids, hidden] with features [imageTokens, hidden] at the positions where ids == imageTokenId.
    public static func merge(_ emb: inout [Float], ids: [Int], imageTokenId: Int, hidden h: Int, features: [Float]) throws {
        let positions = ids.indices.filter { ids[$0] == imageTokenId }
        guard positions.count * h == features.count else {
            throw MergeError.count(imageTokens: positions.count, features: features.count / h)
        }
        for (k, pos) in positions.enumerated() {
            for c in 0..<h { emb[pos * h + c] = features[k * h + c] }
        }
    }
}
