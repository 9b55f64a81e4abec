import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QFormats
@testable import I2QQuant

/// The Q8_0 / Q4_0 encoders against gguf-py 0.19's `gguf.quants.quantize` (numpy), byte for byte, on
/// Tests/Fixtures/gguf-export/quants.safetensors (random rows at four scales and edge blocks: zeros,
/// -0, .5 ties, equal |max| of both signs, subnormals where 1/d overflows, d overflowing f16) —
/// made by scripts/fixtures/make_gguf_export_fixtures.py.
final class GGUFQuantizeTests: XCTestCase {
    let path = fixturesDir + "/gguf-export/quants.safetensors"

    func load() throws -> (input: [Float], rows: Int, q8: [UInt8], q4: [UInt8]) {
        let t = try tensorBytes(path)
        guard let x = t["input"], let q8 = t["q8_0"], let q4 = t["q4_0"] else {
            throw XCTSkip("fixture incomplete")  // never: the fixture is committed
        }
        XCTAssertEqual(x.dtype, .f32)
        let input = x.bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        return (input, x.shape[0], q8.bytes, q4.bytes)
    }

    func encode(_ type: GGMLType, _ x: [Float]) throws -> [UInt8] {
        var out = [UInt8](repeating: 0xAA, count: max(x.count / type.blockSize * type.typeSize, 1))
        try x.withUnsafeBufferPointer { src in
            try out.withUnsafeMutableBytes { dst in
                _ = try GGMLQuantize.encode(type, src.baseAddress!, count: x.count, dst.baseAddress!)
            }
        }
        return out
    }

    func assertBlocksEqual(_ got: [UInt8], _ want: [UInt8], _ type: GGMLType, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, want.count, file: file, line: line)
        let ts = type.typeSize
        let bad = (0..<(want.count / ts)).filter { b in got[b * ts..<(b + 1) * ts] != want[b * ts..<(b + 1) * ts] }
        XCTAssertTrue(bad.isEmpty, "\(type.name): \(bad.count) of \(want.count / ts) blocks differ from gguf-py, first block \(bad.first ?? -1): \(bad.first.map { Array(got[$0 * ts..<($0 + 1) * ts]) } ?? []) vs \(bad.first.map { Array(want[$0 * ts..<($0 + 1) * ts]) } ?? [])", file: file, line: line)
    }

    func testQ8_0BytesEqualGGUFPy() throws {
        let f = try load()
        XCTAssertGreaterThanOrEqual(f.rows, 17)
        assertBlocksEqual(try encode(.q8_0, f.input), f.q8, .q8_0)
    }

    /// The Q4_0 encoder follows ggml (`quantize_row_q4_0_ref`, GGMLQuantizeGGMLTests). gguf-py
    /// differs from ggml in one case only: a block of all -0 (gguf-py's argmax picks -0, d = +0; ggml
    /// keeps its initial +0, d = -0, f16 0x8000). Every other block must equal gguf-py's bytes.
    func testQ4_0BytesEqualGGUFPyExceptAllNegativeZeroBlocks() throws {
        let f = try load()
        let got = try encode(.q4_0, f.input)
        var want = f.q4
        var patched = 0
        for b in 0..<(f.input.count / 32) where f.input[b * 32..<(b + 1) * 32].allSatisfy({ $0 == 0 && $0.sign == .minus }) {
            XCTAssertEqual(Array(want[b * 18..<b * 18 + 2]), [0, 0], "gguf-py: d = +0")
            want[b * 18 + 1] = 0x80  // ggml: d = -0
            patched += 1
        }
        XCTAssertEqual(patched, 1, "the fixture's all -0 block")
        assertBlocksEqual(got, want, .q4_0)
    }

    /// Dequantized (by the reader's gguf-py-exact dequantizers) the random rows come back within the
    /// format's step: Q8_0 within d/2, Q4_0 within |d| (the clipped top code), each plus the f16 rounding of d.
    func testRoundTripWithinOneStep() throws {
        let f = try load()
        let x = Array(f.input[0..<(16 * 256)])  // the random rows (the edge rows follow)
        for type in [GGMLType.q8_0, .q4_0] {
            let q = try encode(type, x)
            var back = [Float](repeating: .nan, count: x.count)
            try q.withUnsafeBytes { src in
                try back.withUnsafeMutableBufferPointer { try GGMLDequant.blocks(type, src.baseAddress!, x.count / 32, $0.baseAddress!) }
            }
            var worst: Float = 0
            for b in 0..<(x.count / 32) {
                let blk = x[b * 32..<(b + 1) * 32]
                let amax = blk.map(abs).max()!
                let step = type == .q8_0 ? amax / 127 : amax / 8
                // + the f16 rounding of d (half an f16 ulp: 2^-11 relative, 2^-25 for subnormals)
                // times the largest code (127 or 8)
                let dErr = max(step / 2048, 0x1p-25)
                let bound = (type == .q8_0 ? step * 0.5 + 127 * dErr : step + 8 * dErr) * 1.001
                for i in b * 32..<(b + 1) * 32 {
                    let e = abs(back[i] - x[i])
                    worst = max(worst, e / step)
                    XCTAssertLessThanOrEqual(e, bound, "\(type.name) element \(i)")
                }
            }
            XCTAssertGreaterThan(worst, 0.1, "\(type.name): the round trip should not be exact")
        }
    }

    func testNonFiniteInputIsAnError() throws {
        for type in [GGMLType.q8_0, .q4_0] {
            for bad in [Float.nan, .infinity, -.infinity] {
                var x = [Float](repeating: 0.5, count: 64)
                x[40] = bad
                assertThrowsMentioning(["block 1", type.name, "--type f16"]) { _ = try encode(type, x) }
            }
        }
    }

    func testPlainTypesAndUnsupported() throws {
        let x: [Float] = [1, -2.5, 65520, 1e-8, 0.1, -0.0, 3, 4]
        let f16 = try encode(.f16, x + [Float](repeating: 0, count: 24))
        XCTAssertEqual(Array(f16[0..<4]), [0x00, 0x3C, 0x00, 0xC1])  // 1.0, -2.5 (IEEE half)
        XCTAssertEqual(Array(f16[4..<6]), [0x00, 0x7C])  // 65520 rounds to +inf, as torch/numpy
        assertThrowsMentioning(["IQ4_NL", "not supported"]) { _ = try encode(.iq4_nl, [Float](repeating: 0, count: 256)) }
    }
}
