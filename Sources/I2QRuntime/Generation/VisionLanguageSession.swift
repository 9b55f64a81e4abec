import I2QCore
import I2QFormats

/// One image as the vision tower takes it: [3, height, width] f32 pixels (normalised) and its
/// [height, width] mask of real (not padding) pixels.
public struct VisionInput: Sendable {
    public let pixels: [Float]
    public let mask: [Bool]
    public let height: Int
    public let width: Int
    public init(pixels: [Float], mask: [Bool], height: Int, width: Int) {
        self.pixels = pixels; self.mask = mask; self.height = height; self.width = width
    }
}

/// A vision-language model ready to answer questions about images: what `run`, `verify` and AWQ
/// calibration need from any family (Idefics2 today), so none of them branches on one.
public protocol VisionLanguageSession: AnyObject, Sendable {
    /// Tokenizer, generation settings and the text decoder (shared with the vision-language model).
    var text: TextSession { get }
    /// Split images into crops + the original (the processor config's default).
    var imageSplitting: Bool { get set }
    /// Resize images so their longest edge is at most `pixels`.
    func limitLongestEdge(_ pixels: Int)
    /// The model's chat prompt for one question (about one image when `image`), ending where the
    /// assistant's answer starts, or followed by " " + `answer` (calibration): its own chat template
    /// when it has one (`ChatPrompt`), else the family's built-in turn format.
    func chatPrompt(question: String, image: Bool, answer: String?) throws -> String
    /// The model's chat template (nil: none).
    var chat: ChatPrompt? { get }
    /// What the decoder sees at the image positions of image files, decoded and processed as `run` does.
    func imageFeatures(paths: [String]) throws -> [Float]
    /// Greedy answer to `prompt` given precomputed `imageFeatures` (the same as `run(prompt:images:)`).
    func run(prompt: String, features: [Float], maxNewTokens: Int) throws -> TextSession.RunResult
    /// Runs `prompt` with its images and generates greedily.
    func run(prompt: String, images: [String], maxNewTokens: Int, wantLogits: Bool, ignoreStopTokens: Bool) throws -> TextSession.RunResult
    /// Teacher-forced next-token logits [continuation.count, vocab] after `prompt`.
    func continuationLogits(prompt: String, features: [Float], continuation: [Int]) throws -> [Float]
    /// Token ids of `prompt` and its input embeddings with the images merged in ([ids, hidden]) (AWQ calibration).
    func promptEmbeddings(prompt: String, imagePaths: [String]) throws -> (ids: [Int], embeddings: [Float])
    /// Whether a token id stands for image features.
    func isImageToken(_ id: Int) -> Bool
    /// The vision encoder: layer count and width, and the processed inputs of an image file.
    var visionLayers: Int { get }
    var visionWidth: Int { get }
    func visionInputs(paths: [String]) throws -> [VisionInput]
    /// Runs the vision encoder on one input; `onLayer(i, h, realMask)` sees layer i's output
    /// ([patches, width]) and which patches are real.
    func encodeVision(_ input: VisionInput, onLayer: (Int, UnsafeBufferPointer<Float>, [Bool]) throws -> Void) throws
}

/// A model opened for running: a text model or a vision-language one.
public enum LoadedModel {
    case text(TextSession)
    case visionLanguage(any VisionLanguageSession)

    public var text: TextSession {
        switch self {
        case let .text(t): return t
        case let .visionLanguage(v): return v.text
        }
    }

    public var visionLanguage: (any VisionLanguageSession)? {
        if case let .visionLanguage(v) = self { return v }
        return nil
    }
}

/// The runtime's half of the architecture registry (`ModelRegistry` is the format's): the session of
/// each vision-language family by `model_type`; every other model runs as a Llama/Mistral decoder.
/// A new family: its model and session files, and one entry here.
public enum RuntimeRegistry {
    static let visionLanguage: [String: @Sendable (any ModelSource) throws -> any VisionLanguageSession] = [
        "idefics2": { try Idefics2Session(source: $0) },
        "idefics3": { try Idefics3Session(source: $0) },
        "smolvlm": { try Idefics3Session(source: $0) },
    ]

    /// Whether a model of this type takes images.
    public static func takesImages(_ config: ModelConfig) -> Bool { visionLanguage[config.modelType] != nil }

    public static func open(_ source: any ModelSource) throws -> LoadedModel {
        if let make = visionLanguage[source.config.modelType] { return .visionLanguage(try make(source)) }
        return .text(try TextSession(source: source))
    }
}
