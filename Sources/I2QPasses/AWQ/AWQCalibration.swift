import Foundation
import I2QCore
import I2QEval
import I2QFormats
import I2QImage
import I2QRuntime

/// Where AWQ's calibration inputs come from.
public struct CalibrationOptions: Sendable, Equatable {
    /// A UTF-8 text file, or a DocVQA-format directory (a JSON file with `data: [{questionId,
    /// question, image, answers}]` beside the images).
    public var path: String
    /// Sequences to use at most (AutoAWQ: 128).
    public var samples = 128
    /// Tokens per sequence (AutoAWQ: 512): text is cut into blocks of this length; DocVQA prompts
    /// longer than this are truncated.
    public var seqLen = 512
    /// Seed of the sample selection.
    public var seed: UInt64 = 0
    /// Idefics2 with a DocVQA set: split each page into 4 crops + the page (true) or not (false);
    /// nil: as the model's processor config says (`do_image_splitting`).
    public var imageSplitting: Bool? = nil
    public init(path: String) { self.path = path }
}

public enum CalibrationError: I2QError {
    case tooShort(path: String, tokens: Int, seqLen: Int)
    case noText(path: String)
    case empty(path: String)

    public var description: String {
        switch self {
        case let .tooShort(p, t, s):
            return "\(p): the calibration text has \(t) tokens, fewer than one block of --seq-len \(s); use a longer text or a smaller --seq-len"
        case let .noText(p):
            return "\(p): this DocVQA set has no document_text for a text-only model; calibrate a text model on a text file (--calibration FILE.txt)"
        case let .empty(p): return "\(p): no calibration samples; check --samples and the set"
        }
    }
}

/// The calibration batch at the input of the first decoder layer: token embeddings (and, for
/// Idefics2 with a DocVQA set, the image features merged in at the `<image>` positions by the
/// vision tower and connector, exactly as at inference).
public struct CalibrationInputs: Sendable {
    public let batch: CalibrationBatch
    /// [tokens, hidden] f32, sequence after sequence.
    public let hidden: [Float]
    /// A line for the log: what the batch holds.
    public let summary: String
    /// Token ids of each sequence (for reports and peers).
    public let ids: [[Int]]
}

public enum CalibrationData {
    /// AutoAWQ-style text calibration: the whole file tokenized once (BOS as the tokenizer adds it),
    /// cut into consecutive blocks of `seqLen` tokens (a last partial block is dropped); when there
    /// are more blocks than `samples`, `samples` of them chosen by a seeded Fisher–Yates shuffle
    /// (SplitMix64, as DocVQASet.select), kept in file order.
    public static func textBlocks(ids: [Int], seqLen: Int, samples: Int, seed: UInt64) -> [[Int]] {
        EvalRandom.select(samples, of: ids.count / seqLen, seed: seed).map { Array(ids[($0 * seqLen)..<(($0 + 1) * seqLen)]) }
    }

    /// A text model's calibration prompt of one DocVQA question with its first answer (issue 7): the
    /// same turn format a vision-language model gets, without the image —
    /// `User:QUESTION<end_of_utterance>\nAssistant: ANSWER` (kept as it was: outputs are fixed by it).
    public static func textPrompt(_ item: DocVQAItem) -> String {
        "User:" + item.question + "<end_of_utterance>" + "\nAssistant: " + (item.answers.first ?? "")
    }

