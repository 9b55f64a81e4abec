import Foundation
import XCTest
@testable import I2QQuant

/// Deterministic normal-ish values (sum of uniforms) for property tests.
struct TestRNG {
    var state: UInt64
    mutating func next() -> UInt64 {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        var z = state
        z = (z ^ (z >> 33)) &* 0xff51afd7ed558ccd
        return z ^ (z >> 33)
    }
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) }
    mutating func normal() -> Float { (0 ..< 4).reduce(Float(0)) { s, _ in s + uniform() } - 2 }
}

final class FourBitCodecTests: XCTestCase {
    func randomWeights(_ n: Int, scale: Float = 0.02, seed: UInt64 = 1) -> [Float] {
        var r = TestRNG(state: seed)
        return (0 ..< n).map { _ in r.normal() * scale }
    }

    /// The fast SIMD path gives the same codes as the element-by-element reference.
    func testKernelMatchesScalarReference() {
        for t in FourBitType.allCases {
            for bs in [32, 64, 256] {
                let x = randomWeights(bs * 40 + 7, seed: UInt64(bs))
                let q = FourBitCodec.quantize(x, type: t, blockSize: bs)
                for i in 0 ..< x.count {
                    let b = i / bs
                    let tail = (b + 1) * bs > x.count
                    XCTAssertEqual(q.code(at: i), FourBitCodec.code(of: x[i], absmax: q.absmax[b], tail: tail, type: t))
                }
            }
        }
    }

    /// Every element gets a nearest code (up to ties at midpoints, which go down).
    func testNearestCodeAndErrorBound() {
        for t in FourBitType.allCases {
            let x = randomWeights(64 * 100)
            let q = FourBitCodec.quantize(x, type: t)
            let deq = FourBitCodec.dequantize(q)
            let sorted = t.order.map { t.code[Int($0)] }
            let maxGap = zip(sorted, sorted.dropFirst()).map { $1 - $0 }.max()!
            for i in 0 ..< x.count {
                let am = q.absmax[i / 64]
                let s = x[i] * (1 / am)
                let chosen = t.code[Int(q.code(at: i))]
                let best = t.code.map { abs($0 - s) }.min()!
                XCTAssertLessThanOrEqual(abs(chosen - s), best + 1e-6, "element \(i)")
                XCTAssertLessThanOrEqual(abs(deq[i] - x[i]), am * maxGap / 2 * 1.0001)
            }
        }
    }

    /// quantize(dequantize(q)) == q: dequantized values sit on codes, far from every midpoint, and
    /// each block keeps its absmax (the ±1 code is present). One exception: FP4 code 8 (bnb's "-0",
    /// the bucket (0, 0.0026]) dequantizes to 0.0, which quantizes to code 0.
    func testRequantizingIsIdempotent() {
        for t in FourBitType.allCases {
            for bs in [32, 64, 128] {
                let x = randomWeights(bs * 30 + 11, seed: 9)
                let q = FourBitCodec.quantize(x, type: t, blockSize: bs)
                let q2 = FourBitCodec.quantize(FourBitCodec.dequantize(q), type: t, blockSize: bs)
                XCTAssertEqual(q2.absmax, q.absmax, "\(t) b\(bs)")
                var bad = 0
                for i in 0 ..< x.count {
                    let a = q.code(at: i), b = q2.code(at: i)
                    if a == b || (t == .fp4 && a == 8 && b == 0) { continue }
                    if bad < 5 { print("\(t) b\(bs) element \(i): \(a) -> \(b), x \(x[i]) absmax \(q.absmax[i / bs])") }
                    bad += 1
                }
                XCTAssertEqual(bad, 0, "\(t) b\(bs)")
            }
        }
    }

    func testStreamingInBlockMultipleChunksEqualsWhole() {
        let x = randomWeights(64 * 333 + 45, seed: 3)
        for t in FourBitType.allCases {
            let whole = FourBitCodec.quantize(x, type: t)
            var packed = [UInt8](repeating: 0xAA, count: FourBitCodec.packedCount(count: x.count))
            var absmax = [Float](repeating: -1, count: FourBitCodec.blockCount(count: x.count, blockSize: 64))
            let chunk = 64 * 50
            x.withUnsafeBufferPointer { xp in
                var start = 0
                while start < x.count {
                    let len = min(chunk, x.count - start)
                    packed.withUnsafeMutableBufferPointer { p in
                        absmax.withUnsafeMutableBufferPointer { a in
                            FourBitCodec.quantizeBlocks(UnsafeBufferPointer(rebasing: xp[start ..< start + len]), type: t,
                                                        blockSize: 64, packed: p.baseAddress! + start / 2,
                                                        absmax: a.baseAddress! + start / 64)
                        }
                    }
                    start += len
                }
            }
            XCTAssertEqual(packed, whole.packed)
            XCTAssertEqual(absmax, whole.absmax)
        }
    }

    /// Odd element counts: the missing last low nibble is the code of 0.0 (bnb pads with 0.0).
    func testOddCountPadsWithZeroCode() {
        for t in FourBitType.allCases {
            let q = FourBitCodec.quantize([0.5, -1.0, 0.25], type: t)
            XCTAssertEqual(q.packed.count, 2)
            XCTAssertEqual(q.packed[1] & 15, t.zeroCode)
            XCTAssertEqual(FourBitCodec.dequantize(q).count, 3)
        }
        let q = FourBitCodec.quantize([Float](), type: .nf4)
        XCTAssertEqual(q.packed, [])
        XCTAssertEqual(q.absmax, [])
    }

