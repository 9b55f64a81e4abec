import XCTest
import CI2QKernels
import I2QCore
import I2QTestSupport

/// The C half-precision conversions (half.c) used by cast and f16 weights: the portable path equals
/// the F16C instructions bit for bit on all 65,536 halves (f16 → f32; bf16 → f16 over all 65,536
/// bf16 values) and on f32 edge cases and random values (f32 → f16), NaNs included; and both equal
/// IEEE round-to-nearest-even as Swift's `Float16(x)` computes it for every non-NaN input (the
/// reference torch matches: FloatConversion's cast tests check torch's own tensors).
final class HalfConversionTests: XCTestCase {
    let f16c = i2q_cpu_has_avx2() == 1  // the F16C path exists on this CPU (AVX2+FMA+F16C)

    func testEveryHalfWidensIdentically() {
        let all = (0...0xFFFF).map { UInt16($0) }
        var scalar = [Float](repeating: 0, count: all.count), auto = scalar
        i2q_f16_to_f32(all, &scalar, Int64(all.count), Int32(I2Q_IMPL_SCALAR))
        i2q_f16_to_f32(all, &auto, Int64(all.count), Int32(I2Q_IMPL_AUTO))
        XCTAssertEqual(scalar.map(\.bitPattern), auto.map(\.bitPattern), "portable vs \(f16c ? "F16C" : "portable")")
        for (h, f) in zip(all, scalar) where !Float16(bitPattern: h).isNaN {
            XCTAssertEqual(f.bitPattern, Float(Float16(bitPattern: h)).bitPattern, "half 0x\(String(h, radix: 16))")
        }
        XCTAssertTrue(zip(all, scalar).allSatisfy { Float16(bitPattern: $0.0).isNaN == $0.1.isNaN })
    }

    func testEveryBF16NarrowsIdentically() {
        let all = (0...0xFFFF).map { UInt16($0) }
        var scalar = [UInt16](repeating: 0, count: all.count), auto = scalar
        i2q_bf16_to_f16(all, &scalar, Int64(all.count), Int32(I2Q_IMPL_SCALAR))
        i2q_bf16_to_f16(all, &auto, Int64(all.count), Int32(I2Q_IMPL_AUTO))
        XCTAssertEqual(scalar, auto)
        for (b, h) in zip(all, scalar) {
            let x = Float(bitPattern: UInt32(b) << 16)
            if x.isNaN { XCTAssertTrue(Float16(bitPattern: h).isNaN); continue }
            XCTAssertEqual(h, Float16(x).bitPattern, "bf16 0x\(String(b, radix: 16))")
        }
    }

    func testF32EdgeCasesAndRandomValuesNarrowIdentically() {
        var bits: [UInt32] = [0, 0x8000_0000, 0x7F80_0000, 0xFF80_0000, 0x7FC0_0000, 0x7F80_0001, 0xFFBF_FFFF, 0x7FFF_E000,
                              0x477F_EFFF, 0x477F_F000, 0x477F_F001, 0x3880_0000, 0x387F_FFFF, 0x3300_0000, 0x3300_0001,
                              0x3380_0000, 0x33C0_0000, 0x3400_0000, 0x0000_0001, 0x0080_0000, 0x7F7F_FFFF]
        // Ties at every subnormal and normal position: x = (2k+1)·2^-25 and 1 + (2k+1)·2^-11.
        for k in 0..<64 { bits.append(Float(2 * k + 1).bitPattern &- (25 << 23)); bits.append((Float(1) + Float(2 * k + 1) * 0x1p-11).bitPattern) }
        var rng = SplitMix64(seed: 3)
        for _ in 0..<200_000 { bits.append(UInt32(truncatingIfNeeded: rng.next())) }
        for _ in 0..<200_000 { bits.append(0x3000_0000 &+ UInt32(truncatingIfNeeded: rng.next() % 0x1800_0000)) }  // 2^-31 … 2^17
        let xs = bits.map { Float(bitPattern: $0) }
        var scalar = [UInt16](repeating: 0, count: xs.count), auto = scalar
        i2q_f32_to_f16(xs, &scalar, Int64(xs.count), Int32(I2Q_IMPL_SCALAR))
        i2q_f32_to_f16(xs, &auto, Int64(xs.count), Int32(I2Q_IMPL_AUTO))
        XCTAssertEqual(scalar, auto)
        for (x, h) in zip(xs, scalar) {
            if x.isNaN { XCTAssertTrue(Float16(bitPattern: h).isNaN); continue }
            XCTAssertEqual(h, Float16(x).bitPattern, "f32 0x\(String(x.bitPattern, radix: 16))")
        }
    }
}
