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

/// The result of one verification; `json` is the documented, stable report (docs/verify.md).
public struct VerifyReport: Sendable {
    /// 2: "candidate" and "reference" are objects (`ModelStorage.json`; the path is their "path").
    /// 3: a report may be one shard of a run (`--shard I/N`: a "shard" key, statistics over its slice
    /// only, "passed" null); a merged report names its shards in "merged_from".
    public static let formatVersion = 3
    public let candidate: String
    public let reference: String
    public let modelType: String
    public let text: TextComparison?
    /// Per decoder layer (over the text windows).
    public let layers: [LayerErrorAccumulator.Layer]?
    public let layerPositions: Int
    public let docvqa: DocVQAComparison?
    public let options: VerifyOptions
    public let seconds: Double
    /// Messages of the thresholds that were broken (empty: passed).
    public let failures: [String]
    /// Per vision-encoder layer (Idefics2, over the distinct DocVQA images), with the images and real
    /// patches compared.
    public var visionLayers: [LayerErrorAccumulator.Layer]? = nil
    public var visionImages = 0
    public var visionPatches = 0
    /// Width of the vision encoder's layer outputs and of the decoder's (its hidden size).
    public var visionWidth = 0
    public var decoderWidth = 0
    /// The connector's output (Idefics2: the image features the decoder reads), over the same images
    /// as the vision layers: `connectorTokens` rows of width `decoderWidth`.
    public var connector: LayerErrorAccumulator.Layer? = nil
    public var connectorTokens = 0
    /// Storage of both models (file size, schemes, bits per weight).
    public var candidateModel: ModelStorage? = nil
    public var referenceModel: ModelStorage? = nil
    /// Set on a `--shard I/N` run: the report covers that slice only, checks no limits, and carries
    /// what `--merge` needs.
    public var shard: VerifyShardData? = nil
    /// Set on a `--merge` result: the shard reports it was made from.
    public var mergedFrom: [String]? = nil
    public var passed: Bool { failures.isEmpty }

    public var json: JSONValue {
        func opt(_ d: Double?) -> JSONValue { d.map { jsonNumber($0) } ?? .null }
        func layerArray(_ ls: [LayerErrorAccumulator.Layer]) -> JSONValue {
            .array(ls.map { l in
                .object([("layer", .int(l.layer)), ("rel_error", jsonNumber(l.relError)),
                         ("mean_token_rel_error", jsonNumber(l.meanTokenRelError)),
                         ("max_token_rel_error", jsonNumber(l.maxTokenRelError))])
            })
        }
        var layerEntries: [(String, JSONValue)] = []
        if let ls = layers {
            layerEntries += [("inputs", .string("text")), ("positions", .int(layerPositions)), ("width", .int(decoderWidth)),
                             ("decoder", layerArray(ls))]
        }
        if let v = visionLayers {
            layerEntries.append(("vision", .object([("inputs", .string("docvqa images")), ("images", .int(visionImages)),
                                                    ("patches", .int(visionPatches)), ("width", .int(visionWidth)),
                                                    ("layers", layerArray(v))])))
        }
        if let c = connector {
            layerEntries.append(("connector", .object([("inputs", .string("docvqa images")), ("images", .int(visionImages)),
                                                       ("tokens", .int(connectorTokens)), ("width", .int(decoderWidth)),
                                                       ("rel_error", jsonNumber(c.relError)),
                                                       ("mean_token_rel_error", jsonNumber(c.meanTokenRelError)),
                                                       ("max_token_rel_error", jsonNumber(c.maxTokenRelError))])))
        }
        let layerJSON: JSONValue = layerEntries.isEmpty ? .null : .object(layerEntries)
        var entries: [(String, JSONValue)] = [
            ("format", .string("i2q-verify")), ("format_version", .int(Self.formatVersion)),
            ("i2q_version", .string(I2QVersion.string)),
            ("candidate", candidateModel?.json ?? .object([("path", .string(candidate))])),
            ("reference", referenceModel?.json ?? .object([("path", .string(reference))])),
            ("model_type", .string(modelType)),
            ("text", text?.json ?? .null),
            ("layers", layerJSON),
            ("docvqa", docvqa?.json ?? .null),
            ("thresholds", .object([("max_ppl_ratio", opt(options.maxPPLRatio)), ("max_kld", opt(options.maxKLD)),
                                    ("min_anls", opt(options.minANLS))])),
            ("passed", shard == nil ? .bool(passed) : .null), ("failures", .array(failures.map { .string($0) })),
            ("seconds", jsonNumber(seconds)),
        ]
        if let m = mergedFrom { entries.append(("merged_from", .array(m.map { .string($0) }))) }
        if let sh = shard { entries.append(("shard", sh.json(docvqa: docvqa))) }
        return .object(entries)
    }

