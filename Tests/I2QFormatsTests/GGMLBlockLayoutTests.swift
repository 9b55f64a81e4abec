import Foundation
import XCTest
import I2QCore
import I2QQuant
import I2QTestSupport
@testable import I2QFormats

/// Scheme `ggml` against Formats/i2q-format.md ("ggml"): block sizes and bytes are ggml's
/// (`GGML_QUANT_SIZES` of gguf-py 0.19 / ggml-common.h), written out by hand here.
final class GGMLBlockLayoutTests: XCTestCase {
    func comp(_ shape: [Int], _ dt: DType = .u8, role: String = "blocks", at offset: Int = 0) -> I2QComponent {
        I2QComponent(role: role, dtype: dt, shape: shape, offset: offset, size: shape.reduce(1, *) * dt.size)
    }
    func entry(_ type: String, _ shape: [Int], _ c: [I2QComponent], parts: [I2QPart] = []) -> I2QTensorEntry {
        I2QTensorEntry(name: "w", scheme: "ggml", dtype: .f32, shape: shape, params: [("ggml_type", .string(type))], parts: parts, components: c)
    }

    /// (type, block elements, block bytes) from ggml-common.h: e.g. block_q4_K = d, dmin (f16) +
    /// scales[12] + qs[128] = 144 bytes per 256; block_q8_0 = d (f16) + qs[32] = 34 per 32.
    let ggmlSizes: [(String, Int, Int)] = [("Q4_0", 32, 18), ("Q4_1", 32, 20), ("Q5_0", 32, 22), ("Q5_1", 32, 24), ("Q8_0", 32, 34),
                                           ("Q2_K", 256, 84), ("Q3_K", 256, 110), ("Q4_K", 256, 144), ("Q5_K", 256, 176), ("Q6_K", 256, 210)]

    func testEveryTypeSizesRowsAsGGML() throws {
        XCTAssertEqual(I2QSpec.Scheme.ggml, "ggml")
        XCTAssertTrue(SchemeLayouts.type(of: "ggml") == GGMLBlockLayout.self)
        XCTAssertEqual(GGMLBlockLayout.types.map(\.name).sorted(), ggmlSizes.map(\.0).sorted())
        for (name, bs, ts) in ggmlSizes {
            let cols = 2 * 256, rb = cols / bs * ts
            let l = try GGMLBlockLayout(entry(name, [3, cols], [comp([3, rb])]))
            XCTAssertEqual(l.type.name, name)
            XCTAssertEqual([l.rows, l.cols, l.rowBytes], [3, cols, rb], name)
        }
    }

    func testMalformedEntriesNameTheProblem() {
        func fails(_ e: I2QTensorEntry, _ mentions: String, line: UInt = #line) {
            XCTAssertThrowsError(try GGMLBlockLayout(e), line: line) { err in
                XCTAssertTrue(err is SchemeLayoutError, "\(err)", line: line)
                XCTAssertTrue("\(err)".contains(mentions), "\(err) should mention \(mentions)", line: line)
            }
        }
        let good = entry("Q8_0", [4, 64], [comp([4, 68])])
        XCTAssertNoThrow(try GGMLBlockLayout(good))
        fails(entry("Q8_0", [256], [comp([1, 8])]), "2-D")
        var e = good; e.params = []
        fails(e, "ggml_type is missing")
        e.params = [("ggml_type", .int(8))]
        fails(e, "ggml_type is not a string")
        fails(entry("Q7_0", [4, 64], [comp([4, 68])]), "\"Q7_0\"")
        fails(entry("F16", [4, 64], [comp([4, 128])]), "\"F16\"")         // plain floats are the plain scheme
        fails(entry("IQ4_NL", [4, 64], [comp([4, 36])]), "\"IQ4_NL\"")    // no dequantizer in this version
        fails(entry("Q4_K", [4, 576], [comp([4, 324])]), "576 is not a multiple of Q4_K's block size 256")
        fails(entry("Q8_0", [4, 64], [comp([4, 67])]), "expected U8 [4, 68]")
        fails(entry("Q8_0", [4, 64], [comp([2, 136])]), "expected U8 [4, 68]")
        fails(entry("Q8_0", [4, 64], [comp([4, 17], .f32)]), "expected U8 [4, 68]")
        fails(entry("Q8_0", [4, 64], [comp([4, 68], role: "data")]), "\"blocks\" is missing")
    }

    /// A fused Q4_K entry [5, 256] (144 bytes per row), parts a = rows [0, 2), b = rows [2, 5):
    /// part b is bytes [2·144, +3·144) of `blocks`.
    func testFusedPartsAreRowRanges() throws {
        let e = entry("Q4_K", [5, 256], [comp([5, 144], at: 4096)],
                      parts: [I2QPart(name: "a", start: 0, length: 2), I2QPart(name: "b", start: 2, length: 3)])
        let parts = try FusedTensors.partEntries(e, path: "m.i2q")
        XCTAssertEqual(parts.map(\.name), ["a", "b"])
        XCTAssertEqual(parts.map(\.shape), [[2, 256], [3, 256]])
        let b = try XCTUnwrap(parts[1].components.first)
        XCTAssertEqual([b.offset, b.size], [4096 + 288, 432])
        XCTAssertEqual(b.shape, [3, 144])
        XCTAssertEqual(try GGMLBlockLayout(parts[1]).type, .q4_K)  // a part is a valid entry of its own
    }

