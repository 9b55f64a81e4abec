import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport

/// `i2q fuse` and `export --fused-names` as users run them.
final class FuseCLITests: CLITestCase {
    override var tempPrefix: String { "fusecli" }

    func testFuseQuantizedModelThenExport() throws {
        let q = dir + "/q.i2q", f = dir + "/f.i2q"
        XCTAssertEqual(try run(["quantize", fixturesDir + "/tiny-llama", "--nf4", "--block-size", "512", "-o", q]).code, 0)
        let r = try run(["fuse", q, "-o", f])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.out.hasPrefix("fused 2 gate_up_proj (2 tensors incl. biases)"), r.out)
        // k_proj/v_proj hold 256 values: not a whole number of 512-value blocks.
        XCTAssertTrue(r.err.contains("note: model.layers.0.self_attn.qkv_proj.weight left unfused"), r.err)
        let inspect = try run(["inspect", f])
        XCTAssertEqual(inspect.code, 0, inspect.err)
        XCTAssertTrue(inspect.out.contains("fuse"), inspect.out)
        // Exists → refused unless --overwrite; --only takes qkv or mlp.
        XCTAssertEqual(try run(["fuse", q, "-o", f]).code, 1)
        XCTAssertNotEqual(try run(["fuse", q, "-o", dir + "/x.i2q", "--only", "all"]).code, 0)
        let e = try run(["export", f, "--to", "hf-bnb", "-o", dir + "/bnb"])
        XCTAssertEqual(e.code, 0, e.err)
        let names = Set(try tensorBytes(dir + "/bnb").keys)
        XCTAssertTrue(names.contains("model.layers.0.mlp.gate_proj.weight.absmax"))
        XCTAssertFalse(names.contains { $0.contains("gate_up_proj") })
    }

    func testExportFusedNames() throws {
        let f = dir + "/f.i2q"
        XCTAssertEqual(try run(["fuse", fixturesDir + "/tiny-mistral", "--only", "qkv", "-o", f]).code, 0)
        XCTAssertEqual(try run(["export", f, "--to", "hf", "--fused-names", "-o", dir + "/hf"]).code, 0)
        let names = Set(try tensorBytes(dir + "/hf").keys)
        XCTAssertTrue(names.contains("model.layers.0.self_attn.qkv_proj.weight"))
        XCTAssertTrue(names.contains("model.layers.0.mlp.gate_proj.weight"))
        XCTAssertEqual(try run(["export", f, "--to", "hf", "-o", dir + "/hf2"]).code, 0)
        XCTAssertTrue(Set(try tensorBytes(dir + "/hf2").keys).contains("model.layers.0.self_attn.q_proj.weight"))
    }
}
