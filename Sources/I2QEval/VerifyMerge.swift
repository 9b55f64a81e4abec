import I2QCore
import I2QFormats

/// `verify --merge REPORT…`: the whole run's report from the reports of its `--shard I/N` runs. Every
/// statistic is recomputed from the shards' items put back in the unsharded order (text positions by
/// window, questions by their place in the selection), so the result is the report one unsharded run
/// writes: the text statistics, percentiles, DocVQA scores, intervals, flips and worst items exactly,
/// the layer errors to float rounding (their sums are added shard by shard). Timings differ: "seconds"
/// keys are the shards' sums. docs/verify.md lists what may differ.
public enum VerifyMerge {
    /// The report in `path`: a report.json file, or a report directory holding one.
    static func read(_ path: String) throws -> (file: String, json: JSONValue) {
        let file = FileSystem.isDirectory(path) ? path + "/report.json" : path
        guard FileSystem.exists(file) else { throw FileSystem.whyMissing(file) }
        let j = try JSONParser.parse(try FileSystem.readFile(file), source: file)
        guard j["format"]?.stringValue == "i2q-verify" else { throw VerifyShardError.notAReport(file: file, why: "no \"format\": \"i2q-verify\"") }
        guard let v = j["format_version"]?.intValue, v >= VerifyReport.formatVersion else {
            throw VerifyShardError.notAReport(file: file, why: "format_version \(j["format_version"].map { JSONWriter.string($0) } ?? "missing"); shard reports are version \(VerifyReport.formatVersion) or later")
        }
        guard j["shard"] != nil, j["shard"] != .null else { throw VerifyShardError.notAShard(file: file) }
        return (file, j)
    }

    /// The first key whose value differs between two objects (in `a`'s order, then keys only in `b`).
    static func firstDifference(_ a: JSONValue, _ b: JSONValue, ignoring: Set<String> = []) -> (String, JSONValue?, JSONValue?)? {
        let ea = a.objectEntries ?? [], eb = b.objectEntries ?? []
        for (k, v) in ea where !ignoring.contains(k) && b[k] != v { return (k, v, b[k]) }
        for (k, v) in eb where !ignoring.contains(k) && a[k] == nil { return (k, nil, v) }
        return nil
    }

