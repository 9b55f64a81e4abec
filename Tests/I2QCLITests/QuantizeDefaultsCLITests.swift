import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport

/// `quantize --rtn/--awq` without `--group-size` (issue 20): the largest of 128, 64, 32 that divides
/// every quantized tensor, said on stderr. SmolLM2-135M's linears are 576 and 1536 wide: 576 is not
/// a multiple of 128, both are multiples of 64 — so 64, where a fixed default of 128 failed.
final class QuantizeDefaultsCLITests: CLITestCase {
    override var tempPrefix: String { "cli-quant-defaults" }

    func smolLM2() throws -> String {
        let root = URL(fileURLWithPath: fixturesDir).deletingLastPathComponent().deletingLastPathComponent().path
        let path = ProcessInfo.processInfo.environment["I2Q_SMOLLM2"] ?? root + "/.cache/smollm2/SmolLM2-135M-Instruct-f32"
        guard FileSystem.exists(path + "/model.safetensors") else {
            XCTFail("SmolLM2 is not at \(path): run `bash scripts/get_smollm2.sh` (scripts/test.sh does) or set I2Q_SMOLLM2")
            throw XCTSkip("no model")  // never reached silently: the XCTFail above fails the test
        }
        return path
    }

    func testDefaultGroupSizeDividesEveryTensorAndIsPrinted() throws {
        let out = dir + "/rtn.i2q"
        let r = try run(["quantize", try smolLM2(), "--rtn", "-o", out, "--no-progress"])
        XCTAssertEqual(r.code, 0, r.err)
        XCTAssertTrue(r.err.contains("group size 64"), r.err)
        let f = try I2QFile(path: out)
        let affine = f.entries.filter { $0.scheme == "affine_int4" }
        XCTAssertEqual(affine.count, 30 * 7)  // 30 layers × q, k, v, o, gate, up, down
        for e in affine { XCTAssertEqual(e.params.first { $0.0 == "group_size" }?.1, .int(64), e.name) }
        XCTAssertTrue(r.out.contains("group 64"), r.out)
    }

    /// An explicit --group-size is kept as given, and still refused (naming the width) when it does not divide.
    func testExplicitGroupSizeStillChecked() throws {
        let r = try run(["quantize", try smolLM2(), "--rtn", "--group-size", "128", "-o", dir + "/x.i2q", "--no-progress"])
        XCTAssertNotEqual(r.code, 0)
        XCTAssertTrue(r.err.contains("576"), r.err)
        XCTAssertFalse(FileSystem.exists(dir + "/x.i2q"))
    }

    /// `inspect` counts what the file stores per scheme, scales included (issue 20). Expected bits per
    /// weight from the formats' definitions: affine int4 g64 = (32 code bytes + 2 scale + 1 zero) / 64
    /// weights = 4.375; llama.cpp's Q4_1 = 20 bytes / 32 = 5.0 and Q8_0 = 34 / 32 = 8.5.
    func testInspectShowsBitsPerWeightPerScheme() throws {
        let smol = try smolLM2()
        let out = dir + "/rtn.i2q"
        XCTAssertEqual(try run(["quantize", smol, "--rtn", "--group-size", "64", "-o", out, "--no-progress"]).code, 0)
        func schemes(_ path: String) throws -> JSONValue {
            let r = try run(["inspect", path, "--json"])
            XCTAssertEqual(r.code, 0, r.err)
            return try XCTUnwrap(try JSONParser.parse(Array(r.out.utf8), source: "inspect")["schemes"])
        }
        let i2q = try schemes(out)
        XCTAssertEqual(i2q["int4 g64"]?["bits_per_weight"], .number("4.375"))
        XCTAssertEqual(i2q["int4 g64"]?["tensors"], .int(210))
        XCTAssertEqual(i2q["F32"]?["bits_per_weight"], .number("32.000"))
        let gguf = try schemes(URL(fileURLWithPath: smol).deletingLastPathComponent().path + "/SmolLM2-135M-Instruct.Q4_1.gguf")
        XCTAssertEqual(gguf["q4_1"]?["bits_per_weight"], .number("5.000"))
        XCTAssertEqual(gguf["q8_0"]?["bits_per_weight"], .number("8.500"))
        let text = try run(["inspect", out, "--brief"])
        XCTAssertTrue(text.out.contains("int4 g64") && text.out.contains("4.38 bits/weight"), text.out)
        // bitsandbytes NF4, block 64, float32 absmax: (32 code bytes + 4 absmax bytes) / 64 = 4.5 bits.
        let nf4 = dir + "/nf4.i2q"
        XCTAssertEqual(try run(["quantize", fixturesDir + "/easy-vqa-idefics2", "--nf4", "--no-double-quant", "-o", nf4, "--no-progress"]).code, 0)
        XCTAssertEqual(try schemes(nf4)["nf4 b64"]?["bits_per_weight"], .number("4.500"))
    }

    /// Ctrl-C during AWQ (issue 20): the partial output is removed, the finished layers stay, and the
    /// message says how to continue; rerunning without --resume is refused rather than redone.
    func testInterruptedAWQSaysHowToResume() throws {
        let out = dir + "/awq.i2q"
        let p = Process()
        p.executableURL = binary
        p.arguments = ["quantize", try smolLM2(), "--awq", "--calibration", fixturesDir + "/docvqa-mini", "--samples", "8",
                       "--seq-len", "128", "-o", out, "--no-progress"]
        let e = Pipe()
        p.standardError = e
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(300)
        while !FileSystem.exists(out + ".awq-state/layer-0000/model.safetensors") && p.isRunning && Date() < deadline { usleep(50_000) }
        XCTAssertTrue(p.isRunning, "AWQ finished before the first layer was seen")
        kill(p.processIdentifier, SIGINT)
        let err = String(decoding: e.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 128 + SIGINT, err)
        XCTAssertTrue(err.contains("interrupted") && err.contains("--resume") && err.contains("awq.i2q.awq-state"), err)
        XCTAssertFalse(FileSystem.exists(out))
        XCTAssertTrue(FileSystem.exists(out + ".awq-state/layer-0000/model.safetensors"))
        let again = try run(["quantize", try smolLM2(), "--awq", "--calibration", fixturesDir + "/docvqa-mini", "--samples", "8",
                             "--seq-len", "128", "-o", out, "--no-progress"])
        XCTAssertNotEqual(again.code, 0)
        XCTAssertTrue(again.err.contains("--resume") && again.err.contains("--restart"), again.err)
    }
}
