import Foundation
import XCTest
import I2QCore
import I2QEval
import I2QFormats
import I2QPasses
import I2QTestSupport

/// `ImatrixPass.compute` through the runtime's linear hook (`LinearInputTap`).
final class ImatrixCollectionTests: XCTestCase {
    static var root: String { URL(fileURLWithPath: fixturesDir).deletingLastPathComponent().deletingLastPathComponent().path }

    /// SmolLM2-135M-Instruct (f32) on Tests/Fixtures/imatrix/calibration.txt, ctx 64: every decoder
    /// linear's Σx²/rows per column equals two references made without i2q —
    /// - transformers 5.24: forward hooks on nn.Linear inputs, float64 sums
    ///   (scripts/fixtures/make_imatrix_reference.py → smollm2_reference.json);
    /// - llama.cpp as bundled in llama-cpp-python 0.3.36: llama-imatrix's collection rule run in its
    ///   cb_eval callback on the f32 GGUF of the same weights (scripts/fixtures/
    ///   make_imatrix_llamacpp_reference.py → smollm2_llamacpp.json; same entries, counts, tokens).
    /// The forwards agree to float32 rounding (measured worst ~6e-6 relative); tolerance 2e-4
    /// relative (+1e-6 · the tensor's largest value for columns near zero).
    func testSmolLM2MatchesTransformersAndLlamaCpp() throws {
        let path = ProcessInfo.processInfo.environment["I2Q_SMOLLM2"] ?? Self.root + "/.cache/smollm2/SmolLM2-135M-Instruct-f32"
        guard FileSystem.exists(path + "/config.json") else {
            XCTFail("SmolLM2 is not at \(path): run `bash scripts/get_smollm2.sh` or set I2Q_SMOLLM2"); return
        }
        var s = ImatrixSettings(calibration: fixturesDir + "/imatrix/calibration.txt")
        s.ctx = 64
        let (m, report) = try ImatrixPass.compute(source: try openModel(path), settings: s)
        XCTAssertEqual(m.chunkSize, 64)
        XCTAssertEqual(report.tokens, 5 * 64)
        for file in ["smollm2_reference.json", "smollm2_llamacpp.json"] {
            let ref = try JSONParser.parse(FileSystem.readFile(fixturesDir + "/imatrix/" + file), source: file)
            XCTAssertEqual(ref["ctx"]?.intValue, 64, file)
            XCTAssertEqual(report.sequences, ref["chunks"]?.intValue, file)
            let entries = try XCTUnwrap(ref["entries"]?.objectEntries)
            XCTAssertEqual(Set(m.entries.keys), Set(entries.map(\.0)), "\(file): one entry per decoder linear (210), no output.weight")
            var worst = 0.0
            for (name, e) in entries {
                let v = try XCTUnwrap(m.values(for: name), name)
                XCTAssertEqual(m.entries[name]?.counts, [Float(try XCTUnwrap(e["count"]?.intValue))], name)
                let sum = v.reduce(0.0) { $0 + Double($1) }, want = try XCTUnwrap(e["sum"]?.doubleValue)
                worst = max(worst, abs(sum - want) / want)
                XCTAssertEqual(sum, want, accuracy: want * 2e-4, "\(file) \(name)")
                let mx = try XCTUnwrap(e["max"]?.doubleValue)
                XCTAssertEqual(Double(v.max()!), mx, accuracy: mx * 2e-4, "\(file) \(name)")
                XCTAssertEqual(v.indices.max { v[$0] < v[$1] }, e["argmax"]?.intValue, "\(file) \(name)")
            }
            for (name, want) in try XCTUnwrap(ref["full"]?.objectEntries) {
                let v = try XCTUnwrap(m.values(for: name)), w = try XCTUnwrap(want.arrayValue).compactMap(\.doubleValue)
                XCTAssertEqual(v.count, w.count, name)
                let top = w.max()!
                for (a, b) in zip(v, w) {
                    worst = max(worst, abs(Double(a) - b) / (b + 1e-6 * top))
                    XCTAssertEqual(Double(a), b, accuracy: b * 2e-4 + 1e-6 * top, "\(file) \(name)")
                }
            }
            print("imatrix SmolLM2 vs \(file): worst relative difference \(worst) over \(entries.count) entries")
        }
    }

