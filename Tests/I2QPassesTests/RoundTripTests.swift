import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport
@testable import I2QPasses

/// HF dir → cast → .i2q → export hf must equal casting straight to safetensors, byte for byte;
/// the .i2q records every pass in its provenance.
final class RoundTripTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try makeTempDir("rt") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func settings(_ f: OutputFormat, shard: Int = 5_000_000_000) -> OutputSettings {
        var s = OutputSettings(); s.format = f; s.showProgress = false; s.maxShardSize = shard; return s
    }

    func files(_ d: String) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for n in try FileSystem.listDirectory(d) where n != "README.md" { out[n] = try FileSystem.readFile(d + "/" + n) }  // README.md (the model card) names its own route: not model data
        return out
    }

    func testCastToI2QThenExportEqualsDirectSafetensorsCast() throws {
        for model in ["tiny-idefics2-v4", "tiny-idefics2-v5", "tiny-mistral", "tiny-llama"] {
            for (dt, shard) in [(DType.f16, 5_000_000_000), (.bf16, 1_000_000)] {
                let src = try ModelDirectory(path: fixturesDir + "/" + model)
                let direct = dir + "/\(model)-\(dt.rawValue)-direct"
                let packed = dir + "/\(model)-\(dt.rawValue).i2q"
                let exported = dir + "/\(model)-\(dt.rawValue)-exported"
                _ = try CastPass.make(source: src, output: direct, dtype: dt, settings: settings(.safetensors, shard: shard)).run()
                _ = try CastPass.make(source: src, output: packed, dtype: dt, settings: settings(.i2q)).run()
                let f = try I2QFile(path: packed)
                XCTAssertTrue(f.verifyAll().isEmpty)
                XCTAssertEqual(f.provenance?.passes.map(\.summary), ["cast dtype=\"\(dt.rawValue)\""])
                XCTAssertEqual(f.provenance?.source["kind"]?.stringValue, "hf-safetensors")
                _ = try ExportPass.makeHF(source: f, output: exported, settings: settings(.safetensors, shard: shard)).run()
                let a = try files(direct), b = try files(exported)
                XCTAssertEqual(a.keys.sorted(), b.keys.sorted(), model)
                for (k, v) in a { XCTAssertTrue(b[k] == v, "\(model) \(dt): \(k) differs after the round trip") }
            }
        }
    }

    func testPassesChainInProvenance() throws {
        let src = try ModelDirectory(path: fixturesDir + "/tiny-llama")
        let a = dir + "/a.i2q", b = dir + "/b.i2q"
        _ = try CastPass.make(source: src, output: a, dtype: .bf16, settings: settings(.i2q)).run()
        _ = try CastPass.make(source: try openModel(a), output: b, dtype: .f32, settings: settings(.i2q)).run()
        let f = try I2QFile(path: b)
        XCTAssertEqual(f.provenance?.passes.map(\.summary), ["cast dtype=\"BF16\"", "cast dtype=\"F32\""])
        XCTAssertEqual(f.provenance?.source["path"]?.stringValue, fixturesDir + "/tiny-llama")
        // bf16 → f32 widening is exact: the values equal the bf16 ones.
        let cfg = try JSONParser.parse(f.metadata.file("config.json")!, source: "c")
        XCTAssertEqual(cfg["dtype"]?.stringValue ?? cfg["torch_dtype"]?.stringValue, "float32")
    }

    func testInspectOfI2QShowsDirectoryAndProvenance() throws {
        let p = dir + "/i.i2q"
        _ = try CastPass.make(source: try ModelDirectory(path: fixturesDir + "/tiny-idefics2-v4"), output: p, dtype: .f16, settings: settings(.i2q)).run()
        let info = ModelInspection(try openModel(p))
        XCTAssertTrue(info.text.contains("pass 1: cast dtype=\"F16\""))
        XCTAssertTrue(info.text.contains("model.text_model.embed_tokens.weight  plain F16 [32003, 32]"))
        XCTAssertEqual(info.totalParameters, 2_123_520)
        XCTAssertEqual(info.json["i2q"]?["directory"]?.arrayValue?.count, 73)
    }
}
