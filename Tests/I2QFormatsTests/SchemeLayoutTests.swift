import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QFormats

/// The scheme layouts against Formats/i2q-format.md ("Schemes", "Fused tensors"): the sizes and
/// byte ranges below are the spec's arithmetic, written out by hand.
final class SchemeLayoutTests: XCTestCase {
    func comp(_ role: String, _ dt: DType, _ shape: [Int], at offset: Int = 0) -> I2QComponent {
        I2QComponent(role: role, dtype: dt, shape: shape, offset: offset, size: shape.reduce(1, *) * dt.size)
    }

    /// nf4 [3, 43] = 129 values, blocksize 64: packed ceil(129/2) = 65 bytes, absmax ceil(129/64) = 3
    /// blocks; with double quantization 3 u8 codes, ceil(3/256) = 1 nested absmax, a 256-entry code.
    func testBnbFourBitSizes() throws {
        var e = I2QTensorEntry(name: "w", scheme: "nf4", dtype: .bf16, shape: [3, 43], params: [("blocksize", .int(64))],
                               components: [comp("packed", .u8, [65]), comp("absmax", .f32, [3])])
        let plain = try BnbFourBitLayout(e)
        XCTAssertEqual([plain.blocks, plain.blockSize, plain.elements], [3, 64, 129])
        XCTAssertFalse(plain.doubleQuant)
        XCTAssertTrue(plain.isNF4)
        e.components = [comp("packed", .u8, [65]), comp("absmax", .u8, [3]), comp("nested_absmax", .f32, [1]), comp("nested_code", .f32, [256])]
        e.params.append(("nested_offset", .float(0.25)))
        let dq = try BnbFourBitLayout(e)
        XCTAssertEqual(dq.nested?.offset, 0.25)
        e.components[1] = comp("absmax", .u8, [2])
        XCTAssertThrowsError(try BnbFourBitLayout(e)) { XCTAssertTrue("\($0)".contains("absmax"), "\($0)") }
        e.components[1] = comp("absmax", .u8, [3])
        e.params.removeLast()
        XCTAssertThrowsError(try BnbFourBitLayout(e)) { XCTAssertTrue("\($0)".contains("nested_offset"), "\($0)") }
        e.params = [("blocksize", .int(63))]
        XCTAssertThrowsError(try BnbFourBitLayout(e)) { XCTAssertTrue("\($0)".contains("blocksize 63"), "\($0)") }
    }

    /// affine_int4 [8, 32], group 16: qweight [8, 16], scales and zeros [8, 2]; zero_point 0 has no zeros.
    func testAffineInt4SizesAndParams() throws {
        let params: [(String, I2QParam)] = [("group_size", .int(16)), ("pack_order", .string("sequential")), ("zero_point", .int(1))]
        var e = I2QTensorEntry(name: "w", scheme: "affine_int4", dtype: .f16, shape: [8, 32], params: params,
                               components: [comp("qweight", .u8, [8, 16]), comp("scales", .f16, [8, 2]), comp("zeros", .u8, [8, 2])])
        let l = try AffineInt4Layout(e)
        XCTAssertEqual([l.rows, l.cols, l.groupSize, l.groups], [8, 32, 16, 2])
        XCTAssertNotNil(l.zeros)
        e.params[2] = ("zero_point", .int(0))
        e.components.removeLast()
        XCTAssertNil(try AffineInt4Layout(e).zeros)
        e.params[1] = ("pack_order", .string("reversed"))
        XCTAssertThrowsError(try AffineInt4Layout(e)) { XCTAssertTrue("\($0)".contains("pack_order"), "\($0)") }
        e.params = [("group_size", .int(12))]
        XCTAssertThrowsError(try AffineInt4Layout(e)) { XCTAssertTrue("\($0)".contains("group_size 12"), "\($0)") }
    }

    /// affine_int3 [8, 64], group 32: qweight [8, 64·3/8 = 24]; affine_int2 [8, 64]: [8, 16]; a row of
    /// 3-bit codes must be whole bytes (20 · 3 = 60 bits is not); an int4-sized qweight is refused.
    func testAffineInt3Int2Sizes() throws {
        let params = AffineInt4Layout.params(groupSize: 32)
        for (scheme, bits, bytes) in [("affine_int3", 3, 24), ("affine_int2", 2, 16)] {
            var e = I2QTensorEntry(name: "w", scheme: scheme, dtype: .f16, shape: [8, 64], params: params,
                                   components: [comp("qweight", .u8, [8, bytes]), comp("scales", .f16, [8, 2]), comp("zeros", .u8, [8, 2])])
            let l = try AffineInt4Layout(e)
            XCTAssertEqual([l.bits, l.rowBytes, l.groups], [bits, bytes, 2])
            XCTAssertEqual(SchemeLayouts.type(of: scheme).map { "\($0)" }, "AffineInt4Layout")
            XCTAssertEqual(AffineInt4Layout.scheme(bits: bits), scheme)
            e.components[0] = comp("qweight", .u8, [8, 32])
            XCTAssertThrowsError(try AffineInt4Layout(e)) { XCTAssertTrue("\($0)".contains("qweight"), "\($0)") }
        }
        let odd = I2QTensorEntry(name: "w", scheme: "affine_int3", dtype: .f16, shape: [2, 20], params: AffineInt4Layout.params(groupSize: 4),
                                 components: [comp("qweight", .u8, [2, 8]), comp("scales", .f16, [2, 5]), comp("zeros", .u8, [2, 5])])
        XCTAssertThrowsError(try AffineInt4Layout(odd)) { XCTAssertTrue("\($0)".contains("whole number of bytes"), "\($0)") }
        XCTAssertEqual(AffineInt4Layout.scheme(bits: 4), "affine_int4")
        XCTAssertNil(AffineInt4Layout.bits(scheme: "affine_int5"))
    }

    /// A fused affine_int4 entry [8, 32] with parts a = rows [0, 2) and b = rows [2, 8): part b is
    /// qweight bytes [2·16, +6·16), scales bytes [2·2·2, +6·2·2), zeros bytes [2·2, +6·2).
    func testFusedPartsAreRowRanges() throws {
        let e = I2QTensorEntry(name: "f", scheme: "affine_int4", dtype: .f16, shape: [8, 32],
                               params: AffineInt4Layout.params(groupSize: 16),
                               parts: [I2QPart(name: "a", start: 0, length: 2), I2QPart(name: "b", start: 2, length: 6)],
                               components: [comp("qweight", .u8, [8, 16], at: 0), comp("scales", .f16, [8, 2], at: 4096), comp("zeros", .u8, [8, 2], at: 8192)])
        let parts = try FusedTensors.partEntries(e, path: "m.i2q")
        XCTAssertEqual(parts.map(\.name), ["a", "b"])
        XCTAssertEqual(parts[1].shape, [6, 32])
        XCTAssertEqual(parts[1].components.map(\.offset), [32, 4096 + 8, 8192 + 4])
        XCTAssertEqual(parts[1].components.map(\.size), [96, 24, 12])
    }

    func testUnknownSchemeIsNamed() {
        XCTAssertNil(SchemeLayouts.type(of: "q4_k"))
        let e = I2QTensorEntry(name: "w", scheme: "q4_k", dtype: .f16, shape: [4], components: [comp("data", .u8, [4])])
        XCTAssertThrowsError(try SchemeLayouts.layout(e)) { XCTAssertTrue("\($0)".contains("scheme q4_k"), "\($0)") }
    }
}