    /// The JSON report as text (2-space indentation).
    public func jsonString(indent: Int? = 2) -> String { JSONWriter.string(json, indent: indent, asciiOnly: false) }
}

/// A model opened for verification: a text model, or a vision-language one (whose text decoder
/// serves the text statistics), as `RuntimeRegistry` opens it.
public final class VerifyModel: @unchecked Sendable {
    public let path: String
    public let source: any ModelSource
    public let visionLanguage: (any VisionLanguageSession)?
    public let text: TextSession

    public init(path: String) throws {
        self.path = path
        source = try openModel(path)
        let m = try RuntimeRegistry.open(source)
        visionLanguage = m.visionLanguage
        text = m.text
    }

    var kind: String { source.config.modelType }
    var vocab: Int { text.decoder.config.vocabSize }
}

public enum Verifier {
    /// Opens both models and runs the verification.
    public static func run(candidate: String, reference: String, options: VerifyOptions) throws -> VerifyReport {
        try checkOptions(options)
        options.log?("verify: opening \(reference) (reference) and \(candidate) (candidate)")
        let base = try VerifyModel(path: reference)
        let cand = try VerifyModel(path: candidate)
        return try run(candidate: cand, reference: base, options: options)
    }

    static func checkOptions(_ o: VerifyOptions) throws {
        guard o.textPath != nil || o.docvqaDirectory != nil else { throw VerifyError.nothingToDo }
        if o.maxPPLRatio != nil && o.textPath == nil { throw VerifyError.thresholdWithoutData(flag: "--max-ppl-ratio", needs: "--text FILE") }
        if o.maxKLD != nil && o.textPath == nil { throw VerifyError.thresholdWithoutData(flag: "--max-kld", needs: "--text FILE") }
        if o.minANLS != nil && o.docvqaDirectory == nil { throw VerifyError.thresholdWithoutData(flag: "--min-anls", needs: "--docvqa DIR") }
    }

