import ArgumentParser
import I2QFormats
import I2QRuntime

@main
struct I2Q: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "i2q",
        abstract: "Shrink Idefics2 (and Llama/Mistral) checkpoints on the CPU and prove the result still works.",
        version: I2QVersion.string + "\n" + KernelInfo.summary,
        subcommands: [Inspect.self, Cast.self, Quantize.self, Fuse.self, Export.self, Run.self, PerplexityCommand.self, Verify.self])
}
