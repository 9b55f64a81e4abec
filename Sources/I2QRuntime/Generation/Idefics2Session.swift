import I2QCore
import I2QFormats
import I2QImage
import I2QTokenizer

/// Idefics2 ready to answer questions about images: model, tokenizer, image processor settings
/// (preprocessor_config.json / processor_config.json) and generation settings.
public final class Idefics2Session: @unchecked Sendable {
    public let model: Idefics2Model
    public let text: TextSession
    public var processorConfig: ProcessorConfig
    /// The model's chat template (chat_template.jinja / .json / tokenizer_config.json), if any.
    public let chat: ChatPrompt?

    public enum SessionError: I2QError {
        case imageCount(placeholders: Int, images: Int)
        public var description: String {
            switch self {
            case let .imageCount(p, i):
                return "the prompt has \(p) <image> placeholder(s) but \(i) --image file(s) were given; put one <image> where each image goes"
            }
        }
    }

    public init(source: any ModelSource) throws {
        model = try Idefics2Model(source: source)
        text = try TextSession(source: source, decoder: model.text)
        let files = try source.auxiliaryFiles()
        processorConfig = try ProcessorConfig.load(source: source.path) { n in files.first { $0.name == n }?.bytes } ?? ProcessorConfig()
        chat = try ChatPrompt.load(source, tokenizer: text.tokenizer)
        let latents = model.config.perceiver.resamplerNLatents
        guard processorConfig.imageSeqLen == latents else {
            throw ConfigError.invalid(path: source.path + "/processor_config.json",
                                      detail: "image_seq_len \(processorConfig.imageSeqLen) differs from the perceiver's resampler_n_latents \(latents) in config.json; each image gives \(latents) tokens, so set image_seq_len to \(latents)")
        }
    }

    /// generation_config's end tokens plus `<end_of_utterance>` (Idefics2 ends a turn with it).
    public var stopTokens: Set<Int> {
        text.stopTokens.union([text.tokenizer.tokenToId(Idefics2Prompt.endOfUtterance)].compactMap { $0 })
    }

    /// generation_config's bad words plus the image tokens, which Idefics2 must never emit.
    public var bannedTokens: Set<Int> {
        text.bannedTokens.union([model.config.imageTokenId, text.tokenizer.tokenToId(Idefics2Prompt.fake) ?? -1].filter { $0 >= 0 })
    }

    var imageSettings: ProcessorConfig { processorConfig }

    /// The processor's outputs for decoded images (one sample).
    public func process(_ images: [RGBImage]) throws -> ProcessedImages {
        try Idefics2ImageProcessor(settings: imageSettings).process([images])
    }

    /// The prompt as Idefics2Processor expands it, tokenized.
    public func inputIds(prompt: String) -> [Int] {
        text.tokenizer.encode(Idefics2Prompt.expand(prompt, imageSeqLen: processorConfig.imageSeqLen,
                                                    splitting: processorConfig.doImageSplitting))
    }

    /// The model inputs of each processed image (padding images included; all-zero ones are skipped later).
    public static func inputs(_ p: ProcessedImages) -> [Idefics2Model.ImageInput] {
        let (H, W) = (p.height, p.width)
        return (0..<p.maxImages).map { i in
            Idefics2Model.ImageInput(pixels: Array(p.pixelValues[(i * 3 * H * W)..<((i + 1) * 3 * H * W)]),
                                     mask: p.pixelAttentionMask[(i * H * W)..<((i + 1) * H * W)].map { $0 != 0 },
                                     height: H, width: W)
        }
    }

    /// The model inputs of image files, decoded and processed as `run` does.
    public func imageInputs(paths: [String]) throws -> [Idefics2Model.ImageInput] {
        Self.inputs(try process(try paths.map { try ImageDecoder.decodeRGB(path: $0) }))
    }

    /// Connector outputs of image files ([images·latents, textHidden]), decoded and processed as `run`
    /// does: what the decoder sees at the `<image>` positions. Callers asking several questions about
    /// one image compute this once.
    public func imageFeatures(paths: [String]) throws -> [Float] {
        paths.isEmpty ? [] : try model.imageFeatures(imageInputs(paths: paths))
    }

