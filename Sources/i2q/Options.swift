import ArgumentParser
import I2QCore
import I2QEval
import I2QFormats
import I2QPasses
import I2QRuntime

/// `--revision` of every verb that takes a model: a model may be named by its Hugging Face repo id
/// (`org/name`) and is then read from the local hub cache (I2QFormats' `ModelInput`; never downloaded).
struct ModelInputOptions: ParsableArguments {
    @Option(help: "With a Hugging Face repo id (org/name) for the model: the branch, tag or 40-hex commit to read from the local hub cache (default main). Nothing is downloaded.")
    var revision: String?

    /// The paths to open for `inputs`: each input itself, or the cached snapshot folder of a repo id
    /// (a note on stderr says which revision and commit).
    func resolve(_ inputs: [String]) throws -> [String] {
        let r = try ModelInput.resolve(inputs, revision: revision, cache: HubCache())
        for s in r.compactMap(\.snapshot) { printError("note: " + s.note) }
        return r.map(\.path)
    }

    func resolve(_ input: String) throws -> String { try resolve([input])[0] }
}

/// Help of a verb's model argument, after what it accepts locally.
func modelHelp(_ local: String) -> ArgumentHelp {
    ArgumentHelp("\(local); or a Hugging Face repo id (org/name) from the local hub cache (see --revision).")
}

/// Flags shared by every verb that writes a model.
/// How the runtime computes, for the verbs that run a model.
struct RuntimeOptions: ParsableArguments {
    @Flag(help: "Round the inputs of bf16 weights to bf16 at prefill, as torch, llama.cpp and vLLM do with a bf16 model (faster on CPUs with AVX-512 BF16; results change by bf16 rounding). Default: float32 activations, transformers' float32 results.")
    var bf16Activations = false

    @Flag(help: "Round attention's inputs (q, k, the softmax probabilities, v) to bf16 at prefill and multiply them in bf16, as torch does with a bf16 model (faster on CPUs with AVX-512 BF16; results change by bf16 rounding). Default: float32 attention, transformers' float32 results.")
    var bf16Attention = false

    @Flag(help: "Quantize the inputs of float weights (f32/bf16/f16) to int8 per row at prefill and multiply them with the weights quantized to int8 per row, summing exactly in int32 (W8A8, as SmoothQuant/llm-compressor's dynamic per-token scheme; twice the bf16 rate with AVX-512 VNNI, no gain on AVX2). Results change by the two roundings (about 1 % of a product). Default: float32 activations.")
    var int8Activations = false

    @Option(name: .customLong("repack-mb"), help: ArgumentHelp("Memory (MiB) for bf16 weights repacked into the prefill GEMM's panel layout and kept from their second prefill on, so that later prefills (perplexity windows, verify documents) skip the packing, as llama.cpp repacks weights at load; first come, first kept. 0: off. Default 512 (I2Q_REPACK_MB). Results are identical.", valueName: "MiB"))
    var repackMB: Int?

    @Flag(help: "Multiply ggml-block weights (quantize --type q4_k_m …) with float32 activations, as transformers does on the dequantized weights. Default: activations rounded to 8 bits per block as llama.cpp's CPU backend rounds them (Q8_K/Q8_0/Q8_1), so results match llama.cpp on the same bytes.")
    var ggmlF32Activations = false

    func validate() throws {
        if let repackMB { try FlagLimits.check("--repack-mb", repackMB, 0...(1 << 30)) }
    }

    /// Sets the runtime's switches; call before the model runs.
    func apply() {
        if bf16Activations { BF16Gemm.enabled = true }
        if bf16Attention { BF16Attention.enabled = true }
        if int8Activations { Int8Gemm.enabled = true }
        if let repackMB { RepackedWeight.budgetBytes = repackMB << 20 }
        if ggmlF32Activations { GGMLGemv.activations = .float32 }
    }
}

struct OutputOptions: ParsableArguments {
    @Option(name: [.short, .customLong("output")], help: "Output path (created; must not exist unless --overwrite).")
    var output: String

    @Flag(help: "Replace an existing output.")
    var overwrite = false

    @Flag(help: "Do not draw a progress bar (it is drawn only when stderr is a terminal).")
    var noProgress = false

    /// The settings these flags fix (format-specific ones at their defaults).
    var baseSettings: OutputSettings {
        var s = OutputSettings()
        s.overwrite = overwrite
        s.showProgress = !noProgress && ProgressBar.stderrIsTerminal
        return s
    }
}

/// Output layout flags of verbs that write a model (`cast` and the later passes).
struct FormatOptions: ParsableArguments {
    @Option(help: "Output format: i2q (one self-checking file, the default) or safetensors (an HF directory transformers loads).")
    var format: String = OutputFormat.i2q.rawValue

