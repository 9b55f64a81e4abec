import ArgumentParser
import I2QCore
import I2QEval

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare a transformed model with its reference: perplexity and KL divergence on a text (as llama-perplexity --kl-divergence), per-layer error, DocVQA answers (ANLS).",
        discussion: """
            Both models run over the same inputs, window by window (nothing large is stored). \
            Exit status: 0 passed, 1 error, 2 a --max-ppl-ratio / --max-kld / --min-anls limit was broken. \
            Report keys: docs/verify.md. \
            Across machines: each runs `--shard I/N` (I = 0…N−1, 0-based: Kubernetes' $JOB_COMPLETION_INDEX, or \
            Slurm's $SLURM_ARRAY_TASK_ID with --array=0-(N−1)) with --report DIR or --json, then \
            `i2q verify --merge DIR_OR_JSON… [--report DIR] [--json]` gives the report of one unsharded run.
            """)

    @Argument(help: modelHelp("The model to check (HF directory, .i2q or .gguf)"))
    var candidate: String?

    @Option(help: modelHelp("The model it was made from (HF directory, .i2q or .gguf); same tokenizer"))
    var reference: String?

    @OptionGroup var input: ModelInputOptions
    @OptionGroup var runtime: RuntimeOptions

    @Option(help: "UTF-8 text for perplexity, KL divergence, Δp, same-top and per-layer error.")
    var text: String?

    @Option(help: "DocVQA-format directory (val_v1.0.json beside documents/, e.g. Tests/Fixtures/docvqa-mini): greedy answers, ANLS.")
    var docvqa: String?

    @Option(help: "Text window length in tokens.")
    var ctx: Int = 512

    @Option(help: "DocVQA questions to use (seeded selection; default: all).")
    var samples: Int?

    @Option(help: "Seed of the DocVQA question selection.")
    var seed: UInt64 = 0

    @Option(help: "DocVQA: tokens to generate per answer at most.")
    var maxNewTokens: Int = 32

    @Flag(help: "Skip the per-layer error (saves the base's [layers, ctx, hidden] buffer).")
    var noLayers = false

    @Flag(help: "Print the report as JSON on stdout (keys: docs/verify.md).")
    var json = false

    @Option(help: "Write summary.md, report.json and SVG plots to this directory (an old report there is replaced).")
    var report: String?

    @Option(help: "Fail (exit 2) when PPL(candidate)/PPL(reference) is above this (needs --text).")
    var maxPplRatio: Double?

    @Option(help: "Fail (exit 2) when the mean KL divergence (nats) is above this (needs --text).")
    var maxKld: Double?

    @Option(help: "Fail (exit 2) when the candidate's DocVQA ANLS is below this (needs --docvqa).")
    var minAnls: Double?

    @Flag(help: "Do not draw progress bars.")
    var noProgress = false

    @Option(help: ArgumentHelp("Score only slice I of N (I in 0..<N, 0-based): text windows, DocVQA questions (a page's questions together). Merge the N reports with --merge.", valueName: "I/N"))
    var shard: String?

    @Option(parsing: .upToNextOption, help: ArgumentHelp("Combine the reports (report.json files or --report directories) of all N `--shard I/N` runs into the run's report; no models are opened. Limit flags given here replace the shards'.", valueName: "report"))
    var merge: [String] = []

    func validate() throws {
        if !merge.isEmpty {
            guard candidate == nil, reference == nil, text == nil, docvqa == nil, shard == nil, samples == nil else {
                throw ValidationError("--merge takes shard reports only: the models, --text, --docvqa and the other settings come from them")
            }
            return
        }
        guard candidate != nil else { throw ValidationError("give the candidate model (or --merge REPORT…)") }
        guard reference != nil else { throw ValidationError("give --reference MODEL: the model the candidate was made from") }
        if let s = shard {
            do { _ = try VerifyShard.parse(s) } catch { throw ValidationError("\(error)") }
        }
        guard text != nil || docvqa != nil else { throw ValidationError("give --text FILE and/or --docvqa DIR: what to compare the models on") }
        guard ctx >= 3 else { throw ValidationError("--ctx must be at least 3") }
        try FlagLimits.check("--ctx", ctx, 3...FlagLimits.positions)
        if let s = samples, s < 1 { throw ValidationError("--samples must be at least 1") }
        if let s = samples { try FlagLimits.check("--samples", s, 1...FlagLimits.samples) }
        guard maxNewTokens >= 1 else { throw ValidationError("--max-new-tokens must be at least 1") }
        try FlagLimits.check("--max-new-tokens", maxNewTokens, 1...FlagLimits.positions)
        if maxPplRatio != nil && text == nil { throw ValidationError("--max-ppl-ratio needs --text FILE") }
        if maxKld != nil && text == nil { throw ValidationError("--max-kld needs --text FILE") }
        if minAnls != nil && docvqa == nil { throw ValidationError("--min-anls needs --docvqa DIR") }
    }

    func run() throws {
        runtime.apply()
        var failed = false
        try runReportingErrors {
            if !merge.isEmpty {
                failed = try runMerge()
                return
            }
            var o = VerifyOptions()
            o.textPath = text
            o.docvqaDirectory = docvqa
            o.ctx = ctx
            o.samples = samples
            o.seed = seed
            o.maxNewTokens = maxNewTokens
            o.layerwise = !noLayers
            o.maxPPLRatio = maxPplRatio
            o.maxKLD = maxKld
            o.minANLS = minAnls
            o.showProgress = !noProgress && ProgressBar.stderrIsTerminal
            o.shard = try shard.map { try VerifyShard.parse($0) }
            o.log = { printError($0) }
            let paths = try input.resolve([candidate!, reference!])
            let claimed = try report.map { try VerifyReportFiles.claim($0, inputs: paths) }
            let r = try Verifier.run(candidate: paths[0], reference: paths[1], options: o)
            if let dir = report, let claimed {
                try VerifyReportFiles.write(r, into: claimed)
                printError("verify: report written to \(dir) (summary.md, report.json, plots)")
            }
            failed = output(r)
        }
        if failed { throw ExitCode(2) }
    }

    /// Prints the report; true when a limit was broken.
    func output(_ r: VerifyReport) -> Bool {
        if json {
            print(r.jsonString())
        } else {
            print(VerifyReportFiles.summary(r, plots: []), terminator: "")
        }
        for f in r.failures { printError("verify: FAILED: \(f)") }
        return r.shard == nil && !r.passed
    }

    /// `--merge REPORT…`; true when a limit was broken.
    func runMerge() throws -> Bool {
        let claimed = try report.map { try VerifyReportFiles.claim($0, inputs: merge) }
        let limits = maxPplRatio != nil || maxKld != nil || minAnls != nil ? (maxPplRatio, maxKld, minAnls) : nil
        let r = try VerifyMerge.merge(paths: merge, thresholds: limits)
        printError("verify: merged \(merge.count) shard reports")
        if let dir = report, let claimed {
            try VerifyReportFiles.write(r, into: claimed)
            printError("verify: report written to \(dir) (summary.md, report.json, plots)")
        }
        return output(r)
    }
}
