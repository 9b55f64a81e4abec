import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport
@testable import I2QQuant

/// Reads Tests/Fixtures/bnb (written by scripts/fixtures/make_bnb_fixtures.py from bitsandbytes 0.50.2).
final class BnbFixtures: @unchecked Sendable {
    static let shared = BnbFixtures()
    let cases: SafetensorsFile
    let books: SafetensorsFile

    private init() {
        let dir = fixturesDir + "/bnb"
        cases = try! SafetensorsFile(path: dir + "/cases.safetensors")
        books = try! SafetensorsFile(path: dir + "/codebooks.safetensors")
    }

    static let caseNames = ["real_bf16", "randn_f32", "odd_1000", "odd_4099", "odd_65x3", "many_blocks",
                            "f16_1000", "special", "nan_inf"]
    static let blockSizes = [32, 64, 128]

    func info(_ name: String, in f: SafetensorsFile? = nil) -> TensorInfo {
        guard let i = (f ?? cases).info(name) else { fatalError("fixture tensor \(name) missing") }
        return i
    }

    /// Any float tensor widened to float32 (exact for bf16/f16).
    func floats(_ name: String, in f: SafetensorsFile? = nil) -> [Float] {
        let file = f ?? cases
        let i = info(name, in: file)
        return file.withData(i) { raw in
            var out = [Float](repeating: 0, count: i.elementCount)
            switch i.dtype {
            case .f32: for k in 0 ..< out.count { out[k] = raw.loadUnaligned(fromByteOffset: 4 * k, as: Float.self) }
            case .bf16:
                for k in 0 ..< out.count {
                    out[k] = FloatConversion.float(fromBF16: raw.loadUnaligned(fromByteOffset: 2 * k, as: UInt16.self))
                }
            case .f16:
                for k in 0 ..< out.count {
                    out[k] = FloatConversion.float(fromF16: raw.loadUnaligned(fromByteOffset: 2 * k, as: UInt16.self))
                }
            default: fatalError("\(name): not a float tensor")
            }
            return out
        }
    }

    func bytes(_ name: String, in f: SafetensorsFile? = nil) -> [UInt8] {
        let file = f ?? cases
        return file.withData(info(name, in: file)) { Array($0) }
    }

    func raw16(_ name: String) -> [UInt16] {
        let i = info(name)
        return cases.withData(i) { raw in (0 ..< i.elementCount).map { raw.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self) } }
    }

    func int64s(_ name: String) -> [Int] {
        let i = info(name)
        return cases.withData(i) { raw in (0 ..< i.elementCount).map { Int(raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) } }
    }
}

/// Same float32 value, or both NaN (bnb/torch NaN payloads are not part of the contract).
func sameFloat(_ a: Float, _ b: Float) -> Bool {
    a.bitPattern == b.bitPattern || (a.isNaN && b.isNaN)
}

final class BnbFixtureTests: XCTestCase {
    let fx = BnbFixtures.shared

    func testCodebooksAreBnbs() {
        for t in FourBitType.allCases {
            let code = fx.floats("\(t.rawValue).code", in: fx.books)
            XCTAssertEqual(t.code.map(\.bitPattern), code.map(\.bitPattern), "\(t) code")
            let bounds = fx.floats("\(t.rawValue).bounds", in: fx.books)
            XCTAssertEqual(t.bounds.map(\.bitPattern), bounds.map(\.bitPattern), "\(t) bounds")
            XCTAssertEqual(t.order, fx.bytes("\(t.rawValue).order", in: fx.books), "\(t) order")
            // bounds are the float32 midpoints of the sorted code
            let sorted = t.order.map { t.code[Int($0)] }
            for i in 0 ..< 15 {
                XCTAssertEqual(((sorted[i] + sorted[i + 1]) / 2).bitPattern, t.bounds[i].bitPattern)
            }
        }
        XCTAssertEqual(FourBitType.nf4.zeroCode, 7)
        XCTAssertEqual(FourBitType.fp4.zeroCode, 0)
        let dyn = fx.floats("dynamic.code", in: fx.books)
        XCTAssertEqual(DynamicMap.code.map(\.bitPattern), dyn.map(\.bitPattern))
        let lut = DynamicMap.lut
        XCTAssertEqual(lut.count, 65536)
        XCTAssertEqual(lut.first, 0)
        XCTAssertEqual(lut.last, 255)
        XCTAssertTrue(zip(lut, lut.dropFirst()).allSatisfy { $0 <= $1 })
    }

    /// Packed bytes and float32 absmax identical to bnb's quantize_4bit for every case, type, block size.
    func testPackedAndAbsmaxIdenticalToBnb() {
        var checked = 0
        for name in BnbFixtures.caseNames {
            let x = fx.floats("\(name).input")
            for t in FourBitType.allCases {
                for bs in BnbFixtures.blockSizes {
                    let p = "\(name).\(t.rawValue).b\(bs)"
                    let q = FourBitCodec.quantize(x, type: t, blockSize: bs)
                    let want = fx.bytes("\(p).packed")
                    XCTAssertEqual(q.packed.count, want.count, p)
                    let badBytes = zip(q.packed, want).filter { $0 != $1 }.count
                    XCTAssertEqual(badBytes, 0, "\(p): \(badBytes) packed bytes differ")
                    let am = fx.floats("\(p).absmax")
                    XCTAssertEqual(q.absmax.count, am.count, p)
                    let badAbsmax = zip(q.absmax, am).filter { !sameFloat($0, $1) }.count
                    XCTAssertEqual(badAbsmax, 0, "\(p): \(badAbsmax) absmax differ")
                    checked += 1
                }
            }
        }
        XCTAssertEqual(checked, 54)
    }

