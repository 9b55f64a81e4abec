import Foundation
import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QFormats

/// Typed configs against transformers 5.24: every expected value below was printed by
/// `Idefics2Config(**json)` / `LlamaConfig` / `MistralConfig` of transformers 5.24.0 for the same JSON.
final class ConfigTests: XCTestCase {
    func decode(_ json: String) throws -> ModelConfig { try ModelRegistry.decode(Data(json.utf8), path: "config.json") }

    func idefics(_ path: String) throws -> Idefics2Config {
        guard case let .idefics2(c) = try ModelDirectory(path: fixturesDir + "/" + path).config else { throw XCTSkip("not idefics2") }
        return c
    }

    func testBothConfigGenerationsDecodeToTheSameModel() throws {
        var v4 = try idefics("tiny-idefics2-v4"), v5 = try idefics("tiny-idefics2-v5")
        // transformers: 32003 32 64 2 4 2 8 32768 1e-05 rope_theta 100000 sliding 4096 pad 0 bos 1 eos 2 | perc 32 1e-06 | vis 32 1e-06 56 14
        for c in [v4, v5] {
            XCTAssertEqual(c.text.vocabSize, 32003); XCTAssertEqual(c.text.hiddenSize, 32)
            XCTAssertEqual(c.text.intermediateSize, 64); XCTAssertEqual(c.text.numHiddenLayers, 2)
            XCTAssertEqual(c.text.numAttentionHeads, 4); XCTAssertEqual(c.text.numKeyValueHeads, 2)
            XCTAssertEqual(c.text.headDim, 8); XCTAssertEqual(c.text.maxPositionEmbeddings, 32768)
            XCTAssertEqual(c.text.rmsNormEps, 1e-5); XCTAssertEqual(c.text.rope.theta, 100000)
            XCTAssertEqual(c.text.slidingWindow, 4096); XCTAssertEqual(c.text.padTokenId, 0)
            XCTAssertEqual(c.text.bosTokenId, 1); XCTAssertEqual(c.text.eosTokenIds, [2])
            XCTAssertEqual(c.perceiver.hiddenSize, 32); XCTAssertEqual(c.perceiver.rmsNormEps, 1e-6)
            XCTAssertEqual(c.vision.hiddenSize, 32); XCTAssertEqual(c.vision.layerNormEps, 1e-6)
            XCTAssertEqual(c.vision.imageSize, 56); XCTAssertEqual(c.vision.patchSize, 14)
            XCTAssertEqual(c.imageTokenId, 32001)
        }
        XCTAssertEqual(v4.dtype, "float32"); XCTAssertEqual(v5.dtype, "float32")
        v4.text.dtype = nil; v5.text.dtype = nil
        XCTAssertEqual(v4, v5)
    }

    func testProcessorSettingsNestedOrSeparate() throws {
        let p4 = try XCTUnwrap(try ModelDirectory(path: fixturesDir + "/tiny-idefics2-v4").processor)
        let p5 = try XCTUnwrap(try ModelDirectory(path: fixturesDir + "/tiny-idefics2-v5").processor)
        XCTAssertEqual(p4.source, "preprocessor_config.json")
        XCTAssertEqual(p5.source, "processor_config.json (image_processor)")
        for p in [p4, p5] {
            XCTAssertEqual(p.longestEdge, 56); XCTAssertEqual(p.shortestEdge, 28)
            XCTAssertEqual(p.imageSeqLen, 4); XCTAssertFalse(p.doImageSplitting)
            XCTAssertEqual(p.imageMean, [0.5, 0.5, 0.5])
        }
    }

