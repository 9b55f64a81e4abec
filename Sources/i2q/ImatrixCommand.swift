import ArgumentParser
import I2QCore
import I2QFormats
import I2QPasses

struct ImatrixCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "imatrix",
        abstract: "Importance matrix (mean squared activation per input column of every linear weight) in llama.cpp's imatrix format.",
        discussion: """
            As llama-imatrix computes it, through the whole model: for Idefics2 on a DocVQA-format
            directory the vision tower, connector and decoder run on each question with its image, so
            the decoder's statistics include the image tokens. Text: consecutive chunks of --ctx tokens
            (the text needs at least 2 × --ctx tokens). The file loads in llama-quantize --imatrix.
            Examples:
              i2q imatrix smollm2/ --calibration wiki.train.raw -o imatrix.gguf
              i2q imatrix idefics2-8b/ --calibration docvqa/ --chunks 128 -o idefics2.imatrix.gguf
            """)

    @Argument(help: modelHelp("HF model directory, .i2q or .gguf file"))
    var model: String

    @OptionGroup var input: ModelInputOptions

    @Option(help: "Calibration data: a UTF-8 text file, or a DocVQA-format directory (questions with their page images).")
    var calibration: String

    @Option(name: [.short, .customLong("output")], help: "Output file (created; must not exist unless --overwrite).")
    var output: String

    @Option(help: "gguf (llama-imatrix's default) or dat (its legacy binary format).")
    var outputFormat: String = ImatrixFormat.gguf.rawValue

    @Option(help: "Text: tokens per chunk (llama-imatrix -c). DocVQA: longest prompt kept, in tokens.")
    var ctx: Int = 512

    @Option(help: "Chunks (text) or questions (DocVQA, seeded selection) to run at most (default: all).")
    var chunks: Int?

    @Flag(help: "DocVQA with a vision-language model: ask the questions without their images (a text-only matrix).")
    var noImages = false

    @Option(help: "Seed of the DocVQA question selection.")
    var seed: UInt64 = 0

    @Flag(help: "Also collect the output layer's input (the final normalised hidden states) as output.weight, as llama-imatrix --process-output; for a tied embedding too (quantize --target-bpw weighs the output role with it).")
    var processOutput = false

    @Flag(help: "Replace an existing output.")
    var overwrite = false

    func validate() throws {
        guard ImatrixFormat(rawValue: outputFormat) != nil else {
            throw ValidationError("--output-format must be gguf or dat (got \"\(outputFormat)\")")
        }
        try FlagLimits.check("--ctx", ctx, 1...FlagLimits.positions)
        if let c = chunks { try FlagLimits.check("--chunks", c, 1...FlagLimits.samples) }
    }

    func run() throws {
        try runReportingErrors {
            let format = ImatrixFormat(rawValue: outputFormat)!
            if format == .gguf && !output.hasSuffix(".gguf") {
                printError("note: writing the GGUF imatrix format to a name not ending in .gguf (llama-imatrix warns likewise); --output-format dat writes the legacy format")
            }
            var s = ImatrixSettings(calibration: calibration)
            s.ctx = ctx; s.chunks = chunks; s.images = !noImages; s.seed = seed; s.processOutput = processOutput
            let r = try ImatrixPass.run(model: try input.resolve(model), settings: s, output: output, format: format,
                                        overwrite: overwrite) { printError($0) }
            print("wrote \(output) (\(format.rawValue)): \(r.line)")
        }
    }
}
