import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport

/// llama.cpp's imatrix files (Sources/I2QFormats/GGUF/ImatrixFile.swift). Expected values come from
/// files and numbers made by scripts/fixtures/make_imatrix_fixtures.py from llama.cpp's documented
/// layouts (struct.pack, gguf-py's GGUFWriter) and from gguf-py's GGUFReader parsing i2q's output.
final class ImatrixFileTests: XCTestCase {
    let dir = fixturesDir + "/imatrix"

    func json(_ name: String) throws -> JSONValue { try JSONParser.parse(FileSystem.readFile(dir + "/" + name), source: name) }
    func floats(_ v: JSONValue?) -> [Float] { v?.arrayValue?.compactMap(\.doubleValue).map { Float($0) } ?? [] }

    /// The small matrix whose i2q-written GGUF gguf-py parsed (i2q_written.gguf / _structure.json).
    static let sample = ImportanceMatrix(entries: [
        "blk.0.attn_q.weight": .init(sums: [1, 2, 3, 4, 5, 6, 7, 8].map { Float($0) * 2.5 }, counts: [10]),
        "blk.0.ffn_down.weight": .init(sums: (0..<16).map { Float($0) + 0.125 }, counts: [3]),
        "blk.1.ffn_up_exps.weight": .init(sums: [2, 4, 6, 8, 1, 1, 1, 1], counts: [2, 0]),
    ], datasets: ["calib.txt"], chunkCount: 2, chunkSize: 512)

    func testLegacyDatWrittenByScriptReadsToLlamaQuantizeValues() throws {
        let m = try ImportanceMatrix.read(path: dir + "/legacy.dat")
        let e = try json("legacy_expected.json")
        XCTAssertTrue(m.isLegacy)
        XCTAssertEqual(m.chunkCount, e["chunk_count"]?.intValue)
        XCTAssertEqual(m.datasets, e["datasets"]?.arrayValue?.compactMap(\.stringValue))
        let want = try XCTUnwrap(e["values"]?.objectEntries)
        XCTAssertEqual(Set(m.entries.keys), Set(want.map(\.0)))
        for (name, v) in want { XCTAssertEqual(m.values(for: name), floats(v), name) }  // exact: one float32 division each
    }

    func testGGUFWrittenByGGUFPyReadsToInSum2OverCounts() throws {
        let m = try ImportanceMatrix.read(path: dir + "/gguf_py_written.gguf")
        let e = try json("gguf_py_expected.json")
        XCTAssertFalse(m.isLegacy)
        XCTAssertEqual(m.chunkCount, e["chunk_count"]?.intValue)
        XCTAssertEqual(m.chunkSize, e["chunk_size"]?.intValue)
        XCTAssertEqual(m.datasets, e["datasets"]?.arrayValue?.compactMap(\.stringValue))
        let want = try XCTUnwrap(e["values"]?.objectEntries)
        XCTAssertEqual(Set(m.entries.keys), Set(want.map(\.0)))
        for (name, v) in want { XCTAssertEqual(m.values(for: name), floats(v), name) }
        XCTAssertNil(m.values(for: "blk.9.attn_q.weight"))
    }

    /// gguf-py's GGUFReader parsed the file i2q writes for `sample` (i2q_written_structure.json): the
    /// metadata llama-quantize requires, tensor names, GGML shapes ne = [columns, matrices] /
    /// [1, matrices], F32, in name order. The file i2q writes today is byte-identical to that one.
    func testGGUFWriterOutputIsWhatGGUFPyParsed() throws {
        let out = try makeTempDir("imatrix") + "/i.gguf"
        try Self.sample.write(to: out, format: .gguf)
        if ProcessInfo.processInfo.environment["I2Q_WRITE_IMATRIX_FIXTURE"] == "1" {
            try FileSystem.copyFile(out, dir + "/i2q_written.gguf")
        }
        XCTAssertEqual(try FileSystem.readFile(out), try FileSystem.readFile(dir + "/i2q_written.gguf"),
                       "i2q's GGUF imatrix bytes changed; re-run the fixture script on the new file")
        let s = try json("i2q_written_structure.json")
        XCTAssertEqual(s["version"]?.intValue, 3)
        let kv = try XCTUnwrap(s["kv"])
        XCTAssertEqual(kv["general.type"]?["type"]?.stringValue, "STRING")
        XCTAssertEqual(kv["general.type"]?["value"]?.stringValue, "imatrix")
        XCTAssertEqual(kv["imatrix.datasets"]?["type"]?.stringValue, "ARRAY[STRING]")
        XCTAssertEqual(kv["imatrix.datasets"]?["value"]?.arrayValue?.compactMap(\.stringValue), ["calib.txt"])
        XCTAssertEqual(kv["imatrix.chunk_count"]?["type"]?.stringValue, "UINT32")
        XCTAssertEqual(kv["imatrix.chunk_count"]?["value"]?.intValue, 2)
        XCTAssertEqual(kv["imatrix.chunk_size"]?["type"]?.stringValue, "UINT32")
        XCTAssertEqual(kv["imatrix.chunk_size"]?["value"]?.intValue, 512)
        XCTAssertNil(kv["general.architecture"], "llama-imatrix writes no general.architecture")
        let t = try XCTUnwrap(s["tensors"]?.arrayValue)
        XCTAssertEqual(t.compactMap { $0["name"]?.stringValue },
                       ["blk.0.attn_q.weight.in_sum2", "blk.0.attn_q.weight.counts",
                        "blk.0.ffn_down.weight.in_sum2", "blk.0.ffn_down.weight.counts",
                        "blk.1.ffn_up_exps.weight.in_sum2", "blk.1.ffn_up_exps.weight.counts"])
        XCTAssertEqual(t.map { $0["ne"]?.arrayValue?.compactMap(\.intValue) ?? [] }, [[8, 1], [1, 1], [16, 1], [1, 1], [4, 2], [1, 2]])
        XCTAssertEqual(Set(t.compactMap { $0["type"]?.stringValue }), ["F32"])
        XCTAssertEqual(floats(t[0]["data"]), Self.sample.entries["blk.0.attn_q.weight"]!.sums)
        XCTAssertEqual(floats(t[5]["data"]), [2, 0])
    }