    func testEmptyIdefics2ConfigTakesTransformersDefaults() throws {
        // transformers: 32000 4096 14336 32 32 8 128 32768 1e-05 theta 10000 sliding 4096 pad 0 | perc 4096 1e-06 | vis 768 1e-06 224 32
        guard case let .idefics2(c) = try decode(#"{"model_type": "idefics2"}"#) else { return XCTFail() }
        XCTAssertEqual(c.text.vocabSize, 32000); XCTAssertEqual(c.text.hiddenSize, 4096)
        XCTAssertEqual(c.text.headDim, 128); XCTAssertEqual(c.text.maxPositionEmbeddings, 32768)
        XCTAssertEqual(c.text.rmsNormEps, 1e-5); XCTAssertEqual(c.text.rope.theta, 10000)
        XCTAssertEqual(c.text.padTokenId, 0)
        XCTAssertEqual(c.perceiver.hiddenSize, 4096); XCTAssertEqual(c.perceiver.rmsNormEps, 1e-6)
        XCTAssertEqual(c.vision.hiddenSize, 768); XCTAssertEqual(c.vision.imageSize, 224); XCTAssertEqual(c.vision.patchSize, 32)
    }

    func testPerceiverTakesTextEpsWhenHiddenSizesDiffer() throws {
        // transformers: text 32000 64 … head_dim 2, max_pos 131072, eps 1e-05, pad None | perc 64 1e-05
        guard case let .idefics2(c) = try decode(#"{"model_type":"idefics2","text_config":{"model_type":"mistral","hidden_size":64,"rms_norm_eps":1e-5},"perceiver_config":{"hidden_size":32}}"#) else { return XCTFail() }
        XCTAssertEqual(c.perceiver.hiddenSize, 64); XCTAssertEqual(c.perceiver.rmsNormEps, 1e-5)
        XCTAssertEqual(c.text.headDim, 2); XCTAssertEqual(c.text.maxPositionEmbeddings, 131072)
        XCTAssertNil(c.text.padTokenId)
    }

    func testRealIdefics2_8bConfig() throws {
        // The 4.x config.json of HuggingFaceM4/idefics2-8b (text_config with few keys).
        let real = #"{"architectures":["Idefics2ForConditionalGeneration"],"image_token_id":32001,"model_type":"idefics2","perceiver_config":{"hidden_act":"silu","model_type":"idefics2","num_key_value_heads":4,"resampler_depth":3,"resampler_head_dim":96,"resampler_n_heads":16,"resampler_n_latents":64},"text_config":{"max_position_embeddings":32768,"model_type":"mistral","pad_token_id":0,"rms_norm_eps":1e-05,"rope_theta":10000.0,"sliding_window":4096,"vocab_size":32003},"tie_word_embeddings":false,"torch_dtype":"float32","transformers_version":"4.40.0.dev0","use_cache":true,"vision_config":{"hidden_size":1152,"image_size":980,"intermediate_size":4304,"model_type":"idefics2","num_attention_heads":16,"num_hidden_layers":27,"patch_size":14}}"#
        // transformers: 32003 4096 14336 32 32 8 128 32768 1e-05 theta 10000 4096 pad 0 | perc 4096 1e-06 | vis 1152 1e-06 980 14
        guard case let .idefics2(c) = try decode(real) else { return XCTFail() }
        XCTAssertEqual(c.text.vocabSize, 32003); XCTAssertEqual(c.text.hiddenSize, 4096)
        XCTAssertEqual(c.text.intermediateSize, 14336); XCTAssertEqual(c.text.numKeyValueHeads, 8)
        XCTAssertEqual(c.text.headDim, 128); XCTAssertEqual(c.text.rmsNormEps, 1e-5)
        XCTAssertEqual(c.perceiver.hiddenSize, 4096); XCTAssertEqual(c.perceiver.rmsNormEps, 1e-6)
        XCTAssertEqual(c.perceiver.resamplerNLatents, 64); XCTAssertEqual(c.perceiver.resamplerHeadDim, 96)
        XCTAssertEqual(c.vision.hiddenSize, 1152); XCTAssertEqual(c.vision.numHiddenLayers, 27)
        XCTAssertEqual(c.vision.imageSize, 980); XCTAssertEqual(c.dtype, "float32")
    }

    func testLlamaAndMistralFixtures() throws {
        // transformers: llama 256 32 kv 1 head_dim 8 theta 100000 tied eps 1e-05 max_pos 256
        let l = try ModelDirectory(path: fixturesDir + "/tiny-llama").config.textConfig
        XCTAssertEqual(l.modelType, "llama"); XCTAssertEqual(l.vocabSize, 256); XCTAssertEqual(l.numKeyValueHeads, 1)
        XCTAssertEqual(l.headDim, 8); XCTAssertEqual(l.rope.theta, 100000); XCTAssertTrue(l.tieWordEmbeddings)
        XCTAssertNil(l.slidingWindow); XCTAssertEqual(l.maxPositionEmbeddings, 256)
        // transformers: mistral 32003 32 kv 2 head_dim 8 theta 1e6 tied eps 1e-05 sliding 8
        let m = try ModelDirectory(path: fixturesDir + "/tiny-mistral").config.textConfig
        XCTAssertEqual(m.vocabSize, 32003); XCTAssertEqual(m.rope.theta, 1_000_000); XCTAssertEqual(m.slidingWindow, 8)
        XCTAssertTrue(m.tieWordEmbeddings); XCTAssertEqual(m.rmsNormEps, 1e-5)
    }

    func testWrongTypeIsAnErrorNamingTheKey() {
        assertThrowsMentioning(["config.json", "text_config.hidden_size"]) {
            _ = try self.decode(#"{"model_type":"idefics2","text_config":{"hidden_size":"4096"}}"#)
        }
        assertThrowsMentioning(["config.json", "rope_parameters.rope_theta"]) {
            _ = try self.decode(#"{"model_type":"llama","rope_parameters":{"rope_theta":"x"}}"#)
        }
    }

    func testUnknownOrMissingModelType() {
        assertThrowsMentioning(["config.json", "\"bert\"", "idefics2"]) { _ = try self.decode(#"{"model_type":"bert"}"#) }
        assertThrowsMentioning(["config.json", "model_type"]) { _ = try self.decode(#"{"hidden_size": 3}"#) }
        assertThrowsMentioning(["config.json", "JSON"]) { _ = try self.decode(#"{"model_type": "llama",}"#) }
    }

    func testMissingConfigAndMismatchedWeights() throws {
        let dir = try makeTempDir("cfg")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        assertThrowsMentioning([dir + "/config.json", "missing"]) { _ = try ModelDirectory(path: dir) }
        // llama config whose vocab disagrees with the tiny llama's embedding.
        for f in ["model.safetensors"] { try FileManager.default.copyItem(atPath: fixturesDir + "/tiny-llama/" + f, toPath: dir + "/" + f) }
        var cfg = try String(contentsOfFile: fixturesDir + "/tiny-llama/config.json", encoding: .utf8)
        cfg = cfg.replacingOccurrences(of: "\"vocab_size\": 256", with: "\"vocab_size\": 300")
        try cfg.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        assertThrowsMentioning(["model.embed_tokens.weight", "[256, 32]", "[300, 32]"]) { _ = try ModelDirectory(path: dir) }
    }
}
