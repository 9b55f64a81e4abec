import Foundation
import I2QCore
import I2QFormats
import I2QRuntime
import I2QTokenizer


/// One DocVQA question: both models' answers and their scores.
public struct DocVQAItemResult: Sendable {
    public let questionId: Int
    public let question: String
    public let image: String
    public let answers: [String]
    public let candidate: String
    public let base: String
    public let anlsCandidate: Double
    public let anlsBase: Double
    /// ANLS of the candidate's answer against the base's answer as the only ground truth.
    public let agreement: Double
    public let exactCandidate: Bool
    public let exactBase: Bool
    /// Σ over the base answer's tokens (its end token included) of KL(base ‖ candidate), both models
    /// teacher-forced on the base's answer; nil for text models (document_text mode).
    public var kldSum: Double? = nil
    /// Number of those tokens.
    public var answerTokens = 0

    public var json: JSONValue {
        .object([("questionId", .int(questionId)), ("question", .string(question)), ("image", .string(image)),
                 ("answers", .array(answers.map { .string($0) })), ("candidate", .string(candidate)), ("base", .string(base)),
                 ("anls_candidate", jsonNumber(anlsCandidate)), ("anls_base", jsonNumber(anlsBase)),
                 ("agreement", jsonNumber(agreement)),
                 ("exact_candidate", .bool(exactCandidate)), ("exact_base", .bool(exactBase)),
                 ("kld_answer", kldSum.map { jsonNumber($0 / Double(max(answerTokens, 1))) } ?? .null)])
    }
}

/// 95% normal-approximation interval of a mean over `xs`: mean ± z·s/√n with s the sample standard
/// deviation (n − 1), clipped to [lo, hi]; (mean, mean) for n < 2. Deterministic (no resampling).
public func normalInterval(_ xs: [Double], z: Double = 1.959963984540054, clip: ClosedRange<Double> = 0...1) -> (Double, Double) {
    let n = xs.count
    guard n > 0 else { return (0, 0) }
    let m = xs.reduce(0, +) / Double(n)
    guard n > 1 else { return (m, m) }
    let v = xs.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(n - 1)
    let half = z * (v / Double(n)).squareRoot()
    return (min(max(m - half, clip.lowerBound), clip.upperBound), min(max(m + half, clip.lowerBound), clip.upperBound))
}

/// Wilson score interval for a proportion (Wilson 1927), z = 1.96 for 95%: the interval statsmodels'
/// `proportion_confint(method="wilson")` gives. (0, 0) for n = 0.
public func wilsonInterval(successes k: Int, trials n: Int, z: Double = 1.959963984540054) -> (Double, Double) {
    guard n > 0 else { return (0, 0) }
    let p = Double(k) / Double(n), nn = Double(n), z2 = z * z
    let centre = (p + z2 / (2 * nn)) / (1 + z2 / nn)
    let half = z / (1 + z2 / nn) * (p * (1 - p) / nn + z2 / (4 * nn * nn)).squareRoot()
    // k = 0 and k = n give exactly 0 and 1 (as statsmodels does), not 1 − 2⁻⁵² from rounding.
    return (k == 0 ? 0 : max(0, centre - half), k == n ? 1 : min(1, centre + half))
}

public struct DocVQAComparison: Sendable {
    public let directory: String
    public let file: String
    public let questionsInSet: Int
    public let seed: UInt64
    public let maxNewTokens: Int
    /// "idefics2" (image + question) or "document_text" (text models: the page text in the prompt).
    public let mode: String
    public let items: [DocVQAItemResult]
    public let seconds: Double
    public let worstCount: Int

    public var anlsCandidate: Double { mean(items.map(\.anlsCandidate)) }
    public var anlsBase: Double { mean(items.map(\.anlsBase)) }
    public var anlsAgreement: Double { mean(items.map(\.agreement)) }
    public var exactMatchCandidate: Double { mean(items.map { $0.exactCandidate ? 1 : 0 }) }
    public var exactMatchBase: Double { mean(items.map { $0.exactBase ? 1 : 0 }) }
    /// Share of questions where the two answers are identical after ANLS normalisation.
    public var sameAnswerShare: Double { mean(items.map { ANLS.normalize($0.candidate) == ANLS.normalize($0.base) ? 1 : 0 }) }
    /// 95% Wilson intervals of the exact-match accuracies.
    public var exactMatchCandidateCI: (Double, Double) { wilsonInterval(successes: items.filter(\.exactCandidate).count, trials: items.count) }
    public var exactMatchBaseCI: (Double, Double) { wilsonInterval(successes: items.filter(\.exactBase).count, trials: items.count) }
    /// 95% intervals of the mean ANLS scores over the questions (normal approximation, `normalInterval`).
    public var anlsCandidateCI: (Double, Double) { normalInterval(items.map(\.anlsCandidate)) }
    public var anlsBaseCI: (Double, Double) { normalInterval(items.map(\.anlsBase)) }
    public var anlsAgreementCI: (Double, Double) { normalInterval(items.map(\.agreement)) }
    /// 95% Wilson interval of the same-answer share.
    public var sameAnswerShareCI: (Double, Double) {
        wilsonInterval(successes: items.filter { ANLS.normalize($0.candidate) == ANLS.normalize($0.base) }.count, trials: items.count)
    }
    /// Questions whose exact-match verdict differs between the models (right → wrong first), in set order.
    public var flipped: [DocVQAItemResult] {
        items.filter { $0.exactBase && !$0.exactCandidate } + items.filter { !$0.exactBase && $0.exactCandidate }
    }
    /// Answer tokens the KL divergence was measured on (0 for text models).
    public var answerTokens: Int { items.reduce(0) { $0 + ($1.kldSum == nil ? 0 : $1.answerTokens) } }
    /// Mean KL(base ‖ candidate) per answer token (teacher-forced on the base's greedy answers); nil
    /// when not measured.
    public var kldAnswerMean: Double? {
        let n = answerTokens
        return n == 0 ? nil : items.reduce(0) { $0 + ($1.kldSum ?? 0) } / Double(n)
    }

