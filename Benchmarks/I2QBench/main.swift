// i2q-bench: runtime measurements that need no tokenizer or image files.
//
//   i2q-bench idefics2 MODEL [--crops 4] [--crop-size 490x378] [--original 980x557] [--new-tokens 8]
//   i2q-bench nf4 MODEL TENSOR...   (the NF4 codec alone on named tensors; NF4Bench.swift)
//   i2q-bench trace MODEL OUT.json --image PAGE [--split|--no-split]   (per-layer summaries; TraceBench.swift)
//   i2q-bench limits                (sgemm GFLOP/s and memory read GB/s of this machine; LimitsBench.swift)
//
// Runs one DocVQA-style page through the whole Idefics2 model (vision encoder and connector for
// the 4 crops + the original, as image splitting gives them; then the decoder's prefill over
// the expanded prompt and greedy tokens) from the model's own weights (f32, f16 or bf16, mapped
// read-only). Pixel values are synthetic (speed and memory do not depend on them). Prints time
// per stage and peak anonymous memory (heap and buffers: RssAnon sampled every 10 ms; the mapped
// weight file is shared, reclaimable page cache and is not counted) and peak total RSS.
import Foundation
import I2QCore
import I2QFormats
import I2QRuntime

func field(_ name: String) -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }  // best effort: a missing /proc reads as 0
    for line in s.split(separator: "\n") where line.hasPrefix(name + ":") {
        return Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "0") ?? 0
    }
    return 0
}

final class PeakSampler: @unchecked Sendable {
    private let lock = NSLock()
    private var peak = 0
    private var running = true
    func start() {
        Thread.detachNewThread { [self] in
            while lock.withLock({ running }) {
                let v = field("RssAnon")
                lock.withLock { peak = max(peak, v) }
                usleep(10_000)
            }
        }
    }
    func stop() -> Int { lock.withLock { running = false; return max(peak, field("RssAnon")) } }
}

func * <T>(a: [T], n: Int) -> [T] { Array((0..<max(n, 0)).map { _ in a }.joined()) }

func size(_ s: String) -> (Int, Int) {
    let p = s.split(separator: "x").compactMap { Int($0) }
    return p.count == 2 ? (p[0], p[1]) : (490, 378)
}

var args = Array(CommandLine.arguments.dropFirst())
if args.first == "nf4" {
    guard args.count >= 3 else {
        FileHandle.standardError.write(Data("usage: i2q-bench nf4 MODEL TENSOR_NAME...\n".utf8))
        exit(2)
    }
    do { try runNF4Bench(Array(args.dropFirst())) } catch { FileHandle.standardError.write(Data("error: \(error)\n".utf8)); exit(1) }
    exit(0)
}
if args.first == "limits" {  // LimitsBench.swift
    runLimitsBench()
    exit(0)
}
if args.first == "trace" {  // TraceBench.swift
    do { try runTraceBench(Array(args.dropFirst())) } catch { FileHandle.standardError.write(Data("error: \(error)\n".utf8)); exit(1) }
    exit(0)
}
if args.first == "fuse" {  // FuseBench.swift
    do { try runFuseBench(Array(args.dropFirst())) } catch { FileHandle.standardError.write(Data("error: \(error)\n".utf8)); exit(1) }
    exit(0)
}
guard args.count >= 2, args[0] == "idefics2" else {
    FileHandle.standardError.write(Data("usage: i2q-bench idefics2 MODEL [--crops N] [--crop-size WxH] [--original WxH] [--new-tokens N] [--vision-only]\n".utf8))
    exit(2)
}
let modelPath = args[1]
var crops = 4, cropSize = (490, 378), original = (980, 557), newTokens = 8, visionOnly = false
var i = 2
while i + 1 < args.count {
    switch args[i] {
    case "--crops": crops = Int(args[i + 1]) ?? crops
    case "--crop-size": cropSize = size(args[i + 1])
    case "--original": original = size(args[i + 1])
    case "--new-tokens": newTokens = Int(args[i + 1]) ?? newTokens
    default: break
    }
    i += 2
}
visionOnly = args.contains("--vision-only")  // vision + connector only, no text

