import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport
import I2QImage
@testable import I2QRuntime

/// Idefics2 against transformers 5.24 (float32, eager): Tests/Fixtures/golden/tiny-idefics2.safetensors
/// holds the processor's pixel_values / masks for a real PNG, the vision encoder's and connector's
/// outputs, all logits and 8 greedy tokens (scripts/fixtures/make_fixtures.py).
final class Idefics2Tests: XCTestCase {

    func testPositionBucketsMatchTransformersForEveryPatchCount() throws {
        let j = try JSONParser.parse(FileSystem.readFile(fixturesDir + "/golden/position_buckets.json"), source: "buckets")
        var checked = 0
        for (side, table) in try XCTUnwrap(j["sides"]?.objectEntries) {
            for (nb, expected) in try XCTUnwrap(table.objectEntries) {
                let got = VisionTransformer.buckets(nb: Int(nb)!, side: Int(side)!)
                XCTAssertEqual(got, expected.arrayValue?.compactMap(\.intValue), "side \(side) nb \(nb)")
                checked += 1
            }
        }
        XCTAssertEqual(checked, 74)  // 1…70 for idefics2-8b's 70×70 grid, 1…4 for the tiny model
    }

    func testTinyIdefics2EndToEnd() throws {
        let g = try SafetensorsFile(path: fixturesDir + "/golden/tiny-idefics2.safetensors")
        let model = try Idefics2Model(source: try openModel(fixturesDir + "/tiny-idefics2-v4"))
        let shape = g.info("pixel_values")!.shape  // [1, 1, 3, H, W]
        let H = shape[3], W = shape[4]
        let pixels = floats(g, "pixel_values")
        let mask = ints(g, "pixel_attention_mask").map { $0 != 0 }
        let (hidden, patchMask) = try model.vision.encode(pixels: pixels, mask: mask, height: H, width: W)
        let wantVision = floats(g, "vision_last_hidden_state")
        let realPatches = patchMask.filter { $0 }.count
        XCTAssertEqual(ints(g, "patch_attention_mask").map { $0 != 0 }, patchMask)
        // Compare real patches only (padded patches are masked everywhere downstream).
        let h = model.config.vision.hiddenSize
        var vd: Float = 0
        for i in patchMask.indices where patchMask[i] { for c in 0..<h { vd = max(vd, abs(hidden[i * h + c] - wantVision[i * h + c])) } }
        print("vision max|Δ| \(vd) over \(realPatches) real patches")
        XCTAssertLessThan(vd, 1e-4)

        let feats = try model.connector(hidden, patchMask: patchMask)
        let cd = maxDiff(feats, floats(g, "image_hidden_states"))
        print("connector max|Δ| \(cd)")
        XCTAssertLessThan(cd, 1e-4)

        let ids = ints(g, "input_ids")
        let emb = try model.embeddings(ids: ids, images: [.init(pixels: pixels, mask: mask, height: H, width: W)])
        let cache = try model.text.makeCache(capacity: 64)
        let last = try model.text.forward(embeddings: emb, cache: cache)
        let logits = try model.text.logits(last, rows: 0..<ids.count)
        let want = floats(g, "logits")
        let ld = maxDiff(logits, want)
        let std = standardDeviation(want)
        print("logits max|Δ| \(ld), std \(std), ratio \(ld / std)")
        XCTAssertLessThanOrEqual(ld, 1e-4 * std)

        var opts = GreedyOptions()
        opts.maxNewTokens = 8
        opts.stopTokens = [2, 32002]
        opts.bannedTokens = [32000, 32001]
        cache.reset()
        let gen = try Greedy.generate(model.text, promptEmbeddings: emb, options: opts, cache: cache)
        XCTAssertEqual(gen, ints(g, "generated_ids"))
    }
}

final class Idefics2PromptTests: XCTestCase {
    /// The processor's input_ids for the golden prompt (transformers 5.24 Idefics2Processor).
    func testExpansionAndTokenizationMatchTheProcessor() throws {
        let g = try SafetensorsFile(path: fixturesDir + "/golden/tiny-idefics2.safetensors")
        let want = g.withData(g.info("input_ids")!) { b in (0..<(b.count / 8)).map { Int(b.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) } }
        let session = try TextSession(source: try openModel(fixturesDir + "/tiny-idefics2-v4"))
        let text = Idefics2Prompt.expand("User:<image>What is written here?<end_of_utterance>\nAssistant:", imageSeqLen: 4, splitting: false)
        XCTAssertEqual(session.tokenizer.encode(text), want)
    }

    func testExpansionRules() {
        let f = Idefics2Prompt.fake, i = Idefics2Prompt.image
        XCTAssertEqual(Idefics2Prompt.expand("a<image>b", imageSeqLen: 2, splitting: false), "a\(f)\(i)\(i)\(f) b")
        XCTAssertEqual(Idefics2Prompt.expand("<image><image> x", imageSeqLen: 1, splitting: false), "\(f)\(i)\(f)\(i)\(f) x")
        XCTAssertEqual(Idefics2Prompt.expand("<image><end_of_utterance>", imageSeqLen: 1, splitting: true),
                       f + String(repeating: "\(i)\(f)", count: 5) + "<end_of_utterance>")
    }
}