    /// Double quantization: offset, codes, nested absmax and restored absmax identical to bnb.
    func testDoubleQuantIdenticalToBnb() {
        for name in BnbFixtures.caseNames {
            for t in FourBitType.allCases {
                for bs in BnbFixtures.blockSizes {
                    let p = "\(name).\(t.rawValue).b\(bs)"
                    let absmax = fx.floats("\(p).absmax")
                    let wantOffset = fx.floats("\(p).dq.offset")[0]
                    let wantCodes = fx.bytes("\(p).dq.codes")
                    let wantNested = fx.floats("\(p).dq.nested_absmax")
                    let dq = DoubleQuant.compress(absmax)
                    XCTAssertTrue(sameFloat(dq.offset, wantOffset), "\(p): offset \(dq.offset) != bnb \(wantOffset)")
                    XCTAssertEqual(dq.codes, wantCodes, "\(p): codes")
                    XCTAssertEqual(dq.nestedAbsmax.count, wantNested.count, p)
                    XCTAssertTrue(zip(dq.nestedAbsmax, wantNested).allSatisfy { sameFloat($0, $1) }, "\(p): nested absmax")
                    // codes given bnb's own offset (the contract when offsets could differ by an ulp)
                    XCTAssertEqual(DoubleQuant.compress(absmax, offset: wantOffset).codes, wantCodes, "\(p): codes at bnb offset")
                    let restored = fx.floats("\(p).dq.absmax_restored")
                    XCTAssertTrue(zip(dq.restore(), restored).allSatisfy { sameFloat($0, $1) }, "\(p): restored absmax")
                    // the whole-tensor API agrees
                    if bs == 64 {
                        let q = FourBitCodec.quantize(fx.floats("\(name).input"), type: t, blockSize: bs, doubleQuant: true)
                        XCTAssertEqual(q.doubleQuant?.codes, dq.codes, p)
                        XCTAssertTrue(sameFloat(q.doubleQuant!.offset, dq.offset), p)
                        XCTAssertEqual(q.doubleQuant?.nestedAbsmax.map(\.bitPattern), dq.nestedAbsmax.map(\.bitPattern), p)
                    }
                }
            }
        }
    }

    /// dequantize_4bit outputs (block 64, stored for the first 8192 elements of each case), in the
    /// input's dtype. Bit-exact except one documented spot: bnb's scalar C kernel has -0.0 for FP4
    /// code 8 where its AVX-512 kernel, its torch fallback (odd last dim) and its quant_map have
    /// +0.0; i2q uses the quant_map's +0.0, so those elements are compared as values (0 == -0).
    func testDequantizeMatchesBnb() {
        for name in BnbFixtures.caseNames {
            let dtype = fx.info("\(name).input").dtype
            let x = fx.floats("\(name).input")
            for t in FourBitType.allCases {
                for dq in [false, true] {
                    let p = "\(name).\(t.rawValue).b64"
                    let key = dq ? "\(p).dq.deq" : "\(p).deq"
                    let q = FourBitCodec.quantize(x, type: t, blockSize: 64, doubleQuant: dq)
                    let got = FourBitCodec.dequantize(q)
                    let want = fx.floats(key)
                    var exact = 0, signedZero = 0, bad = 0
                    for i in 0 ..< want.count {
                        let g: Float
                        switch dtype {
                        case .bf16: g = FloatConversion.float(fromBF16: FloatConversion.bf16Bits(got[i]))
                        case .f16: g = FloatConversion.float(fromF16: FloatConversion.f16Bits(got[i]))
                        default: g = got[i]
                        }
                        if sameFloat(g, want[i]) { exact += 1 }
                        else if g == 0 && want[i] == 0 && t == .fp4 && q.code(at: i) == 8 { signedZero += 1 }
                        else { bad += 1 }
                    }
                    XCTAssertEqual(bad, 0, "\(key): \(bad) dequantized values differ (\(exact) exact, \(signedZero) ±0)")
                }
            }
        }
    }

    func testTorchMeanMatchesTorchSingleThread() {
        let sizes = fx.int64s("torch_mean.sizes")
        let want = fx.floats("torch_mean.threads1")
        let want2 = fx.floats("torch_mean.threads2")
        var threadDependent = 0
        for (k, n) in sizes.enumerated() {
            let x = meanInput(n)
            let m = x.withUnsafeBufferPointer { DoubleQuant.torchMean($0) }
            XCTAssertEqual(m.bitPattern, want[k].bitPattern, "n=\(n): \(m) != torch \(want[k])")
            if want[k] != want2[k] {
                threadDependent += 1
                XCTAssertGreaterThan(n, 32768)  // only reductions above torch's grain split across threads
                XCTAssertLessThanOrEqual(abs(m - want2[k]), 4 * m.ulp)
            }
        }
        XCTAssertGreaterThan(threadDependent, 0)
    }

    /// The fixtures' deterministic mean input (see make_bnb_fixtures.py `mean_input`).
    func meanInput(_ n: Int) -> [Float] {
        (0 ..< n).map { i -> Float in
            let h = UInt32(truncatingIfNeeded: UInt64(i) &* 2654435761) >> 8
            var x = Float(h) * Float(sign: .plus, exponent: -24, significand: 1)
            x = x * Float(0.05)
            return x + Float(0.01)
        }
    }
}
