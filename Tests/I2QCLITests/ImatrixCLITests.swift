import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport

/// `i2q imatrix`: arguments, output conventions (temp name + rename, --overwrite), both formats.
final class ImatrixCLITests: CLITestCase {
    override var tempPrefix: String { "imatrix-cli" }
    let model = fixturesDir + "/tiny-mistral"
    let text = fixturesDir + "/imatrix/calibration.txt"

    func testWritesBothFormatsAndRefusesToOverwriteWithoutFlag() throws {
        let g = try run(["imatrix", model, "--calibration", text, "--ctx", "32", "-o", dir + "/m.gguf"])
        XCTAssertEqual(g.code, 0, g.err)
        let m = try ImportanceMatrix.read(path: dir + "/m.gguf")
        XCTAssertFalse(m.isLegacy)
        XCTAssertEqual(m.chunkSize, 32)
        XCTAssertTrue(m.entries.keys.contains("blk.0.attn_q.weight"))
        XCTAssertEqual(m.entries["blk.0.ffn_down.weight"]?.counts, [Float(32 * m.chunkCount)])
        XCTAssertEqual(m.datasets, [text])
        let d = try run(["imatrix", model, "--calibration", text, "--ctx", "32", "--output-format", "dat", "-o", dir + "/m.dat"])
        XCTAssertEqual(d.code, 0, d.err)
        let l = try ImportanceMatrix.read(path: dir + "/m.dat")
        XCTAssertTrue(l.isLegacy)
        XCTAssertEqual(Set(l.entries.keys), Set(m.entries.keys))
        for (a, b) in zip(try XCTUnwrap(l.values(for: "blk.1.attn_output.weight")), try XCTUnwrap(m.values(for: "blk.1.attn_output.weight"))) {
            XCTAssertEqual(a, b, accuracy: abs(b) * 1e-6)
        }

        let before = try FileSystem.readFile(dir + "/m.gguf")
        let again = try run(["imatrix", model, "--calibration", text, "--ctx", "16", "-o", dir + "/m.gguf"])
        XCTAssertEqual(again.code, 1)
        XCTAssertTrue(again.err.contains("already exists; remove it or pass --overwrite"), again.err)
        XCTAssertEqual(try FileSystem.readFile(dir + "/m.gguf"), before)
        let forced = try run(["imatrix", model, "--calibration", text, "--ctx", "16", "--overwrite", "-o", dir + "/m.gguf"])
        XCTAssertEqual(forced.code, 0, forced.err)
        XCTAssertEqual(try ImportanceMatrix.read(path: dir + "/m.gguf").chunkSize, 16)
        XCTAssertEqual(try FileSystem.listDirectory(dir).sorted(), ["m.dat", "m.gguf"], "no temporaries or locks left")
    }

    func testBadCalibrationPathIsOneClearLine() throws {
        let r = try run(["imatrix", model, "--calibration", dir + "/nope.txt", "-o", dir + "/m.gguf"])
        XCTAssertEqual(r.code, 1)
        let lines = r.err.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, r.err)
        XCTAssertTrue(r.err.contains(dir + "/nope.txt: no such file or directory; --calibration takes"), r.err)
        XCTAssertFalse(FileSystem.exists(dir + "/m.gguf"))
    }

    /// The output is claimed before any computing: with a calibration text too short to compute on,
    /// a missing output folder is what is reported.
    func testOutputCheckedBeforeComputing() throws {
        try write(Array("too short".utf8), to: dir + "/short.txt")
        let r = try run(["imatrix", model, "--calibration", dir + "/short.txt", "-o", dir + "/missing/m.gguf"])
        XCTAssertEqual(r.code, 1)
        XCTAssertTrue(r.err.contains(dir + "/missing"), r.err)
        XCTAssertFalse(r.err.contains("2 × --ctx"), r.err)
        let short = try run(["imatrix", model, "--calibration", dir + "/short.txt", "-o", dir + "/m.gguf"])
        XCTAssertEqual(short.code, 1)
        XCTAssertTrue(short.err.contains("short.txt: the text has"), short.err)
        XCTAssertTrue(short.err.contains("at least 2 × --ctx = 1024"), short.err)
        XCTAssertEqual(try FileSystem.listDirectory(dir), ["short.txt"], "no partial output")
    }

    func testArgumentChecks() throws {
        let f = try run(["imatrix", model, "--calibration", text, "--output-format", "json", "-o", dir + "/m"])
        XCTAssertNotEqual(f.code, 0)
        XCTAssertTrue(f.err.contains("--output-format must be gguf or dat"), f.err)
        let c = try run(["imatrix", model, "--calibration", text, "--ctx", "0", "-o", dir + "/m.gguf"])
        XCTAssertNotEqual(c.code, 0)
        XCTAssertTrue(c.err.contains("--ctx must be in 1…"), c.err)
        let n = try run(["imatrix", model, "--calibration", text, "--chunks", "0", "-o", dir + "/m.gguf"])
        XCTAssertNotEqual(n.code, 0)
        XCTAssertTrue(n.err.contains("--chunks must be in 1…"), n.err)
    }
}
