import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport

/// `i2q export X.i2q --to gguf` where X holds ggml entries (tiny-mistral with llama.cpp's bytes,
/// Tests/Fixtures/ggml-blocks; no recorded file type): written as stored; `--type` asking for other
/// bytes is refused with what to do instead, and nothing is written.
final class GGUFStoredBlocksCLITests: CLITestCase {
    override var tempPrefix: String { "cli-gguf-stored" }

    func testExportCopiesBlocksAndRefusesAnotherType() throws {
        let model = fixturesDir + "/tiny-mistral", path = dir + "/m.i2q"
        let fixture = try GGMLBlocksFixture("tiny-mistral")
        try fixture.writeModel(try openModel(model), configPath: model + "/config.json", to: path)

        let out = dir + "/m.gguf"
        let refused = try run(["export", path, "--to", "gguf", "--type", "q4_k_m", "-o", out, "--no-progress"])
        XCTAssertNotEqual(refused.code, 0)
        for want in ["already quantized", "--type q4_k_m", "second rounding", "--to gguf` (no --type)", "--to gguf --type TYPE"] {
            XCTAssertTrue(refused.err.contains(want), "missing \"\(want)\": \(refused.err)")
        }
        XCTAssertFalse(FileSystem.exists(out))

        let r = try run(["export", path, "--to", "gguf", "-o", out, "--no-progress"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue((r.out + r.err).contains("guessed from the most common tensor type"), r.out + r.err)
        // Unpermuted weights: the GGUF holds llama.cpp's bytes from the fixture, in their types.
        let g = try GGUFFile(path: out)
        for (gguf, hf) in [("blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight"), ("blk.1.attn_output.weight", "model.layers.1.self_attn.o_proj.weight"),
                           ("blk.0.attn_v.weight", "model.layers.0.self_attn.v_proj.weight"), ("token_embd.weight", "model.embed_tokens.weight")] {
            let t = try XCTUnwrap(g.tensor(gguf))
            XCTAssertEqual(t.type.name, fixture.types[hf]?.name, gguf)
            XCTAssertEqual(g.file.withBytes(t.offset, t.byteCount) { Array($0) }, fixture.bytes(hf), gguf)
        }
    }
}
