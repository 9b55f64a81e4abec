import ArgumentParser
import I2QCore
import I2QFormats
import I2QRuntime

@main
struct I2Q: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "i2q",
        abstract: "Shrink Idefics2 (and Llama/Mistral) checkpoints on the CPU and prove the result still works.",
        version: "i2q \(I2QVersion.string) (commit \(I2QBuild.commit), built \(I2QBuild.date); Swift code for \(I2QBuild.targetCPU))\n"
            + KernelInfo.summary,
        subcommands: [Inspect.self, Cast.self, Quantize.self, Fuse.self, Export.self, Run.self, PerplexityCommand.self, Verify.self, ImatrixCommand.self])
}
