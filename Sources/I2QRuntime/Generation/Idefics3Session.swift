import Foundation
import I2QCore
import I2QFormats
import I2QImage
import I2QTokenizer

/// The prompt expansion of transformers 5.24's `Idefics3Processor` / `SmolVLMProcessor`
/// (`replace_image_token`, `get_image_prompt_string`): the i-th `<image>` becomes, for an image split
/// into rows × cols tiles, `<fake_token_around_image><row_r_col_c>` + `<image>`×seq per tile, "\n"
/// after each row, then "\n<fake_token_around_image><global-img>" + `<image>`×seq +
/// `<fake_token_around_image>`; an unsplit image (0 × 0) only the global part without the "\n".
public enum Idefics3Prompt {
    public static let fake = "<fake_token_around_image>"
    public static let image = "<image>"
    public static let global = "<global-img>"
    public static let endOfUtterance = "<end_of_utterance>"

    public static func replacement(rows: Int, cols: Int, imageSeqLen: Int) -> String {
        let tokens = String(repeating: image, count: imageSeqLen)
        let globalPart = fake + global + tokens + fake
        guard rows > 0 || cols > 0 else { return globalPart }
        var s = ""
        for r in 1...max(rows, 1) {
            for c in 1...max(cols, 1) { s += fake + "<row_\(r)_col_\(c)>" + tokens }
            s += "\n"
        }
        return s + "\n" + globalPart
    }

    /// `text` with its `<image>` placeholders replaced in order (`grids.count` must equal their number).
    public static func expand(_ text: String, grids: [(rows: Int, cols: Int)], imageSeqLen: Int) -> String {
        var out = "", rest = Substring(text), k = 0
        while let r = rest.range(of: image), k < grids.count {
            out += rest[..<r.lowerBound]
            out += replacement(rows: grids[k].rows, cols: grids[k].cols, imageSeqLen: imageSeqLen)
            rest = rest[r.upperBound...]
            k += 1
        }
        return out + rest
    }
}

/// Idefics3 / SmolVLM ready to answer questions about images (the `VisionLanguageSession` of model
/// types "idefics3" and "smolvlm"): model, tokenizer, processor settings (processor_config.json /
/// preprocessor_config.json over Idefics3ImageProcessor's defaults), chat template, generation settings.
public final class Idefics3Session: @unchecked Sendable {
    public let model: Idefics3Model
    public let text: TextSession
    public var processorConfig: ProcessorConfig
    public let chat: ChatPrompt?
    /// The tile grids of the images behind the latest `imageFeatures(paths:)` (for `run(prompt:features:)`).
    private var lastGrids: [(rows: Int, cols: Int)] = []

    public init(source: any ModelSource) throws {
        model = try Idefics3Model(source: source)
        text = try TextSession(source: source, decoder: model.text)
        let files = try source.auxiliaryFiles()
        processorConfig = try ProcessorConfig.load(source: source.path, defaults: .idefics3) { n in files.first { $0.name == n }?.bytes } ?? .idefics3
        chat = try ChatPrompt.load(source, tokenizer: text.tokenizer)
        let seq = model.config.imageSeqLen
        guard processorConfig.imageSeqLen == seq else {
            throw ConfigError.invalid(path: source.path + "/processor_config.json",
                                      detail: "image_seq_len \(processorConfig.imageSeqLen) differs from (image_size/patch_size)²/scale_factor² = \(seq) of config.json; each tile gives \(seq) tokens, so set image_seq_len to \(seq)")
        }
        _ = try Idefics3ImageProcessor(settings: processorConfig)
    }

    /// generation_config's end tokens plus `<end_of_utterance>`.
    public var stopTokens: Set<Int> {
        text.stopTokens.union([text.tokenizer.tokenToId(Idefics3Prompt.endOfUtterance)].compactMap { $0 })
    }

    /// generation_config's bad words plus the image tokens (as for Idefics2: never emitted).
    public var bannedTokens: Set<Int> {
        text.bannedTokens.union([model.config.imageTokenId, text.tokenizer.tokenToId(Idefics3Prompt.fake) ?? -1].filter { $0 >= 0 })
    }

    /// The processor's outputs for one sample's decoded images, with each image's tile grid.
    public func process(_ images: [RGBImage]) throws -> (images: ProcessedImages, grids: [(rows: Int, cols: Int)]) {
        try Idefics3ImageProcessor(settings: processorConfig).process(images)
    }

    /// The prompt as the processor expands it for images with these grids, tokenized.
    public func inputIds(prompt: String, grids: [(rows: Int, cols: Int)]) -> [Int] {
        text.tokenizer.encode(Idefics3Prompt.expand(prompt, grids: grids, imageSeqLen: processorConfig.imageSeqLen))
    }

    /// One model input per tile.
    public static func inputs(_ p: ProcessedImages) -> [VisionInput] {
        let (H, W) = (p.height, p.width)
        return (0..<p.maxImages).map { i in
            VisionInput(pixels: Array(p.pixelValues[(i * 3 * H * W)..<((i + 1) * 3 * H * W)]),
                        mask: p.pixelAttentionMask[(i * H * W)..<((i + 1) * H * W)].map { $0 != 0 }, height: H, width: W)
        }
    }

