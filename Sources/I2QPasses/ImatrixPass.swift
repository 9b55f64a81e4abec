import Foundation
import I2QCore
import I2QEval
import I2QFormats
import I2QRuntime

/// `i2q imatrix`: the importance matrix of a model on calibration data, as llama-imatrix computes it
/// (tools/imatrix/imatrix.cpp), through the whole model — for Idefics2 the vision tower, connector
/// and the decoder over text and image tokens — written in llama.cpp's imatrix file format.
public struct ImatrixSettings: Sendable {
    /// A UTF-8 text file or a DocVQA-format directory.
    public var calibration: String
    /// Tokens per chunk (text) / at most per prompt (DocVQA); llama-imatrix's -c (default 512).
    public var ctx = 512
    /// Chunks (text) or questions (DocVQA) to run at most; nil: all (llama-imatrix --chunks -1).
    public var chunks: Int? = nil
    /// DocVQA with a vision-language model: each question with its page image (true) or as text only.
    public var images = true
    /// Seed of the DocVQA question selection when `chunks` is below the set's size (`DocVQASet.select`).
    public var seed: UInt64 = 0
    /// Also collect the lm_head's input (the final normalised hidden states) as `output.weight`, as
    /// llama-imatrix's --process-output does (for a tied embedding too: its role as the output layer).
    public var processOutput = false
    public init(calibration: String) { self.calibration = calibration }
}

public struct ImatrixReport: Sendable {
    public let entries: Int
    /// Chunks (text) or prompts (DocVQA) run.
    public let sequences: Int
    public let tokens: Int
    public let imageTokens: Int
    public let seconds: Double
    public var line: String {
        "\(entries) weights, \(sequences) sequences, \(tokens) tokens (\(imageTokens) image tokens), \(formatFixed(seconds, 1)) s"
    }
}

public enum ImatrixPassError: I2QError {
    case tooShort(path: String, tokens: Int, ctx: Int)
    case noText(path: String)
    case empty(path: String)
    case missingCalibration(path: String)
    public var description: String {
        switch self {
        case let .missingCalibration(p):
            return "\(p): no such file or directory; --calibration takes a UTF-8 text file or a DocVQA-format directory"

        case let .tooShort(p, t, c):
            return "\(p): the text has \(t) tokens; llama-imatrix's rule needs at least 2 × --ctx = \(2 * c). Use a longer text or a smaller --ctx"
        case let .noText(p):
            return "\(p): this DocVQA set has no document_text for a text-only model; give a text model a text file (--calibration FILE.txt)"
        case let .empty(p): return "\(p): no calibration questions; check --chunks and the set"
        }
    }
}

public enum ImatrixPass {
    /// Stages `output` (refused before any work if it exists without `overwrite`, or its folder is
    /// missing), computes, writes `format` under the temporary name and renames it into place.
    public static func run(model path: String, settings: ImatrixSettings, output: String, format: ImatrixFormat,
                           overwrite: Bool, log: @Sendable (String) -> Void = { _ in }) throws -> ImatrixReport {
        guard FileSystem.exists(settings.calibration) else {
            throw ImatrixPassError.missingCalibration(path: settings.calibration)
        }
        let staged = try StagedOutput(finalPath: output, directory: false, overwrite: overwrite, inputs: [path, settings.calibration])
        let (m, report) = try compute(source: try openModel(path), settings: settings, log: log)
        try m.write(to: staged.tempPath, format: format)
        try staged.commit()
        return report
    }