    /// Largest drop first (candidate ANLS − base ANLS ascending), then least agreement, then lowest ANLS.
    public var worst: [DocVQAItemResult] {
        Array(items.sorted {
            let a = ($0.anlsCandidate - $0.anlsBase, $0.agreement, $0.anlsCandidate, $0.questionId)
            let b = ($1.anlsCandidate - $1.anlsBase, $1.agreement, $1.anlsCandidate, $1.questionId)
            return a < b
        }.prefix(worstCount))
    }

    public var json: JSONValue {
        .object([("directory", .string(directory)), ("file", .string(file)), ("mode", .string(mode)),
                 ("questions_in_set", .int(questionsInSet)), ("samples", .int(items.count)), ("seed", .uint(seed)),
                 ("max_new_tokens", .int(maxNewTokens)),
                 ("anls_candidate", jsonNumber(anlsCandidate)), ("anls_base", jsonNumber(anlsBase)),
                 ("anls_agreement", jsonNumber(anlsAgreement)),
                 ("exact_match_candidate", jsonNumber(exactMatchCandidate)), ("exact_match_base", jsonNumber(exactMatchBase)),
                 ("same_answer_share", jsonNumber(sameAnswerShare)),
                 ("exact_match_candidate_ci95", .array([jsonNumber(exactMatchCandidateCI.0), jsonNumber(exactMatchCandidateCI.1)])),
                 ("exact_match_base_ci95", .array([jsonNumber(exactMatchBaseCI.0), jsonNumber(exactMatchBaseCI.1)])),
                 ("anls_candidate_ci95", .array([jsonNumber(anlsCandidateCI.0), jsonNumber(anlsCandidateCI.1)])),
                 ("anls_base_ci95", .array([jsonNumber(anlsBaseCI.0), jsonNumber(anlsBaseCI.1)])),
                 ("anls_agreement_ci95", .array([jsonNumber(anlsAgreementCI.0), jsonNumber(anlsAgreementCI.1)])),
                 ("same_answer_share_ci95", .array([jsonNumber(sameAnswerShareCI.0), jsonNumber(sameAnswerShareCI.1)])),
                 ("kld_answer_mean", kldAnswerMean.map { jsonNumber($0) } ?? .null), ("answer_tokens", .int(answerTokens)),
                 ("flipped_to_wrong", .int(items.filter { $0.exactBase && !$0.exactCandidate }.count)),
                 ("flipped_to_right", .int(items.filter { !$0.exactBase && $0.exactCandidate }.count)),
                 ("flipped", .array(flipped.map(\.json))),
                 ("seconds", jsonNumber(seconds)),
                 ("worst", .array(worst.map(\.json))), ("items", .array(items.map(\.json)))])
    }
}

public struct TextComparison: Sendable {
    public let file: String
    public let tokens: Int
    public let ctx: Int
    public let windows: Int
    public let stats: TokenStatistics
    public let seconds: Double

    public var json: JSONValue {
        let s = stats
        return .object([
            ("file", .string(file)), ("tokens", .int(tokens)), ("ctx", .int(ctx)), ("windows", .int(windows)),
            ("scored_tokens", .int(s.count)),
            ("ppl_candidate", jsonNumber(s.pplCandidate)), ("ppl_candidate_err", jsonNumber(s.pplCandidateErr)),
            ("ppl_base", jsonNumber(s.pplBase)), ("ppl_base_err", jsonNumber(s.pplBaseErr)),
            ("ppl_ratio", jsonNumber(s.pplRatio)), ("ppl_ratio_err", jsonNumber(s.pplRatioErr)),
            ("mean_ln_ratio", jsonNumber(s.meanLnRatio)), ("mean_ln_ratio_err", jsonNumber(s.meanLnRatioErr)),
            ("nll_correlation", jsonNumber(s.nllCorrelation)),
            ("kld", .object([("mean", jsonNumber(s.kldMean)), ("mean_err", jsonNumber(s.kldMeanErr))]
                            + s.kldPercentiles.map { ($0.0, jsonNumber($0.1)) })),
            ("delta_p", .object([("mean", jsonNumber(s.deltaPMean)), ("mean_err", jsonNumber(s.deltaPMeanErr)),
                                 ("rms", jsonNumber(s.deltaPRMS)), ("rms_err", jsonNumber(s.deltaPRMSErr))]
                                + s.deltaPPercentiles.map { ($0.0, jsonNumber($0.1)) })),
            ("same_top", .object([("share", jsonNumber(s.sameTop)), ("err", jsonNumber(s.sameTopErr))])),
            ("seconds", jsonNumber(seconds)),
            ("tokens_per_second", jsonNumber(Double(windows * ctx) / max(seconds, 1e-9))),
        ])
    }
}
