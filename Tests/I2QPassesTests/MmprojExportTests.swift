import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QFormats
@testable import I2QPasses

/// `export --to gguf --mmproj FILE` against llama.cpp's own converter: Tests/Fixtures/gguf-export/
/// tiny-{idefics3,smolvlm}.mmproj.reference.gguf are `convert_hf_to_gguf.py Tests/Fixtures/tiny-X --mmproj`
/// (scripts/fixtures/make_idefics3_gguf_fixtures.py; the copy vendored by llama-cpp-python 0.3.36). i2q's
/// projector holds the same tensors in the same order, byte for byte, and the same metadata in the same
/// order, except general.name (the reference derives "Tiny Idefics3" from the directory name) and
/// general.size_label (not written) — as for the text export (GGUFExportTests).
final class MmprojExportTests: XCTestCase {
    func testTinyModelsMatchConvertHfToGguf() throws {
        let dir = try makeTempDir("mmproj")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var s = OutputSettings()
        s.showProgress = false
        for m in ["tiny-idefics3", "tiny-smolvlm"] {
            let out = dir + "/\(m).mmproj.gguf"
            let r = try MmprojExportPass.run(source: try openModel(fixturesDir + "/" + m), output: out, settings: s)
            XCTAssertEqual(r.tensors, 38, m)
            let ref = try GGUFFile(path: fixturesDir + "/gguf-export/\(m).mmproj.reference.gguf")
            let g = try GGUFFile(path: out)
            XCTAssertEqual(g.tensors.map(\.name), ref.tensors.map(\.name), "\(m): tensor names and order")
            for t in ref.tensors {
                guard let mine = g.tensor(t.name) else { XCTFail("\(m): missing \(t.name)"); continue }
                XCTAssertEqual(mine.type, t.type, t.name)
                XCTAssertEqual(mine.dims, t.dims, t.name)
                XCTAssertTrue(g.file.copyBytes(mine.offset, mine.byteCount) == ref.file.copyBytes(t.offset, t.byteCount),
                              "\(m) \(t.name) (\(t.type.name)): bytes differ from convert_hf_to_gguf.py's")
            }
            let skip: Set<String> = ["general.name", "general.size_label"]
            XCTAssertEqual(g.metadata.map(\.key).filter { !skip.contains($0) }, ref.metadata.map(\.key).filter { !skip.contains($0) }, m)
            for (k, v) in ref.metadata where !skip.contains(k) {
                XCTAssertTrue(g.value(k) == v, "\(m) \(k): \(String(describing: g.value(k))) vs reference \(v)")
            }
            XCTAssertEqual(g.value("clip.projector_type"), .string(Array("idefics3".utf8)))
        }
    }

    func testRefusesOtherFamilies() throws {
        let dir = try makeTempDir("mmproj")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var s = OutputSettings()
        s.showProgress = false
        XCTAssertThrowsError(try MmprojExportPass.run(source: try openModel(fixturesDir + "/tiny-idefics2-v5"), output: dir + "/x.gguf", settings: s)) {
            XCTAssertTrue("\($0)".contains("Idefics3 or SmolVLM"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/x.gguf"))
    }
}