    /// Runs the verification on models already open (the passes' `--verify` reuses them).
    public static func run(candidate cand: VerifyModel, reference base: VerifyModel, options o: VerifyOptions) throws -> VerifyReport {
        try checkOptions(o)
        let t0 = ProgressBar.now()
        guard cand.vocab == base.vocab else { throw VerifyError.vocabMismatch(candidate: cand.vocab, reference: base.vocab) }
        guard (cand.visionLanguage == nil) == (base.visionLanguage == nil) else { throw VerifyError.kindMismatch(candidate: cand.kind, reference: base.kind) }
        // Load the DocVQA set first: a bad set fails before the long text run.
        let set = try o.docvqaDirectory.map { try DocVQASet.load(directory: $0) }
        var shard = o.shard.map { VerifyShardData(spec: $0) }
        var settings = shardSettings(o, modelType: base.kind, decoderWidth: base.text.decoder.config.hiddenSize,
                                     visionWidth: base.visionLanguage?.visionWidth ?? 0)
        // The questions (and a shard's slice of them), also before the text run.
        let selected = set?.select(samples: o.samples ?? 0, seed: o.seed) ?? []
        var items = selected
        if let set, let sh = o.shard {
            let positions = try sh.questions(images: selected.map(\.imagePath))
            items = positions.map { selected[$0] }
            shard!.questionPositions = positions
            settings += [("docvqa_questions_in_set", .int(set.items.count)), ("docvqa_selected", .int(selected.count)),
                         ("docvqa_xxh3", .string(XXH3.hex(XXH3.hash(try FileSystem.readFile(set.file)))))]
        }
        var text: TextComparison?
        var layers: [LayerErrorAccumulator.Layer]?
        var layerPositions = 0
        if let path = o.textPath {
            let bytes = try FileSystem.readFile(path)
            guard let s = String(validating: bytes, as: UTF8.self) else { throw VerifyError.badText(path: path) }
            let ids = base.text.tokenizer.encode(s)
            let allWindows = ids.count / o.ctx
            let range = try o.shard.map { try $0.windows(of: allWindows) } ?? 0..<allWindows
            o.log?("verify: text \(path): \(ids.count) tokens, \(allWindows) windows of \(o.ctx)"
                   + (o.shard.map { " (shard \($0.label): windows \(range.lowerBound)..<\(range.upperBound))" } ?? ""))
            let bar = ProgressBar(label: "verify text", total: max(range.count, 1), unit: "windows", enabled: o.showProgress)
            let r = try compareText(base: base.text.decoder, candidate: cand.text.decoder, ids: ids, ctx: o.ctx,
                                    layerwise: o.layerwise, windows: allWindows > 0 ? range : nil, progress: bar)
            bar.finish()
            text = TextComparison(file: path, tokens: ids.count, ctx: o.ctx, windows: range.count, stats: r.stats, seconds: r.seconds)
            layers = r.layers?.result
            layerPositions = r.layers?.positions.first ?? 0
            if shard != nil {
                shard!.textWindows = range; shard!.tokens = r.tokens; shard!.decoder = r.layers
                settings += [("text_tokens", .int(ids.count)), ("text_windows", .int(allWindows)),
                             ("text_xxh3", .string(XXH3.hex(XXH3.hash(bytes))))]
            }
            o.log?("verify: PPL ratio \(formatFixed(r.stats.pplRatio, 5)), mean KLD \(formatFixed(r.stats.kldMean, 6)), same top \(formatFixed(100 * r.stats.sameTop, 2)) % (\(formatFixed(r.seconds, 1)) s)")
        }
        var docvqa: DocVQAComparison?
        var vision: LayerErrorAccumulator?
        var connector: LayerErrorAccumulator?
        var connectorSeen = Set<String>()
        var visionImages = 0, visionPatches = 0, connectorTokens = 0
        if let set {
            o.log?("verify: DocVQA \(set.file): \(items.count) of \(set.items.count) questions"
                   + (o.shard.map { " (shard \($0.label) of the \(selected.count) selected)" } ?? ""))
            let bar = ProgressBar(label: "verify docvqa", total: items.count, unit: "questions", enabled: o.showProgress)
            let t1 = ProgressBar.now()
            var results: [DocVQAItemResult] = []
            var seenImages = Set<String>()
            var featureImage: String? = nil
            var baseFeatures: [Float] = [], candFeatures: [Float] = []
            if o.layerwise, let bs = base.visionLanguage {
                vision = LayerErrorAccumulator(layers: bs.visionLayers)
                connector = LayerErrorAccumulator(layers: 1)
            }
            for item in items {
                if var acc = vision, let bs = base.visionLanguage, let cs = cand.visionLanguage, seenImages.insert(item.imagePath).inserted {
                    visionPatches += try compareVision(base: bs, candidate: cs, imagePath: item.imagePath, into: &acc)
                    visionImages += 1
                    vision = acc
                }
                let b: String, c: String
                var kld: (sum: Double, tokens: Int)?
                if let bs = base.visionLanguage, let cs = cand.visionLanguage {
                    if featureImage != item.imagePath {  // questions about one image share its vision forward
                        baseFeatures = try bs.imageFeatures(paths: [item.imagePath])
                        candFeatures = try cs.imageFeatures(paths: [item.imagePath])
                        featureImage = item.imagePath
                        // The connector's output, once per distinct page (as the vision layers).
                        let w = base.text.decoder.config.hiddenSize
                        if var acc = connector, baseFeatures.count == candFeatures.count, !baseFeatures.isEmpty,
                           baseFeatures.count % w == 0, connectorSeen.insert(item.imagePath).inserted {
                            baseFeatures.withUnsafeBufferPointer { bp in
                                candFeatures.withUnsafeBufferPointer { cp in
                                    acc.add(layer: 0, base: bp.baseAddress!, candidate: cp.baseAddress!, rows: baseFeatures.count / w, width: w)
                                }
                            }
                            connectorTokens += baseFeatures.count / w
                            connector = acc
                        }
                    }
                    let prompt = try bs.chatPrompt(question: item.question, image: true, answer: nil)
                    let rb = try bs.run(prompt: prompt, features: baseFeatures, maxNewTokens: o.maxNewTokens)
                    let rc = try cs.run(prompt: prompt, features: candFeatures, maxNewTokens: o.maxNewTokens)
                    b = rb.text.trimmingCharacters(in: .whitespacesAndNewlines)
                    c = rc.text.trimmingCharacters(in: .whitespacesAndNewlines)
                    kld = try answerKLD(base: bs, candidate: cs, prompt: prompt, baseFeatures: baseFeatures,
                                        candidateFeatures: candFeatures, answer: rb.generatedIds)
                } else {
                    b = try answer(base, item, set: set, maxNewTokens: o.maxNewTokens, log: o.log)
                    c = try answer(cand, item, set: set, maxNewTokens: o.maxNewTokens, log: nil)
                }
                var result = DocVQAItemResult(
                    questionId: item.questionId, question: item.question, image: item.imagePath, answers: item.answers,
                    candidate: c, base: b,
                    anlsCandidate: ANLS.score(prediction: c, answers: item.answers),
                    anlsBase: ANLS.score(prediction: b, answers: item.answers),
                    agreement: ANLS.score(prediction: c, answers: [b]),
                    exactCandidate: ANLS.exactMatch(prediction: c, answers: item.answers),
                    exactBase: ANLS.exactMatch(prediction: b, answers: item.answers))
                if let kld { result.kldSum = kld.sum; result.answerTokens = kld.tokens }
                results.append(result)
                bar.advance(1)
            }
            bar.finish()
            docvqa = DocVQAComparison(directory: set.directory, file: set.file, questionsInSet: set.items.count, seed: o.seed,
                                      maxNewTokens: o.maxNewTokens, mode: base.visionLanguage != nil ? base.kind : "document_text",
                                      items: results, seconds: ProgressBar.now() - t1, worstCount: o.worstItems)
            let d = docvqa!
            o.log?("verify: ANLS candidate \(formatFixed(d.anlsCandidate, 4)), base \(formatFixed(d.anlsBase, 4)), agreement \(formatFixed(d.anlsAgreement, 4))")
            o.log?("verify: exact match candidate \(formatFixed(100 * d.exactMatchCandidate, 2)) % [\(formatFixed(100 * d.exactMatchCandidateCI.0, 2)), \(formatFixed(100 * d.exactMatchCandidateCI.1, 2))], base \(formatFixed(100 * d.exactMatchBase, 2)) %, same answer \(formatFixed(100 * d.sameAnswerShare, 2)) %, flipped \(d.flipped.count)" + (d.kldAnswerMean.map { ", mean KLD on answer tokens \(formatFixed($0, 6))" } ?? ""))
        }
        // A shard checks no limits: they hold for the whole run, which `--merge` checks.
        let failures = o.shard == nil ? Self.failures(text: text, docvqa: docvqa, options: o) : []
        var report = VerifyReport(candidate: cand.path, reference: base.path, modelType: base.kind, text: text, layers: layers,
                                  layerPositions: layerPositions, docvqa: docvqa, options: o, seconds: ProgressBar.now() - t0,
                                  failures: failures)
        if let vision, visionImages > 0 {
            report.visionLayers = vision.result
            report.visionImages = visionImages
            report.visionPatches = visionPatches
            report.visionWidth = base.visionLanguage?.visionWidth ?? 0
        }
        if let connector, connectorTokens > 0 {
            report.connector = connector.result.first
            report.connectorTokens = connectorTokens
        }
        report.decoderWidth = base.text.decoder.config.hiddenSize
        report.candidateModel = ModelStorage(path: cand.path, source: cand.source)
        report.referenceModel = ModelStorage(path: base.path, source: base.source)
        if var sh = shard {
            sh.vision = vision; sh.connector = connector
            sh.visionImages = visionImages; sh.visionPatches = visionPatches; sh.connectorTokens = connectorTokens
            sh.settings = .object(settings)
            report.shard = sh
        }
        return report
    }

