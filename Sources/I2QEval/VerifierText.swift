import Foundation
import I2QCore
import I2QFormats
import I2QRuntime
import I2QTokenizer

/// The text half of `i2q verify`: both decoders over the same windows.
extension Verifier {
    /// Both decoders over the same windows of `ids` (as Perplexity: consecutive windows of `ctx`, a
    /// last partial window dropped, positions 0..ctx−2 scored against the next token). Memory per
    /// window: two [ctx, hidden] hidden states, two [64, vocab] logit blocks and, with `layerwise`,
    /// the base's [layers, ctx, hidden] layer outputs.
    /// `windows`: a slice of them only (`--shard`); `tokens` are the per-position comparisons in order.
    public static func compareText(base: TextDecoder, candidate: TextDecoder, ids: [Int], ctx: Int, layerwise: Bool,
                                   windows range: Range<Int>? = nil, progress: ProgressBar? = nil)
        throws -> (stats: TokenStatistics, layers: LayerErrorAccumulator?, seconds: Double, tokens: [TokenComparison]) {
        let windows = ids.count / ctx
        guard windows > 0, ctx >= 3 else { throw PerplexityError.tooShort(tokens: ids.count, ctx: ctx) }
        let range = range ?? 0..<windows
        precondition(range.lowerBound >= 0 && range.upperBound <= windows && !range.isEmpty)
        let t0 = ProgressBar.now()
        let h = base.config.hiddenSize, vocab = base.config.vocabSize, nl = base.config.numHiddenLayers
        let layerwise = layerwise && candidate.config.numHiddenLayers == nl && candidate.config.hiddenSize == h
        var acc = layerwise ? LayerErrorAccumulator(layers: nl) : nil
        var baseLayers = [Float](repeating: 0, count: layerwise ? nl * ctx * h : 0)  // [layers, ctx, hidden] f32
        let cb = try base.makeCache(capacity: ctx), cc = try candidate.makeCache(capacity: ctx)
        var tokens: [TokenComparison] = []
        tokens.reserveCapacity(range.count * (ctx - 1))
        for w in range {
            let win = Array(ids[(w * ctx)..<((w + 1) * ctx)])
            cb.reset(); cc.reset()
            let hb: [Float]  // [ctx, hidden]
            if layerwise {
                hb = try baseLayers.withUnsafeMutableBufferPointer { bl in
                    let dst = bl.baseAddress!
                    return try base.forward(embeddings: try base.embed(win), cache: cb) { i, x in
                        (dst + i * ctx * h).update(from: x.baseAddress!, count: ctx * h)
                    }
                }
            } else {
                hb = try base.forward(embeddings: try base.embed(win), cache: cb)
            }
            let hc: [Float]  // [ctx, hidden]
            if layerwise {
                hc = try baseLayers.withUnsafeBufferPointer { bl in
                    let src = bl.baseAddress!
                    return try candidate.forward(embeddings: try candidate.embed(win), cache: cc) { i, x in
                        acc!.add(layer: i, base: src + i * ctx * h, candidate: x.baseAddress!, rows: ctx, width: h)
                    }
                }
            } else {
                hc = try candidate.forward(embeddings: try candidate.embed(win), cache: cc)
            }
            let block = 64
            var r = 0
            while r < ctx - 1 {
                let n = min(block, ctx - 1 - r)
                let lb = try base.logits(hb, rows: r..<(r + n))       // [n, vocab]
                let lc = try candidate.logits(hc, rows: r..<(r + n))  // [n, vocab]
                let targets = Array(win[(r + 1)..<(r + n + 1)])
                lb.withUnsafeBufferPointer { b in
                    lc.withUnsafeBufferPointer { c in
                        tokens += TokenComparison.compareRows(base: b.baseAddress!, candidate: c.baseAddress!, rows: n, vocab: vocab, targets: targets)
                    }
                }
                r += n
            }
            progress?.advance(1)
        }
        return (TokenStatistics(tokens), acc, ProgressBar.now() - t0, tokens)
    }

    /// A fixed worked example shown before each question to text models (two-shot): small models
    /// otherwise answer in full sentences, which ANLS scores 0.
    static let exampleDocument = "ACME Tools\nOrder number: 5521\nDate: March 3, 2021\nTotal: $41.20"
    static let examples: [(question: String, answer: String)] = [("What is the order number?", "5521"), ("What is the total?", "$41.20")]
    static let answerInstruction = "Answer with words from the document only."
}
