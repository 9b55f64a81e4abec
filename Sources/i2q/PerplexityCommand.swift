import ArgumentParser
import Foundation
import I2QCore
import I2QEval
import I2QFormats
import I2QRuntime

struct PerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Perplexity of a text model on a text file: consecutive windows of --ctx tokens, each scored on positions 1..ctx-1.",
        discussion: """
            Example:
              i2q perplexity smollm2-int4.i2q --text /usr/share/common-licenses/GPL-3 --ctx 512
            """)

    @Argument(help: modelHelp("HF model directory, .i2q or .gguf file (Llama/Mistral family)"))
    var model: String

    @OptionGroup var input: ModelInputOptions
    @OptionGroup var runtime: RuntimeOptions

    @Option(help: "UTF-8 text file.")
    var text: String

    @Option(help: "Window length in tokens.")
    var ctx: Int = 512

    @Flag(help: "Print {\"ppl\", \"tokens\", \"windows\", \"ctx\"} as JSON.")
    var json = false

    func validate() throws {
        guard ctx >= 2 else { throw ValidationError("--ctx must be at least 2") }
        try FlagLimits.check("--ctx", ctx, 2...FlagLimits.positions)
    }

    func run() throws {
        runtime.apply()
        try runReportingErrors {
            let bytes = try FileSystem.readFile(text)
            guard let s = String(validating: bytes, as: UTF8.self) else {
                throw ConfigError.invalid(path: text, detail: "is not valid UTF-8 text")
            }
            let session = try TextSession(source: try openModel(try input.resolve(model)))
            let ids = session.tokenizer.encode(s)
            let bar = ProgressBar(label: "perplexity", total: ids.count / ctx, unit: "windows")
            let r = try Perplexity.evaluate(session: session, ids: ids, ctx: ctx, progress: bar)
            bar.finish()
            if json {
                print(JSONWriter.string(r.json))
            } else {
                print("perplexity \(formatFixed(r.ppl, 4)) over \(r.windows) windows of \(r.ctx) tokens (\(r.tokens) tokens; mean NLL \(formatFixed(r.meanNLL, 5)))")
            }
            printError("\(formatFixed(Double(r.windows * r.ctx) / max(r.seconds, 1e-9), 1)) tokens/s")
        }
    }
}
