import Foundation
import XCTest
import I2QCore
import I2QTestSupport

/// What an export says about what it could not carry (issue 20): `--to gguf` from Idefics2 writes the
/// text decoder only and names the modules left out; the reported input size is the file's stored bytes.
final class ExportNotesCLITests: CLITestCase {
    override var tempPrefix: String { "cli-export-notes" }

    func testGGUFFromIdefics2NamesTheModulesLeftOut() throws {
        let r = try run(["export", fixturesDir + "/tiny-idefics2-v4", "--to", "gguf", "-o", dir + "/m.gguf", "--no-progress"])
        XCTAssertEqual(r.code, 0, r.err)
        let said = r.out + r.err
        XCTAssertTrue(said.contains("only the text decoder is written"), said)
        XCTAssertTrue(said.contains("model.vision_model.*") && said.contains("model.connector.*"), said)
    }

    func testHFAWQExportReportsTheStoredInputSize() throws {
        let q = dir + "/rtn.i2q"
        XCTAssertEqual(try run(["quantize", fixturesDir + "/tiny-idefics2-v4", "--rtn", "-o", q, "--no-progress"]).code, 0)
        let r = try run(["export", q, "--to", "hf-awq", "-o", dir + "/hf", "--no-progress"])
        XCTAssertEqual(r.code, 0, r.err)
        // The .i2q's components (plain + packed + scales + zeros) — not its plain tensors alone.
        let inspect = try run(["inspect", q, "--json"])
        let stored = try XCTUnwrap(try JSONParser.parse(Array(inspect.out.utf8), source: "inspect")["bytes"]?.intValue)
        XCTAssertTrue(r.out.contains(": \(formatBytes(stored)) ->"), "\(r.out) (stored \(stored) bytes)")
    }
}
