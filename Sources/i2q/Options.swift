import ArgumentParser
import I2QCore

/// Flags shared by every verb that writes a model.
struct OutputOptions: ParsableArguments {
    @Option(name: [.short, .customLong("output")], help: "Output path (created; must not exist unless --overwrite).")
    var output: String

    @Flag(help: "Replace an existing output.")
    var overwrite = false

    @Flag(help: "Do not draw a progress bar (it is drawn only when stderr is a terminal).")
    var noProgress = false

    var showProgress: Bool { !noProgress && Progress.stderrIsTerminal }
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
