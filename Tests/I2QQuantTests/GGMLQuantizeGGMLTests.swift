import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QQuant

/// The ggml block encoders against ggml itself: Tests/Fixtures/kquant/kquant.safetensors holds the
/// bytes of `ggml_quantize_chunk` (libggml-base of llama-cpp-python 0.3.36, called through ctypes by
/// scripts/fixtures/make_kquant_fixtures.py) for seeded rows — random rows at several scales and hard
/// rows (zeros, -0, a huge outlier, ~1e-30, negative-only, constant, f16-subnormal scales, zero
/// sub-blocks, ties, a single nonzero) — without and with an importance vector (which has zeros).
final class GGMLQuantizeGGMLTests: XCTestCase {
    static let path = fixturesDir + "/kquant/kquant.safetensors"
    static let fixture: [String: (dtype: DType, shape: [Int], bytes: [UInt8])]? = try? tensorBytes(path)

    func tensor(_ name: String) throws -> (shape: [Int], bytes: [UInt8]) {
        let all = try XCTUnwrap(Self.fixture, "cannot read \(Self.path) (committed: a failure, never a skip)")
        let t = try XCTUnwrap(all[name], "fixture has no \(name)")
        return (t.shape, t.bytes)
    }

    func floats(_ name: String) throws -> (shape: [Int], values: [Float]) {
        let t = try tensor(name)
        return (t.shape, t.bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) })
    }

    /// Encodes matrix `m` as `type` (with its importance vector when `weighted`) and compares with
    /// ggml's bytes block by block, reporting the first differing block (row, block, bytes).
    func check(_ m: String, _ type: GGMLType, weighted: Bool, file: StaticString = #filePath, line: UInt = #line) throws {
        let x = try floats("\(m).input")
        let im = try floats("\(m).imatrix").values
        let want = try tensor("\(m).\(type.name)\(weighted ? ".imatrix" : "")")
        let (rows, n) = (x.shape[0], x.shape[1])
        let rowBytes = n / type.blockSize * type.typeSize
        XCTAssertEqual(want.shape, [rows, rowBytes], file: file, line: line)
        var got = [UInt8](repeating: 0xA5, count: rows * rowBytes)
        try x.values.withUnsafeBufferPointer { src in
            try im.withUnsafeBufferPointer { w in
                try got.withUnsafeMutableBytes { dst in
                    try GGMLQuantize.encode(type, src.baseAddress!, rows: rows, rowLength: n, dst.baseAddress!,
                                            importance: weighted ? w.baseAddress! : nil)
                }
            }
        }
        let ts = type.typeSize, blocks = got.count / ts
        let bad = (0..<blocks).filter { got[$0 * ts..<($0 + 1) * ts] != want.bytes[$0 * ts..<($0 + 1) * ts] }
        if let b = bad.first {
            let perRow = n / type.blockSize
            XCTFail("\(m) \(type.name)\(weighted ? " + imatrix" : ""): \(bad.count) of \(blocks) blocks differ from ggml; first: row \(b / perRow) block \(b % perRow): got \(Array(got[b * ts..<(b + 1) * ts])) want \(Array(want.bytes[b * ts..<(b + 1) * ts]))", file: file, line: line)
        }
    }

    static let small: [GGMLType] = [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0]
    static let kTypes: [GGMLType] = [.q2_K, .q3_K, .q4_K, .q5_K, .q6_K]

    func testBlock32TypesEqualGGML() throws {
        for m in ["k256", "k1024", "w96"] {
            for t in Self.small { try check(m, t, weighted: false) }
        }
    }

    func testBlock32TypesWithImportanceEqualGGML() throws {
        for m in ["k256", "k1024", "w96"] {
            for t in Self.small { try check(m, t, weighted: true) }
        }
    }

    func testKQuantsEqualGGML() throws {
        for m in ["k256", "k1024"] {
            for t in Self.kTypes { try check(m, t, weighted: false) }
        }
    }

    func testKQuantsWithImportanceEqualGGML() throws {
        for m in ["k256", "k1024"] {
            for t in Self.kTypes { try check(m, t, weighted: true) }
        }
    }

    /// Bad input is refused with the error that names what is wrong, before anything is written.
    func testRefusesNonFiniteBadWidthAndBadImportance() throws {
        var x = [Float](repeating: 0.5, count: 512)
        x[300] = .nan
        var out = [UInt8](repeating: 0xA5, count: 512)
        func run(_ t: GGMLType, _ n: Int, _ w: [Float]?) throws {
            try x.withUnsafeBufferPointer { src in
                try out.withUnsafeMutableBytes { dst in
                    if let w {
                        try w.withUnsafeBufferPointer { try GGMLQuantize.encode(t, src.baseAddress!, rows: 512 / n, rowLength: n, dst.baseAddress!, importance: $0.baseAddress!) }
                    } else {
                        try GGMLQuantize.encode(t, src.baseAddress!, rows: 512 / n, rowLength: n, dst.baseAddress!, importance: nil)
                    }
                }
            }
        }
        XCTAssertThrowsError(try run(.q4_K, 512, nil)) { XCTAssertEqual($0 as? GGUFQuantizeError, .nonFinite(block: 1, type: "Q4_K")) }
        XCTAssertTrue(out.allSatisfy { $0 == 0xA5 }, "nothing written before the check")
        x[300] = 1
        XCTAssertThrowsError(try run(.q6_K, 128, nil)) { XCTAssertEqual($0 as? GGUFQuantizeError, .width(rowLength: 128, type: "Q6_K", blockSize: 256)) }
        var w = [Float](repeating: 1, count: 256)
        w[7] = -1
        XCTAssertThrowsError(try run(.q5_K, 256, w)) { XCTAssertEqual($0 as? GGUFQuantizeError, .badImportance(index: 7)) }
        XCTAssertThrowsError(try run(.iq4_nl, 256, nil)) { XCTAssertEqual($0 as? GGUFQuantizeError, .unsupported(type: "IQ4_NL")) }
        XCTAssertTrue(out.allSatisfy { $0 == 0xA5 })
    }
}