    func testRoundTripGGUFIsEqual() throws {
        let out = try makeTempDir("imatrix") + "/i.gguf"
        try Self.sample.write(to: out, format: .gguf)
        XCTAssertEqual(try ImportanceMatrix.read(path: out), Self.sample)
    }

    /// .dat keeps mean · ncall: read back, the values are the sample's Σ/count to float32 rounding
    /// ((s/c)·n/n), a matrix with count 0 stores 1 (imatrix.cpp), and rewriting gives the same bytes.
    func testRoundTripLegacyDat() throws {
        let out = try makeTempDir("imatrix") + "/i.dat"
        try Self.sample.write(to: out, format: .dat)
        let back = try ImportanceMatrix.read(path: out)
        XCTAssertTrue(back.isLegacy)
        XCTAssertEqual(back.chunkCount, 2)
        XCTAssertEqual(back.datasets, ["calib.txt"])
        XCTAssertEqual(back.entries["blk.0.attn_q.weight"]?.counts, [1])  // ncall = ⌈10 / 512⌉
        for (name, _) in Self.sample.entries {
            let a = try XCTUnwrap(Self.sample.values(for: name)), b = try XCTUnwrap(back.values(for: name))
            XCTAssertEqual(a.count, b.count)
            for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: abs(x) * 1e-6, name) }
        }
        XCTAssertEqual(back.legacyBytes(), try FileSystem.readFile(out))
    }

    func testBadFilesAreRefusedNamingTheFile() throws {
        let d = try makeTempDir("imatrix-bad")
        let legacy = try FileSystem.readFile(dir + "/legacy.dat")
        try write(Array(legacy.prefix(100)), to: d + "/trunc.dat")
        assertThrowsMentioning(["trunc.dat", "past the end"]) { _ = try ImportanceMatrix.read(path: d + "/trunc.dat") }
        try write([0, 0, 0, 0], to: d + "/zero.dat")
        assertThrowsMentioning(["zero.dat", "entry count 0"]) { _ = try ImportanceMatrix.read(path: d + "/zero.dat") }
        // A GGUF without the imatrix metadata llama-quantize requires.
        let w = try GGUFWriter(path: d + "/nometa.gguf")
        try w.add("general.type", .text("imatrix"))
        try w.declare(GGUFTensorDecl(name: "a.weight.in_sum2", shape: [1, 4], type: .f32))
        try w.declare(GGUFTensorDecl(name: "a.weight.counts", shape: [1, 1], type: .f32))
        try w.writeHeader()
        for (n, v) in [("a.weight.in_sum2", [Float](repeating: 1, count: 4)), ("a.weight.counts", [Float(2)])] {
            try w.beginTensor(n); try v.withUnsafeBytes { try w.append($0) }; try w.endTensor()
        }
        try w.finish()
        assertThrowsMentioning(["nometa.gguf", "imatrix.chunk_count"]) { _ = try ImportanceMatrix.read(path: d + "/nometa.gguf") }
        // A model GGUF, not an imatrix.
        assertThrowsMentioning(["model.gguf", "general.type"]) {
            let m = try GGUFWriter(path: d + "/model.gguf")
            try m.add("general.type", .text("model"))
            try m.writeHeader(); try m.finish()
            _ = try ImportanceMatrix.read(path: d + "/model.gguf")
        }
        assertThrowsMentioning(["missing.dat"]) { _ = try ImportanceMatrix.read(path: d + "/missing.dat") }
    }

    func testEntryNamesFollowLlamaCppAndMmproj() {
        let l = ModelArchitecture.llama, i = ModelArchitecture.idefics2
        func n(_ c: String, _ a: ModelArchitecture) -> String { ImatrixNames.name(checkpoint: c, architecture: a) }
        XCTAssertEqual(n(l.textPrefix + "layers.3.self_attn.o_proj.weight", l), "blk.3.attn_output.weight")
        XCTAssertEqual(n(i.textPrefix + "layers.0.mlp.gate_proj.weight", i), "blk.0.ffn_gate.weight")
        XCTAssertEqual(n("lm_head.weight", i), "output.weight")
        let vision = i.otherModules[0].prefix, connector = i.otherModules[1].prefix
        XCTAssertEqual(n(vision + "encoder.layers.2.mlp.fc1.weight", i), "v.blk.2.ffn_up.weight")
        XCTAssertEqual(n(vision + "encoder.layers.2.self_attn.out_proj.weight", i), "v.blk.2.attn_out.weight")
        XCTAssertEqual(n(vision + "embeddings.patch_embedding.weight", i), "v.patch_embd.weight")
        XCTAssertEqual(n(connector + "modality_projection.down_proj.weight", i), "mm.ffn_down.weight")
        XCTAssertEqual(n(connector + "perceiver_resampler.layers.1.self_attn.k_proj.weight", i), "resampler.blk.1.attn_k.weight")
        XCTAssertEqual(n(vision + "encoder.layers.2.mlp.fc1.weight", l), vision + "encoder.layers.2.mlp.fc1.weight", "unknown: kept")
    }
}
