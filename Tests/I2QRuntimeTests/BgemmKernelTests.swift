import Foundation
import XCTest
import CI2QKernels
import I2QCore
import I2QFormats
import I2QTestSupport
@testable import I2QRuntime

/// The bf16 prefill product (`--bf16-activations`: bgemm.c, BF16Gemm) and the softmax kernel
/// (softmax.c), on every path this CPU runs:
/// - f32 → bf16 rounding equals torch's `.to(torch.bfloat16)` bit for bit (Tests/Fixtures/cast/special.safetensors);
/// - the product equals Σ a·w computed in double from the same bf16 values within k·2⁻²⁴·Σ|a·w|
///   (exact products, float32 sums) — the `vdpbf16ps` kernel where the CPU has AVX-512 BF16, and the
///   sgemm fallback every CPU runs;
/// - a whole model: tiny-mistral's prompt logits with bf16 activations equal transformers' with every
///   nn.Linear input rounded to bf16 (scripts/fixtures/make_bf16_activation_golden.py);
/// - softmax: every SIMD path gives the scalar code's bits; the scalar code is within 4·2⁻²⁴ relative
///   of the softmax computed in double.
final class BgemmKernelTests: XCTestCase {
    var rng = SplitMix64(seed: 23)
    func uniform() -> Float { Float(Double(rng.next() >> 11) / Double(1 << 53)) * 2 - 1 }

