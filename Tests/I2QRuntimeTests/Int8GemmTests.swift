import Foundation
import XCTest
import CI2QKernels
import I2QCore
import I2QFormats
import I2QTestSupport
@testable import I2QRuntime

/// The int8 prefill product (`--int8-activations`: igemm.c, Int8Gemm), on every path this CPU runs,
/// against torch computing the W8A8 scheme (scripts/fixtures/make_int8_gemm_fixtures.py):
/// - the activation codes, scales and code sums bit for bit (zero rows, exact .5 ties);
/// - the product for float32, bf16 and f16 weights, and accumulating into C, bit for bit;
/// - the paths agree bit for bit at shapes with several column blocks and partial tiles;
/// - a whole model: tiny Idefics2's vision tower, connector and prompt logits with int8 activations
///   equal transformers' with every nn.Linear computing the scheme (golden/tiny-idefics2-int8).
final class Int8GemmTests: XCTestCase {
    let fixture = fixturesDir + "/int8-gemm/kernel.safetensors"

    func raw<T>(_ f: SafetensorsFile, _ name: String, as: T.Type) -> [T] {
        f.withData(f.info(name)!) { b in (0..<(b.count / MemoryLayout<T>.size)).map { b.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self) } }
    }

    func bits(_ a: [Float]) -> [UInt32] { a.map(\.bitPattern) }

    func testCodesAndProductsMatchTorchOnEveryPath() throws {
        let f = try SafetensorsFile(path: fixture)
        let m = 37, k = 83, n = 45, ld = 84
        let x: [Float] = raw(f, "x", as: Float.self)
        let weights: [(String, Int32, [UInt8])] = [
            ("f32", Int32(I2Q_W_F32), raw(f, "w_f32", as: UInt8.self)),
            ("bf16", Int32(I2Q_W_BF16), raw(f, "w_bf16", as: UInt8.self)),
            ("f16", Int32(I2Q_W_F16), raw(f, "w_f16", as: UInt8.self)),
        ]
        let wantCodes: [Int8] = raw(f, "x_codes", as: Int8.self)
        let wantScales: [Float] = raw(f, "x_scales", as: Float.self), wantSums: [Int32] = raw(f, "x_sums", as: Int32.self)
        XCTAssertEqual(QuantGemv.Int8.supported.first, .scalar)
        for impl in QuantGemv.Int8.supported {
            var codes = [Int8](repeating: 99, count: m * ld), scales = [Float](repeating: 0, count: m), sums = [Int32](repeating: 0, count: m)
            i2q_i8_quantize_rows(x, Int64(k), Int64(m), Int64(k), &codes, Int64(ld), &scales, &sums, impl.rawValue)
            XCTAssertEqual(codes, wantCodes, "codes, \(impl)")
            XCTAssertEqual(bits(scales), bits(wantScales), "scales, \(impl)")
            XCTAssertEqual(sums, wantSums, "sums, \(impl)")
            let pack = UnsafeMutableRawPointer.allocate(byteCount: i2q_igemm_pack_bytes(Int64(k), Int64(n)), alignment: 64)
            defer { pack.deallocate() }
            for (name, wtype, w) in weights {
                var y = [Float](repeating: .nan, count: m * n)
                w.withUnsafeBytes { wb in
                    i2q_igemm(codes, Int64(ld), scales, sums, wb.baseAddress!, wtype, Int64(k), &y, Int64(n), Int64(m), Int64(k), 0, Int64(n), 0, pack, impl.rawValue)
                }
                XCTAssertEqual(bits(y), bits(raw(f, "y_" + name, as: Float.self)), "y, \(name) weights, \(impl)")
            }
            var c: [Float] = raw(f, "c0", as: Float.self)
            weights[0].2.withUnsafeBytes { wb in
                i2q_igemm(codes, Int64(ld), scales, sums, wb.baseAddress!, Int32(I2Q_W_F32), Int64(k), &c, Int64(n), Int64(m), Int64(k), 0, Int64(n), 1, pack, impl.rawValue)
            }
            XCTAssertEqual(bits(c), bits(raw(f, "y_accumulate_f32", as: Float.self)), "accumulate, \(impl)")
        }
        // Int8Gemm.linear: x quantized on the pool, the columns split across threads — the same bits.
        let w32: [Float] = raw(f, "w_f32", as: Float.self)
        var y = [Float](repeating: 0, count: m * n)
        for impl in QuantGemv.Int8.supported {
            Int8Gemm.forced = impl
            defer { Int8Gemm.forced = nil }
            w32.withUnsafeBytes { wb in Int8Gemm.linear(x: x, w: wb.baseAddress!, dtype: .f32, y: &y, m: m, k: k, n: n, accumulate: false) }
            XCTAssertEqual(bits(y), bits(raw(f, "y_f32", as: Float.self)), "Int8Gemm.linear, \(impl)")
        }
    }

    /// Shapes beyond the fixture: several 2 MiB column blocks (k = 4100, n = 600), k % 4 ≠ 0, partial
    /// row tiles and panels, a column range starting mid-matrix. Every path gives the scalar path's bits.
    func testPathsAgreeAcrossBlocksAndTails() throws {
        var rng = SplitMix64(seed: 8)
        for (m, k, n, n0) in [(13, 4100, 600, 0), (25, 1153, 97, 32), (1, 7, 3, 0)] {
            let x = (0..<(m * k)).map { _ in Float(Double(rng.next() >> 11) / Double(1 << 53)) * 4 - 2 }
            let w = (0..<(n * k)).map { _ in Float(Double(rng.next() >> 11) / Double(1 << 53)) - 0.5 }
            let ld = (k + 3) & ~3
            var results: [[UInt32]] = []
            for impl in QuantGemv.Int8.supported {
                var codes = [Int8](repeating: 0, count: m * ld), scales = [Float](repeating: 0, count: m), sums = [Int32](repeating: 0, count: m)
                i2q_i8_quantize_rows(x, Int64(k), Int64(m), Int64(k), &codes, Int64(ld), &scales, &sums, impl.rawValue)
                let pack = UnsafeMutableRawPointer.allocate(byteCount: i2q_igemm_pack_bytes(Int64(k), Int64(n - n0)), alignment: 64)
                defer { pack.deallocate() }
                var y = [Float](repeating: 0, count: m * n)
                i2q_igemm(codes, Int64(ld), scales, sums, w, Int32(I2Q_W_F32), Int64(k), &y, Int64(n), Int64(m), Int64(k), Int64(n0), Int64(n), 0, pack, impl.rawValue)
                results.append(bits(y))
            }
            for (i, r) in results.enumerated().dropFirst() { XCTAssertEqual(r, results[0], "\(m)x\(k)x\(n) from \(n0): \(QuantGemv.Int8.supported[i]) vs scalar") }
        }
    }

    func testTinyIdefics2MatchesTransformersWithTheScheme() throws {
        let g = try SafetensorsFile(path: fixturesDir + "/golden/tiny-idefics2.safetensors")
        let want = try SafetensorsFile(path: fixturesDir + "/golden/tiny-idefics2-int8.safetensors")
        Int8Gemm.enabled = true
        defer { Int8Gemm.enabled = false }
        let model = try Idefics2Model(source: try openModel(fixturesDir + "/tiny-idefics2-v4"))
        let shape = g.info("pixel_values")!.shape  // [1, 1, 3, H, W]
        let pixels = floats(g, "pixel_values"), mask = ints(g, "pixel_attention_mask").map { $0 != 0 }
        let (hidden, patchMask) = try model.vision.encode(pixels: pixels, mask: mask, height: shape[3], width: shape[4])
        let feats = try model.connector(hidden, patchMask: patchMask)
        let ids = ints(g, "input_ids")
        let emb = try model.embeddings(ids: ids, images: [.init(pixels: pixels, mask: mask, height: shape[3], width: shape[4])])
        let cache = try model.text.makeCache(capacity: 64)
        let logits = try model.text.logits(try model.text.forward(embeddings: emb, cache: cache), rows: 0..<ids.count)
        // Bound: float32 summation order only (both sides multiply the same codes) — 1e-4·std as the
        // float32 golden; a code on a rounding boundary could tip and move a stage by ~d_x·d_w·|w|.
        for (name, got, bound) in [("vision_last_hidden_state", hidden, Float(1e-4)), ("image_hidden_states", feats, 1e-4), ("logits", logits, 1e-4)] {
            let ref = floats(want, name)
            XCTAssertEqual(got.count, ref.count, name)
            let d = maxDiff(got, ref), s = standardDeviation(ref)
            print("int8 activations, \(name): max|Δ| \(d) = \(d / s)·std")
            XCTAssertLessThanOrEqual(d, bound * s, name)
        }
        // …and the scheme is really on: the float32 golden is far away.
        let f32 = floats(g, "logits")
        XCTAssertGreaterThan(maxDiff(logits, f32), 1e-2 * standardDeviation(f32))
    }
}
