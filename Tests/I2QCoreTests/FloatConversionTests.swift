import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport

/// Bit-exact comparison with torch's CPU `.to(dtype)`: every expected bit pattern in
/// Tests/Fixtures/cast/special.safetensors was produced by torch (scripts/fixtures/make_fixtures.py).
final class FloatConversionTests: XCTestCase {
    func testSpecialValuesMatchTorchBitForBit() throws {
        let f = try SafetensorsFile(path: fixturesDir + "/cast/special.safetensors")
        var checked = 0
        for src in f.tensors where !src.name.contains(".") {
            for dst in [DType.f16, .bf16, .f32] {
                let key = src.name + "." + ["F16": "f16", "BF16": "bf16", "F32": "f32"][dst.rawValue]!
                guard let exp = f.info(key) else { continue }
                XCTAssertEqual(exp.dtype, dst)
                let n = src.elementCount
                var got = [UInt8](repeating: 0, count: n * dst.size)
                _ = try f.withData(src) { s in
                    try got.withUnsafeMutableBytes { d in
                        try FloatConversion.convert(from: src.dtype, to: dst, count: n, src: s.baseAddress!, dst: d.baseAddress!)
                    }
                }
                let want = f.withData(exp) { Array($0) }
                var mismatches: [String] = []
                for i in 0..<n {
                    let g = got[(i * dst.size)..<((i + 1) * dst.size)], w = want[(i * dst.size)..<((i + 1) * dst.size)]
                    if g != w && mismatches.count < 5 {
                        let srcBits = f.withData(src) { Array($0[(i * src.dtype.size)..<((i + 1) * src.dtype.size)]) }
                        mismatches.append("[\(i)] src \(hex(srcBits)) torch \(hex(Array(w))) i2q \(hex(Array(g)))")
                    }
                }
                XCTAssertTrue(mismatches.isEmpty, "\(src.name) → \(dst.rawValue): \(mismatches.joined(separator: "; "))")
                checked += 1
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 12, "special.safetensors should hold every source × target pair")
    }

    func testOverflowAndUnderflowAreCounted() throws {
        // 65519.99 → 65504 (finite); 65520 → inf (tie to even); 1e5 → inf; inf stays inf (not an overflow);
        // 2^-25 → 0 (tie to even); 1.5·2^-25 → 2^-24.
        let xs: [Float] = [65519.99, 65520, 1e5, -1e5, .infinity, .nan, 0x1p-25, 0x1.8p-25, 0]
        var out = [UInt16](repeating: 0, count: xs.count)
        let st = try xs.withUnsafeBytes { s in
            try out.withUnsafeMutableBytes { d in try FloatConversion.convert(from: .f32, to: .f16, count: xs.count, src: s.baseAddress!, dst: d.baseAddress!) }
        }
        XCTAssertEqual(st.overflowed, 3)
        XCTAssertEqual(st.nans, 1)
        XCTAssertEqual(st.flushedToZero, 1)
        XCTAssertEqual(out[0], 0x7BFF)
        XCTAssertEqual(out[1], 0x7C00)
        XCTAssertEqual(out[3], 0xFC00)
        XCTAssertEqual(out[6], 0x0000)
        XCTAssertEqual(out[7], 0x0001)
    }

    func hex(_ b: [UInt8]) -> String { "0x" + b.reversed().map { String(format: "%02X", $0) }.joined() }
}
