import ArgumentParser
import I2QCore
import I2QFormats
import I2QPasses

struct Cast: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Cast floating-point weights to f16, bf16 or f32 (rounding exactly as torch's .to(dtype)).",
        discussion: """
            Examples:
              i2q cast HuggingFaceM4/idefics2-8b-dir --dtype bf16 -o idefics2-bf16.i2q
              i2q cast model-dir --dtype f16 --format safetensors -o model-f16/     (an HF directory transformers loads)
            """)

    @Argument(help: modelHelp("HF model directory (config.json + safetensors), .i2q file, or llama.cpp .gguf file"))
    var model: String

    @OptionGroup var input: ModelInputOptions

    @Option(help: "Target dtype: f16, bf16 or f32.")
    var dtype: String

    @OptionGroup var out: OutputOptions
    @OptionGroup var layout: FormatOptions
    @OptionGroup var verification: VerifyAfterOptions

    func validate() throws {
        try verification.validateVerify()
        guard DType(userSpelling: dtype) != nil else {
            throw ValidationError("--dtype must be f16, bf16 or f32 (got \"\(dtype)\")")
        }
        try layout.validateFormat()
    }

    func run() throws {
        try runReportingErrors {
            let target = DType(userSpelling: dtype)!
            let path = try input.resolve(model)
            let pass = try CastPass.make(source: try openModel(path), output: out.output, dtype: target, settings: verification.apply(to: layout.apply(to: out.baseSettings), reference: path))
            let r = try pass.run()
            for t in r.overflowing {
                printError("warning: \(t.name): \(t.stats.overflowed) of \(t.elements) values are out of \(t.to.rawValue)'s range and became ±inf")
            }
            for t in r.tensors where t.stats.nans > 0 { printError("note: \(t.name): \(t.stats.nans) NaN values (kept as NaN)") }
            printSummary("cast \(r.tensors.count) tensors to \(target.rawValue)", r)
            if !r.overflowing.isEmpty {
                printError("warning: \(r.overflowing.count) tensor(s) overflowed \(target.rawValue)" + (target == .f16 ? "; consider bf16, which has f32's range" : ""))
            }
        }
    }
}

func printSummary(_ what: String, _ r: PassReport) {
    let rate = Double(r.bytesRead) / max(r.seconds, 1e-9)
    print("\(what): \(formatBytes(r.bytesRead)) -> \(formatBytes(r.bytesWritten)) in \(formatFixed(r.seconds, 1))s (\(formatBytes(Int(rate)))/s), \(r.files.count) file(s) -> \(r.output)")
}