/// Two padded images of different sizes, and image splitting (5 images): connector outputs, the
/// prompt's input_ids, the last 4 positions' logits and every position's argmax against transformers.
final class Idefics2MultiImageTests: XCTestCase {
    func run(_ file: String, splitting: Bool, prompt: String) throws {
        let g = try SafetensorsFile(path: fixturesDir + "/golden/" + file)
        let source = try openModel(fixturesDir + "/tiny-idefics2-v4")
        let model = try Idefics2Model(source: source)
        let session = try TextSession(source: source)
        let shape = g.info("pixel_values")!.shape  // [1, images, 3, H, W]
        let (k, H, W) = (shape[1], shape[3], shape[4])
        let pixels = floats(g, "pixel_values"), mask = ints(g, "pixel_attention_mask").map { $0 != 0 }
        let images = (0..<k).map { i in
            Idefics2Model.ImageInput(pixels: Array(pixels[(i * 3 * H * W)..<((i + 1) * 3 * H * W)]),
                                     mask: Array(mask[(i * H * W)..<((i + 1) * H * W)]), height: H, width: W)
        }
        let ids = session.tokenizer.encode(Idefics2Prompt.expand(prompt, imageSeqLen: 4, splitting: splitting))
        XCTAssertEqual(ids, ints(g, "input_ids"), file)
        let feats = try model.imageFeatures(images)
        let fd = maxDiff(feats, floats(g, "image_hidden_states"))
        XCTAssertLessThan(fd, 1e-4, "\(file): connector max|Δ| \(fd)")
        let emb = try model.embeddings(ids: ids, images: images)
        let hidden = try model.text.forward(embeddings: emb, cache: try model.text.makeCache(capacity: 64))
        let all = try model.text.logits(hidden, rows: 0..<ids.count)
        let v = model.config.text.vocabSize
        var argmax: [Int] = []
        for r in 0..<ids.count {
            let row = Array(all[(r * v)..<((r + 1) * v)])
            argmax.append(row.withUnsafeBufferPointer { Greedy.argmax($0, banned: []) })
        }
        XCTAssertEqual(argmax, ints(g, "logits_argmax"), file)
        let want = floats(g, "logits_last4")
        let last4 = Array(all[((ids.count - 4) * v)...])
        let d = maxDiff(last4, want), std = standardDeviation(want)
        print("\(file): logits max|Δ|/std \(d / std)")
        XCTAssertLessThanOrEqual(d, 1e-4 * std, file)
    }

    func testTwoImagesOfDifferentSizes() throws {
        try run("tiny-idefics2-two-images.safetensors", splitting: false, prompt: "User:<image><image>Compare the two pictures.<end_of_utterance>\nAssistant:")
    }

    func testImageSplitting() throws {
        try run("tiny-idefics2-split.safetensors", splitting: true, prompt: "User:<image>What is written here?<end_of_utterance>\nAssistant:")
    }
}

func floats(_ f: SafetensorsFile, _ n: String) -> [Float] {
    f.withData(f.info(n)!) { b in (0..<(b.count / 4)).map { b.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
}
func ints(_ f: SafetensorsFile, _ n: String) -> [Int] {
    f.withData(f.info(n)!) { b in (0..<(b.count / 8)).map { Int(b.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) } }
}
func maxDiff(_ a: [Float], _ b: [Float]) -> Float {
    var m: Float = 0
    for (x, y) in zip(a, b) { m = max(m, abs(x - y)) }
    return m
}

/// From the image file on disk, through the PIL-exact image processor, to generated tokens.
final class Idefics2SessionTests: XCTestCase {
    func testFromPNGFileToGreedyTokens() throws {
        for (golden, pngs, prompt) in [
            ("tiny-idefics2.safetensors", ["gradient-75x50.png"], "User:<image>What is written here?<end_of_utterance>\nAssistant:"),
            ("tiny-idefics2-two-images.safetensors", ["gradient-75x50.png", "rgba-30x61.png"], "User:<image><image>Compare the two pictures.<end_of_utterance>\nAssistant:"),
        ] {
            let g = try SafetensorsFile(path: fixturesDir + "/golden/" + golden)
            let session = try Idefics2Session(source: try openModel(fixturesDir + "/tiny-idefics2-v4"))
            let processed = try session.process(try pngs.map { try ImageDecoder.decodeRGB(path: fixturesDir + "/golden/" + $0) })
            XCTAssertEqual(processed.pixelValuesShape, g.info("pixel_values")!.shape, golden)
            let d = maxDiff(processed.pixelValues, floats(g, "pixel_values"))
            print("\(golden): pixel_values max|Δ| \(d)")
            XCTAssertLessThanOrEqual(d, 1e-6, golden)
            XCTAssertEqual(processed.pixelAttentionMask.map(Int.init), ints(g, "pixel_attention_mask"), golden)
            let r = try session.run(prompt: prompt, images: pngs.map { fixturesDir + "/golden/" + $0 }, maxNewTokens: 8, wantLogits: false)
            XCTAssertEqual(r.inputIds, ints(g, "input_ids"), golden)
            if g.info("generated_ids") != nil { XCTAssertEqual(r.generatedIds, ints(g, "generated_ids"), golden) }
        }
    }
}
