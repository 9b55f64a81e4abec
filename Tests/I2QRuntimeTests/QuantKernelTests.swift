import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QQuant
import I2QTestSupport
@testable import I2QRuntime

/// The 4-bit kernels (`QuantGemv`, `PackedFourBit`) and the bf16 GEMV against a plain
/// dequantize-then-multiply reference. The dequantized values come from the I2QQuant codecs, which
/// are themselves bit-exact to bitsandbytes (`FourBitCodec`, BnbFixtureTests) and to AutoAWQ
/// (`AffineInt4`, AffineInt4Tests); the products are computed in double precision here.
///
/// Tolerance: the kernels sum in float32 in another order than the reference, so each output may
/// differ by float32 rounding of a k-term sum: |Δy| ≤ k · 2⁻²⁴ · Σ|w·x| (the classic worst-case
/// bound), and the dequantized tiles used by prefill must equal the reference values exactly.
final class QuantKernelTests: XCTestCase {
    // These tests compare with the exact dequantize-then-multiply reference: pin the float decode
    // GEMV (the default int8-activation one is checked against its own bound in Int8GemvTests).
    private var savedExact = false
    override func setUp() { super.setUp(); savedExact = QuantGemv.exactDecode; QuantGemv.exactDecode = true }
    override func tearDown() { QuantGemv.exactDecode = savedExact; super.tearDown() }

    /// Owns the buffers a `PackedFourBit` points into.
    final class Store {
        var raws: [UnsafeMutableRawPointer] = []
        deinit { raws.forEach { $0.deallocate() } }
        func keep<T>(_ a: [T]) -> UnsafePointer<T> {
            let p = UnsafeMutableRawPointer.allocate(byteCount: max(1, a.count * MemoryLayout<T>.stride), alignment: 64)
            raws.append(p)
            let t = p.bindMemory(to: T.self, capacity: a.count)
            t.initialize(from: a, count: a.count)
            return UnsafePointer(t)
        }
    }

