import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QQuant
import I2QTestSupport
@testable import I2QPasses
@testable import I2QRuntime

/// The int8-activation decode GEMV for affine int4 weights (`QuantGemv.Int8`, C `i2q_q4a_gemv`)
/// against a double-precision dequantize-then-dot reference (AutoAWQ's `(q − z)·s` from
/// `AffineInt4.dequantizeRows`, bit-exact to AutoAWQ per AffineInt4Tests).
///
/// Tolerance, per output row: the kernel multiplies the exact dequantized weights w with
/// x̂ = d_b·round(x/d_b), d_b = max|x_b|/127 per block b of 32 activations, and |x − x̂| ≤ d_b/2, so
///     |y − Σ w·x| ≤ Σ_c |w_c|·max|x_b(c)|/254  (= ½·Σ|w|·max|x_b|/127)
/// plus float32 rounding of the sums, bounded by k·2⁻²⁴·Σ|w·x̂| (checked separately and tightly
/// against Σ w·x̂ in double precision, which pins down "exact integer sums, then float32").
final class Int8GemvTests: XCTestCase {
    typealias Store = QuantKernelTests.Store

    var rng = SplitMix64(seed: 7)
    func uniform() -> Float { Float(Double(rng.next() >> 11) / Double(1 << 53)) * 2 - 1 }
    func randoms(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in uniform() * scale } }

    func affine(_ w: [Float], rows: Int, cols: Int, groupSize g: Int, zeroPoint: Bool, store: Store) -> (PackedFourBit, [Float]) {
        QuantKernelTests.affine(w, rows: rows, cols: cols, groupSize: g, zeroPoint: zeroPoint, store: store)
    }

    /// y (int8 kernel) for all rows of `p` by implementation `impl` (nil: the dispatched one).
    func int8Rows(_ p: PackedFourBit, _ x: [Float], y0: [Float]? = nil, impl: QuantGemv.Int8.Impl?) -> [Float] {
        let xq = x.withUnsafeBufferPointer { QuantGemv.Int8.Activations($0.baseAddress!, k: p.cols) }
        var y = y0 ?? [Float](repeating: .nan, count: p.rows)
        y.withUnsafeMutableBufferPointer { QuantGemv.Int8.rows(p, 0..<p.rows, xq, $0.baseAddress!, accumulate: y0 != nil, impl: impl) }
        return y
    }

    /// (rows, cols, group): odd row counts; cols not multiples of 128/256 (a partial last chunk of
    /// 1, 2 or 3 blocks of 32); groups 32/64/128 (the windowed fast paths), 256 and 512 (one group
    /// over several chunks), 96 (the generic per-block path); several 16-group windows per row.
    let shapes = [(37, 576, 64), (5, 96, 32), (3, 1536, 128), (7, 160, 32), (9, 224, 32), (11, 384, 96),
                  (13, 320, 64), (3, 768, 256), (5, 2048, 64), (3, 1056, 32), (1, 1024, 512), (17, 1152, 128)]

    func testInt8KernelWithinActivationRoundingBound() {
        let store = Store()
        var worstRatio = 0.0, worstRel = 0.0, worstExact = 0.0
        for zp in [true, false] {
            for (n, k, g) in shapes {
                var w = randoms(n * k, scale: 0.05)
                w[min(7, w.count - 1)] = -0.8  // an outlier weight
                let (p, ref) = affine(w, rows: n, cols: k, groupSize: g, zeroPoint: zp, store: store)
                XCTAssertTrue(p.int8Rows)
                var x = randoms(k)
                x[3] = 9  // an activation outlier (coarse block), and an all-zero block
                for c in 32..<min(64, k) { x[c] = 0 }
                let xq = x.withUnsafeBufferPointer { QuantGemv.Int8.Activations($0.baseAddress!, k: k) }
                let xh = xq.dequantized()  // x̂
                for impl in QuantGemv.Int8.supported {
                    let y = int8Rows(p, x, impl: impl)
                    for r in 0..<n {
                        var s = 0.0, sh = 0.0, bound = 0.0, absWX = 0.0, absWXh = 0.0
                        for c in 0..<k {
                            let wv = Double(ref[r * k + c])
                            s += wv * Double(x[c]); sh += wv * Double(xh[c])
                            absWX += abs(wv * Double(x[c])); absWXh += abs(wv * Double(xh[c]))
                            let b = (c / 32) * 32
                            let amax = x[b..<(b + 32)].map { abs(Double($0)) }.max()!
                            bound += abs(wv) * amax / 254
                        }
                        let rounding = Double(k + 16) * 0x1p-24 * absWXh
                        let d = abs(Double(y[r]) - s), dh = abs(Double(y[r]) - sh)
                        XCTAssertLessThanOrEqual(d, bound + rounding + 1e-30,
                                                 "[\(n), \(k)] g\(g) zp \(zp) row \(r): |Δ| \(d) > Σ|w|·max|x|/254 = \(bound)")
                        XCTAssertLessThanOrEqual(dh, rounding + 1e-30, "[\(n), \(k)] g\(g) row \(r): not Σ w·x̂ (Δ \(dh))")
                        worstRatio = max(worstRatio, d / max(bound, 1e-30))
                        worstRel = max(worstRel, d / max(absWX, 1e-30))
                        worstExact = max(worstExact, dh / max(absWXh, 1e-30))
                    }
                }
            }
        }
        print("int8 GEMV: max |Δ| / (Σ|w|·max|x|/254) = \(worstRatio); max |Δ|/Σ|w·x| = \(worstRel); vs Σ w·x̂: max |Δ|/Σ|w·x̂| = \(worstExact)")
    }

    /// The SIMD kernels (AVX-512 VNNI, AVX2) and the portable scalar C code compute the same integer
    /// sums and the same float32 operations in the same order: identical bits (also with
    /// accumulation). Every implementation the CPU supports runs (an AVX2-only CPU: avx2).
    func testScalarAndSIMDPathsAgreeBitForBit() throws {
        let simd = QuantGemv.Int8.supported.filter { $0 != .scalar }
        try XCTSkipIf(simd.isEmpty, "this CPU has neither AVX2 nor AVX-512 VNNI: only the scalar path exists")
        for impl in simd {
        let store = Store()
        for zp in [true, false] {
            for (n, k, g) in shapes {
                let (p, _) = affine(randoms(n * k, scale: 0.1), rows: n, cols: k, groupSize: g, zeroPoint: zp, store: store)
                let x = randoms(k, scale: 3)
                let y0 = randoms(n)
                XCTAssertEqual(int8Rows(p, x, impl: .scalar).map(\.bitPattern), int8Rows(p, x, impl: impl).map(\.bitPattern),
                               "\(impl) [\(n), \(k)] g\(g) zp \(zp)")
                XCTAssertEqual(int8Rows(p, x, y0: y0, impl: .scalar).map(\.bitPattern),
                               int8Rows(p, x, y0: y0, impl: impl).map(\.bitPattern), "\(impl) [\(n), \(k)] g\(g) accumulate")
            }
        }
        }
    }

    /// Non-finite activations give NaN outputs (like the float path), not silently finite ones.
    func testNonFiniteActivationsPropagate() {
        let store = Store()
        let (p, _) = affine(randoms(3 * 128, scale: 0.1), rows: 3, cols: 128, groupSize: 64, zeroPoint: true, store: store)
        for bad in [Float.nan, .infinity] {
            var x = randoms(128)
            x[70] = bad
            for impl in QuantGemv.Int8.supported {
                XCTAssertTrue(int8Rows(p, x, impl: impl).allSatisfy(\.isNaN), "\(impl) \(bad)")
            }
        }
    }

    /// `runMany` (what the decoder calls) takes the int8 kernel for eligible affine weights and the
    /// exact float path for the rest (odd groups, NF4) — and everywhere under `exactDecode`.
    func testRunManyChoosesInt8OrExactPath() throws {
        try XCTSkipUnless(QuantGemv.Int8.available, "neither AVX2 nor AVX-512 VNNI on this CPU: decode uses the float path")
        let saved = QuantGemv.exactDecode
        defer { QuantGemv.exactDecode = saved }
        let store = Store()
        let k = 192
        let (a, _) = affine(randoms(11 * k, scale: 0.1), rows: 11, cols: k, groupSize: 64, zeroPoint: true, store: store)
        let (c, _) = affine(randoms(5 * k, scale: 0.1), rows: 5, cols: k, groupSize: 6, zeroPoint: true, store: store)
        XCTAssertFalse(c.int8Rows)
        let x = randoms(k)
        func many() -> ([Float], [Float]) {
            var ya = [Float](repeating: .nan, count: 11), yc = [Float](repeating: .nan, count: 5)
            ya.withUnsafeMutableBufferPointer { pa in
                yc.withUnsafeMutableBufferPointer { pc in QuantGemv.runMany([(a, pa.baseAddress!), (c, pc.baseAddress!)], x: x) }
            }
            return (ya, yc)
        }
        QuantGemv.exactDecode = false
        let (fa, fc) = many()
        XCTAssertEqual(fa.map(\.bitPattern), int8Rows(a, x, impl: nil).map(\.bitPattern))
        QuantGemv.exactDecode = true
        let (ea, ec) = many()
        XCTAssertEqual(fc.map(\.bitPattern), ec.map(\.bitPattern), "odd groups stay on the float path")
        var exact = [Float](repeating: .nan, count: 11)
        QuantGemv.run(a, x: x, y: &exact, accumulate: false)
        XCTAssertEqual(ea.map(\.bitPattern), exact.map(\.bitPattern))
        XCTAssertNotEqual(fa.map(\.bitPattern), ea.map(\.bitPattern), "int8 and float paths should round differently")
    }

    /// SmolLM2-135M, affine int4 RTN g64: teacher-forced greedy decoding with the int8 path picks
    /// the float path's token at every step where the float path's top-2 margin exceeds what the
    /// int8 rounding can move (and the first tokens are identical).
    func testSmolLM2Int4GreedyTokensMatchFloatPath() throws {
        try XCTSkipUnless(QuantGemv.Int8.available, "neither AVX2 nor AVX-512 VNNI on this CPU: decode uses the float path")
        let root = URL(fileURLWithPath: fixturesDir).deletingLastPathComponent().deletingLastPathComponent().path
        let path = ProcessInfo.processInfo.environment["I2Q_SMOLLM2"] ?? root + "/.cache/smollm2/SmolLM2-135M-Instruct-f32"
        guard FileSystem.exists(path + "/model.safetensors") else {
            return XCTFail("SmolLM2 is not at \(path): run `bash scripts/get_smollm2.sh` (scripts/test.sh does) or set I2Q_SMOLLM2")
        }
        let dir = try makeTempDir("int8-smol")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var o = AffineQuantizeOptions(); o.method = .rtn; o.groupSize = 64; o.dtype = .bf16
        var quiet = OutputSettings(); quiet.showProgress = false
        _ = try AffineQuantizePass.run(source: try openModel(path), output: dir + "/int4.i2q", options: o, settings: quiet)
        let saved = QuantGemv.exactDecode
        defer { QuantGemv.exactDecode = saved }

        let dec = try TextDecoder(source: try I2QFile(path: dir + "/int4.i2q"))
        let f32 = try TextDecoder(source: try openModel(path))  // for scale: the weight quantization's own drift
        let prompt = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407, 19712, 8182, 2]
        let steps = 24
        let cf = try dec.makeCache(capacity: prompt.count + steps + 1), cq = try dec.makeCache(capacity: prompt.count + steps + 1)
        let c32 = try f32.makeCache(capacity: prompt.count + steps + 1)
        _ = try f32.forward(embeddings: try f32.embed(prompt), cache: c32)
        func argmax(_ v: [Float]) -> Int { v.indices.max { v[$0] < v[$1] }! }
        QuantGemv.exactDecode = true
        var lf = Array(try dec.logits(try dec.forward(embeddings: try dec.embed(prompt), cache: cf), rows: 0..<prompt.count)
            .suffix(dec.config.vocabSize))
        _ = try dec.forward(embeddings: try dec.embed(prompt), cache: cq)  // prefill: the exact path for both
        var mismatches = 0, worst = 0.0, worstW = 0.0, firstDiff = steps
        var next = argmax(lf)
        for step in 0..<steps {
            QuantGemv.exactDecode = true
            lf = try dec.logits(try dec.forward(embeddings: try dec.embed([next]), cache: cf), rows: 0..<1)
            QuantGemv.exactDecode = false
            let lq = try dec.logits(try dec.forward(embeddings: try dec.embed([next]), cache: cq), rows: 0..<1)
            let l32 = try f32.logits(try f32.forward(embeddings: try f32.embed([next]), cache: c32), rows: 0..<1)
            let std = standardDeviation(lf)
            worst = max(worst, Double(maxDiff(lf, lq)) / Double(std))
            worstW = max(worstW, Double(maxDiff(lf, l32)) / Double(std))
            let tf = argmax(lf), tq = argmax(lq)
            if tf != tq {
                mismatches += 1
                firstDiff = min(firstDiff, step)
                let margin = lf[tf] - lf[tq]  // the float path's preference for its token
                XCTAssertLessThan(margin, 0.05 * std, "step \(step): int8 path chose \(tq) over \(tf) despite a margin of \(margin)")
            }
            next = tf  // teacher forcing: both caches see the float path's tokens
        }
        print("SmolLM2 int4 decode, int8 vs float path: logits max|Δ|/std \(worst), argmax differs at \(mismatches)/\(steps) steps (first \(firstDiff)); int4 float path vs f32 model: max|Δ|/std \(worstW)")
        XCTAssertGreaterThanOrEqual(firstDiff, 8, "the first greedy tokens should be identical")
        // The activation rounding must stay well below the int4 weight rounding's own effect (measured
        // 0.29 vs 4.5 std: 1/15).
        XCTAssertLessThan(worst, 0.25 * worstW, "int8 activations move the logits as much as the int4 weights do")
    }
}