    /// The importance matrix of `source` on `settings.calibration`, named by GGUF tensor names
    /// (`ImatrixNames`). Text: llama-imatrix's chunking — the file tokenized once (special tokens as
    /// the tokenizer adds them), at least 2·ctx tokens, consecutive chunks of ctx tokens from the
    /// start, each run alone from position 0 with its first token replaced by BOS when the tokenizer
    /// adds one; every token of a chunk is collected. DocVQA: each selected question as the model's
    /// chat prompt with its first answer (as AWQ calibration), with its page image for Idefics2
    /// (unless `images` is false), truncated to ctx tokens; text models read `document_text` + the
    /// prompt. Sequences run one at a time through the ordinary runtime forward (memory: one
    /// sequence's activations), the lm_head is not run (llama-imatrix leaves output.weight out
    /// unless --process-output).
    public static func compute(source: any ModelSource, settings o: ImatrixSettings,
                               log: @Sendable (String) -> Void = { _ in }) throws -> (ImportanceMatrix, ImatrixReport) {
        let start = ProgressBar.now()
        let loaded = try RuntimeRegistry.open(source)
        let text = loaded.text, dec = text.decoder, tok = text.tokenizer
        let collector = ImatrixCollector()
        var sequences = 0, tokens = 0, imageTokens = 0
        func forward(_ emb: [Float], _ n: Int) throws {
            let cache = try dec.makeCache(capacity: n)
            let hidden = try LinearInputTap.observing(collector) { try dec.forward(embeddings: emb, cache: cache) }  // [n, hidden]
            if o.processOutput {
                hidden.withUnsafeBufferPointer { collector.observe(weights: [GGUFNames.output.1], x: $0.baseAddress!, rows: n, columns: dec.config.hiddenSize) }
            }
            sequences += 1; tokens += n
        }
        if FileSystem.isDirectory(o.calibration) {
            let set = try DocVQASet.load(directory: o.calibration)
            let items = set.select(samples: o.chunks ?? set.items.count, seed: o.seed)
            guard !items.isEmpty else { throw ImatrixPassError.empty(path: o.calibration) }
            for (i, item) in items.enumerated() {
                var ids: [Int], emb: [Float]
                if let vl = loaded.visionLanguage {
                    let prompt = try vl.chatPrompt(question: item.question, image: o.images, answer: item.answers.first ?? "")
                    if o.images {
                        (ids, emb) = try LinearInputTap.observing(collector) { try vl.promptEmbeddings(prompt: prompt, imagePaths: [item.imagePath]) }
                    } else {
                        ids = tok.encode(prompt)  // no <image>: the processor's expansion is the identity
                        emb = try dec.embed(ids)
                    }
                    imageTokens += ids.prefix(o.ctx).filter(vl.isImageToken).count
                } else {
                    guard let doc = item.documentText else { throw ImatrixPassError.noText(path: set.file) }
                    ids = tok.encode(doc + "\n" + CalibrationData.textPrompt(item))
                    emb = try dec.embed(Array(ids.prefix(o.ctx)))
                }
                let n = min(ids.count, o.ctx)
                try forward(Array(emb.prefix(n * dec.config.hiddenSize)), n)
                log("imatrix: question \(i + 1)/\(items.count), \(n) tokens")
            }
        } else {
            let bytes = try FileSystem.readFile(o.calibration)
            guard let s = String(validating: bytes, as: UTF8.self) else {
                throw ConfigError.invalid(path: o.calibration, detail: "is neither a DocVQA-format directory nor valid UTF-8 text")
            }
            let ids = tok.encode(s)
            guard ids.count >= 2 * o.ctx else { throw ImatrixPassError.tooShort(path: o.calibration, tokens: ids.count, ctx: o.ctx) }
            let bos = tok.bosTokenId.flatMap { b in tok.encode("a").first == b && tok.encode("a", addSpecialTokens: false).first != b ? b : nil }
            let n = min(o.chunks ?? Int.max, ids.count / o.ctx)
            for c in 0..<n {
                var chunk = Array(ids[(c * o.ctx)..<((c + 1) * o.ctx)])
                if let bos { chunk[0] = bos }
                try forward(try dec.embed(chunk), o.ctx)
                log("imatrix: chunk \(c + 1)/\(n)")
            }
        }
        var entries: [String: ImportanceMatrix.Entry] = [:]
        for (name, st) in collector.collected {
            entries[ImatrixNames.name(checkpoint: name, architecture: source.config.architecture)] =
                ImportanceMatrix.Entry(sums: st.sums.map { Float($0) }, counts: [Float(st.rows)])
        }
        let m = ImportanceMatrix(entries: entries, datasets: [o.calibration], chunkCount: sequences, chunkSize: o.ctx)
        return (m, ImatrixReport(entries: entries.count, sequences: sequences, tokens: tokens, imageTokens: imageTokens,
                                 seconds: ProgressBar.now() - start))
    }
}
