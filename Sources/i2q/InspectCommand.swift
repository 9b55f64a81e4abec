import ArgumentParser
import I2QCore
import I2QFormats
import I2QPasses

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model's architecture, parameters per module, storage per scheme with bits per weight, shards or i2q directory, provenance and problems (HF directory, .i2q or .gguf).",
        discussion: """
            Examples:
              i2q inspect model-nf4.i2q --brief
              i2q inspect SmolLM2-135M-Instruct.Q4_1.gguf --json
              i2q inspect model.i2q --verify-checksums
            """)

    @Argument(help: modelHelp("HF model directory (config.json + safetensors), .i2q file, or llama.cpp .gguf file"))
    var model: String

    @OptionGroup var input: ModelInputOptions

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @Flag(help: "Also check every tensor's XXH3-64 checksum (.i2q only); exits non-zero naming each damaged tensor.")
    var verifyChecksums = false

    @Flag(help: "Omit the per-tensor directory listing of an .i2q file.")
    var brief = false

    @Option(help: "Also print one tensor: dtype, shape, where its bytes are, and its first values (reads only those bytes; of an .i2q, after checking that tensor's checksum).")
    var tensor: String?

    func run() throws {
        try runReportingErrors {
            let path = try input.resolve(model)
            let start = ProgressBar.now()
            let source = try openModel(path)
            let opened = ProgressBar.now() - start
            if let name = tensor {
                let p = try TensorPeek(source: source, name: name)
                let t = ProgressBar.now() - start
                print(p.text)
                printError("opened in \(formatFixed(opened * 1000, 2)) ms; first values of \(name) after \(formatFixed(t * 1000, 2)) ms")
                return
            }
            var info = ModelInspection(source)
            info.showDirectory = !brief
            // Checksums first, so the printed problems (text and JSON) agree with the exit status.
            var bad: [I2QFormatError] = []
            if verifyChecksums, let f = source as? I2QFile {
                let progress = ProgressBar(label: "verify", totalBytes: f.header.dataSize)
                bad = f.verifyAll(progress: progress)
                progress.finish()
                info.problems += bad.map(\.description)
            }
            print(json ? JSONWriter.string(info.json, indent: 2) : info.text, terminator: json ? "\n" : "")
            guard verifyChecksums else { return }
            guard let f = source as? I2QFile else {
                printError("note: --verify-checksums applies to .i2q files; \(path) is an HF directory (safetensors has no checksums)")
                return
            }
            for e in bad { printError("error: \(e.description)") }
            if !bad.isEmpty {
                printError("\(bad.count) damaged tensor component(s)")
                throw ExitCode(1)
            }
            printError("checksums: all \(f.entries.reduce(0) { $0 + $1.components.count }) components intact")
        }
    }
}
