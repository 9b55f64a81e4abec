import ArgumentParser
import I2QCore
import I2QFormats
import I2QRuntime

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model on a prompt (and images, for Idefics2) and generate greedily (CPU reference runtime).",
        discussion: """
            Examples:
              i2q run smollm2-int4.i2q --prompt 'The capital of France is' --max-new-tokens 16
              i2q run smollm2-int4.i2q --chat --prompt 'What is the capital of France?'
              i2q run idefics2-nf4.i2q --chat --image page.png --prompt 'What is the date?'   (the model's own template)
              i2q run idefics2-nf4.i2q --image page.png --prompt $'User:<image>What is the date?<end_of_utterance>\\nAssistant:'
            (bash's $'…' turns \\n into a newline; inside "…" it stays a backslash and an n.)
            """)

    @Argument(help: modelHelp("HF model directory, .i2q or .gguf file (Idefics2, or a Llama/Mistral text model)"))
    var model: String

    @OptionGroup var input: ModelInputOptions
    @OptionGroup var runtime: RuntimeOptions

    @Option(help: "The raw prompt string (BOS is added as the tokenizer config says); with --chat, the user's message.")
    var prompt: String

    @Flag(help: "Apply the model's own chat template (chat_template.jinja / .json / tokenizer_config.json, as transformers' apply_chat_template): --prompt is the user's message, the images go before it, and the assistant's turn is opened.")
    var chat = false

    @Option(help: "With --chat: a system message before the user's.")
    var system: String?

    @Option(help: "Tokens to generate at most (stops early at an end token).")
    var maxNewTokens: Int = 64

    @Option(help: "Write the logits of every prompt position as float32 .npy, shape [prompt_tokens, vocab].")
    var logitsOut: String?

    @Flag(help: "Print {\"input_ids\", \"generated_ids\", \"text\"} as JSON.")
    var json = false

    @Flag(help: "Keep generating past end tokens (for timing, like llama.cpp's --ignore-eos).")
    var ignoreEos = false

    @Option(name: .customLong("image"), help: "An image (PNG or JPEG) for an Idefics2 model; repeat for several. The prompt holds one <image> where each goes.")
    var images: [String] = []

    @Flag(help: "Idefics2: do not split images into 4 crops + the original (less memory and time).")
    var noImageSplitting = false

    @Option(help: "Idefics2: resize images so their longest edge is at most N pixels (default: the processor config's).")
    var longestEdge: Int?

    func validate() throws {
        guard maxNewTokens >= 0 else { throw ValidationError("--max-new-tokens must be ≥ 0") }
        try FlagLimits.check("--max-new-tokens", maxNewTokens, 0...FlagLimits.positions)
        if system != nil && !chat { throw ValidationError("--system needs --chat") }
        if chat && prompt.contains("<image>") { throw ValidationError("with --chat, --prompt is the user's message: leave out <image> (each --image goes before the text)") }
        if let l = longestEdge, l < 14 { throw ValidationError("--longest-edge must be at least one patch (14 pixels)") }
        if let l = longestEdge { try FlagLimits.check("--longest-edge", l, 14...FlagLimits.edge) }
    }

    @Flag(help: "Do not verify the .i2q file's tensor checksums (each tensor is otherwise hashed once, when first used: about 0.15 s per GB from page cache).")
    var noVerify = false

    func run() throws {
        runtime.apply()
        try runReportingErrors {
            let path = try input.resolve(model)
            let source = try openModel(path)
            if noVerify { (source as? I2QFile)?.skipChecksumVerification() }
            let claimed = try logitsOut.map { try StagedOutput(finalPath: $0, directory: false, overwrite: true, inputs: [path]) }
            let r: TextSession.RunResult
            let vocab: Int
            guard images.isEmpty || RuntimeRegistry.takesImages(source.config) else {
                throw ConfigError.invalid(path: path, detail: "is a \(source.config.modelType) text model; --image needs a vision-language model (Idefics2)")
            }
            switch try RuntimeRegistry.open(source) {
            case let .visionLanguage(session):
                if noImageSplitting { session.imageSplitting = false }
                if let l = longestEdge { session.limitLongestEdge(l) }
                let p = chat ? try (session.chat ?? { throw NoChatTemplateError(path: path) }()).userTurn(prompt, images: images.count, system: system, forProcessor: true) : prompt
                r = try session.run(prompt: p, images: images, maxNewTokens: maxNewTokens, wantLogits: logitsOut != nil, ignoreStopTokens: ignoreEos)
                vocab = session.text.decoder.config.vocabSize
            case let .text(session):
                // A tokenizer's apply_chat_template adds no special tokens: the template writes them.
                let p = chat ? try (try ChatPrompt.load(source, tokenizer: session.tokenizer) ?? { throw NoChatTemplateError(path: path) }()).userTurn(prompt, images: 0, system: system) : prompt
                r = try session.run(prompt: p, maxNewTokens: maxNewTokens, wantLogits: logitsOut != nil, ignoreStopTokens: ignoreEos, addSpecialTokens: !chat)
                vocab = session.decoder.config.vocabSize
            }
            if let claimed, let l = r.promptLogits {
                try Npy.writeFloat32(l, shape: [r.inputIds.count, vocab], into: claimed)
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