    /// Greedy answer to `prompt` given precomputed `imageFeatures(paths:)` (same results as `run`).
    public func run(prompt: String, features: [Float], maxNewTokens: Int) throws -> TextSession.RunResult {
        let ids = inputIds(prompt: prompt)
        try model.text.checkContext(ids.count + maxNewTokens + 1)
        let emb = try model.embeddings(ids: ids, features: features)
        return try text.complete(ids: ids, embeddings: emb, maxNewTokens: maxNewTokens, wantLogits: false,
                                 stopTokens: stopTokens, bannedTokens: bannedTokens, endTokens: stopTokens)
    }

    /// Teacher-forced next-token logits [continuation.count, vocab]: row k is the distribution after
    /// the prompt and continuation[0..<k] (row 0: after the prompt) — what the model would have
    /// predicted at each position of a given answer.
    public func continuationLogits(prompt: String, features: [Float], continuation: [Int]) throws -> [Float] {
        let ids = inputIds(prompt: prompt)
        guard !continuation.isEmpty else { return [] }
        let all = ids + continuation.dropLast()
        let emb = try model.embeddings(ids: all, features: features)
        let cache = try model.text.makeCache(capacity: all.count + 1)
        let hidden = try model.text.forward(embeddings: emb, cache: cache)
        return try model.text.logits(hidden, rows: (ids.count - 1)..<all.count)
    }

    /// Runs `prompt` (with one `<image>` per image) and generates greedily.
    public func run(prompt: String, images paths: [String], maxNewTokens: Int, wantLogits: Bool,
                    ignoreStopTokens: Bool = false) throws -> TextSession.RunResult {
        let placeholders = Idefics2Prompt.imageCount(prompt)
        guard placeholders == paths.count else { throw SessionError.imageCount(placeholders: placeholders, images: paths.count) }
        let ids = inputIds(prompt: prompt)
        try model.text.checkContext(ids.count + maxNewTokens + 1)  // before the vision tower runs
        let t0 = ProgressBar.now()
        var inputs: [Idefics2Model.ImageInput] = []
        if !paths.isEmpty {
            inputs = Self.inputs(try process(try paths.map { try ImageDecoder.decodeRGB(path: $0) }))
        }
        let emb = try model.embeddings(ids: ids, images: inputs)
        // text.decoder is model.text (shared), so this continues with the same weights.
        return try text.complete(ids: ids, embeddings: emb, maxNewTokens: maxNewTokens, wantLogits: wantLogits,
                                 stopTokens: ignoreStopTokens ? [] : stopTokens, bannedTokens: bannedTokens,
                                 endTokens: stopTokens, extraPrefillSeconds: ProgressBar.now() - t0)
    }
}

extension Idefics2Session: VisionLanguageSession {
    public var imageSplitting: Bool {
        get { processorConfig.doImageSplitting }
        set { processorConfig.doImageSplitting = newValue }
    }

    public func limitLongestEdge(_ pixels: Int) {
        processorConfig.longestEdge = pixels
        processorConfig.shortestEdge = min(processorConfig.shortestEdge, pixels)
    }

    /// One user turn through the model's chat template (Idefics2-8b's renders
    /// `User:<image>QUESTION<end_of_utterance>\nAssistant:`), or that built-in format when the model
    /// has no template; with the answer after a space when given.
    public func chatPrompt(question: String, image: Bool, answer: String?) throws -> String {
        let turn = try chat?.userTurn(question, images: image ? 1 : 0, forProcessor: true)
            ?? "User:" + (image ? Idefics2Prompt.image : "") + question + Idefics2Prompt.endOfUtterance + "\nAssistant:"
        return turn + (answer.map { " " + $0 } ?? "")
    }

    public func promptEmbeddings(prompt: String, imagePaths: [String]) throws -> (ids: [Int], embeddings: [Float]) {
        let ids = inputIds(prompt: prompt)
        return (ids, try model.embeddings(ids: ids, images: try imageInputs(paths: imagePaths)))
    }

    public func isImageToken(_ id: Int) -> Bool { id == model.config.imageTokenId }

    public var visionLayers: Int { model.config.vision.numHiddenLayers }
    public var visionWidth: Int { model.config.vision.hiddenSize }
    public func visionInputs(paths: [String]) throws -> [VisionInput] { try imageInputs(paths: paths) }

    public func encodeVision(_ input: VisionInput, onLayer: (Int, UnsafeBufferPointer<Float>, [Bool]) throws -> Void) throws {
        _ = try withoutActuallyEscaping(onLayer) { f in
            try model.vision.encode(pixels: input.pixels, mask: input.mask, height: input.height, width: input.width, onLayer: f)
        }
    }
}