    func processed(paths: [String]) throws -> (inputs: [VisionInput], grids: [(rows: Int, cols: Int)]) {
        guard !paths.isEmpty else { return ([], []) }
        let (p, grids) = try process(try paths.map { try ImageDecoder.decodeRGB(path: $0) })
        return (Self.inputs(p), grids)
    }

    public struct ImageCountError: I2QError {
        public let placeholders: Int, images: Int
        public var description: String {
            "the prompt has \(placeholders) <image> placeholder(s) but \(images) --image file(s) were given; put one <image> where each image goes"
        }
    }

    func checkPlaceholders(_ prompt: String, images: Int) throws {
        var n = 0, rest = Substring(prompt)
        while let r = rest.range(of: Idefics3Prompt.image) { n += 1; rest = rest[r.upperBound...] }
        guard n == images else { throw ImageCountError(placeholders: n, images: images) }
    }
}

extension Idefics3Session: VisionLanguageSession {
    public var imageSplitting: Bool {
        get { processorConfig.doImageSplitting }
        set { processorConfig.doImageSplitting = newValue }
    }

    public func limitLongestEdge(_ pixels: Int) { processorConfig.longestEdge = pixels }

    /// One user turn through the chat template, or SmolVLM's built-in format
    /// (`<|im_start|>User:<image>QUESTION<end_of_utterance>\nAssistant:`) when there is none.
    public func chatPrompt(question: String, image: Bool, answer: String?) throws -> String {
        let turn = try chat?.userTurn(question, images: image ? 1 : 0, forProcessor: true)
            ?? "<|im_start|>User:" + (image ? Idefics3Prompt.image : " ") + question + Idefics3Prompt.endOfUtterance + "\nAssistant:"
        return turn + (answer.map { " " + $0 } ?? "")
    }

    public func imageFeatures(paths: [String]) throws -> [Float] {
        let (inputs, grids) = try processed(paths: paths)
        lastGrids = grids
        return inputs.isEmpty ? [] : try model.imageFeatures(inputs)
    }

    public func run(prompt: String, features: [Float], maxNewTokens: Int) throws -> TextSession.RunResult {
        let ids = inputIds(prompt: prompt, grids: features.isEmpty ? [] : lastGrids)
        try model.text.checkContext(ids.count + maxNewTokens + 1)
        let emb = try model.embeddings(ids: ids, features: features)
        return try text.complete(ids: ids, embeddings: emb, maxNewTokens: maxNewTokens, wantLogits: false,
                                 stopTokens: stopTokens, bannedTokens: bannedTokens, endTokens: stopTokens)
    }

    public func run(prompt: String, images paths: [String], maxNewTokens: Int, wantLogits: Bool,
                    ignoreStopTokens: Bool = false) throws -> TextSession.RunResult {
        try checkPlaceholders(prompt, images: paths.count)
        let t0 = ProgressBar.now()
        let (inputs, grids) = try processed(paths: paths)
        let ids = inputIds(prompt: prompt, grids: grids)
        try model.text.checkContext(ids.count + maxNewTokens + 1)
        let emb = try model.embeddings(ids: ids, features: inputs.isEmpty ? [] : try model.imageFeatures(inputs))
        return try text.complete(ids: ids, embeddings: emb, maxNewTokens: maxNewTokens, wantLogits: wantLogits,
                                 stopTokens: ignoreStopTokens ? [] : stopTokens, bannedTokens: bannedTokens,
                                 endTokens: stopTokens, extraPrefillSeconds: ProgressBar.now() - t0)
    }

    public func continuationLogits(prompt: String, features: [Float], continuation: [Int]) throws -> [Float] {
        let ids = inputIds(prompt: prompt, grids: features.isEmpty ? [] : lastGrids)
        guard !continuation.isEmpty else { return [] }
        let all = ids + continuation.dropLast()
        let emb = try model.embeddings(ids: all, features: features)
        let hidden = try model.text.forward(embeddings: emb, cache: try model.text.makeCache(capacity: all.count + 1))
        return try model.text.logits(hidden, rows: (ids.count - 1)..<all.count)
    }

    public func promptEmbeddings(prompt: String, imagePaths: [String]) throws -> (ids: [Int], embeddings: [Float]) {
        let (inputs, grids) = try processed(paths: imagePaths)
        let ids = inputIds(prompt: prompt, grids: grids)
        return (ids, try model.embeddings(ids: ids, features: inputs.isEmpty ? [] : try model.imageFeatures(inputs)))
    }

    public func isImageToken(_ id: Int) -> Bool { id == model.config.imageTokenId }
    public var visionLayers: Int { model.config.vision.numHiddenLayers }
    public var visionWidth: Int { model.config.vision.hiddenSize }
    public func visionInputs(paths: [String]) throws -> [VisionInput] { try processed(paths: paths).inputs }

    public func encodeVision(_ input: VisionInput, onLayer: (Int, UnsafeBufferPointer<Float>, [Bool]) throws -> Void) throws {
        _ = try withoutActuallyEscaping(onLayer) { f in
            try model.vision.encode(pixels: input.pixels, mask: input.mask, height: input.height, width: input.width, onLayer: f)
        }
    }
}
