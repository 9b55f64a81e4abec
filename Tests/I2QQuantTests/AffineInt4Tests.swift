import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport
@testable import I2QQuant

/// AffineInt4 against Tests/Fixtures/int4 (scripts/fixtures/make_int4_fixtures.py: AutoAWQ 0.2.9
/// pseudo_quantize_tensor in torch with the fp16 scale rounded first). Everything must match
/// bit for bit: codes, scales, zeros, packed bytes and w_hat (NaN where torch gives NaN).
final class AffineInt4Tests: XCTestCase {
    struct Case { let name: String; let rows: Int; let cols: Int; let groupSizes: [Int] }

    static let tensors: [String: (dtype: DType, shape: [Int], bytes: [UInt8])] = {
        try! tensorBytes(fixturesDir + "/int4/cases.safetensors")
    }()

    static let cases: [Case] = {
        let data = try! Data(contentsOf: URL(fileURLWithPath: fixturesDir + "/int4/cases.json"))
        let obj = try! JSONSerialization.jsonObject(with: data) as! [String: Any]
        let cs = obj["cases"] as! [String: [String: [Int]]]
        return cs.keys.sorted().map { k in
            let shape = cs[k]!["shape"]!
            return Case(name: k, rows: shape[0], cols: shape[1], groupSizes: cs[k]!["group_sizes"]!)
        }
    }()

    func bytes(_ name: String) -> [UInt8] {
        guard let t = Self.tensors[name] else { fatalError("fixture tensor \(name) missing; rerun scripts/fixtures/make_int4_fixtures.py") }
        return t.bytes
    }