    /// Merges the shard reports at `paths` (any order). `thresholds`: limits to check instead of those the
    /// shards recorded (nil: theirs).
    public static func merge(paths: [String], thresholds: (maxPPLRatio: Double?, maxKLD: Double?, minANLS: Double?)? = nil) throws -> VerifyReport {
        guard !paths.isEmpty else { throw VerifyShardError.nothingToMerge }
        var shards: [(file: String, json: JSONValue, index: Int)] = []
        for p in paths {
            let (file, j) = try read(p)
            let sh = j["shard"]!
            // Deliberate try?: an out-of-range index/count is reported as this file's malformed "shard" below.
            guard let i = sh["index"]?.intValue, let n = sh["count"]?.intValue, let spec = try? VerifyShard(index: i, count: n) else {
                throw VerifyShardError.notAReport(file: file, why: "\"shard\" has no valid \"index\" and \"count\"")
            }
            if let first = shards.first {
                let f = first.json
                func differs(_ key: String, _ a: JSONValue?, _ b: JSONValue?) -> VerifyShardError {
                    .differs(file: file, key: key, first: first.file, value: b.map { JSONWriter.string($0) } ?? "(absent)",
                             firstValue: a.map { JSONWriter.string($0) } ?? "(absent)")
                }
                if spec.count != f["shard"]?["count"]?.intValue { throw differs("the shard count N", f["shard"]?["count"], sh["count"]) }
                if let (k, a, b) = firstDifference(f["shard"]?["settings"] ?? .null, sh["settings"] ?? .null) { throw differs(k, a, b) }
                for role in ["candidate", "reference"] {
                    // Paths may differ between machines; the model is its name, size and schemes.
                    if let (k, a, b) = firstDifference(f[role] ?? .null, j[role] ?? .null, ignoring: ["path"]) { throw differs("\(role) \(k)", a, b) }
                }
                if let o = shards.first(where: { $0.index == i }) { throw VerifyShardError.duplicate(file: file, other: o.file, shard: spec.label) }
            }
            shards.append((file, j, i))
        }
        let n = shards[0].json["shard"]!["count"]!.intValue!
        let missing = (0..<n).filter { i in !shards.contains { $0.index == i } }
        guard missing.isEmpty else { throw VerifyShardError.missing(shards: missing, count: n, given: shards.count) }
        shards.sort { $0.index < $1.index }
        let first = shards[0].json, settings = first["shard"]!["settings"]!
        func bad(_ file: String, _ why: String) -> VerifyShardError { .notAReport(file: file, why: why) }
        func setting(_ k: String) throws -> JSONValue {
            guard let v = settings[k] else { throw bad(shards[0].file, "\"shard.settings\" has no \"\(k)\"") }
            return v
        }

        var o = VerifyOptions()
        o.showProgress = false
        o.ctx = try setting("ctx").intValue ?? 0
        o.samples = try setting("samples").intValue
        o.seed = try setting("seed").uint64Value ?? 0
        o.maxNewTokens = try setting("max_new_tokens").intValue ?? 0
        o.layerwise = try setting("layerwise").boolValue ?? true
        o.worstItems = try setting("worst_items").intValue ?? 10
        if let t = thresholds {
            (o.maxPPLRatio, o.maxKLD, o.minANLS) = t
        } else {
            (o.maxPPLRatio, o.maxKLD, o.minANLS) = (try setting("max_ppl_ratio").doubleValue, try setting("max_kld").doubleValue,
                                                    try setting("min_anls").doubleValue)
        }
        let seconds = shards.reduce(0.0) { $0 + ($1.json["seconds"]?.doubleValue ?? 0) }

        // Text: the shards' positions, window by window.
        var text: TextComparison?
        var decoder: LayerErrorAccumulator?
        if try setting("text").boolValue == true {
            var tokens: [TokenComparison] = []
            var next = 0, textSeconds = 0.0
            for s in shards {
                guard let t = s.json["shard"]?["text"], let w = t["windows"]?.arrayValue?.compactMap(\.intValue), w.count == 2,
                      let m = t["positions"]?.intValue, m >= 0 else { throw bad(s.file, "\"shard.text\" is missing or incomplete") }
                guard w[0] == next else {
                    throw bad(s.file, "its text windows start at \(w[0]), the previous shard's end at \(next)")
                }
                next = w[1]
                guard let nb = VerifyShardData.f64(t["nll_base"], count: m), let nc = VerifyShardData.f64(t["nll_candidate"], count: m),
                      let k = VerifyShardData.f64(t["kld"], count: m), let dp = VerifyShardData.f64(t["delta_p"], count: m),
                      let st = t["same_top"]?.stringValue.flatMap({ Base64.decode($0) }), st.count == m else {
                    throw bad(s.file, "\"shard.text\" arrays are not \(m) base64 float64 values")
                }
                for i in 0..<m { tokens.append(TokenComparison(nllBase: nb[i], nllCandidate: nc[i], kld: k[i], deltaP: dp[i], sameTop: st[i] != 0)) }
                textSeconds += s.json["text"]?["seconds"]?.doubleValue ?? 0
                if first["shard"]?["layers"]?["decoder"] != nil {
                    guard let a = VerifyShardData.accumulator(s.json["shard"]?["layers"]?["decoder"]) else {
                        throw bad(s.file, "\"shard.layers.decoder\" is missing or incomplete")
                    }
                    if decoder == nil { decoder = a } else { decoder!.merge(a) }
                }
            }
            let windows = try setting("text_windows").intValue ?? -1
            guard next == windows else { throw bad(shards[n - 1].file, "its text windows end at \(next) of \(windows)") }
            guard let file = first["text"]?["file"]?.stringValue else { throw bad(shards[0].file, "no \"text.file\"") }
            text = TextComparison(file: file, tokens: try setting("text_tokens").intValue ?? 0, ctx: o.ctx, windows: windows,
                                  stats: TokenStatistics(tokens), seconds: textSeconds)
            o.textPath = file
        }

        // DocVQA: the questions put back in selection order; the pages' layer sums added.
        var docvqa: DocVQAComparison?
        var vision: LayerErrorAccumulator?, connector: LayerErrorAccumulator?
        var visionImages = 0, visionPatches = 0, connectorTokens = 0
        if try setting("docvqa").boolValue == true {
            var placed: [(Int, DocVQAItemResult)] = []
            var docSeconds = 0.0
            for s in shards {
                guard let d = s.json["docvqa"], let items = d["items"]?.arrayValue, let sd = s.json["shard"]?["docvqa"],
                      let pos = sd["positions"]?.arrayValue?.compactMap(\.intValue), let ks = sd["kld_sum"]?.arrayValue,
                      let at = sd["answer_tokens"]?.arrayValue?.compactMap(\.intValue),
                      pos.count == items.count, ks.count == items.count, at.count == items.count else {
                    throw bad(s.file, "\"docvqa\" or \"shard.docvqa\" is missing or incomplete")
                }
                for (i, it) in items.enumerated() {
                    guard var r = item(it) else { throw bad(s.file, "docvqa.items[\(i)] is incomplete") }
                    r.kldSum = ks[i].doubleValue
                    r.answerTokens = at[i]
                    placed.append((pos[i], r))
                }
                docSeconds += d["seconds"]?.doubleValue ?? 0
                let l = s.json["shard"]?["layers"]
                if let v = l?["vision"] {
                    guard let a = VerifyShardData.accumulator(v) else { throw bad(s.file, "\"shard.layers.vision\" is incomplete") }
                    if vision == nil { vision = a } else { vision!.merge(a) }
                    visionImages += l?["vision_images"]?.intValue ?? 0
                    visionPatches += l?["vision_patches"]?.intValue ?? 0
                }
                if let c = l?["connector"] {
                    guard let a = VerifyShardData.accumulator(c) else { throw bad(s.file, "\"shard.layers.connector\" is incomplete") }
                    if connector == nil { connector = a } else { connector!.merge(a) }
                    connectorTokens += l?["connector_tokens"]?.intValue ?? 0
                }
            }
            placed.sort { $0.0 < $1.0 }
            let selected = try setting("docvqa_selected").intValue ?? -1
            guard placed.map(\.0) == Array(0..<selected) else {
                throw bad(shards[0].file, "the shards' questions are not the \(selected) selected questions once each")
            }
            let d = first["docvqa"]!
            guard let dir = d["directory"]?.stringValue, let file = d["file"]?.stringValue, let mode = d["mode"]?.stringValue else {
                throw bad(shards[0].file, "\"docvqa\" lacks directory, file or mode")
            }
            docvqa = DocVQAComparison(directory: dir, file: file, questionsInSet: try setting("docvqa_questions_in_set").intValue ?? 0,
                                      seed: o.seed, maxNewTokens: o.maxNewTokens, mode: mode, items: placed.map(\.1),
                                      seconds: docSeconds, worstCount: o.worstItems)
            o.docvqaDirectory = dir
        }

        var report = VerifyReport(candidate: first["candidate"]?["path"]?.stringValue ?? "", reference: first["reference"]?["path"]?.stringValue ?? "",
                                  modelType: try setting("model_type").stringValue ?? "", text: text, layers: decoder?.result,
                                  layerPositions: decoder?.positions.first ?? 0, docvqa: docvqa, options: o, seconds: seconds,
                                  failures: Verifier.failures(text: text, docvqa: docvqa, options: o))
        if let vision, visionImages > 0 {
            report.visionLayers = vision.result
            report.visionImages = visionImages
            report.visionPatches = visionPatches
        }
        if let connector, connectorTokens > 0 {
            report.connector = connector.result.first
            report.connectorTokens = connectorTokens
        }
        report.visionWidth = try setting("vision_width").intValue ?? 0
        report.decoderWidth = try setting("decoder_width").intValue ?? 0
        report.candidateModel = first["candidate"].flatMap { ModelStorage(json: $0) }
        report.referenceModel = first["reference"].flatMap { ModelStorage(json: $0) }
        report.mergedFrom = shards.map(\.file)
        return report
    }

    /// One docvqa.items entry read back (its KLD sum comes from "shard.docvqa").
    static func item(_ j: JSONValue) -> DocVQAItemResult? {
        guard let q = j["questionId"]?.intValue, let question = j["question"]?.stringValue, let image = j["image"]?.stringValue,
              let answers = j["answers"]?.arrayValue?.compactMap(\.stringValue), let c = j["candidate"]?.stringValue,
              let b = j["base"]?.stringValue, let ac = j["anls_candidate"]?.doubleValue, let ab = j["anls_base"]?.doubleValue,
              let ag = j["agreement"]?.doubleValue, let ec = j["exact_candidate"]?.boolValue, let eb = j["exact_base"]?.boolValue else { return nil }
        return DocVQAItemResult(questionId: q, question: question, image: image, answers: answers, candidate: c, base: b,
                                anlsCandidate: ac, anlsBase: ab, agreement: ag, exactCandidate: ec, exactBase: eb)
    }
}
