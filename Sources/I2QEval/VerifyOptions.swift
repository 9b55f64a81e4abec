import Foundation
import I2QCore
import I2QFormats
import I2QRuntime
import I2QTokenizer

/// What `i2q verify` (and `--verify` on the passes) measures. At least one of `textPath` /
/// `docvqaDirectory` must be set.
public struct VerifyOptions: Sendable {
    /// UTF-8 text for perplexity / KL statistics (consecutive windows of `ctx` tokens).
    public var textPath: String?
    /// A DocVQA-format directory (DocVQASet).
    public var docvqaDirectory: String?
    public var ctx = 512
    /// DocVQA questions to use (seeded selection); nil = all.
    public var samples: Int?
    public var seed: UInt64 = 0
    /// Greedy answer length limit for DocVQA.
    public var maxNewTokens = 32
    /// Per-layer error over the text windows (needs `textPath`).
    public var layerwise = true
    /// Items listed as the worst in the report.
    public var worstItems = 10
    public var maxPPLRatio: Double?
    public var maxKLD: Double?
    public var minANLS: Double?
    /// Score only this slice of the inputs (`--shard I/N`); the report then carries what `--merge`
    /// needs (VerifyShardData) and checks no limits.
    public var shard: VerifyShard?
    /// Draw progress bars (stderr, terminals only).
    public var showProgress = ProgressBar.stderrIsTerminal
    /// Progress lines (the CLI prints them on stderr).
    public var log: (@Sendable (String) -> Void)?

    public init() {}
}

public enum VerifyError: I2QError {
    case nothingToDo
    case vocabMismatch(candidate: Int, reference: Int)
    case kindMismatch(candidate: String, reference: String)
    case noDocumentText(file: String, questionId: Int)
    case thresholdWithoutData(flag: String, needs: String)
    case badText(path: String)

    public var description: String {
        switch self {
        case .nothingToDo:
            return "nothing to verify: give --text FILE (perplexity and KL divergence) and/or --docvqa DIR (DocVQA answers)"
        case let .vocabMismatch(c, r):
            return "the candidate has a vocabulary of \(c) tokens and the reference \(r); verify compares models of the same tokenizer (a transform of the reference)"
        case let .kindMismatch(c, r):
            return "the candidate is a \(c) model and the reference a \(r) model; compare a model with a transform of itself"
        case let .noDocumentText(f, q):
            return "\(f): questionId \(q) has no \"document_text\"; text models answer from the page text. Use a set that has it (e.g. Tests/Fixtures/docvqa-mini) or an Idefics2 model"
        case let .thresholdWithoutData(flag, needs):
            return "\(flag) needs \(needs)"
        case let .badText(p):
            return "\(p) is not valid UTF-8 text; --text takes a UTF-8 text file"
        }
    }
}