    func floats(_ name: String) -> [Float] {
        let b = bytes(name)
        return b.withUnsafeBytes { r in (0 ..< b.count / 4).map { r.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) } }
    }

    func f16bits(_ name: String) -> [UInt16] {
        let b = bytes(name)
        return b.withUnsafeBytes { r in (0 ..< b.count / 2).map { r.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self) } }
    }

    /// Equal bit patterns, or both NaN.
    func assertSameFloats(_ a: [Float], _ b: [Float], _ what: String) {
        XCTAssertEqual(a.count, b.count, what)
        var bad = 0
        for i in 0 ..< min(a.count, b.count) where !(a[i].bitPattern == b[i].bitPattern || (a[i].isNaN && b[i].isNaN)) {
            if bad < 5 { XCTFail("\(what)[\(i)]: \(a[i]) != expected \(b[i])") }
            bad += 1
        }
        XCTAssertEqual(bad, 0, "\(what): \(bad) mismatches")
    }

    func testFixturesCoverEveryCase() {
        XCTAssertEqual(Self.cases.map(\.name), ["overflow", "randn", "small", "special"])
        XCTAssertTrue(Self.cases.contains { $0.groupSizes.contains { $0 % 8 != 0 } }, "a group size that is not a multiple of 8")
    }

    func testQuantizeRowsMatchesAutoAWQ() {
        for c in Self.cases {
            let w = floats("\(c.name).w")
            for g in c.groupSizes {
                let p = "\(c.name).g\(g)"
                let ng = c.rows * c.cols / g
                var codes = [UInt8](repeating: 0xAA, count: c.rows * c.cols)
                var scales = [Float16](repeating: 0, count: ng)
                var zeros = [UInt8](repeating: 0xAA, count: ng)
                w.withUnsafeBufferPointer { wp in
                    AffineInt4.quantizeRows(wp.baseAddress!, rows: c.rows, cols: c.cols, groupSize: g,
                                            codes: &codes, scales: &scales, zeros: &zeros)
                }
                XCTAssertEqual(codes, bytes("\(p).codes"), "\(p) codes")
                XCTAssertEqual(scales.map(\.bitPattern), f16bits("\(p).scales"), "\(p) scales")
                XCTAssertEqual(zeros, bytes("\(p).zeros"), "\(p) zeros")

                var packed = [UInt8](repeating: 0, count: codes.count / 2)
                AffineInt4.pack(codes, count: codes.count, into: &packed)
                XCTAssertEqual(packed, bytes("\(p).packed"), "\(p) packed")
                var back = [UInt8](repeating: 0xFF, count: codes.count)
                AffineInt4.unpack(packed, count: codes.count, into: &back)
                XCTAssertEqual(back, codes, "\(p) unpack")

                var deq = [Float](repeating: 0, count: codes.count)
                AffineInt4.dequantizeRows(packed: packed, scales: scales, zeros: zeros, rows: c.rows, cols: c.cols,
                                          groupSize: g, into: &deq)
                assertSameFloats(deq, floats("\(p).w_hat"), "\(p) dequantized")
            }
        }
    }

    func testFakeQuantizeMatchesWHat() {
        for c in Self.cases {
            for g in c.groupSizes {
                var w = floats("\(c.name).w")
                AffineInt4.fakeQuantize(&w, rows: c.rows, cols: c.cols, groupSize: g)
                assertSameFloats(w, floats("\(c.name).g\(g).w_hat"), "\(c.name).g\(g) fakeQuantize")
            }
        }
    }

    func testSpecialGroupsBehaveAsDocumented() {
        // special.g64: group 0 all zeros, 1/2 constant ±0.37, 6/7 ties (z = 2 by half-to-even).
        let z = bytes("special.g64.zeros")
        XCTAssertEqual(z[0], 0)
        XCTAssertEqual(z[2], 15)      // constant negative: -round(mn / tiny s) clamps to 15
        XCTAssertEqual(z[6], 2)       // mn / s = -2.5 -> round -2
        XCTAssertEqual(z[7], 2)       // mn / s = -1.5 -> round -2
        // overflow.g32: the first group's f16 scale is +inf and its w_hat NaN, the second group normal.
        let s = f16bits("overflow.g32.scales")
        XCTAssertEqual(s[0], Float16.infinity.bitPattern)
        XCTAssertTrue(Float16(bitPattern: s[1]).isFinite)
    }

    func testPackOddCountAndNibbleOrder() {
        let codes: [UInt8] = [1, 2, 3, 4, 15]
        var out = [UInt8](repeating: 0xEE, count: 3)
        AffineInt4.pack(codes, count: 5, into: &out)
        XCTAssertEqual(out, [0x21, 0x43, 0x0F])  // spec: first element in the LOW nibble
        var back = [UInt8](repeating: 0, count: 5)
        AffineInt4.unpack(out, count: 5, into: &back)
        XCTAssertEqual(back, codes)
    }

    func testNaNGroupIsNaNWithoutTrapping() {
        var w = [Float](repeating: 0.5, count: 16)
        w[3] = .nan
        w[8] = 1  // second group (g 8) finite
        var codes = [UInt8](repeating: 9, count: 16)
        var scales = [Float16](repeating: 0, count: 2)
        var zeros = [UInt8](repeating: 9, count: 2)
        AffineInt4.quantizeRows(w, rows: 1, cols: 16, groupSize: 8, codes: &codes, scales: &scales, zeros: &zeros)
        XCTAssertTrue(scales[0].isNaN)
        XCTAssertEqual(Array(codes[0 ..< 8]), [UInt8](repeating: 0, count: 8))
        XCTAssertEqual(zeros[0], 0)
        XCTAssertTrue(scales[1].isFinite)
        AffineInt4.fakeQuantize(&w, rows: 1, cols: 16, groupSize: 8)
        XCTAssertTrue(w[0 ..< 8].allSatisfy(\.isNaN))
        XCTAssertTrue(w[8 ..< 16].allSatisfy(\.isFinite))
    }

    func testCheckRejectsBadShapes() {
        assertThrowsMentioning(["m.weight", "2-D"]) { try AffineInt4.check(tensor: "m.weight", shape: [4], groupSize: 2) }
        assertThrowsMentioning(["m.weight", "64", "100"]) { try AffineInt4.check(tensor: "m.weight", shape: [3, 100], groupSize: 64) }
        assertThrowsMentioning(["m.weight", "odd"]) { try AffineInt4.check(tensor: "m.weight", shape: [3, 9], groupSize: 3) }
        XCTAssertNoThrow(try AffineInt4.check(tensor: "m.weight", shape: [3, 128], groupSize: 64))
    }

    /// Speed guard for the AWQ search (printed; asserts only that the work was done).
    func testFakeQuantizeSpeed() {
        let rows = 576, cols = 1536
        var rng = SplitMix64(seed: 5)
        var w = (0 ..< rows * cols).map { _ in Float(Int64(bitPattern: rng.next() >> 11) - (1 << 52)) / Float(1 << 52) * 0.05 }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let reps = 5
        for _ in 0 ..< reps { AffineInt4.fakeQuantize(&w, rows: rows, cols: cols, groupSize: 64) }
        let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        print(String(format: "AffineInt4.fakeQuantize: %.0f M elements/s", Double(reps * rows * cols) / dt / 1e6))
        XCTAssertTrue(w.allSatisfy(\.isFinite))
    }
}
