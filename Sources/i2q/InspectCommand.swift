import ArgumentParser
import I2QCore
import I2QFormats
import I2QPasses

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model's architecture, parameters per module, dtypes, shards and problems.")

    @Argument(help: "HF model directory (config.json + safetensors).")
    var model: String

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func run() throws {
        try runReportingErrors {
            let info = ModelInspection(try ModelDirectory(path: model))
            print(json ? JSONWriter.string(info.json, indent: 2) : info.text, terminator: json ? "\n" : "")
        }
    }
}