let sampler = PeakSampler()
sampler.start()
do {
    let t0 = ProgressBar.now()
    let model = try Idefics2Model(source: try openModel(modelPath))
    let tLoad = ProgressBar.now() - t0
    // The processor pads every image of a sample to the largest H and W.
    let H = max(cropSize.1, original.1), W = max(cropSize.0, original.0)
    var seed: UInt64 = 1
    func image(_ w: Int, _ h: Int) -> Idefics2Model.ImageInput {
        var px = [Float](repeating: 0, count: 3 * H * W)
        var mask = [Bool](repeating: false, count: H * W)
        for c in 0..<3 { for y in 0..<h { for x in 0..<w {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            px[(c * H + y) * W + x] = Float(Int(seed >> 40) % 2001 - 1000) / 1000
        } } }
        for y in 0..<h { for x in 0..<w { mask[y * W + x] = true } }
        return .init(pixels: px, mask: mask, height: H, width: W)
    }
    let images = (0..<crops).map { _ in image(cropSize.0, cropSize.1) } + [image(original.0, original.1)]
    let ps = model.config.vision.patchSize
    let patches = ([(cropSize.0, cropSize.1)] * crops + [original]).map { ($0.0 / ps) * ($0.1 / ps) }  // whole real patches
    let t1 = ProgressBar.now()
    let features = try model.imageFeatures(images)
    let tVision = ProgressBar.now() - t1
    if visionOnly {
        print("vision + connector: \(formatFixed(tVision, 1)) s (\(formatFixed(Double(patches.reduce(0, +)) / tVision, 1)) patches/s)")
        exit(0)
    }
    let n = model.config.perceiver.resamplerNLatents
    var ids = [1, 1247, 28747]  // <s> User:
    for _ in images { ids += [32000] + Array(repeating: 32001, count: n) }
    ids += [32000, 1824, 349, 272, 3681, 28804, 32002, 28705, 13, 7226, 11143, 28747]
    let h = model.config.text.hiddenSize
    var emb = try model.text.embed(ids)
    var k = 0
    for (p, id) in ids.enumerated() where id == model.config.imageTokenId {
        for c in 0..<h { emb[p * h + c] = features[k * h + c] }
        k += 1
    }
    let cache = try model.text.makeCache(capacity: ids.count + newTokens + 1)
    let t2 = ProgressBar.now()
    var opts = GreedyOptions()
    opts.maxNewTokens = newTokens
    let out = try Greedy.generate(model.text, promptEmbeddings: emb, options: opts, cache: cache)
    let tText = ProgressBar.now() - t2
    let peakAnon = sampler.stop()
    print("""
    model: \(modelPath)
    images: \(images.count) (\(crops) crops \(cropSize.0)x\(cropSize.1) + original \(original.0)x\(original.1), padded to \(W)x\(H)), real patches \(patches) = \(patches.reduce(0, +))
    load: \(formatFixed(tLoad, 2)) s
    vision + connector: \(formatFixed(tVision, 1)) s (\(formatFixed(Double(patches.reduce(0, +)) / tVision, 1)) patches/s)
    text prefill (\(ids.count) tokens) + \(out.count) greedy tokens: \(formatFixed(tText, 1)) s
    total per page: \(formatFixed(tVision + tText, 1)) s
    peak anonymous memory (RssAnon): \(formatFixed(Double(peakAnon) / 1048576, 2)) GiB
    peak total RSS (VmHWM, includes the mapped weights): \(formatFixed(Double(field("VmHWM")) / 1048576, 2)) GiB
    """)
} catch let e as I2QError {
    FileHandle.standardError.write(Data("error: \(e.description)\n".utf8))
    exit(1)
}
