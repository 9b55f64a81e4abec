import I2QCore

/// Greedy decoding as transformers' `generate(do_sample=False)`: argmax (first index on ties) over
/// the last position's logits, with "bad words" (single-token `bad_words_ids`) masked to -inf, until
/// a stop token is produced (it is kept in the output) or `maxNewTokens` are generated.
public struct GreedyOptions: Sendable {
    public var maxNewTokens = 32
    public var stopTokens: Set<Int> = []
    public var bannedTokens: Set<Int> = []
    public init() {}
}

public enum Greedy {
    public static func argmax(_ logits: UnsafeBufferPointer<Float>, banned: Set<Int>) -> Int {
        var best = -1
        var bestValue = -Float.infinity
        for i in 0..<logits.count where !banned.contains(i) {
            let v = logits[i]
            if best < 0 || v > bestValue { best = i; bestValue = v }
        }
        return best
    }

    /// Generates after `promptEmbeddings` ([t, hidden], already containing the prompt) with the decoder.
    /// `onToken` sees each new id as it is produced.
    public static func generate(_ decoder: TextDecoder, promptEmbeddings: [Float], options: GreedyOptions,
                                cache: KVCache, onToken: (Int) -> Void = { _ in }) throws -> [Int] {
        let hidden = try decoder.forward(embeddings: promptEmbeddings, cache: cache)
        return try continueFrom(decoder, hidden: hidden, options: options, cache: cache, onToken: onToken)
    }

    /// Generates from the final hidden states of an already-run prompt.
    public static func continueFrom(_ decoder: TextDecoder, hidden prompt: [Float], options: GreedyOptions,
                                    cache: KVCache, onToken: (Int) -> Void = { _ in }) throws -> [Int] {
        let h = decoder.config.hiddenSize
        var hidden = prompt
        var out: [Int] = []
        var rows = (hidden.count / h - 1)..<(hidden.count / h)
        while out.count < options.maxNewTokens {
            let logits = try decoder.logits(hidden, rows: rows)
            let next = logits.withUnsafeBufferPointer { argmax($0, banned: options.bannedTokens) }
            out.append(next)
            onToken(next)
            if options.stopTokens.contains(next) || out.count == options.maxNewTokens { break }
            hidden = try decoder.forward(embeddings: try decoder.embed([next]), cache: cache)
            rows = 0..<1
        }
        return out
    }
}
