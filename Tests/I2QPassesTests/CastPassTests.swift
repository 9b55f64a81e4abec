import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport
@testable import I2QPasses

/// The cast pass against torch: Tests/Fixtures/cast/tiny-idefics2.{f16,bf16}.safetensors hold
/// `tensor.to(torch.float16 / torch.bfloat16)` of every tensor of the tiny Idefics2 (made by
/// scripts/fixtures/make_fixtures.py with transformers). Outputs must be bit-identical.
final class CastPassTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try makeTempDir("cast") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func settings(_ f: OutputFormat) -> OutputSettings {
        var s = OutputSettings(); s.format = f; s.showProgress = false; return s
    }

    func testCastMatchesTorchBitForBitForBothConfigGenerations() throws {
        for model in ["tiny-idefics2-v4", "tiny-idefics2-v5"] {
            for (dt, golden) in [(DType.f16, "tiny-idefics2.f16.safetensors"), (.bf16, "tiny-idefics2.bf16.safetensors")] {
                let out = dir + "/\(model)-\(dt.rawValue)"
                let src = try ModelDirectory(path: fixturesDir + "/" + model)
                let r = try CastPass.make(source: src, output: out, dtype: dt, settings: settings(.safetensors)).run()
                let want = try tensorBytes(fixturesDir + "/cast/" + golden)
                let got = try tensorBytes(out)
                XCTAssertEqual(Set(got.keys), Set(want.keys), "\(model) \(dt)")
                for (name, w) in want {
                    XCTAssertEqual(got[name]?.dtype, w.dtype, name)
                    XCTAssertEqual(got[name]?.shape, w.shape, name)
                    XCTAssertTrue(got[name]?.bytes == w.bytes, "\(model) → \(dt.rawValue): \(name) differs from torch")
                }
                XCTAssertEqual(r.tensors.count, want.count)
                // Overflow counts: finite source values that torch turned into ±inf.
                let source = try tensorBytes(fixturesDir + "/" + model)
                var expectedOverflow = 0
                for (name, w) in want {
                    let s = source[name]!
                    guard s.dtype == .f32 else { continue }
                    for i in 0..<(s.bytes.count / 4) {
                        let x = s.bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: i * 4, as: Float.self) }
                        let y: Float = w.bytes.withUnsafeBytes { b in
                            dt == .f16 ? Float(b.loadUnaligned(fromByteOffset: i * 2, as: Float16.self))
                                       : Float(bitPattern: UInt32(b.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)) << 16)
                        }
                        if x.isFinite && y.isInfinite { expectedOverflow += 1 }
                    }
                }
                XCTAssertGreaterThan(expectedOverflow, 0, "the fixture plants out-of-range values")
                XCTAssertEqual(r.overflowing.reduce(0) { $0 + $1.stats.overflowed }, expectedOverflow, "\(model) \(dt)")
            }
        }
    }

    func testCastOutputIsAnHFDirectoryWithUpdatedDType() throws {
        let src = try ModelDirectory(path: fixturesDir + "/tiny-idefics2-v4")
        let out = dir + "/o"
        _ = try CastPass.make(source: src, output: out, dtype: .bf16, settings: settings(.safetensors)).run()
        let cfg = try JSONParser.parse(FileSystem.readFile(out + "/config.json"), source: "config")
        XCTAssertEqual(cfg["torch_dtype"]?.stringValue, "bfloat16")
        XCTAssertNil(cfg["dtype"], "a 4.x config keeps its 4.x key")
        for f in ["tokenizer.json", "preprocessor_config.json", "processor_config.json", "generation_config.json"] {
            XCTAssertEqual(try FileSystem.readFile(out + "/" + f), try FileSystem.readFile(fixturesDir + "/tiny-idefics2-v4/" + f), f)
        }
        let back = try ModelDirectory(path: out)
        XCTAssertEqual(back.config, src.config.withDType("bfloat16"))

        let v5 = dir + "/o5"
        _ = try CastPass.make(source: try ModelDirectory(path: fixturesDir + "/tiny-idefics2-v5"), output: v5, dtype: .f16, settings: settings(.safetensors)).run()
        let cfg5 = try JSONParser.parse(FileSystem.readFile(v5 + "/config.json"), source: "config")
        XCTAssertEqual(cfg5["dtype"]?.stringValue, "float16")
        XCTAssertNil(cfg5["torch_dtype"])
    }

    func testShardingFollowsMaxShardSize() throws {
        let src = try ModelDirectory(path: fixturesDir + "/tiny-idefics2-v4")
        var s = settings(.safetensors)
        s.maxShardSize = 1_000_000  // the two 2 MB f16 embedding matrices get shards of their own
        let out = dir + "/sh"
        let r = try CastPass.make(source: src, output: out, dtype: .f16, settings: s).run()
        XCTAssertGreaterThan(r.files.count, 2)
        XCTAssertTrue(r.files.allSatisfy { $0.hasPrefix("model-0000") && $0.hasSuffix("-of-0000\(r.files.count).safetensors") })
        let idx = try JSONParser.parse(FileSystem.readFile(out + "/model.safetensors.index.json"), source: "index")
        XCTAssertEqual(idx["metadata"]?["total_size"]?.intValue, r.bytesWritten)
        XCTAssertEqual(idx["weight_map"]?.objectEntries?.count, r.tensors.count)
        // Reading it back validates the index against the shards.
        XCTAssertEqual(try SafetensorsCheckpoint(path: out).tensors.count, r.tensors.count)
    }

    func testExistingOutputIsRefusedAndFailuresLeaveNothing() throws {
        let src = try ModelDirectory(path: fixturesDir + "/tiny-idefics2-v4")
        let out = dir + "/exists"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        assertThrowsMentioning([out, "--overwrite"]) {
            _ = try CastPass.make(source: src, output: out, dtype: .f16, settings: self.settings(.safetensors))
        }
        // A failing run (output parent missing) leaves no temporary behind.
        assertThrowsMentioning(["does not exist"]) {
            _ = try CastPass.make(source: src, output: self.dir + "/missing/sub/x", dtype: .f16, settings: self.settings(.i2q)).run()
        }
        XCTAssertEqual(try FileSystem.listDirectory(dir), ["exists"])
    }
}

extension ModelConfig {
    func withDType(_ d: String) -> ModelConfig {
        switch self {
        case var .idefics2(c): c.dtype = d; c.text.dtype = c.text.dtype == nil ? nil : d; return .idefics2(c)
        case var .text(t): t.dtype = d; return .text(t)
        case .family: return self  // no other family in these tests
        }
    }
}
