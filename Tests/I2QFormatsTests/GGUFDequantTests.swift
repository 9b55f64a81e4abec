import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QFormats
@testable import I2QQuant

/// The dequantizers against gguf-py's `dequantize` (numpy float32), bit for bit, on
/// Tests/Fixtures/gguf/types.gguf (every supported type, special scales, NaN payloads) — see
/// Tests/Fixtures/gguf/make_gguf_fixtures.py.
final class GGUFDequantTests: XCTestCase {
    let dir = fixturesDir + "/gguf"

    func bits(_ f: SafetensorsFile, _ name: String) -> [UInt32]? {
        guard let t = f.info(name) else { return nil }
        return f.withData(t) { Array($0.bindMemory(to: UInt32.self)) }
    }

    func dequant(_ g: GGUFFile, _ t: GGUFTensorInfo, _ first: Int, _ count: Int) throws -> [UInt32] {
        var out = [Float](repeating: .nan, count: count)
        try out.withUnsafeMutableBufferPointer { try g.dequantize(t, first: first, count: count, into: $0.baseAddress!) }
        return out.map(\.bitPattern)
    }

    func testEveryTypeBitExact() throws {
        let g = try GGUFFile(path: dir + "/types.gguf")
        let expected = try SafetensorsFile(path: dir + "/types.expected.safetensors")
        XCTAssertEqual(g.alignment, 64)
        var seen = Set<GGMLType>()
        for t in g.tensors {
            guard let want = bits(expected, t.name) else { XCTFail("no expected values for \(t.name)"); continue }
            XCTAssertEqual(expected.info(t.name)?.shape, t.shape, t.name)
            let got = try dequant(g, t, 0, t.elementCount)
            let diff = zip(got, want).enumerated().filter { $0.element.0 != $0.element.1 }
            XCTAssertEqual(got.count, want.count, t.name)
            XCTAssertTrue(diff.isEmpty, "\(t.name) (\(t.type.name)): \(diff.count) elements differ, first at \(diff.first?.offset ?? -1): \(String(diff.first?.element.0 ?? 0, radix: 16)) vs \(String(diff.first?.element.1 ?? 0, radix: 16))")
            seen.insert(t.type)
        }
        XCTAssertEqual(seen, Set(GGMLType.dequantizable), "the fixture covers every dequantizable type")
    }

    /// Ranges that start and end inside blocks (the loader is asked for arbitrary element ranges).
    func testPartialRanges() throws {
        let g = try GGUFFile(path: dir + "/types.gguf")
        let expected = try SafetensorsFile(path: dir + "/types.expected.safetensors")
        for t in g.tensors {
            let want = bits(expected, t.name)!
            let n = t.elementCount
            let bs = t.type.blockSize
            var ranges: [(Int, Int)] = [(0, 1), (n - 1, 1), (0, n), (n / 2, n - n / 2), (0, 0)]
            if n > bs + 3 { ranges += [(1, bs), (bs - 1, 2), (3, n - 5), (bs, bs), (bs + 1, n - bs - 2)] }
            for (first, count) in ranges where count >= 0 && first + count <= n {
                let got = try dequant(g, t, first, count)
                XCTAssertEqual(got, Array(want[first..<first + count]), "\(t.name) [\(first), +\(count))")
            }
        }
    }

    func testSignallingNaNPayloadsKept() throws {
        // numpy's f16 -> f32 keeps a signalling NaN's payload without quieting it (0x7C01 -> 0x7F802000).
        XCTAssertEqual(GGMLDequant.half(0x7C01).bitPattern, 0x7F80_2000)
        XCTAssertEqual(GGMLDequant.half(0xFD55).bitPattern, 0xFFAA_A000)
        XCTAssertEqual(GGMLDequant.half(0x0001).bitPattern, Float(Float16(bitPattern: 1)).bitPattern)
        XCTAssertEqual(GGMLDequant.half(0x7C00), .infinity)
    }

    func testMetadataOfEveryValueType() throws {
        let g = try GGUFFile(path: dir + "/types.gguf")
        XCTAssertEqual(g.version, 3)
        XCTAssertEqual(g.value("general.architecture")?.stringValue, "llama")
        XCTAssertEqual(g.value("test.u8"), .uint8(200))
        XCTAssertEqual(g.value("test.i8"), .int8(-5))
        XCTAssertEqual(g.value("test.u16"), .uint16(65000))
        XCTAssertEqual(g.value("test.i16"), .int16(-3000))
        XCTAssertEqual(g.value("test.u32"), .uint32(4_000_000_000))
        XCTAssertEqual(g.value("test.i32"), .int32(-2_000_000_000))
        XCTAssertEqual(g.value("test.f32"), .float32(0.1))
        XCTAssertEqual(g.value("test.u64"), .uint64(18_000_000_000_000_000_000))
        XCTAssertEqual(g.value("test.i64"), .int64(-9_000_000_000_000_000_000))
        XCTAssertEqual(g.value("test.f64"), .float64(1e-300))
        XCTAssertEqual(g.value("test.bool"), .bool(true))
        XCTAssertEqual(g.value("test.str")?.stringValue, "héllo ✓")
        XCTAssertEqual(g.value("test.arr_i32"), .array(.int32, [.int32(1), .int32(-2), .int32(3)]))
        XCTAssertEqual(g.value("test.arr_str")?.arrayValue?.compactMap(\.stringValue), ["a", "", "ü"])
        XCTAssertEqual(g.value("test.arr_f32"), .array(.float32, [.float32(0.5), .float32(-1.25)]))
        XCTAssertEqual(g.value("general.alignment"), .uint32(64))
        // Dims are GGML order; shape is numpy order.
        let t = try XCTUnwrap(g.tensor("f16"))
        XCTAssertEqual(t.dims, [4, 3, 2])
        XCTAssertEqual(t.shape, [2, 3, 4])
        XCTAssertEqual(t.offset % 64, g.dataOffset % 64)
    }

    func testPythonFloatRepr() {
        let cases: [(Double, String)] = [
            (100000.0, "100000.0"), (Double(Float(1e-5)), "9.999999747378752e-06"), (1e-6, "1e-06"),
            (0.02, "0.02"), (0.0, "0.0"), (-0.0, "-0.0"), (1e16, "1e+16"), (1e15, "1000000000000000.0"),
            (123456789.125, "123456789.125"), (0.0001, "0.0001"), (0.00012, "0.00012"), (1.5e-5, "1.5e-05"),
            (-2.5, "-2.5"), (Double(Float(0.1)), "0.10000000149011612"), (1e300, "1e+300"), (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"), (12345678901234567.0, "1.2345678901234568e+16"),
        ]
        for (v, s) in cases { XCTAssertEqual(pythonFloatRepr(v), s, "\(v)") }
    }
}