    /// The limits (`--max-ppl-ratio`, `--max-kld`, `--min-anls`) the statistics break.
    static func failures(text: TextComparison?, docvqa: DocVQAComparison?, options o: VerifyOptions) -> [String] {
        var failures: [String] = []
        if let m = o.maxPPLRatio, let t = text, !(t.stats.pplRatio <= m) {
            failures.append("PPL ratio \(formatFixed(t.stats.pplRatio, 5)) is above --max-ppl-ratio \(m)")
        }
        if let m = o.maxKLD, let t = text, !(t.stats.kldMean <= m) {
            failures.append("mean KLD \(formatFixed(t.stats.kldMean, 6)) is above --max-kld \(m)")
        }
        if let m = o.minANLS, let d = docvqa, !(d.anlsCandidate >= m) {
            failures.append("candidate ANLS \(formatFixed(d.anlsCandidate, 4)) is below --min-anls \(m)")
        }
        return failures
    }

    /// What every shard of one run shares (compared by `--merge`); the per-input entries are appended
    /// where the inputs are read.
    static func shardSettings(_ o: VerifyOptions, modelType: String, decoderWidth: Int, visionWidth: Int) -> [(String, JSONValue)] {
        func opt(_ d: Double?) -> JSONValue { d.map { jsonNumber($0) } ?? .null }
        return [("i2q_version", .string(I2QVersion.string)), ("model_type", .string(modelType)),
                ("text", .bool(o.textPath != nil)), ("docvqa", .bool(o.docvqaDirectory != nil)),
                ("ctx", .int(o.ctx)), ("samples", o.samples.map { .int($0) } ?? .null), ("seed", .uint(o.seed)),
                ("max_new_tokens", .int(o.maxNewTokens)), ("layerwise", .bool(o.layerwise)), ("worst_items", .int(o.worstItems)),
                ("max_ppl_ratio", opt(o.maxPPLRatio)), ("max_kld", opt(o.maxKLD)), ("min_anls", opt(o.minANLS)),
                ("decoder_width", .int(decoderWidth)), ("vision_width", .int(visionWidth))]
    }

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

