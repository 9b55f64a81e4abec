import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QFormats

/// GGUF files as model sources against what transformers 5.24 builds from them
/// (`AutoModelForCausalLM.from_pretrained(dir, gguf_file=…, dtype=float32)`): tensor names, shapes,
/// every value bit for bit (dequantization + the q/k un-permutation), config.json and
/// generation_config.json byte for byte. Fixtures: Tests/Fixtures/gguf/make_gguf_fixtures.py.
final class GGUFModelTests: XCTestCase {
    let dir = fixturesDir + "/gguf"

    func checkAgainstTransformers(_ name: String, chunk: Int) throws {
        let m = try GGUFModel(path: "\(dir)/\(name).gguf")
        let expected = try SafetensorsFile(path: "\(dir)/\(name).expected.safetensors")
        XCTAssertEqual(Set(m.tensors.map(\.name)), Set(expected.tensors.map(\.name)), name)
        for t in m.tensors {
            guard let e = expected.info(t.name) else { continue }
            XCTAssertEqual(t.dtype, .f32)
            XCTAssertEqual(t.shape, e.shape, t.name)
            let want: [UInt32] = expected.withData(e) { Array($0.bindMemory(to: UInt32.self)) }
            var got = [UInt32](repeating: 0, count: t.elementCount)
            // Read in chunks of `chunk` elements: ranges cross rows and blocks.
            try got.withUnsafeMutableBytes { buf in
                var i = 0
                while i < t.elementCount {
                    let n = min(chunk, t.elementCount - i)
                    try t.read(elements: i, count: n, into: buf.baseAddress! + 4 * i)
                    i += n
                }
            }
            XCTAssertTrue(got == want, "\(name): \(t.name) differs from transformers' tensor (chunk \(chunk))")
        }
        let cfg = JSONWriter.string(m.rawConfig, indent: 2) + "\n"
        XCTAssertEqual(cfg, try String(contentsOfFile: "\(dir)/\(name).config.json", encoding: .utf8), name)
        let files = try m.auxiliaryFiles()
        let gen = try XCTUnwrap(files.first { $0.name == "generation_config.json" })
        XCTAssertEqual(String(decoding: gen.bytes, as: UTF8.self),
                       try String(contentsOfFile: "\(dir)/\(name).generation_config.json", encoding: .utf8), name)
        let tpl = try XCTUnwrap(files.first { $0.name == "chat_template.jinja" })
        XCTAssertEqual(tpl.bytes, Array("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}".utf8))
    }

    func testTinyLlamaMixedTypes() throws {
        try checkAgainstTransformers("tiny-llama", chunk: 1 << 20)
        try checkAgainstTransformers("tiny-llama", chunk: 7)
        let m = try GGUFModel(path: dir + "/tiny-llama.gguf")
        XCTAssertEqual(m.config.textConfig.numKeyValueHeads, 2)
        XCTAssertFalse(m.config.textConfig.tieWordEmbeddings)
        XCTAssertEqual(m.sourceNames["lm_head.weight"], "output.weight")
        XCTAssertTrue(m.problems.contains { $0.contains("rope_freqs.weight") }, "\(m.problems)")
        // Unpermuted F32 tensors are read in place.
        XCTAssertNotNil(m.tensor("model.norm.weight")?.file)
        XCTAssertNil(m.tensor("model.layers.1.self_attn.q_proj.weight")?.file)
    }

    func testTiedVocabFromTokens() throws {
        try checkAgainstTransformers("tiny-tied", chunk: 5)
        let m = try GGUFModel(path: dir + "/tiny-tied.gguf")
        XCTAssertTrue(m.config.textConfig.tieWordEmbeddings)
        XCTAssertNil(m.tensor("lm_head.weight"))
        XCTAssertEqual(m.config.textConfig.vocabSize, 48)
    }

    /// Without attention.head_count_kv transformers permutes neither q nor k.
    func testNoKVHeadsKeyMeansNoPermutation() throws {
        try checkAgainstTransformers("tiny-nokv", chunk: 3)
    }

    func testOpenModelDispatch() throws {
        let m = try openModel(dir + "/tiny-tied.gguf")
        XCTAssertTrue(m is GGUFModel)
        // By magic, whatever the name.
        let tmp = try makeTempDir("gguf")
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try FileManager.default.copyItem(atPath: dir + "/tiny-tied.gguf", toPath: tmp + "/model.bin")
        XCTAssertTrue(try openModel(tmp + "/model.bin") is GGUFModel)
        XCTAssertEqual(m.identity["kind"]?.stringValue, "gguf")
        XCTAssertTrue(m.quantizedTensorNames.isEmpty)
    }
}
