import ArgumentParser
import I2QCore
import I2QFormats
import I2QPasses

extension FuseSelection: ExpressibleByArgument {}

struct Fuse: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fuse projections that read the same input into one tensor on disk: q,k,v → qkv_proj, gate,up → gate_up_proj (f32/f16/bf16, NF4/FP4, affine int4; exact, nothing re-quantized).",
        discussion: """
            Example:
              i2q fuse model-awq.i2q -o model-awq-fused.i2q
            """)

    @Argument(help: modelHelp("An .i2q file, HF model directory, or .gguf file"))
    var model: String

    @OptionGroup var input: ModelInputOptions

    @Option(help: "Fuse only the attention projections (qkv) or only the MLP's gate/up (mlp); default: both.")
    var only: FuseSelection?

    @OptionGroup var out: OutputOptions
    @OptionGroup var verification: VerifyAfterOptions

    func validate() throws {
        try verification.validateVerify()
        if only == .all { throw ValidationError("--only takes qkv or mlp (omit it to fuse both)") }
    }

    func run() throws {
        try runReportingErrors {
            var o = FuseOptions()
            o.only = only ?? .all
            let path = try input.resolve(model)
            let r = try FusePass.run(source: try openModel(path), output: out.output, options: o, settings: verification.apply(to: out.baseSettings, reference: path))
            for (g, why) in r.leftUnfused { printError("note: \(g.fused) left unfused: \(why)") }
            let kinds = ["qkv_proj", "kv_proj", "gate_up_proj"].map { k in (k, r.fused.filter { $0.fused.hasSuffix("." + k + ".weight") }.count) }
            let summary = kinds.filter { $0.1 > 0 }.map { "\($0.1) \($0.0)" }.joined(separator: ", ")
            printSummary("fused \(summary.isEmpty ? "nothing" : summary) (\(r.fused.count) tensors incl. biases)", r.pass)
        }
    }
}