    /// The prompt for a text model: two worked examples, then the page text and the question — as
    /// chat turns through the model's own chat template when it has one (`ChatPrompt`: one
    /// user/assistant turn per example, then the question's user turn and the generation prompt;
    /// SmolLM2's template adds its default system turn), otherwise plain "Document/Question/Answer"
    /// blocks. docs/verify.md shows both.
    public static func documentTextPrompt(question: String, documentText: String, session: TextSession) throws -> String {
        let chat = try ChatPrompt.load(session.source, tokenizer: session.tokenizer)
        return try documentTextPrompt(question: question, documentText: documentText, tokenizer: session.tokenizer, chat: chat)
    }

    /// `documentTextPrompt`, with the document text cut at the end (whole characters) when the prompt
    /// and `maxNewTokens` would not fit the model's context; `truncated(kept characters)` is told.
    public static func fittedDocumentPrompt(question: String, documentText: String, session: TextSession, maxNewTokens: Int,
                                            truncated: (Int) -> Void) throws -> String {
        let limit = session.decoder.maxContext - maxNewTokens - 1
        var doc = Substring(documentText)
        var prompt = try documentTextPrompt(question: question, documentText: documentText, session: session)
        var n = session.tokenizer.encode(prompt).count
        guard n > limit else { return prompt }
        let empty = session.tokenizer.encode(try documentTextPrompt(question: question, documentText: "", session: session)).count
        guard empty < limit else {
            throw RuntimeError.contextLimit(detail: "the question alone needs \(empty) of the model's \(session.decoder.maxContext) positions with --max-new-tokens \(maxNewTokens); lower --max-new-tokens")
        }
        while n > limit && !doc.isEmpty {
            // Characters per token of this text, with a 5 % margin; then shrink until it fits.
            let share = Double(limit - empty) / Double(max(1, n - empty)) * 0.95
            doc = doc.prefix(max(0, min(doc.count - 1, Int(Double(doc.count) * share))))
            prompt = try documentTextPrompt(question: question, documentText: String(doc), session: session)
            n = session.tokenizer.encode(prompt).count
        }
        truncated(doc.count)
        return prompt
    }

    /// The same from a tokenizer and the model's chat template, if any. The result is tokenized with
    /// the tokenizer's special tokens (as every verify prompt is), so a template that writes BOS
    /// itself (Llama 3's) has it dropped here when the tokenizer adds one.
    public static func documentTextPrompt(question: String, documentText: String, tokenizer: Tokenizer, chat: ChatPrompt?) throws -> String {
        func user(_ doc: String, _ q: String) -> String { "Document:\n\(doc)\n\nQuestion: \(q)\n\(answerInstruction)" }
        guard let chat else {
            let shots = examples.map { "Document:\n\(exampleDocument)\n\nQuestion: \($0.question)\nAnswer: \($0.answer)\n\n" }.joined()
            return shots + "Document:\n\(documentText)\n\nQuestion: \(question)\nAnswer:"
        }
        let turns = examples.flatMap { [ChatMessage.user(user(exampleDocument, $0.question)), .assistant($0.answer)] }
        var s = try chat.render(turns + [.user(user(documentText, question))])
        if let b = chat.bosToken, !b.isEmpty, s.hasPrefix(b), let id = tokenizer.bosTokenId, tokenizer.encode("").first == id {
            s.removeFirst(b.count)
        }
        return s
    }

