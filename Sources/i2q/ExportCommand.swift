import ArgumentParser
import I2QCore
import I2QFormats
import I2QPasses

/// The layouts `export --to` writes. One case per target; each case's pass lives in I2QPasses.
enum ExportTarget: String, CaseIterable, ExpressibleByArgument {
    /// HF safetensors directory (plain tensors) that transformers loads.
    case hf
    /// transformers' bitsandbytes 4-bit state dict + quantization_config (from an nf4/fp4 .i2q).
    case hfBnb = "hf-bnb"
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a model in another runtime's layout: hf (transformers), hf-bnb (transformers + bitsandbytes 4-bit).")

    @Argument(help: "An .i2q file, HF model directory, or .gguf file.")
    var model: String

    @Option(help: "Target layout: \(ExportTarget.allCases.map(\.rawValue).joined(separator: ", ")).")
    var to: ExportTarget

    @Option(help: "Largest safetensors shard, e.g. 5GB, 500MB, 2GiB.")
    var maxShardSize: String = "5GB"

    @OptionGroup var out: OutputOptions

    func validate() throws {
        guard parseByteSize(maxShardSize) != nil else {
            throw ValidationError("--max-shard-size must be a size like 5GB, 500MB or 2GiB (got \"\(maxShardSize)\")")
        }
    }

    func run() throws {
        try runReportingErrors {
            var s = out.baseSettings
            s.maxShardSize = parseByteSize(maxShardSize)!
            let source = try openModel(model)
            switch to {
            case .hf:
                let r = try ExportPass.makeHF(source: source, output: out.output, settings: s).run()
                printSummary("exported \(r.tensors.count) tensors to hf", r)
            case .hfBnb:
                let r = try BnbExportPass.run(source: source, output: out.output, settings: s)
                printSummary("exported \(r.tensors.count) tensors to hf-bnb", r)
            }
        }
    }
}