    func testFuseConflictWhenTypesDiffer() {
        let q = entry("Q4_K", [4, 256], [comp([4, 144])]), k = entry("Q4_K", [2, 256], [comp([2, 144])])
        XCTAssertNil(GGMLBlockLayout.fuseConflict([q, k]))
        let v = entry("Q6_K", [2, 256], [comp([2, 210])])
        let why = GGMLBlockLayout.fuseConflict([q, k, v])
        XCTAssertEqual(why, "their ggml types differ (Q4_K, Q4_K, Q6_K)")
    }

    /// `inspect`'s bits per weight: 8 · block bytes / block elements (Q4_K 4.5, Q6_K 6.5625, Q8_0 8.5 …).
    func testSummaryLabelsAndBitsPerWeight() {
        let expected: [String: Double] = ["Q4_0": 4.5, "Q4_1": 5.0, "Q5_0": 5.5, "Q5_1": 6.0, "Q8_0": 8.5,
                                          "Q2_K": 2.625, "Q3_K": 3.4375, "Q4_K": 4.5, "Q5_K": 5.5, "Q6_K": 6.5625]
        for (name, bs, ts) in ggmlSizes {
            let rb = 512 / bs * ts
            let e = entry(name, [3, 512], [comp([3, rb])])
            XCTAssertEqual(SchemeSummary.label(e), "ggml " + name.lowercased())
            let bytes = e.components.reduce(0) { $0 + $1.size }
            XCTAssertEqual(SchemeSummary.bitsPerWeight(bytes: bytes, parameters: 3 * 512), expected[name]!, name)
        }
    }

    /// The streaming writer hands the encoder every row once, in order, widened to float32, in chunks
    /// of at most ~1 Mi elements, and stores exactly the bytes it returns. The "encoder" here is a
    /// probe, not a quantizer: per row one 34-byte (Q8_0-sized) block of the row index (bytes 0–1)
    /// and the row's 32 values as int8.
    func testStreamingWriterFeedsRowsInOrder() throws {
        let dir = try makeTempDir("ggmlw")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let rows = 40_000, cols = 32  // 1.28 Mi elements: two chunks
        // bf16 source: value(r, c) = (r + c) % 100, exact in bf16.
        let t = SourceTensor(name: "w", dtype: .bf16, shape: [rows, cols]) { first, count, dst in
            for i in 0..<count {
                let v = Float(((first + i) / cols + (first + i) % cols) % 100)
                dst.storeBytes(of: UInt16(v.bitPattern >> 16), toByteOffset: 2 * i, as: UInt16.self)
            }
        }
        var calls: [Int] = [], nextRow = 0
        let w = try I2QWriter(path: dir + "/w.i2q")
        try w.writeGGML(t, type: .q8_0) { src, n, k, dst in
            XCTAssertEqual(k, cols)
            calls.append(n)
            for r in 0..<n {
                let row = nextRow + r, o = dst + r * 34
                o.storeBytes(of: UInt16(row & 0xFFFF), as: UInt16.self)
                for c in 0..<32 { o.storeBytes(of: Int8(src[r * k + c]), toByteOffset: 2 + c, as: Int8.self) }
            }
            nextRow += n
        }
        let config = try Array(Data(contentsOf: URL(fileURLWithPath: fixturesDir + "/tiny-llama/config.json")))
        try w.finish(metadata: I2QMetadata(files: [("config.json", config)], provenance: Provenance(source: .null, passes: [])))
        XCTAssertEqual(calls, [32768, rows - 32768])
        let f = try I2QFile(path: dir + "/w.i2q")
        let e = try XCTUnwrap(f.entries.first)
        XCTAssertEqual(e.scheme, "ggml")
        XCTAssertEqual(try GGMLBlockLayout(e).type, .q8_0)
        let c = e.components[0]
        XCTAssertEqual(c.shape, [rows, 34])
        let b = f.file.copyBytes(f.header.dataOffset + c.offset, c.size)
        for r in [0, 1, 32767, 32768, rows - 1] {
            XCTAssertEqual(Int(b[r * 34]) | Int(b[r * 34 + 1]) << 8, r & 0xFFFF)
            XCTAssertEqual((0..<32).map { Int(Int8(bitPattern: b[r * 34 + 2 + $0])) }, (0..<32).map { (r + $0) % 100 })
        }
        // Widths the type's block does not divide are refused, naming the tensor.
        let odd = SourceTensor(name: "model.vision.fc1.weight", dtype: .f32, shape: [2, 4304]) { _, _, _ in }
        let w2 = try I2QWriter(path: dir + "/w2.i2q")
        assertThrowsMentioning(["model.vision.fc1.weight", "4304", "Q4_K", "256"]) {
            try w2.writeGGML(odd, type: .q4_K) { _, _, _, _ in }
        }
        assertThrowsMentioning(["w3", "F16"]) {
            try [UInt8](repeating: 0, count: 64).withUnsafeBytes { try w2.writeGGML(name: "w3", rows: 1, cols: 32, type: .f16, blocks: $0) }
        }
    }
}
