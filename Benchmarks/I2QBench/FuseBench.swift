import Foundation
import I2QCore
import I2QFormats
import I2QRuntime

/// `i2q-bench fuse MODEL_A MODEL_B [--ctx 512] [--new 32] [--trials 7]`: the text decoder of two
/// models with the same config — unfused and `i2q fuse`d — timed in alternation on the same random
/// prompt (seed 0): prefill of CTX tokens (best trial) and greedy-free decoding of NEW tokens after
/// it (per token: the fastest and the median over all trials). Alternating trials and per-token
/// minima keep a busy machine from favouring one model. Prints one JSON line per model.
func runFuseBench(_ args: [String]) throws {
    var ctx = 512, new = 32, trials = 7
    var paths: [String] = []
    var i = 0
    while i < args.count {
        switch args[i] {
        case "--ctx": ctx = Int(args[i + 1]) ?? ctx; i += 2
        case "--new": new = Int(args[i + 1]) ?? new; i += 2
        case "--trials": trials = Int(args[i + 1]) ?? trials; i += 2
        default: paths.append(args[i]); i += 1
        }
    }
    guard paths.count >= 2 else {
        FileHandle.standardError.write(Data("usage: i2q-bench fuse MODEL_A MODEL_B [--ctx 512] [--new 32] [--trials 7]\n".utf8))
        exit(2)
    }
    let decoders = try paths.map { try TextDecoder(source: try openModel($0)) }
    let vocab = decoders[0].config.vocabSize
    var rng = UInt64(0x9E37_79B9_7F4A_7C15)
    let ids = (0..<(ctx + new)).map { _ -> Int in rng = rng &* 6364136223846793005 &+ 1442695040888963407; return Int(rng >> 33) % vocab }
    var prefill = [Double](repeating: .infinity, count: paths.count)
    var perToken = [[Double]](repeating: [], count: paths.count)
    for _ in 0..<trials {
        for (m, dec) in decoders.enumerated() {
            let cache = try dec.makeCache(capacity: ctx + new)
            var t0 = ProgressBar.now()
            let h = try dec.forward(embeddings: try dec.embed(Array(ids[0..<ctx])), cache: cache)
            _ = try dec.logits(h, rows: (ctx - 1)..<ctx)
            prefill[m] = min(prefill[m], ProgressBar.now() - t0)
            for k in 0..<new {
                t0 = ProgressBar.now()
                _ = try dec.logits(try dec.forward(embeddings: try dec.embed([ids[ctx + k]]), cache: cache), rows: 0..<1)
                perToken[m].append(ProgressBar.now() - t0)
            }
        }
    }
    for (m, p) in paths.enumerated() {
        let s = perToken[m].sorted()
        let line = String(format: "{\"model\": \"%@\", \"ctx\": %d, \"prefill_tok_s\": %.2f, \"decode_tok_s_best\": %.2f, \"decode_tok_s_median\": %.2f, \"trials\": %d}",
                          p, ctx, Double(ctx) / prefill[m], 1 / s[0], 1 / s[s.count / 2], trials)
        print(line)
    }
}
