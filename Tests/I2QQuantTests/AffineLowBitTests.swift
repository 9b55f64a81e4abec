import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport
@testable import I2QQuant

/// AffineInt4 with bits 3 and 2 against Tests/Fixtures/int4/lowbit.* (scripts/fixtures/make_lowbit_fixtures.py:
/// AutoAWQ 0.2.9 pseudo_quantize_tensor with w_bit 3 / 2 in torch, fp16 scale rounded first; packing by
/// numpy's packbits, little-endian bit streams). Bit for bit: codes, scales, zeros, packed bytes, w_hat.
final class AffineLowBitTests: XCTestCase {
    struct Case { let name: String; let rows: Int; let cols: Int; let groupSizes: [Int] }

    static let tensors: [String: (dtype: DType, shape: [Int], bytes: [UInt8])] = {
        try! tensorBytes(fixturesDir + "/int4/lowbit.safetensors")
    }()

    static let cases: [Case] = {
        let data = try! Data(contentsOf: URL(fileURLWithPath: fixturesDir + "/int4/lowbit.json"))
        let obj = try! JSONSerialization.jsonObject(with: data) as! [String: Any]
        let cs = obj["cases"] as! [String: [String: [Int]]]
        return cs.keys.sorted().map { k in
            let shape = cs[k]!["shape"]!
            return Case(name: k, rows: shape[0], cols: shape[1], groupSizes: cs[k]!["group_sizes"]!)
        }
    }()

    func bytes(_ name: String) -> [UInt8]? { Self.tensors[name]?.bytes }

    func floats(_ name: String) -> [Float] {
        let b = bytes(name)!
        return b.withUnsafeBytes { r in (0 ..< b.count / 4).map { r.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) } }
    }

    func f16bits(_ name: String) -> [UInt16] {
        let b = bytes(name)!
        return b.withUnsafeBytes { r in (0 ..< b.count / 2).map { r.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self) } }
    }

    func assertSameFloats(_ a: [Float], _ b: [Float], _ what: String) {
        XCTAssertEqual(a.count, b.count, what)
        let bad = zip(a, b).filter { !($0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN)) }.count
        XCTAssertEqual(bad, 0, "\(what): \(bad) mismatches")
    }

    func testFixturesCoverBothWidthsAndPacking() {
        XCTAssertEqual(Self.cases.map(\.name), ["overflow", "randn", "small", "special"])
        var packedCount = 0
        for c in Self.cases { for b in [3, 2] { for g in c.groupSizes where bytes("\(c.name).b\(b).g\(g).packed") != nil { packedCount += 1 } } }
        XCTAssertGreaterThanOrEqual(packedCount, 12)
    }

    func testQuantizeRowsPackAndDequantizeMatchReference() {
        var compared = 0
        for c in Self.cases {
            let w = floats("\(c.name).w")
            for bits in [3, 2] {
                for g in c.groupSizes {
                    let p = "\(c.name).b\(bits).g\(g)"
                    let ng = c.rows * c.cols / g
                    var codes = [UInt8](repeating: 0xAA, count: c.rows * c.cols)
                    var scales = [Float16](repeating: 0, count: ng)
                    var zeros = [UInt8](repeating: 0xAA, count: ng)
                    AffineInt4.quantizeRows(w, rows: c.rows, cols: c.cols, groupSize: g, bits: bits,
                                            codes: &codes, scales: &scales, zeros: &zeros)
                    XCTAssertEqual(codes, bytes("\(p).codes"), "\(p) codes")
                    XCTAssertEqual(scales.map(\.bitPattern), f16bits("\(p).scales"), "\(p) scales")
                    XCTAssertEqual(zeros, bytes("\(p).zeros"), "\(p) zeros")
                    var fq = w
                    AffineInt4.fakeQuantize(&fq, rows: c.rows, cols: c.cols, groupSize: g, bits: bits)
                    assertSameFloats(fq, floats("\(p).w_hat"), "\(p) fakeQuantize")
                    guard let want = bytes("\(p).packed") else { continue }
                    var packed = [UInt8](repeating: 0xEE, count: AffineInt4.packedBytes(count: codes.count, bits: bits))
                    AffineInt4.pack(codes, count: codes.count, bits: bits, into: &packed)
                    XCTAssertEqual(packed, want, "\(p) packed")
                    var back = [UInt8](repeating: 0xFF, count: codes.count)
                    AffineInt4.unpack(packed, count: codes.count, bits: bits, into: &back)
                    XCTAssertEqual(back, codes, "\(p) unpack")
                    var deq = [Float](repeating: 0, count: codes.count)
                    AffineInt4.dequantizeRows(packed: packed, scales: scales, zeros: zeros, rows: c.rows, cols: c.cols,
                                              groupSize: g, bits: bits, into: &deq)
                    assertSameFloats(deq, floats("\(p).w_hat"), "\(p) dequantized")
                    compared += 1
                }
            }
        }
        XCTAssertGreaterThanOrEqual(compared, 12)
    }

    /// The spec's bit order, by hand: int3 q0..q7 = 1..7,0 → 24-bit word Σ q_j << 3j; int2 four per byte.
    func testBitOrderAsSpecified() {
        let c3: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 0]
        var word = 0
        for (j, q) in c3.enumerated() { word |= Int(q) << (3 * j) }
        var out = [UInt8](repeating: 0, count: 3)
        AffineInt4.pack(c3, count: 8, bits: 3, into: &out)
        XCTAssertEqual(out, [UInt8(word & 255), UInt8((word >> 8) & 255), UInt8(word >> 16)])
        let c2: [UInt8] = [1, 2, 3, 0, 3, 3, 0, 1]
        var out2 = [UInt8](repeating: 0, count: 2)
        AffineInt4.pack(c2, count: 8, bits: 2, into: &out2)
        XCTAssertEqual(out2, [0b00_11_10_01, 0b01_00_11_11])
    }

    func testCheckRejectsRowsThatAreNotWholeBytes() {
        assertThrowsMentioning(["m.weight", "3-bit", "whole number of bytes"]) { try AffineInt4.check(tensor: "m.weight", shape: [3, 20], groupSize: 4, bits: 3) }
        assertThrowsMentioning(["m.weight", "5 bits"]) { try AffineInt4.check(tensor: "m.weight", shape: [3, 64], groupSize: 64, bits: 5) }
        XCTAssertNoThrow(try AffineInt4.check(tensor: "m.weight", shape: [3, 576], groupSize: 64, bits: 3))
        XCTAssertNoThrow(try AffineInt4.check(tensor: "m.weight", shape: [3, 20], groupSize: 4, bits: 2))
    }
}