    var rng = SplitMix64(seed: 42)
    func uniform() -> Float { Float(Double(rng.next() >> 11) / Double(1 << 53)) * 2 - 1 }
    func randoms(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in uniform() * scale } }

    // MARK: builders

    static func table(_ w: [Float], rows: Int, cols: Int, type: FourBitType, blockSize: Int, doubleQuant: Bool,
               store: Store) -> (PackedFourBit, [Float]) {
        let q = FourBitCodec.quantize(w, type: type, blockSize: blockSize, doubleQuant: doubleQuant)
        let p: PackedFourBit
        if let dq = q.doubleQuant {
            p = PackedFourBit(layout: .table(type), rows: rows, cols: cols, packed: store.keep(q.packed), unit: blockSize,
                              absmax: UnsafeRawPointer(store.keep(dq.codes)), nested: UnsafeRawPointer(store.keep(dq.nestedAbsmax)),
                              offset: dq.offset, scales: nil, zeros: nil, owner: store)
        } else {
            p = PackedFourBit(layout: .table(type), rows: rows, cols: cols, packed: store.keep(q.packed), unit: blockSize,
                              absmax: UnsafeRawPointer(store.keep(q.absmax)), nested: nil, offset: 0, scales: nil, zeros: nil,
                              owner: store)
        }
        return (p, FourBitCodec.dequantize(q))
    }

    /// An affine int4 weight quantized from `w` (AutoAWQ codec) and its reference dequantization.
    static func affine(_ w: [Float], rows: Int, cols: Int, groupSize g: Int, zeroPoint: Bool, store: Store) -> (PackedFourBit, [Float]) {
        var codes = [UInt8](repeating: 0, count: rows * cols)
        var scales = [Float16](repeating: 0, count: rows * cols / g)
        var zeros = [UInt8](repeating: 0, count: rows * cols / g)
        AffineInt4.quantizeRows(w, rows: rows, cols: cols, groupSize: g, codes: &codes, scales: &scales, zeros: &zeros)
        if !zeroPoint { zeros = [UInt8](repeating: 8, count: zeros.count) }  // zero_point 0: z = 8 (spec)
        var packed = [UInt8](repeating: 0, count: rows * cols / 2)
        AffineInt4.pack(codes, count: codes.count, into: &packed)
        var ref = [Float](repeating: 0, count: rows * cols)
        AffineInt4.dequantizeRows(packed: packed, scales: scales, zeros: zeros, rows: rows, cols: cols, groupSize: g, into: &ref)
        let p = PackedFourBit(layout: .affine, rows: rows, cols: cols, packed: store.keep(packed), unit: g, absmax: nil,
                              nested: nil, offset: 0, scales: store.keep(scales), zeros: zeroPoint ? store.keep(zeros) : nil,
                              owner: store)
        return (p, ref)
    }

    // MARK: checks

    /// Checks y[m, n] against x[m, k] · refᵀ (+ y0) in double precision within k·2⁻²⁴·Σ|w·x|.
    func assertProduct(_ y: [Float], x: [Float], ref: [Float], y0: [Float]?, m: Int, n: Int, k: Int, _ what: String) {
        var worst = 0.0
        for i in 0..<m {
            for r in 0..<n {
                var s = 0.0, a = 0.0
                for c in 0..<k {
                    let t = Double(ref[r * k + c]) * Double(x[i * k + c])
                    s += t; a += abs(t)
                }
                if let y0 { s += Double(y0[i * n + r]); a += abs(Double(y0[i * n + r])) }
                let d = abs(Double(y[i * n + r]) - s)
                let bound = Double(k + 1) * 0x1p-24 * a + 1e-30
                worst = max(worst, d / max(a, 1e-30))
                if d > bound { XCTFail("\(what): y[\(i), \(r)] = \(y[i * n + r]), reference \(s), |Δ| \(d) > bound \(bound)"); return }
            }
        }
        print("\(what): max |Δ|/Σ|w·x| = \(worst)")
    }

    func check(_ p: PackedFourBit, _ ref: [Float], _ what: String) {
        let n = p.rows, k = p.cols
        // Dequantization: exact, whole tensor and an odd sub-range.
        var deq = [Float](repeating: .nan, count: n * k)
        p.dequantize(first: 0, count: n * k, into: &deq)
        XCTAssertEqual(deq.map(\.bitPattern), ref.map(\.bitPattern), "\(what): dequantize")
        if n * k > 8 {
            var part = [Float](repeating: .nan, count: n * k - 6)
            p.dequantize(first: 3, count: part.count, into: &part)
            XCTAssertEqual(part, Array(ref[3..<(n * k - 3)]), "\(what): dequantize sub-range")
        }
        // Decode GEMV, with and without accumulation.
        let x = randoms(k)
        var y = [Float](repeating: .nan, count: n)
        QuantGemv.run(p, x: x, y: &y, accumulate: false)
        assertProduct(y, x: x, ref: ref, y0: nil, m: 1, n: n, k: k, "\(what) m=1")
        let y0 = randoms(n)
        y = y0
        QuantGemv.run(p, x: x, y: &y, accumulate: true)
        assertProduct(y, x: x, ref: ref, y0: y0, m: 1, n: n, k: k, "\(what) m=1 accumulate")
        // Prefill: tiles of 3 rows (several tiles and a partial last one) and one tile of all rows.
        for (m, tile) in [(3, 3), (17, n)] {
            let xm = randoms(m * k)
            let ym0 = randoms(m * n)
            var ym = ym0
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: tile * k)  // [tile, k] f32
            defer { scratch.deallocate() }
            QuantGemv.linear(p, x: xm, y: &ym, m: m, accumulate: true, scratch: scratch, tileRows: tile)
            assertProduct(ym, x: xm, ref: ref, y0: ym0, m: m, n: n, k: k, "\(what) m=\(m) tile=\(tile)")
        }
    }

    // MARK: tests

    func testTableKernelsMatchDequantizedProduct() {
        let store = Store()
        // (rows, cols, block): fused paths (cols % 64 == 0, block % 64 == 0; 128-chunks, a 64 tail),
        // blocks straddling rows (block 256 over 192-wide rows), and the generic path (cols not a
        // multiple of 64, an odd element count, block 32).
        let shapes = [(37, 576, 64), (5, 128, 128), (3, 192, 64), (6, 1536, 256), (7, 192, 256), (9, 100, 64),
                      (3, 25, 32), (4, 64, 32)]
        for type in FourBitType.allCases {
            for dq in [false, true] {
                for (n, k, bs) in shapes {
                    var w = randoms(n * k, scale: 0.05)
                    w[min(5, w.count - 1)] = 0.9  // an outlier
                    let (p, ref) = Self.table(w, rows: n, cols: k, type: type, blockSize: bs, doubleQuant: dq, store: store)
                    XCTAssertEqual(p.fastRows, k % 64 == 0 && bs % 64 == 0)
                    check(p, ref, "\(type.rawValue)\(dq ? "+dq" : "") [\(n), \(k)] block \(bs)")
                }
            }
        }
    }

    func testAffineKernelsMatchDequantizedProduct() {
        let store = Store()
        let shapes = [(37, 576, 64), (5, 128, 128), (3, 192, 64), (6, 1536, 128), (4, 320, 64), (2, 1536, 1536),
                      (9, 100, 10), (3, 96, 32), (5, 30, 6)]
        for zp in [true, false] {
            for (n, k, g) in shapes {
                var w = randoms(n * k, scale: 0.05)
                w[min(7, w.count - 1)] = -0.8
                let (p, ref) = Self.affine(w, rows: n, cols: k, groupSize: g, zeroPoint: zp, store: store)
                XCTAssertEqual(p.fastRows, k % 64 == 0 && g % 64 == 0)
                check(p, ref, "int4\(zp ? "" : " zp0") [\(n), \(k)] group \(g)")
            }
        }
    }

    func testRunManySplitsRowsOfSeveralWeights() {
        let store = Store()
        let k = 192
        let (a, ra) = Self.affine(randoms(11 * k, scale: 0.1), rows: 11, cols: k, groupSize: 64, zeroPoint: true, store: store)
        let (b, rb) = Self.table(randoms(3 * k, scale: 0.1), rows: 3, cols: k, type: .nf4, blockSize: 64, doubleQuant: true, store: store)
        let (c, rc) = Self.affine(randoms(5 * k, scale: 0.1), rows: 5, cols: k, groupSize: 6, zeroPoint: true, store: store)  // generic path
        let x = randoms(k)
        var ya = [Float](repeating: .nan, count: 11), yb = [Float](repeating: .nan, count: 3), yc = [Float](repeating: .nan, count: 5)
        ya.withUnsafeMutableBufferPointer { pa in
            yb.withUnsafeMutableBufferPointer { pb in
                yc.withUnsafeMutableBufferPointer { pc in
                    QuantGemv.runMany([(a, pa.baseAddress!), (b, pb.baseAddress!), (c, pc.baseAddress!)], x: x)
                }
            }
        }
        assertProduct(ya, x: x, ref: ra, y0: nil, m: 1, n: 11, k: k, "runMany a")
        assertProduct(yb, x: x, ref: rb, y0: nil, m: 1, n: 3, k: k, "runMany b")
        assertProduct(yc, x: x, ref: rc, y0: nil, m: 1, n: 5, k: k, "runMany c")
    }

    func testBF16GemvReadsInPlace() {
        for (n, k) in [(37, 576), (5, 40), (3, 33), (2, 1)] {
            let w = randoms(n * k)
            let bits = w.map { FloatConversion.bf16Bits($0) }  // round to nearest even
            let ref = bits.map { Float(bitPattern: UInt32($0) << 16) }
            let x = randoms(k)
            let y0 = randoms(n)
            var y = y0
            bits.withUnsafeBytes { wb in
                Gemv.run16(w: wb.baseAddress!, dtype: .bf16, x: x, y: &y, n: n, k: k, accumulate: true)
            }
            assertProduct(y, x: x, ref: ref, y0: y0, m: 1, n: n, k: k, "bf16 [\(n), \(k)]")
        }
    }

    /// A small Llama written twice: linear weights as affine_int4 (AffineInt4 + I2QWriter), and as
    /// their float32 dequantization (`fakeQuantize`). Prefill and decode logits must agree.
    func testTinyModelAffineInt4MatchesDequantizedFloat32Model() throws {
        let dir = try makeTempDir("int4-model")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (hidden, inter, layers, vocab, heads, kvHeads) = (128, 320, 2, 96, 4, 2)
        let headDim = hidden / heads
        let config = """
        {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": \(hidden),
         "intermediate_size": \(inter), "num_hidden_layers": \(layers), "num_attention_heads": \(heads),
         "num_key_value_heads": \(kvHeads), "head_dim": \(headDim), "vocab_size": \(vocab), "rms_norm_eps": 1e-05,
         "rope_theta": 10000.0, "tie_word_embeddings": true, "max_position_embeddings": 128, "hidden_act": "silu",
         "dtype": "float32"}
        """
        var tensors: [(String, [Int], [Float])] = [("model.embed_tokens.weight", [vocab, hidden], randoms(vocab * hidden)),
                                                   ("model.norm.weight", [hidden], randoms(hidden).map { 1 + 0.1 * $0 })]
        for l in 0..<layers {
            let p = "model.layers.\(l)."
            tensors.append((p + "input_layernorm.weight", [hidden], randoms(hidden).map { 1 + 0.1 * $0 }))
            tensors.append((p + "post_attention_layernorm.weight", [hidden], randoms(hidden).map { 1 + 0.1 * $0 }))
            for (name, shape) in [("self_attn.q_proj", [heads * headDim, hidden]), ("self_attn.k_proj", [kvHeads * headDim, hidden]),
                                  ("self_attn.v_proj", [kvHeads * headDim, hidden]), ("self_attn.o_proj", [hidden, heads * headDim]),
                                  ("mlp.gate_proj", [inter, hidden]), ("mlp.up_proj", [inter, hidden]), ("mlp.down_proj", [hidden, inter])] {
                tensors.append((p + name + ".weight", shape, randoms(shape[0] * shape[1], scale: 0.15)))
            }
        }
        let groupSize = 64
        func write(_ path: String, int4: Bool) throws {
            let w = try I2QWriter(path: path)
            for (name, shape, values) in tensors {
                if shape.count == 2 && name.contains("_proj") {
                    let (rows, cols) = (shape[0], shape[1])
                    if int4 {
                        var codes = [UInt8](repeating: 0, count: rows * cols)
                        var scales = [Float16](repeating: 0, count: rows * cols / groupSize)
                        var zeros = [UInt8](repeating: 0, count: rows * cols / groupSize)
                        AffineInt4.quantizeRows(values, rows: rows, cols: cols, groupSize: groupSize, codes: &codes, scales: &scales, zeros: &zeros)
                        var packed = [UInt8](repeating: 0, count: rows * cols / 2)
                        AffineInt4.pack(codes, count: codes.count, into: &packed)
                        try w.beginTensor(name: name, scheme: I2QSpec.Scheme.affineInt4, dtype: .f32, shape: shape,
                                          params: [("group_size", .int(Int64(groupSize))), ("pack_order", .string("sequential")),
                                                   ("zero_point", .int(1))])
                        try w.beginComponent(role: "qweight", dtype: .u8, shape: [rows, cols / 2])
                        try packed.withUnsafeBytes { try w.append($0) }
                        try w.endComponent()
                        try w.beginComponent(role: "scales", dtype: .f16, shape: [rows, cols / groupSize])
                        try scales.withUnsafeBytes { try w.append($0) }
                        try w.endComponent()
                        try w.beginComponent(role: "zeros", dtype: .u8, shape: [rows, cols / groupSize])
                        try zeros.withUnsafeBytes { try w.append($0) }
                        try w.endComponent()
                        try w.endTensor()
                    } else {
                        var deq = values
                        AffineInt4.fakeQuantize(&deq, rows: rows, cols: cols, groupSize: groupSize)
                        try deq.withUnsafeBytes { try w.writePlain(name: name, dtype: .f32, shape: shape, $0) }
                    }
                } else {
                    try values.withUnsafeBytes { try w.writePlain(name: name, dtype: .f32, shape: shape, $0) }
                }
            }
            try w.finish(metadata: I2QMetadata(files: [("config.json", Array(config.utf8))],
                                               provenance: Provenance(source: .null, passes: [])))
        }
        try write(dir + "/int4.i2q", int4: true)
        try write(dir + "/f32.i2q", int4: false)
        let q = try TextDecoder(source: try I2QFile(path: dir + "/int4.i2q"))
        let f = try TextDecoder(source: try I2QFile(path: dir + "/f32.i2q"))
        XCTAssertNotNil(q.layers[0].mlp.down.packed)
        XCTAssertNil(f.layers[0].mlp.down.packed)

        let ids = (0..<13).map { ($0 * 37 + 5) % vocab }
        let cq = try q.makeCache(capacity: 32), cf = try f.makeCache(capacity: 32)
        var lq = try q.logits(try q.forward(embeddings: try q.embed(ids), cache: cq), rows: 0..<ids.count)
        var lf = try f.logits(try f.forward(embeddings: try f.embed(ids), cache: cf), rows: 0..<ids.count)
        var worst = maxDiff(lq, lf) / standardDeviation(lf)
        // Decode 6 tokens one at a time (the fused GEMV path), feeding the same tokens to both.
        for step in 0..<6 {
            let id = [(step * 11 + 3) % vocab]
            lq = try q.logits(try q.forward(embeddings: try q.embed(id), cache: cq), rows: 0..<1)
            lf = try f.logits(try f.forward(embeddings: try f.embed(id), cache: cf), rows: 0..<1)
            worst = max(worst, maxDiff(lq, lf) / standardDeviation(lf))
        }
        print("tiny int4 model vs dequantized float32 model: logits max|Δ|/std \(worst)")
        XCTAssertLessThan(worst, 1e-4)
    }
}
