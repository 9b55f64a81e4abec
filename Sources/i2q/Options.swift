import ArgumentParser
import I2QCore
import I2QFormats
import I2QPasses

/// Flags shared by every verb that writes a model.
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
