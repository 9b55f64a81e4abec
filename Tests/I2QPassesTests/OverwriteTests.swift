import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport
@testable import I2QPasses

/// `--overwrite` replaces only outputs i2q wrote, and never the input or a directory holding it
/// (issue 17: `cast parent/model -o parent --overwrite` used to replace `parent`, model and all).
final class OverwriteTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try makeTempDir("overwrite") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func settings(format: OutputFormat = .i2q) -> OutputSettings {
        var s = OutputSettings()
        s.showProgress = false
        s.overwrite = true
        s.format = format
        return s
    }

    /// A copy of the tiny Mistral in DIR/parent/model, with an unrelated file beside it.
    func parentWithModel() throws -> (parent: String, model: String) {
        let parent = dir + "/parent", model = parent + "/model"
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: fixturesDir + "/tiny-mistral", toPath: model)
        try write(Array("keep me".utf8), to: parent + "/notes.txt")
        return (parent, model)
    }

    func testOutputThatHoldsTheInputIsRefusedAndNothingIsDeleted() throws {
        let (parent, model) = try parentWithModel()
        let before = try FileManager.default.contentsOfDirectory(atPath: model).sorted()
        for format in [OutputFormat.i2q, .safetensors] {
            assertThrowsMentioning([parent, "input"]) {
                _ = try CastPass.make(source: try openModel(model), output: parent, dtype: .bf16, settings: self.settings(format: format)).run()
            }
            assertThrowsMentioning([model, "input"]) {
                _ = try CastPass.make(source: try openModel(model), output: model, dtype: .bf16, settings: self.settings(format: format)).run()
            }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: model).sorted(), before)
        XCTAssertEqual(try FileSystem.readFile(parent + "/notes.txt"), Array("keep me".utf8))
    }

    func testOnlyI2QOutputsAreReplaced() throws {
        let (parent, model) = try parentWithModel()
        // an unrelated file, a directory with a subdirectory, a directory of someone else's files
        let file = parent + "/notes.txt"
        let tree = dir + "/tree"
        try FileManager.default.createDirectory(atPath: tree + "/sub", withIntermediateDirectories: true)
        try write(Array("{}".utf8), to: tree + "/config.json")
        let photos = dir + "/photos"
        try FileManager.default.createDirectory(atPath: photos, withIntermediateDirectories: true)
        try write([0xFF, 0xD8, 0xFF], to: photos + "/a.jpg")
        for (out, format, why) in [(file, OutputFormat.i2q, "not an .i2q"), (tree, .safetensors, "sub"), (photos, .safetensors, "neither an HF model"),
                                   (photos, .i2q, "neither an HF model")] {
            assertThrowsMentioning([out, "not an output i2q wrote", why]) {
                _ = try CastPass.make(source: try openModel(model), output: out, dtype: .bf16, settings: self.settings(format: format)).run()
            }
        }
        XCTAssertEqual(try FileSystem.readFile(file), Array("keep me".utf8))
        XCTAssertTrue(FileSystem.isDirectory(tree + "/sub"))
        XCTAssertTrue(FileSystem.exists(photos + "/a.jpg"))
        // i2q's own outputs are replaced: an .i2q file, an HF directory written by cast.
        let i2q = dir + "/m.i2q", hf = dir + "/m-hf"
        for _ in 0..<2 {
            _ = try CastPass.make(source: try openModel(model), output: i2q, dtype: .bf16, settings: settings()).run()
            _ = try CastPass.make(source: try openModel(model), output: hf, dtype: .f16, settings: settings(format: .safetensors)).run()
        }
        XCTAssertNoThrow(try I2QFile(path: i2q))
        XCTAssertTrue(FileSystem.exists(hf + "/config.json"))
        // an input file may be replaced by its own output (renamed over it once complete)
        _ = try CastPass.make(source: try openModel(i2q), output: i2q, dtype: .f16, settings: settings()).run()
        XCTAssertEqual(try I2QFile(path: i2q).tensors.first?.dtype, .f16)
    }
}
