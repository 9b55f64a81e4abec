import ArgumentParser
import I2QCore
import I2QFormats
import I2QPasses

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model's architecture, parameters per module, dtypes, shards or i2q directory, provenance and problems.")

    @Argument(help: "HF model directory (config.json + safetensors) or .i2q file.")
    var model: String

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Flag(help: "Also check every tensor's XXH3-64 checksum (.i2q only); exits non-zero naming each damaged tensor.")
    var verifyChecksums = false

    @Flag(help: "Omit the per-tensor directory listing of an .i2q file.")
    var brief = false

    func run() throws {
        try runReportingErrors {
            let source = try openModel(model)
            var info = ModelInspection(source)
            info.showDirectory = !brief
            print(json ? JSONWriter.string(info.json, indent: 2) : info.text, terminator: json ? "\n" : "")
            guard verifyChecksums else { return }
            guard let f = source as? I2QFile else {
                printError("note: --verify-checksums applies to .i2q files; \(model) is an HF directory (safetensors has no checksums)")
                return
            }
            let progress = ProgressBar(label: "verify", totalBytes: f.header.dataSize)
            let bad = f.verifyAll(progress: progress)
            progress.finish()
            for e in bad { printError("error: \(e.description)") }
            if !bad.isEmpty {
                printError("\(bad.count) damaged tensor component(s)")
                throw ExitCode(1)
            }
            printError("checksums: all \(f.entries.reduce(0) { $0 + $1.components.count }) components intact")
        }
    }
}