    /// Per vision-encoder layer error on one image: both towers on the same processed image(s) (the
    /// crops and the original when the processor splits images), each on its own previous layers;
    /// real patches only. Returns the number of real patches compared.
    public static func compareVision(base: any VisionLanguageSession, candidate: any VisionLanguageSession, imagePath: String,
                                     into acc: inout LayerErrorAccumulator) throws -> Int {
        let width = base.visionWidth
        func realRows(_ h: UnsafeBufferPointer<Float>, _ mask: [Bool]) -> [Float] {  // [real patches, width]
            var out: [Float] = []
            out.reserveCapacity(mask.filter { $0 }.count * width)
            for (i, real) in mask.enumerated() where real { out += h[(i * width)..<((i + 1) * width)] }
            return out
        }
        var patches = 0
        var local = acc
        for im in try base.visionInputs(paths: [imagePath]) where im.pixels.contains(where: { $0 != 0 }) {
            var stored: [[Float]] = []  // [layers][real patches × width]: the base's layer outputs
            try base.encodeVision(im) { _, h, mask in
                stored.append(realRows(h, mask))
            }
            try candidate.encodeVision(im) { li, h, mask in
                let c = realRows(h, mask)
                guard li < stored.count, stored[li].count == c.count, !c.isEmpty else { return }
                c.withUnsafeBufferPointer { cp in
                    stored[li].withUnsafeBufferPointer { bp in
                        local.add(layer: li, base: bp.baseAddress!, candidate: cp.baseAddress!, rows: c.count / width, width: width)
                    }
                }
            }
            patches += (stored.first?.count ?? 0) / width
        }
        acc = local
        return patches
    }

    /// Σ KL(base ‖ candidate) over the positions of the base's greedy `answer` (its end token
    /// included), both models teacher-forced on it; log-softmax in double precision.
    static func answerKLD(base: any VisionLanguageSession, candidate: any VisionLanguageSession, prompt: String, baseFeatures: [Float],
                          candidateFeatures: [Float], answer: [Int]) throws -> (sum: Double, tokens: Int) {
        guard !answer.isEmpty else { return (0, 0) }
        let lb = try base.continuationLogits(prompt: prompt, features: baseFeatures, continuation: answer)
        let lc = try candidate.continuationLogits(prompt: prompt, features: candidateFeatures, continuation: answer)
        let v = lb.count / answer.count
        var sum = 0.0
        lb.withUnsafeBufferPointer { pb in
            lc.withUnsafeBufferPointer { pc in
                for r in 0..<answer.count {
                    sum += TokenComparison.compare(base: pb.baseAddress! + r * v, candidate: pc.baseAddress! + r * v,
                                                   vocab: v, target: answer[r]).kld
                }
            }
        }
        return (sum, answer.count)
    }

    /// A text model's greedy answer to one question, from the page text (end tokens dropped, whitespace
    /// trimmed). Idefics2 answers in `run`, where one vision forward serves all questions of an image.
    static func answer(_ m: VerifyModel, _ item: DocVQAItem, set: DocVQASet, maxNewTokens: Int,
                       log: ((String) -> Void)?) throws -> String {
        guard let doc = item.documentText else { throw VerifyError.noDocumentText(file: set.file, questionId: item.questionId) }
        let prompt = try fittedDocumentPrompt(question: item.question, documentText: doc, session: m.text, maxNewTokens: maxNewTokens) {
            log?("warning: \(set.file): question \(item.questionId): document_text truncated to \($0) of \(doc.count) characters to fit the model's \(m.text.decoder.maxContext)-position context (as transformers' question-answering pipeline truncates the context, not the question)")
        }
        let r = try m.text.run(prompt: prompt, maxNewTokens: maxNewTokens, wantLogits: false)
        return r.text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

func mean(_ xs: [Double]) -> Double { xs.isEmpty ? .nan : xs.reduce(0, +) / Double(xs.count) }

/// A JSON number; NaN and infinities (not representable in JSON) become null.
func jsonNumber(_ d: Double) -> JSONValue { d.isFinite ? .number("\(d)") : .null }
