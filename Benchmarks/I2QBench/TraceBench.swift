import Foundation
import I2QCore
import I2QFormats
import I2QRuntime

/// `i2q-bench trace MODEL OUT.json --image PAGE [--image …] [--prompt TEXT] [--split | --no-split] [--full-logits]`:
/// per-layer summaries of one Idefics2 prefill (`Idefics2Trace`), in the format of
/// scripts/checks/fullsize_golden.py (compare with scripts/checks/compare_golden_trace.py).
/// Prints the time and peak memory (RssAnon sampled every 10 ms; VmHWM).
func runTraceBench(_ args: [String]) throws {
    var paths: [String] = [], images: [String] = []
    var prompt = "User:<image>What is the total amount due?<end_of_utterance>\nAssistant:"
    var split: Bool? = nil, full = false
    var i = 0
    while i < args.count {
        switch args[i] {
        case "--image": images.append(args[i + 1]); i += 2
        case "--prompt": prompt = args[i + 1]; i += 2
        case "--split": split = true; i += 1
        case "--no-split": split = false; i += 1
        case "--full-logits": full = true; i += 1
        default: paths.append(args[i]); i += 1
        }
    }
    guard paths.count == 2, !images.isEmpty else {
        FileHandle.standardError.write(Data("usage: i2q-bench trace MODEL OUT.json --image PAGE [--prompt TEXT] [--split|--no-split] [--full-logits]\n".utf8))
        exit(2)
    }
    let out = paths[1]
    let dir = (out as NSString).deletingLastPathComponent
    guard FileManager.default.fileExists(atPath: dir.isEmpty ? "." : dir) else {
        throw ConfigError.invalid(path: out, detail: "the output directory does not exist")
    }
    let sampler = PeakSampler()
    sampler.start()
    let t0 = ProgressBar.now()
    let session = try Idefics2Session(source: try openModel(paths[0]))
    if let split { session.imageSplitting = split }
    let r = try Idefics2Trace.run(session, prompt: prompt, imagePaths: images, fullLogits: full)
    let anon = sampler.stop(), hwm = field("VmHWM")
    let q = { (s: String) in "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n") + "\"" }
    let json = Idefics2Trace.json(r, extra: [("generator", q("i2q-bench trace")), ("model", q(paths[0])), ("prompt", q(prompt)),
                                             ("do_image_splitting", session.imageSplitting ? "true" : "false"),
                                             ("bf16_activations", BF16Gemm.enabled ? "true" : "false"),
                                             ("peak_rss_anon_kib", "\(anon)"), ("peak_rss_kib", "\(hwm)")])
    try json.write(toFile: out + ".tmp", atomically: false, encoding: .utf8)
    _ = rename(out + ".tmp", out)
    print("trace: \(r.stages.count) stages, seq \(r.inputIds.count), pixel_values \(r.pixelValuesShape), forward \(String(format: "%.1f", r.seconds)) s, total \(String(format: "%.1f", ProgressBar.now() - t0)) s, peak RssAnon \(String(format: "%.2f", Double(anon) / 1048576)) GiB, VmHWM \(String(format: "%.2f", Double(hwm) / 1048576)) GiB, argmax \(r.stages.last?.argmax ?? -1)")
}
