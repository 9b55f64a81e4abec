import Foundation
import I2QCore
import I2QFormats
import I2QRuntime
import I2QTokenizer


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
}

func mean(_ xs: [Double]) -> Double { xs.isEmpty ? .nan : xs.reduce(0, +) / Double(xs.count) }

/// A JSON number; NaN and infinities (not representable in JSON) become null.
func jsonNumber(_ d: Double) -> JSONValue { d.isFinite ? .number("\(d)") : .null }