    @Option(help: "Largest safetensors shard (--format safetensors), e.g. 5GB, 500MB, 2GiB.")
    var maxShardSize: String = "5GB"

    @Option(help: "Alignment of tensor data in an .i2q file (power of two, 64…1048576).")
    var alignment: Int = 4096

    func validateFormat() throws {
        guard OutputFormat(rawValue: format) != nil else {
            throw ValidationError("--format must be one of \(OutputFormat.allCases.map(\.rawValue).joined(separator: ", ")) (got \"\(format)\")")
        }
        guard parseByteSize(maxShardSize) != nil else {
            throw ValidationError("--max-shard-size must be a size like 5GB, 500MB or 2GiB (got \"\(maxShardSize)\")")
        }
        guard alignment >= 64, alignment <= 1 << 20, alignment & (alignment - 1) == 0 else {
            throw ValidationError("--alignment must be a power of two between 64 and 1048576 (got \(alignment))")
        }
    }

    func apply(to settings: OutputSettings) -> OutputSettings {
        var s = settings
        s.format = OutputFormat(rawValue: format)!
        s.maxShardSize = parseByteSize(maxShardSize)!
        s.alignment = alignment
        return s
    }
}

/// Runs a verb body, printing I2QErrors as one clear line and exiting non-zero.
func runReportingErrors(_ body: () throws -> Void) throws {
    installInterruptCleanup()
    do {
        try body()
    } catch let e as I2QError {
        printError("error: \(e.description)")
        throw ExitCode(1)
    }
}

/// `--verify` on verbs that write a model (cast, quantize, fuse): after the pass, `i2q verify` runs
/// the output against the input on the given data; the result is appended to the output's provenance
/// (`i2q inspect` shows it) and printed on stderr.
struct VerifyAfterOptions: ParsableArguments {
    @Flag(help: "After the pass, verify the output against the input (needs --verify-text and/or --verify-docvqa).")
    var verify = false

    @Option(help: "--verify: UTF-8 text for perplexity / KL divergence / same-top (a held-out text).")
    var verifyText: String?

    @Option(help: "--verify: a DocVQA-format directory (e.g. Tests/Fixtures/docvqa-mini) for greedy answers and ANLS.")
    var verifyDocvqa: String?

    @Option(help: "--verify: text window length in tokens.")
    var verifyCtx: Int = 512

    @Option(help: "--verify: DocVQA questions to use (seeded selection; default all).")
    var verifySamples: Int?

    func validateVerify() throws {
        if verify && verifyText == nil && verifyDocvqa == nil {
            throw ValidationError("--verify needs --verify-text FILE and/or --verify-docvqa DIR: what to compare the models on")
        }
        if !verify && (verifyText != nil || verifyDocvqa != nil) {
            throw ValidationError("--verify-text / --verify-docvqa take effect with --verify")
        }
        guard verifyCtx >= 3 else { throw ValidationError("--verify-ctx must be at least 3") }
        try FlagLimits.check("--verify-ctx", verifyCtx, 3...FlagLimits.positions)
        if let s = verifySamples, s < 1 { throw ValidationError("--verify-samples must be at least 1") }
        if let s = verifySamples { try FlagLimits.check("--verify-samples", s, 1...FlagLimits.samples) }
    }

    /// Installs the verification as the pass's last step (before the output is renamed into place).
    func apply(to settings: OutputSettings, reference: String) -> OutputSettings {
        guard verify else { return settings }
        var s = settings
        var o = VerifyOptions()
        o.textPath = verifyText
        o.docvqaDirectory = verifyDocvqa
        o.ctx = verifyCtx
        o.samples = verifySamples
        o.showProgress = settings.showProgress
        s.beforeCommit = PassVerification.hook(reference: reference, options: o) { r in
            printError("verify: " + PassVerification.summary(r, reference: reference).map { "\($0.0)=\(JSONWriter.string($0.1))" }.joined(separator: " "))
        }
        return s
    }
}

/// Upper bounds of numeric flags (issue 17: every number from a flag is range-checked before it is
/// used in arithmetic or allocation). Far above any real use; the model's own limits (positions,
/// memory budget) are checked later with the model in hand.
enum FlagLimits {
    static let positions = 1 << 24  // --ctx, --max-new-tokens, --seq-len (= ConfigRanges.maxPositions)
    static let samples = 1 << 24    // --samples
    static let edge = 16384         // --longest-edge (= ProcessorConfig.maxEdge)

    static func check(_ flag: String, _ value: Int, _ range: ClosedRange<Int>) throws {
        guard range.contains(value) else {
            throw ValidationError("\(flag) must be in \(range.lowerBound)…\(range.upperBound) (got \(value))")
        }
    }
}
