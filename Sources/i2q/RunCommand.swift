import ArgumentParser
import I2QCore
import I2QFormats
import I2QRuntime

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a text model on a prompt and generate greedily (CPU reference runtime).")

    @Argument(help: "HF model directory or .i2q file (Llama/Mistral family).")
    var model: String

    @Option(help: "The raw prompt string (BOS is added as the tokenizer config says).")
    var prompt: String

    @Option(help: "Tokens to generate at most (stops early at an end token).")
    var maxNewTokens: Int = 64

    @Option(help: "Write the logits of every prompt position as float32 .npy, shape [prompt_tokens, vocab].")
    var logitsOut: String?

    @Flag(help: "Print {\"input_ids\", \"generated_ids\", \"text\"} as JSON.")
    var json = false

    @Flag(help: "Keep generating past end tokens (for timing, like llama.cpp's --ignore-eos).")
    var ignoreEos = false

    func validate() throws {
        guard maxNewTokens >= 0 else { throw ValidationError("--max-new-tokens must be ≥ 0") }
    }

    func run() throws {
        try runReportingErrors {
            let session = try TextSession(source: try openModel(model))
            let r = try session.run(prompt: prompt, maxNewTokens: maxNewTokens, wantLogits: logitsOut != nil, ignoreStopTokens: ignoreEos)
            if let path = logitsOut, let l = r.promptLogits {
                try Npy.writeFloat32(l, shape: [r.inputIds.count, session.decoder.config.vocabSize], to: path)
            }
            if json {
                print(JSONWriter.string(.object([
                    ("input_ids", .array(r.inputIds.map { .int($0) })),
                    ("generated_ids", .array(r.generatedIds.map { .int($0) })),
                    ("text", .string(r.text)),
                ]), asciiOnly: false))
            } else {
                print(r.text)
            }
            let pre = Double(r.inputIds.count) / max(r.prefillSeconds, 1e-9)
            let dec = Double(r.generatedIds.count) / max(r.decodeSeconds, 1e-9)
            printError("prompt: \(r.inputIds.count) tokens, \(formatFixed(pre, 1)) tok/s; generated: \(r.generatedIds.count) tokens, \(formatFixed(dec, 1)) tok/s")
        }
    }
}
