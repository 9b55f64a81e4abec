import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport

/// The CLI as users run it: exit codes, stdout, and the error lines on stderr.
final class CLITests: CLITestCase {

    func testCastInspectVerifyAndDamage() throws {
        let model = fixturesDir + "/tiny-idefics2-v4", out = dir + "/m.i2q"
        let cast = try run(["cast", model, "--dtype", "f16", "-o", out])
        XCTAssertEqual(cast.code, 0, cast.err)
        XCTAssertTrue(cast.out.contains("cast 73 tensors to F16"))
        XCTAssertTrue(cast.err.contains("warning: model.text_model.embed_tokens.weight:"), "fp16 overflow must be shown: \(cast.err)")
        let ok = try run(["inspect", out, "--verify-checksums", "--brief"])
        XCTAssertEqual(ok.code, 0, ok.err)
        XCTAssertTrue(ok.out.contains("pass 1: cast dtype=\"F16\""))
        XCTAssertTrue(ok.err.contains("all 73 components intact"))

        // Damage one byte of one tensor: verification fails naming it.
        let f = try I2QFile(path: out)
        let e = f.entries.first { $0.name == "model.text_model.layers.1.mlp.up_proj.weight" }!
        var bytes = try FileSystem.readFile(out)
        bytes[f.header.dataOffset + e.components[0].offset + 17] ^= 0x40
        try write(bytes, to: out)
        let bad = try run(["inspect", out, "--verify-checksums", "--brief"])
        XCTAssertEqual(bad.code, 1)
        XCTAssertTrue(bad.err.contains("\"model.text_model.layers.1.mlp.up_proj.weight\""), bad.err)
        XCTAssertTrue(bad.err.contains("1 damaged"), bad.err)
    }

    func testErrorsAreOneClearLine() throws {
        let missing = try run(["inspect", dir + "/nope"])
        XCTAssertEqual(missing.code, 1)
        XCTAssertEqual(missing.err, "error: \(dir)/nope does not exist\n")
        let badDType = try run(["cast", fixturesDir + "/tiny-llama", "--dtype", "int3", "-o", dir + "/x"])
        XCTAssertNotEqual(badDType.code, 0)
        XCTAssertTrue(badDType.err.contains("--dtype must be f16, bf16 or f32"), badDType.err)
        try write(Array("junk".utf8), to: dir + "/junk.i2q")
        let junk = try run(["inspect", dir + "/junk.i2q"])
        XCTAssertEqual(junk.code, 1)
        XCTAssertTrue(junk.err.contains("junk.i2q: not an i2q file"), junk.err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/x"))
    }

    func testExportRoundTripFromTheCLI() throws {
        let model = fixturesDir + "/tiny-mistral"
        XCTAssertEqual(try run(["cast", model, "--dtype", "f16", "-o", dir + "/a.i2q"]).code, 0)
        XCTAssertEqual(try run(["export", dir + "/a.i2q", "--to", "hf", "-o", dir + "/hf"]).code, 0)
        XCTAssertEqual(try run(["cast", model, "--dtype", "f16", "--format", "safetensors", "-o", dir + "/direct"]).code, 0)
        for name in try FileSystem.listDirectory(dir + "/direct") where name != "README.md" {  // README.md (the model card) names its own route: not model data
            XCTAssertEqual(try FileSystem.readFile(dir + "/hf/" + name), try FileSystem.readFile(dir + "/direct/" + name), name)
        }
        let again = try run(["export", dir + "/a.i2q", "--to", "hf", "-o", dir + "/hf"])
        XCTAssertEqual(again.code, 1)
        XCTAssertTrue(again.err.contains("already exists; remove it or pass --overwrite"), again.err)
    }
}

final class GGUFCLITests: XCTestCase {
    /// `i2q cast model.gguf --format safetensors` gives the tensors transformers' GGUF loader gives
    /// (Tests/Fixtures/gguf/tiny-llama.expected.safetensors, made by transformers 5.24).
    func testCastGGUFToSafetensorsMatchesTransformers() throws {
        let dir = try makeTempDir("gguf")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = Process()
        var u = Bundle(for: GGUFCLITests.self).bundleURL
        while u.lastPathComponent.hasSuffix(".xctest") { u.deleteLastPathComponent() }
        p.executableURL = u.appendingPathComponent("i2q")
        p.arguments = ["cast", fixturesDir + "/gguf/tiny-llama.gguf", "--dtype", "f32", "--format", "safetensors", "-o", dir + "/out"]
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        let got = try tensorBytes(dir + "/out")
        let want = try tensorBytes(fixturesDir + "/gguf/tiny-llama.expected.safetensors")
        XCTAssertEqual(Set(got.keys), Set(want.keys))
        for (k, w) in want { XCTAssertTrue(got[k]?.bytes == w.bytes, k) }
    }
}