    func testRoundingToBF16MatchesTorchOnEveryPath() throws {
        let f = try SafetensorsFile(path: fixturesDir + "/cast/special.safetensors")
        var checked = 0
        for src in f.tensors where !src.name.contains(".") && src.dtype == .f32 {
            guard let exp = f.info(src.name + ".bf16") else { continue }
            let x: [Float] = f.withData(src) { b in (0..<src.elementCount).map { b.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) } }
            let want: [UInt16] = f.withData(exp) { b in (0..<src.elementCount).map { b.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self) } }
            for impl in QuantGemv.Int8.supported {
                var got = [UInt16](repeating: 0, count: x.count)
                i2q_f32_to_bf16(x, &got, Int64(x.count), impl.rawValue)
                let bad = (0..<x.count).filter { got[$0] != want[$0] }.prefix(3)
                    .map { "[\($0)] \(String(x[$0].bitPattern, radix: 16)) torch \(String(want[$0], radix: 16)) i2q \(String(got[$0], radix: 16))" }
                XCTAssertTrue(bad.isEmpty, "\(src.name) \(impl): \(bad)")
            }
            checked += 1
        }
        XCTAssertGreaterThanOrEqual(checked, 2, "special.safetensors holds float32 sources with torch's bf16 results")
    }

    /// bf16 [count] values (as bits) from uniform floats·scale, rounded by the scalar path.
    func bf16s(_ count: Int, scale: Float) -> [UInt16] {
        let x = (0..<count).map { _ in uniform() * scale }
        var b = [UInt16](repeating: 0, count: count)
        i2q_f32_to_bf16(x, &b, Int64(count), Int32(I2Q_IMPL_SCALAR))
        return b
    }

    func widen(_ b: UInt16) -> Double { Double(Float(bitPattern: UInt32(b) << 16)) }

    /// m, k, n: small and tail shapes, odd k, k beyond one 1024 block, n not a multiple of 32, n beyond
    /// one 2048-column block (with an odd k and a partial last panel).
    /// m covers every partial tile height (1…11 rows after whole 12-row tiles) and a second 192-row m block.
    let shapes: [(m: Int, k: Int, n: Int)] = [(2, 64, 32), (13, 577, 100), (37, 1152, 33), (30, 2050, 70), (12, 5, 1), (14, 41, 4133),
                                              (3, 70, 40), (4, 33, 64), (5, 96, 20), (7, 31, 36), (8, 200, 64), (9, 64, 8), (10, 17, 33),
                                              (23, 100, 50), (200, 64, 40)]

    func testProductEqualsTheExactSumOnEveryPath() throws {
        for (m, k, n) in shapes {
            let a = bf16s(m * k, scale: 3), w = bf16s(n * k, scale: 0.5)
            let xf = a.map { Float(bitPattern: UInt32($0) << 16) }  // the bf16 values as f32 (rounding them is exact)
            func check(_ y: [Float], start: Float, _ what: String) {
                for i in 0..<m {
                    for j in 0..<n {
                        var s = Double(start), mag = abs(Double(start))
                        for c in 0..<k { let p = widen(a[i * k + c]) * widen(w[j * k + c]); s += p; mag += abs(p) }
                        let d = abs(Double(y[i * n + j]) - s)
                        if d > Double(k + 1) * 0x1p-24 * mag + 1e-30 {
                            XCTFail("\(what) m=\(m) k=\(k) n=\(n) [\(i),\(j)]: \(y[i * n + j]) vs \(s)")
                            return
                        }
                    }
                }
            }
            // The C kernel (AVX-512 BF16 only), over two column ranges as two threads would split them.
            if BF16Gemm.native {
                for start: Float in [0, 0.25] {
                    var y = [Float](repeating: start, count: m * n)
                    let split = n > 32 ? 32 : n
                    for (n0, n1) in [(0, split), (split, n)] where n0 < n1 {
                        let pack = UnsafeMutableRawPointer.allocate(byteCount: max(64, i2q_bgemm_pack_bytes(Int64(k), Int64(n1 - n0))), alignment: 64)
                        defer { pack.deallocate() }
                        let ran = a.withUnsafeBufferPointer { ap in w.withUnsafeBufferPointer { wp in y.withUnsafeMutableBufferPointer { yp in
                            i2q_bgemm(ap.baseAddress!, Int64(k), wp.baseAddress!, Int64(k), yp.baseAddress!, Int64(n), Int64(m), Int64(k),
                                      Int64(n0), Int64(n1), start != 0 ? 1 : 0, 1, pack)
                        } } }
                        XCTAssertEqual(ran, 1)
                    }
                    check(y, start: start, "vdpbf16ps")
                    // The weight repacked once (two threads' panel ranges), then the product over the same
                    // two column ranges: the per-call packing's bits.
                    let panels = (n + 31) / 32
                    let packed = UnsafeMutableRawPointer.allocate(byteCount: max(64, i2q_bgemm_repack_bytes(Int64(k), Int64(n))), alignment: 64)
                    defer { packed.deallocate() }
                    for (p0, p1) in [(0, panels / 2), (panels / 2, panels)] where p0 < p1 {
                        XCTAssertEqual(w.withUnsafeBufferPointer { i2q_bgemm_repack($0.baseAddress!, Int64(k), Int64(n), Int64(k), Int64(p0), Int64(p1), packed) }, 1)
                    }
                    var yr = [Float](repeating: start, count: m * n)
                    for (n0, n1) in [(0, split), (split, n)] where n0 < n1 {
                        let ran = a.withUnsafeBufferPointer { ap in yr.withUnsafeMutableBufferPointer { yp in
                            i2q_bgemm_repacked(ap.baseAddress!, Int64(k), packed, yp.baseAddress!, Int64(n), Int64(m), Int64(k), Int64(n),
                                               Int64(n0), Int64(n1), start != 0 ? 1 : 0, 1)
                        } }
                        XCTAssertEqual(ran, 1)
                    }
                    XCTAssertEqual(yr, y, "repacked m=\(m) k=\(k) n=\(n)")
                    // alpha: the same float32 sum, then one multiplication (attention's q·kᵀ · scale).
                    if start == 0 {
                        var ya = [Float](repeating: 0, count: m * n)
                        let pack = UnsafeMutableRawPointer.allocate(byteCount: max(64, i2q_bgemm_pack_bytes(Int64(k), Int64(n))), alignment: 64)
                        defer { pack.deallocate() }
                        _ = a.withUnsafeBufferPointer { ap in w.withUnsafeBufferPointer { wp in ya.withUnsafeMutableBufferPointer { yp in
                            i2q_bgemm(ap.baseAddress!, Int64(k), wp.baseAddress!, Int64(k), yp.baseAddress!, Int64(n), Int64(m), Int64(k),
                                      0, Int64(n), 0, 0.3, pack)
                        } } }
                        XCTAssertEqual(ya, y.map { $0 * 0.3 }, "alpha m=\(m) k=\(k) n=\(n)")
                    }
                }
            }
            // BF16Gemm.linear: the kernel where present, else the fallback; and the fallback itself.
            let saved = BF16Gemm.forceFallback
            defer { BF16Gemm.forceFallback = saved }
            for fallback in [false, true] {
                BF16Gemm.forceFallback = fallback
                var y = [Float](repeating: 0, count: m * n)
                let scratch = Scratch()
                xf.withUnsafeBufferPointer { xp in w.withUnsafeBytes { wp in y.withUnsafeMutableBufferPointer { yp in
                    BF16Gemm.linear(x: xp.baseAddress!, w: wp.baseAddress!, y: yp.baseAddress!, m: m, k: k, n: n, accumulate: false,
                                    scratch: scratch) { dst in for i in 0..<(n * k) { dst[i] = Float(bitPattern: UInt32(w[i]) << 16) } }
                } } }
                check(y, start: 0, fallback ? "fallback (sgemm)" : "BF16Gemm.linear")
            }
        }
    }

    /// `RepackedWeight` through BF16Gemm.linear: the first prefill packs per call and keeps nothing, the
    /// second repacks (the budget permitting) and later ones reuse it — every result within the exact
    /// sum's bound and identical to the first; a zero budget keeps nothing.
    func testRepackedWeightIsKeptFromTheSecondPrefillWithinTheBudget() throws {
        let (m, k, n) = (30, 577, 100)
        let a = bf16s(m * k, scale: 3), w = bf16s(n * k, scale: 0.5)
        let xf = a.map { Float(bitPattern: UInt32($0) << 16) }
        let saved = RepackedWeight.budgetBytes
        defer { RepackedWeight.budgetBytes = saved }
        func product(_ r: RepackedWeight) -> [Float] {
            var y = [Float](repeating: 0, count: m * n)
            let scratch = Scratch()
            xf.withUnsafeBufferPointer { xp in w.withUnsafeBytes { wp in y.withUnsafeMutableBufferPointer { yp in
                BF16Gemm.linear(x: xp.baseAddress!, w: wp.baseAddress!, y: yp.baseAddress!, m: m, k: k, n: n, accumulate: false,
                                scratch: scratch, repacked: r) { dst in for i in 0..<(n * k) { dst[i] = Float(bitPattern: UInt32(w[i]) << 16) } }
            } } }
            return y
        }
        let need = i2q_bgemm_repack_bytes(Int64(k), Int64(n))
        for budget in [0, 1 << 20] {
            RepackedWeight.budgetBytes = budget
            let before = RepackedWeight.heldBytes
            var r: RepackedWeight? = RepackedWeight()
            let first = product(r!)
            XCTAssertEqual(RepackedWeight.heldBytes, before, "nothing kept after one prefill")
            for _ in 0..<2 { XCTAssertEqual(product(r!), first, "budget \(budget)") }
            XCTAssertEqual(RepackedWeight.heldBytes, before + (budget > 0 && BF16Gemm.native ? need : 0), "budget \(budget)")
            for i in 0..<m {
                for j in 0..<n {
                    var s = 0.0, mag = 0.0
                    for c in 0..<k { let p = widen(a[i * k + c]) * widen(w[j * k + c]); s += p; mag += abs(p) }
                    XCTAssertLessThanOrEqual(abs(Double(first[i * n + j]) - s), Double(k + 1) * 0x1p-24 * mag + 1e-30)
                }
            }
            r = nil
            XCTAssertEqual(RepackedWeight.heldBytes, before, "freed with its weight")
        }
    }

    /// tiny-mistral's golden for bf16 activations (make_bf16_activation_golden.py): its ids, and a logits key.
    private func bf16Golden(_ key: String) throws -> (ids: [Int], logits: [Float]) {
        let g = try SafetensorsFile(path: fixturesDir + "/tiny-mistral/golden-bf16-activations.safetensors")
        let ids: [Int] = g.withData(g.info("ids")!) { b in (0..<(b.count / 8)).map { Int(b.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) } }
        let logits: [Float] = g.withData(g.info(key)!) { b in (0..<(b.count / 4)).map { b.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) } }
        return (ids, logits)
    }

    /// tiny-mistral's prompt logits with `--bf16-activations` (and `--bf16-attention` when asked), on
    /// the vdpbf16ps kernel (where this CPU has it) and on the widened-sgemm fallback: each within
    /// 1e-4·std of `want`, and further than 1e-3·std from `other` (the rounding is visible).
    private func checkTinyMistral(attention: Bool, want: [Float], other: [Float], ids: [Int]) throws {
        let saved = (BF16Gemm.enabled, BF16Gemm.forceFallback, BF16Attention.enabled)
        defer { (BF16Gemm.enabled, BF16Gemm.forceFallback, BF16Attention.enabled) = saved }
        BF16Gemm.enabled = true
        BF16Attention.enabled = attention
        for fallback in [false, true] {
            BF16Gemm.forceFallback = fallback
            let dec = try TextDecoder(source: try openModel(fixturesDir + "/tiny-mistral"))
            let cache = try dec.makeCache(capacity: ids.count)
            let got = try dec.logits(try dec.forward(embeddings: try dec.embed(ids), cache: cache), rows: 0..<ids.count)
            let std = standardDeviation(want)
            XCTAssertLessThanOrEqual(maxDiff(got, want), 1e-4 * std, "fallback \(fallback)")
            XCTAssertGreaterThan(maxDiff(got, other), 1e-3 * std, "fallback \(fallback)")
        }
    }

    /// Linear inputs rounded: transformers with every nn.Linear's input rounded (not the float32 golden).
    func testTinyMistralWithBF16ActivationsEqualsTransformers() throws {
        let (ids, want) = try bf16Golden("logits")
        try checkTinyMistral(attention: false, want: want, other: try loadTextGolden(fixturesDir + "/tiny-mistral/golden.safetensors").logits, ids: ids)
    }

    /// `--bf16-attention` on top: transformers' eager attention on bf16-rounded q, k, probabilities and v
    /// (not the linear-only golden).
    func testTinyMistralWithBF16AttentionEqualsTransformers() throws {
        let (ids, want) = try bf16Golden("logits_bf16_attention")
        try checkTinyMistral(attention: true, want: want, other: try bf16Golden("logits").logits, ids: ids)
    }

    /// The bidirectional kernel (vision tower, perceiver) with `--bf16-attention`: against the
    /// double-precision formula on bf16-rounded q, k, v and probabilities, on both products' paths,
    /// several query blocks, a key mask and grouped kv heads.
    func testBidirectionalBF16AttentionEqualsTheRoundedFormula() {
        let tq = 40, tk = 75, heads = 4, kvHeads = 2, d = 24
        func rnd(_ n: Int, _ seed: UInt64) -> [Float] {
            var s = seed
            return (0..<n).map { _ in s = s &* 6364136223846793005 &+ 1442695040888963407; return Float(Int64(bitPattern: s >> 11) % 2001 - 1000) / 500 }
        }
        let q = rnd(tq * heads * d, 1), k = rnd(tk * kvHeads * d, 2), v = rnd(tk * kvHeads * d, 3)
        let mask = (0..<tk).map { $0 % 5 != 2 }
        let saved = (BF16Gemm.forceFallback, BF16Attention.enabled, Kernels.queryBlock)
        defer { (BF16Gemm.forceFallback, BF16Attention.enabled, Kernels.queryBlock) = saved }
        BF16Attention.enabled = true
        Kernels.queryBlock = 16
        for fallback in [false, true] {
            BF16Gemm.forceFallback = fallback
            var out = [Float](repeating: 0, count: tq * heads * d)
            Kernels.attention(q: q, ldq: heads * d, k: k, v: v, ldk: kvHeads * d, out: &out, ldo: heads * d, tq: tq, tk: tk,
                              heads: heads, kvHeads: kvHeads, headDim: d, keyMask: mask, scale: 0.2)
            // float32 sums, and a probability on a bf16 rounding boundary: ≤ 2⁻⁸ of one term
            let want = AttentionFormula.evaluate(q: q, k: k, v: v, mask: mask, tq: tq, tk: tk, heads: heads, kvHeads: kvHeads, d: d,
                                                 scale: 0.2, round: AttentionFormula.bf16)
            var worst = 0.0
            for (i, o) in out.enumerated() { worst = max(worst, abs(want.out[i] - Double(o)) / (want.magnitude[i] * 0x1p-8 + 1e-30)) }
            XCTAssertLessThanOrEqual(worst, 1, "fallback \(fallback)")
        }
    }

    func testSoftmaxEveryPathEqualsScalarAndDouble() {
        for n in [1, 5, 16, 17, 100, 513] {
            for (lo, hi) in [(0, n), (n / 3, n), (0, max(1, n / 2)), (n / 4, max(n / 4 + 1, 3 * n / 4))] where lo < hi && hi <= n {
                var row = (0..<n).map { _ in uniform() * 20 }
                if n > 4 { row[lo] = -.infinity }  // a masked key gives 0
                if n > 8 { row[hi - 1] = 80 }      // one dominant key: most others underflow to 0
                var ref = row
                i2q_softmax(&ref, Int64(n), Int64(lo), Int64(hi), Int32(I2Q_IMPL_SCALAR))
                let m = row[lo..<hi].max()!
                let sum = row[lo..<hi].reduce(0.0) { $0 + Foundation.exp(Double($1 - m)) }
                for j in 0..<n {
                    let exact = j >= lo && j < hi ? Foundation.exp(Double(row[j] - m)) / sum : 0
                    XCTAssertLessThanOrEqual(abs(Double(ref[j]) - exact), 4 * 0x1p-24 * exact + 3e-38, "n=\(n) [\(lo),\(hi)) j=\(j)")
                }
                for impl in QuantGemv.Int8.supported where impl != .scalar {
                    var got = row
                    i2q_softmax(&got, Int64(n), Int64(lo), Int64(hi), impl.rawValue)
                    XCTAssertEqual(got.map(\.bitPattern), ref.map(\.bitPattern), "\(impl) n=\(n) [\(lo),\(hi))")
                }
            }
        }
    }

    /// Σ exp(x − max) of log-softmax (perplexity, KLD; softmax.c): the max exact and the sum bit-identical
    /// on every path, and within 2·2⁻²⁴ relative of the sum in double of the exact exps (the stated bound).
    func testSumExpEveryPathEqualsScalarAndDouble() {
        for n in [1, 7, 16, 17, 100, 1000, 49152] {
            var row = (0..<n).map { _ in uniform() * 30 }
            if n > 20 { row[5] = -.infinity; row[n - 2] = 40 }  // −inf gives 0; one dominant entry
            var m0: Float = 0
            let ref = i2q_sumexp(row, Int64(n), &m0, Int32(I2Q_IMPL_SCALAR))
            let m = row.max()!
            XCTAssertEqual(m0, m, "n=\(n)")
            var exact = 0.0, mag = 0.0
            for x in row { let e = Foundation.exp(Double(x - m)); exact += e; mag += e }
            XCTAssertLessThanOrEqual(abs(ref - exact), 2 * 0x1p-24 * mag, "n=\(n)")
            for impl in QuantGemv.Int8.supported where impl != .scalar {
                var mi: Float = 0
                let got = i2q_sumexp(row, Int64(n), &mi, impl.rawValue)
                XCTAssertEqual(mi, m0, "n=\(n) \(impl)")
                XCTAssertEqual(got, ref, "n=\(n) \(impl)")
            }
        }
    }

    func testExpIsWithinTwoUlpOfTheCorrectlyRoundedValue() {
        var x: [Float] = []
        var v: Float = -86.5
        while v <= 0 { x.append(v); v += 0.00731 }
        x += [0, -1e-30, -1e-7, -0.5, -86.49]
        var y = [Float](repeating: 0, count: x.count)
        i2q_exp(x, &y, Int64(x.count))
        for (xi, yi) in zip(x, y) {
            let want = Float(Foundation.exp(Double(xi)))
            XCTAssertLessThanOrEqual(abs(yi - want), 2 * want.ulp, "exp(\(xi))")
        }
        let edge: [Float] = [-86.6, -100, -.infinity, .nan]
        var z = [Float](repeating: 1, count: 4)
        i2q_exp(edge, &z, 4)
        XCTAssertEqual(Array(z[0..<3]), [0, 0, 0])
        XCTAssertTrue(z[3].isNaN)
    }

    /// SiLU·up and gelu_pytorch_tanh (softmax.c): every SIMD path gives the scalar code's bits; the
    /// scalar code is within 8·2⁻²⁴ relative of the formulas computed in double (torch's definitions;
    /// gelu: times exp's condition number where the tail x·e(x) is tiny).
    func testActivationsEveryPathEqualsScalarAndDouble() {
        var g = (0..<1000).map { _ in uniform() * 12 }
        g += [0, -0.0, 1e-30, -1e-30, 90, -90, 200, -200, .infinity, -.infinity, 5e-4, -5e-4]
        let u = g.indices.map { _ in uniform() * 3 }
        func run(_ impl: Int32) -> (silu: [Float], gelu: [Float]) {
            var s = [Float](repeating: 0, count: g.count), x = g
            i2q_silu_mul(g, u, &s, Int64(g.count), impl)
            i2q_gelu_tanh(&x, Int64(g.count), impl)
            return (s, x)
        }
        let ref = run(Int32(I2Q_IMPL_SCALAR))
        for i in g.indices where g[i].isFinite {
            let x = Double(g[i])
            let silu = x / (1 + Foundation.exp(-x)) * Double(u[i])
            // 0.5·x·(1 + tanh v) = x·e/(e + 1), e = exp(2v): the same function, without double's own
            // cancellation of 1 + tanh v near −1.
            let v = 0.7978845608028654 * (x + 0.044715 * x * x * x)
            let e = Foundation.exp(2 * v)
            let gelu = e.isInfinite ? x : x * (e / (e + 1))
            // float32 rounding of v is amplified by exp's condition number 2|v| where gelu ≈ x·e (x ≪ 0),
            // as in torch's own float32 tanh form.
            let cond = 1 + 2 * abs(v) / (1 + e)
            XCTAssertLessThanOrEqual(abs(Double(ref.silu[i]) - silu), 8 * 0x1p-24 * abs(silu) + 1e-30, "silu(\(g[i]))·\(u[i])")
            XCTAssertLessThanOrEqual(abs(Double(ref.gelu[i]) - gelu), 8 * 0x1p-24 * cond * abs(gelu) + 1e-30, "gelu(\(g[i]))")
        }
        XCTAssertEqual(ref.gelu[g.count - 4], .infinity)  // gelu(+inf) = +inf, as torch
        for impl in QuantGemv.Int8.supported where impl != .scalar {
            let r = run(impl.rawValue)
            XCTAssertEqual(r.silu.map(\.bitPattern), ref.silu.map(\.bitPattern), "silu \(impl)")
            XCTAssertEqual(r.gelu.map(\.bitPattern), ref.gelu.map(\.bitPattern), "gelu \(impl)")
        }
    }
}