    /// `log` receives a progress line per DocVQA sample run through the vision tower (Idefics2).
    public static func load(source: any ModelSource, options o: CalibrationOptions,
                            log: @Sendable (String) -> Void = { _ in }) throws -> CalibrationInputs {
        // The batch's hidden states live in memory for the whole run (plus one layer's activations):
        // refuse a batch that cannot fit before tokenizing anything.
        let h = source.config.textConfig.hiddenSize
        try MemoryBudget.check(Double(o.samples) * Double(o.seqLen) * Double(h) * 4 * 2,
                               for: "AWQ calibration (--samples \(o.samples) × --seq-len \(o.seqLen) tokens × hidden \(h), twice)")
        if FileSystem.isDirectory(o.path) { return try loadDocVQA(source: source, options: o, log: log) }
        let bytes = try FileSystem.readFile(o.path)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ConfigError.invalid(path: o.path, detail: "is neither a DocVQA-format directory nor valid UTF-8 text")
        }
        let (tokenizerSession, decoder) = try sessions(source)
        let ids = tokenizerSession.tokenizer.encode(text)
        let blocks = textBlocks(ids: ids, seqLen: o.seqLen, samples: o.samples, seed: o.seed)
        guard !blocks.isEmpty else { throw CalibrationError.tooShort(path: o.path, tokens: ids.count, seqLen: o.seqLen) }
        var hidden: [Float] = []
        hidden.reserveCapacity(blocks.count * o.seqLen * decoder.config.hiddenSize)
        for b in blocks { hidden += try decoder.embed(b) }
        return CalibrationInputs(batch: CalibrationBatch(lengths: blocks.map(\.count)), hidden: hidden,
                                 summary: "\(blocks.count) text blocks of \(o.seqLen) tokens from \(o.path) (\(ids.count) tokens in the file)",
                                 ids: blocks)
    }

    static func sessions(_ source: any ModelSource) throws -> (TextSession, TextDecoder) {
        let s = try RuntimeRegistry.open(source).text
        return (s, s.decoder)
    }

    /// DocVQA calibration: for Idefics2, each selected question as the chat prompt with its page
    /// image through the processor, vision tower and connector (image splitting as the model's
    /// processor config says); for a text model, the page's `document_text` followed by the prompt
    /// without the image. Sequences longer than `seqLen` are truncated.
    static func loadDocVQA(source: any ModelSource, options o: CalibrationOptions, log: @Sendable (String) -> Void) throws -> CalibrationInputs {
        let set = try DocVQASet.load(directory: o.path)
        let items = set.select(samples: o.samples, seed: o.seed)
        guard !items.isEmpty else { throw CalibrationError.empty(path: o.path) }
        var hidden: [Float] = []
        var lengths: [Int] = [], allIds: [[Int]] = []
        var imageTokens = 0
        if let s = try RuntimeRegistry.open(source).visionLanguage {
            if let split = o.imageSplitting { s.imageSplitting = split }
            let h = s.text.decoder.config.hiddenSize
            let start = ProgressBar.now()
            for (i, item) in items.enumerated() {
                let prompt = try s.chatPrompt(question: item.question, image: true, answer: item.answers.first ?? "")
                var (ids, emb) = try s.promptEmbeddings(prompt: prompt, imagePaths: [item.imagePath])
                if ids.count > o.seqLen { ids = Array(ids.prefix(o.seqLen)); emb = Array(emb.prefix(o.seqLen * h)) }
                imageTokens += ids.filter(s.isImageToken).count
                hidden += emb; lengths.append(ids.count); allIds.append(ids)
                let el = ProgressBar.now() - start
                log("calibration: sample \(i + 1)/\(items.count) (\(FileSystem.basename(item.imagePath)), \(ids.count) tokens); ETA \(formatSeconds(el / Double(i + 1) * Double(items.count - i - 1)))")
            }
        } else {
            let (ts, dec) = try sessions(source)
            for item in items {
                guard let doc = item.documentText else { throw CalibrationError.noText(path: set.file) }
                var ids = ts.tokenizer.encode(doc + "\n" + textPrompt(item))
                if ids.count > o.seqLen { ids = Array(ids.prefix(o.seqLen)) }
                hidden += try dec.embed(ids); lengths.append(ids.count); allIds.append(ids)
            }
        }
        let total = lengths.reduce(0, +)
        return CalibrationInputs(batch: CalibrationBatch(lengths: lengths), hidden: hidden,
                                 summary: "\(items.count) DocVQA questions from \(set.file) (\(total) tokens, \(imageTokens) of them image tokens)",
                                 ids: allIds)
    }
}
