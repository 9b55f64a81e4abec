import Foundation
import I2QCore
import I2QRuntime
import I2QTokenizer

/// Perplexity as the issue defines it (and as the usual transformers loop computes it): the text is
/// tokenized once (BOS as the tokenizer adds it), cut into consecutive windows of `ctx` tokens (a
/// last partial window is dropped), each window is run from an empty cache and scored on its
/// positions 1..ctx−1; PPL = exp(mean NLL). Log-softmax in double precision over float32 logits
/// (torch: float32 cross-entropy; the difference is ≪ the 0.1 % tolerance).
public struct PerplexityResult: Sendable {
    public let ppl: Double
    public let meanNLL: Double
    public let tokens: Int
    public let windows: Int
    public let ctx: Int
    public let seconds: Double

    public var json: JSONValue {
        .object([("ppl", .number(String(ppl))), ("tokens", .int(tokens)), ("windows", .int(windows)), ("ctx", .int(ctx))])
    }
}

public enum PerplexityError: I2QError {
    case tooShort(tokens: Int, ctx: Int)
    public var description: String {
        switch self {
        case let .tooShort(t, c): return "the text has \(t) tokens, fewer than one window of --ctx \(c); use a longer text or a smaller --ctx"
        }
    }
}

public enum Perplexity {
    public static func evaluate(session: TextSession, text: String, ctx: Int, progress: ProgressBar? = nil) throws -> PerplexityResult {
        try evaluate(session: session, ids: session.tokenizer.encode(text), ctx: ctx, progress: progress)
    }

    /// Perplexity of already tokenized text.
    public static func evaluate(session: TextSession, ids: [Int], ctx: Int, progress: ProgressBar? = nil) throws -> PerplexityResult {
        let dec = session.decoder
        try dec.checkContext(ctx, what: "windows of --ctx \(ctx)")  // before the text length: the fix is a smaller --ctx
        let windows = ids.count / ctx
        guard windows > 0, ctx >= 2 else { throw PerplexityError.tooShort(tokens: ids.count, ctx: ctx) }
        let cache = try dec.makeCache(capacity: ctx)
        let vocab = dec.config.vocabSize
        // Logits in blocks of rows to bound memory (192: whole 12-row tiles of the prefill GEMM).
        let block = 192
        let lse = UnsafeMutablePointer<Double>.allocate(capacity: block)  // [block] log Σ exp of each row
        let logits = UnsafeMutablePointer<Float>.allocate(capacity: block * vocab)  // [block, vocab]
        defer { lse.deallocate(); logits.deallocate() }
        var nll = 0.0
        var scored = 0
        let start = ProgressBar.now()
        for w in 0..<windows {
            let win = Array(ids[(w * ctx)..<((w + 1) * ctx)])
            cache.reset()
            let hidden = try dec.forward(embeddings: try dec.embed(win), cache: cache)
            var r = 0
            while r < ctx - 1 {
                let n = min(block, ctx - 1 - r)
                try dec.logits(hidden, rows: r..<(r + n), into: logits)  // [n, vocab]
                Kernels.logSumExp(logits, rows: n, n: vocab, into: lse)  // [n], rows on the cores
                for i in 0..<n {  // summed in order: the same total for any thread count
                    nll += lse[i] - Double(logits[i * vocab + win[r + i + 1]])
                    scored += 1
                }
                r += n
            }
            progress?.setNote("ppl \(formatFixed(Foundation.exp(nll / Double(max(scored, 1))), 3))")  // running value, as llama-perplexity prints per chunk
            progress?.advance(1)
        }
        let mean = nll / Double(scored)
        return PerplexityResult(ppl: Foundation.exp(mean), meanNLL: mean, tokens: ids.count, windows: windows, ctx: ctx,
                                seconds: ProgressBar.now() - start)
    }
}