    func testZeroBlockAndTies() {
        // all-zero block: absmax 0 (stored as is), every element the code of 0.0
        let z = FourBitCodec.quantize([Float](repeating: 0, count: 64), type: .nf4)
        XCTAssertEqual(z.absmax, [0])
        XCTAssertTrue(z.packed.allSatisfy { $0 == 0x77 })
        XCTAssertTrue(FourBitCodec.dequantize(z).allSatisfy { $0 == 0 })
        // a value exactly on a midpoint goes to the lower code (torch.bucketize, right=False)
        for t in FourBitType.allCases {
            for (k, b) in t.bounds.enumerated() {
                var block = [Float](repeating: 0, count: 64)
                block[0] = 1
                block[1] = b
                block[2] = b.nextUp
                let q = FourBitCodec.quantize(block, type: t)
                XCTAssertEqual(q.code(at: 1), t.order[k], "\(t) tie at bound \(k)")
                XCTAssertEqual(q.code(at: 2), t.order[k + 1], "\(t) just above bound \(k)")
            }
        }
    }

    /// NaN / inf policy (bnb's, see FourBitCodec): a NaN block gets absmax NaN and all-NaN-bucket
    /// codes; an inf block gets absmax inf, finite elements the zero code and the infinities the
    /// NaN bucket; other blocks are untouched; double quantization propagates NaN into the offset.
    func testNaNPolicy() {
        var x = randomWeights(64 * 4 + 10, seed: 5)
        let clean = FourBitCodec.quantize(x, type: .nf4)
        x[3] = .nan
        x[64 + 7] = .infinity
        x[64 + 8] = -.infinity
        x[256 + 2] = .nan  // tail block
        for t in FourBitType.allCases {
            let nanCode = t.order[15]
            let q = FourBitCodec.quantize(x, type: t)
            XCTAssertTrue(q.absmax[0].isNaN)
            XCTAssertEqual(q.absmax[1], .infinity)
            XCTAssertTrue(q.absmax[4].isNaN)
            for i in 0 ..< 64 { XCTAssertEqual(q.code(at: i), nanCode) }
            for i in 64 ..< 128 {
                XCTAssertEqual(q.code(at: i), x[i].isInfinite ? nanCode : t.zeroCode)
            }
            for i in 256 ..< x.count { XCTAssertEqual(q.code(at: i), nanCode) }
            if t == .nf4 {  // blocks 2 and 3 are unaffected
                XCTAssertEqual(Array(q.packed[64 ..< 128]), Array(clean.packed[64 ..< 128]))
                XCTAssertEqual(Array(q.absmax[2 ..< 4]), Array(clean.absmax[2 ..< 4]))
            }
            let deq = FourBitCodec.dequantize(q)
            XCTAssertTrue(deq[0 ..< 64].allSatisfy { $0.isNaN })  // NaN absmax
            for i in 64 ..< 128 {  // inf absmax: 0 * inf = NaN, the infinities (code 1.0) +inf
                XCTAssertTrue(x[i].isInfinite ? deq[i] == .infinity : deq[i].isNaN)
            }
            XCTAssertFalse(deq[128 ..< 256].contains { $0.isNaN })
            let dq = FourBitCodec.quantize(x, type: t, doubleQuant: true).doubleQuant!
            XCTAssertTrue(dq.offset.isNaN)
            XCTAssertEqual(dq.nestedAbsmax, [0])  // bnb's 8-bit kernel skips NaNs: all NaN -> absmax 0
            XCTAssertEqual(dq.codes, [0, 0, 0, 0, 0])
            XCTAssertTrue(dq.restore().allSatisfy { $0.isNaN })
        }
    }

    /// Release-mode throughput (printed; set I2Q_QUANT_BENCH=1 for the big 4096x4096 run).
    func testThroughput() {
        let big = ProcessInfo.processInfo.environment["I2Q_QUANT_BENCH"] != nil
        let n = big ? 4096 * 4096 : 1 << 20
        let x = randomWeights(n)
        for dq in [false, true] {
            var best = Double.infinity
            for _ in 0 ..< (big ? 5 : 2) {
                let t0 = DispatchTime.now().uptimeNanoseconds
                let q = FourBitCodec.quantize(x, type: .nf4, blockSize: 64, doubleQuant: dq)
                let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
                XCTAssertEqual(q.packed.count, n / 2)
                best = min(best, dt)
            }
            print("i2q NF4 b64 quantize dq=\(dq) n=\(n): \(String(format: "%.1f", best * 1e3)) ms, "
                  + "\(String(format: "%.1f", Double(n) / best / 1e6)) M elements/s")
        }
        let q = FourBitCodec.quantize(x, type: .nf4)
        let t0 = DispatchTime.now().uptimeNanoseconds
        let d = FourBitCodec.dequantize(q)
        let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        XCTAssertEqual(d.count, n)
        print("i2q NF4 b64 dequantize n=\(n): \(String(format: "%.1f", Double(n) / dt / 1e6)) M elements/s")
    }
}
