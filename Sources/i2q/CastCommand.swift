import ArgumentParser
import I2QCore
import I2QFormats
import I2QPasses

struct Cast: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Cast floating-point weights to f16, bf16 or f32 (rounding exactly as torch's .to(dtype)).")

    @Argument(help: "HF model directory (config.json + safetensors).")
    var model: String

    @Option(help: "Target dtype: f16, bf16 or f32.")
    var dtype: String

    @Option(help: "Output format: safetensors (an HF directory transformers loads).")
    var format: String = OutputFormat.safetensors.rawValue

    @Option(help: "Largest safetensors shard, e.g. 5GB, 500MB, 2GiB.")
    var maxShardSize: String = "5GB"

    @OptionGroup var out: OutputOptions

    func validate() throws {
        guard DType(userSpelling: dtype) != nil else {
            throw ValidationError("--dtype must be f16, bf16 or f32 (got \"\(dtype)\")")
        }
        guard OutputFormat(rawValue: format) != nil else {
            throw ValidationError("--format must be one of \(OutputFormat.allCases.map(\.rawValue).joined(separator: ", ")) (got \"\(format)\")")
        }
        guard parseByteSize(maxShardSize) != nil else {
            throw ValidationError("--max-shard-size must be a size like 5GB, 500MB or 2GiB (got \"\(maxShardSize)\")")
        }
    }

    func run() throws {
        try runReportingErrors {
            var opts = CastOptions(dtype: DType(userSpelling: dtype)!)
            opts.format = OutputFormat(rawValue: format)!
            opts.maxShardSize = parseByteSize(maxShardSize)!
            opts.overwrite = out.overwrite
            opts.showProgress = out.showProgress
            let source = try ModelDirectory(path: model)
            let pass = try CastPass(source: source, output: out.output, options: opts)
            let r = try pass.run()
            for t in r.overflowing {
                printError("warning: \(t.name): \(t.stats.overflowed) of \(t.elements) values are out of \(t.to.rawValue)'s range and became ±inf")
            }
            let nanTensors = r.tensors.filter { $0.stats.nans > 0 }
            for t in nanTensors { printError("note: \(t.name): \(t.stats.nans) NaN values (kept as NaN)") }
            let rate = Double(r.bytesRead) / max(r.seconds, 1e-9)
            print("cast \(r.tensors.count) tensors to \(opts.dtype.rawValue): \(formatBytes(r.bytesRead)) -> \(formatBytes(r.bytesWritten)) in \(formatFixed(r.seconds, 1))s (\(formatBytes(Int(rate)))/s), \(r.shards.count) shard(s) -> \(r.output)")
            if !r.overflowing.isEmpty {
                printError("warning: \(r.overflowing.count) tensor(s) overflowed \(opts.dtype.rawValue); consider bf16, which has f32's range")
            }
        }
    }
}