    /// The trained easy-VQA Idefics2 on 3 train questions (DocVQA format): the decoder rows are the
    /// prompts' text + image tokens (16 perceiver latents per image, config.json), the vision tower
    /// sees (64/8)² = 64 patches per image, the perceiver's k/v 64 + 16 rows, its q 16 — counts from
    /// the checkpoint's config, not from i2q. Run text-only on the same questions, the vision entries
    /// vanish and the decoder's importance changes.
    func testIdefics2IncludesImageTokens() throws {
        let dir = ProcessInfo.processInfo.environment["I2Q_EASY_VQA"] ?? Self.root + "/.cache/easy-vqa"
        guard FileSystem.exists(dir + "/train/val_v1.0.json") else {
            XCTFail("easy-VQA is not at \(dir): run `bash scripts/get_easy_vqa.sh` or set I2Q_EASY_VQA"); return
        }
        let model = fixturesDir + "/easy-vqa-idefics2"
        let cfg = try JSONParser.parse(FileSystem.readFile(model + "/config.json"), source: "config.json")
        let latents = try XCTUnwrap(cfg["perceiver_config"]?["resampler_n_latents"]?.intValue)
        let vc = try XCTUnwrap(cfg["vision_config"])
        let patches = { let s = vc["image_size"]!.intValue! / vc["patch_size"]!.intValue!; return s * s }()
        var s = ImatrixSettings(calibration: dir + "/train")
        s.chunks = 3
        let source = try openModel(model)
        let (m, r) = try ImatrixPass.compute(source: source, settings: s)
        XCTAssertEqual(r.sequences, 3)
        XCTAssertEqual(r.imageTokens, 3 * latents)
        func count(_ m: ImportanceMatrix, _ n: String) -> Float? { m.entries[n]?.counts.first }
        for n in ["blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.1.ffn_down.weight", "blk.1.attn_output.weight"] {
            XCTAssertEqual(count(m, n), Float(r.tokens), n)
        }
        XCTAssertEqual(count(m, "v.patch_embd.weight"), Float(3 * patches))
        XCTAssertEqual(count(m, "v.blk.0.attn_q.weight"), Float(3 * patches))
        XCTAssertEqual(count(m, "v.blk.3.ffn_down.weight"), Float(3 * patches))
        XCTAssertEqual(count(m, "mm.ffn_gate.weight"), Float(3 * patches))
        XCTAssertEqual(count(m, "resampler.blk.0.attn_k.weight"), Float(3 * (patches + latents)))
        XCTAssertEqual(count(m, "resampler.blk.1.attn_q.weight"), Float(3 * latents))
        XCTAssertEqual(count(m, "resampler.blk.1.ffn_down.weight"), Float(3 * latents))

        s.images = false
        let (t, rt) = try ImatrixPass.compute(source: source, settings: s)
        XCTAssertEqual(rt.imageTokens, 0)
        XCTAssertTrue(t.entries.keys.allSatisfy { $0.hasPrefix("blk.") }, "text-only: decoder entries only")
        XCTAssertEqual(count(t, "blk.0.attn_q.weight"), Float(rt.tokens))
        XCTAssertGreaterThanOrEqual(r.tokens - rt.tokens, 3 * latents, "the image prompts hold the latents and their wrapper tokens")
        let a = try XCTUnwrap(m.values(for: "blk.0.attn_q.weight")), b = try XCTUnwrap(t.values(for: "blk.0.attn_q.weight"))
        let diff = zip(a, b).map { abs($0 - $1) / max($1, 1e-12) }.max()!
        XCTAssertGreaterThan(diff, 0.05, "image tokens change the decoder's importance")
    }
}
