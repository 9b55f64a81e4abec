import I2QCore
import I2QFormats
import I2QTokenizer

/// A text model ready to run: decoder, tokenizer, and generation settings read from the model's
/// files (generation_config.json: eos → stop tokens, bad_words_ids → banned tokens).
public final class TextSession: @unchecked Sendable {
    public let source: any ModelSource
    public let decoder: TextDecoder
    public let tokenizer: Tokenizer
    public let stopTokens: Set<Int>
    public let bannedTokens: Set<Int>

    public convenience init(source: any ModelSource) throws {
        try self.init(source: source, decoder: try TextDecoder(source: source))
    }

    /// A session around an existing decoder (Idefics2 shares its text model with the session).
    public init(source: any ModelSource, decoder: TextDecoder) throws {
        self.source = source
        self.decoder = decoder
        let files = try source.auxiliaryFiles()
        func file(_ n: String) -> [UInt8]? { files.first { $0.name == n }?.bytes }
        guard let tj = file("tokenizer.json") else {
            throw ConfigError.missingFile(path: source.path + "/tokenizer.json", why: "the runtime needs the model's tokenizer")
        }
        tokenizer = try Tokenizer(tokenizerJSON: tj, tokenizerConfigJSON: file("tokenizer_config.json"), source: source.path)
        let gen = try file("generation_config.json").map { try GenerationConfig.decode($0, path: source.path + "/generation_config.json") }
        var stops = Set(gen?.eosTokenIds ?? [])
        if stops.isEmpty { stops = Set(decoder.config.eosTokenIds) }
        if stops.isEmpty, let e = tokenizer.eosTokenId { stops = [e] }
        stopTokens = stops
        bannedTokens = Set((gen?.badWordsIds ?? []).compactMap { $0.count == 1 ? $0[0] : nil })
    }

    public struct RunResult: Sendable {
        public let inputIds: [Int]
        public let generatedIds: [Int]
        public let text: String
        /// [inputIds.count, vocab] when requested.
        public let promptLogits: [Float]?
        public let prefillSeconds: Double
        public let decodeSeconds: Double
    }

    /// Tokenizes `prompt` (BOS as the tokenizer config says; none with `addSpecialTokens` false, as
    /// for a rendered chat template: `ChatPrompt`), runs it, and generates greedily.
    public func run(prompt: String, maxNewTokens: Int, wantLogits: Bool, ignoreStopTokens: Bool = false,
                    addSpecialTokens: Bool = true, onToken: (Int) -> Void = { _ in }) throws -> RunResult {
        let ids = tokenizer.encode(prompt, addSpecialTokens: addSpecialTokens)
        try decoder.checkContext(ids.count + maxNewTokens + 1)
        return try complete(ids: ids, embeddings: try decoder.embed(ids), maxNewTokens: maxNewTokens, wantLogits: wantLogits,
                            stopTokens: ignoreStopTokens ? [] : stopTokens, bannedTokens: bannedTokens, onToken: onToken)
    }

    /// The part every model shares: prefill `embeddings` (the prompt `ids`, images already merged
    /// for Idefics2), optional prompt logits, greedy generation, and the answer text (end tokens dropped).
    /// `endTokens` (default: this session's stop tokens) are left out of the text;
    /// `extraPrefillSeconds` is work done before (e.g. the vision encoder), counted as prefill.
    public func complete(ids: [Int], embeddings: [Float], maxNewTokens: Int, wantLogits: Bool,
                         stopTokens stops: Set<Int>, bannedTokens banned: Set<Int>, endTokens: Set<Int>? = nil,
                         extraPrefillSeconds: Double = 0,
                         onToken: (Int) -> Void = { _ in }) throws -> RunResult {
        let cache = try decoder.makeCache(capacity: ids.count + maxNewTokens + 1)
        if wantLogits { try MemoryBudget.check(Double(ids.count) * Double(decoder.config.vocabSize) * 4, for: "the logits of a \(ids.count)-token prompt") }
        let t0 = ProgressBar.now()
        let hidden = try decoder.forward(embeddings: embeddings, cache: cache)
        let prefill = ProgressBar.now() - t0 + extraPrefillSeconds
        let logits = wantLogits ? try decoder.logits(hidden, rows: 0..<ids.count) : nil
        var generated: [Int] = []
        let t1 = ProgressBar.now()
        if maxNewTokens > 0 {
            var opts = GreedyOptions()
            opts.maxNewTokens = maxNewTokens
            opts.stopTokens = stops
            opts.bannedTokens = banned
            generated = try Greedy.continueFrom(decoder, hidden: hidden, options: opts, cache: cache, onToken: onToken)
        }
        let decode = ProgressBar.now() - t1
        let ends = endTokens ?? stopTokens  // never shown in the answer, even with --ignore-eos
        return RunResult(inputIds: ids, generatedIds: generated,
                         text: tokenizer.decode(generated.filter { !ends.contains($0) }, skipSpecialTokens: true),
                         promptLogits: logits, prefillSeconds: prefill, decodeSeconds: decode)
    }
}
