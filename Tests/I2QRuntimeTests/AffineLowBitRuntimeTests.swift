import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QQuant
import I2QTestSupport
@testable import I2QRuntime

/// The runtime on `affine_int3` / `affine_int2` entries: Tests/Fixtures/int4/tiny-llama-lowbit.safetensors
/// (scripts/fixtures/make_lowbit_fixtures.py) holds tiny-llama's decoder linears quantized in torch
/// (layer 0 int3 g16, layer 1 int2 g32: codes packed by numpy, f16 scales, zeros), their w_hat, and
/// transformers' float32 logits with those w_hat as weights. Tolerances as the int4 / ggml runtime tests:
/// prefill vs transformers ≤ 1e-4·std(logits), decode (m = 1, the row-dequantize GEMV) vs prefill ≤ 1e-5·std.
final class AffineLowBitRuntimeTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try makeTempDir("lowbitrt") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    static let fixture = fixturesDir + "/int4/tiny-llama-lowbit.safetensors"

    /// Tensor name → Int from the fixture's JSON metadata `key`.
    func metaInts(_ f: SafetensorsFile, _ key: String) throws -> [String: Int] {
        let js = try XCTUnwrap(f.metadata.first { $0.0 == key }?.1)
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(js.utf8)) as? [String: Int])
        return obj
    }

    /// tiny-llama with the fixture's linears as affine_int3/2 entries (the fixture's bytes), the rest plain.
    func writeModel(to out: String) throws -> (bits: [String: Int], groups: [String: Int]) {
        let fx = try SafetensorsFile(path: Self.fixture)
        let bits = try metaInts(fx, "bits"), groups = try metaInts(fx, "group_size")
        let model = fixturesDir + "/tiny-llama"
        let source = try openModel(model)
        let w = try I2QWriter(path: out)
        for t in source.tensors {
            if let b = bits[t.name], let g = groups[t.name] {
                let (rows, cols) = (t.shape[0], t.shape[1])
                try w.beginTensor(name: t.name, scheme: AffineInt4Layout.scheme(bits: b), dtype: .f32, shape: t.shape,
                                  params: AffineInt4Layout.params(groupSize: g))
                for (role, suffix, dtype, shape) in [("qweight", "packed", DType.u8, [rows, cols * b / 8]), ("scales", "scales", .f16, [rows, cols / g]),
                                                     ("zeros", "zeros", .u8, [rows, cols / g])] {
                    try w.beginComponent(role: role, dtype: dtype, shape: shape)
                    try fx.withData(fx.info(t.name + "." + suffix)!) { try w.append(UnsafeRawBufferPointer($0)) }
                    try w.endComponent()
                }
                try w.endTensor()
            } else {
                var raw = [UInt8](repeating: 0, count: t.byteCount)
                try raw.withUnsafeMutableBytes { try t.read(elements: 0, count: t.elementCount, into: $0.baseAddress!) }
                try raw.withUnsafeBytes { try w.writePlain(name: t.name, dtype: t.dtype, shape: t.shape, $0) }
            }
        }
        let config = try Array(Data(contentsOf: URL(fileURLWithPath: model + "/config.json")))
        try w.finish(metadata: I2QMetadata(files: [("config.json", config)], provenance: Provenance(source: .null, passes: [])))
        return (bits, groups)
    }

    func testTinyLlamaInt3Int2ValuesAndLogitsMatchTransformers() throws {
        let path = dir + "/lowbit.i2q"
        let (bits, _) = try writeModel(to: path)
        XCTAssertEqual(Set(bits.values), [2, 3])
        XCTAssertEqual(bits.count, 14)
        let f = try I2QFile(path: path)
        XCTAssertTrue(f.verifyAll().isEmpty)
        let ref = try f32Tensors(Self.fixture)
        // Every weight reads back as torch's w_hat, bit for bit (whole tensor, and a range across rows/groups).
        for e in f.entries where AffineInt4Layout.schemes.contains(e.scheme) {
            XCTAssertEqual(AffineInt4Layout.bits(scheme: e.scheme), bits[e.name])
            let t = try FourBitWeight.sourceTensor(e, file: f)
            var v = [Float](repeating: .nan, count: t.elementCount)
            try v.withUnsafeMutableBytes { try t.read(elements: 0, count: t.elementCount, into: $0.baseAddress!) }
            let want = try XCTUnwrap(ref[e.name + ".w_hat"])
            XCTAssertEqual(v.map(\.bitPattern), want.map(\.bitPattern), e.name)
            var part = [Float](repeating: .nan, count: 50)
            try part.withUnsafeMutableBytes { try t.read(elements: 13, count: 50, into: $0.baseAddress!) }
            XCTAssertEqual(part.map(\.bitPattern), want[13..<63].map(\.bitPattern), e.name)
        }
        let d = try TextDecoder(source: f)
        let down = try XCTUnwrap(d.layers[0].mlp.down.packed)
        XCTAssertEqual(down.bits, 3)
        XCTAssertFalse(down.fastRows)
        XCTAssertEqual(try XCTUnwrap(d.layers[1].mlp.down.packed).bits, 2)

        let ids = try i64Tensor(Self.fixture, "input_ids"), logits = try XCTUnwrap(ref["logits"])
        let pre = try d.logits(try d.forward(embeddings: try d.embed(ids), cache: d.makeCache(capacity: 64)), rows: 0..<ids.count)
        let cache = try d.makeCache(capacity: 64)
        var dec: [Float] = []
        for id in ids { dec += try d.logits(try d.forward(embeddings: try d.embed([id]), cache: cache), rows: 0..<1) }
        let std = standardDeviation(logits)
        print("tiny-llama int3/int2: prefill vs transformers max|Δ|/std \(maxDiff(pre, logits) / std), decode vs prefill \(maxDiff(dec, pre) / std)")
        XCTAssertEqual(pre.count, logits.count)
        XCTAssertLessThanOrEqual(maxDiff(pre, logits), 1e-4 * std)
        XCTAssertLessThanOrEqual(maxDiff(dec, pre), 1e-5 * std)
    }

    /// A stored zero point above 2^bits − 1 is refused, naming the tensor.
    func testZeroPointOutOfRangeIsRefused() throws {
        let fx = try SafetensorsFile(path: Self.fixture)
        let name = "model.layers.1.mlp.down_proj.weight"  // int2 g32, [32, 64]
        let w = try I2QWriter(path: dir + "/bad.i2q")
        try w.beginTensor(name: name, scheme: AffineInt4Layout.scheme(bits: 2), dtype: .f32, shape: [32, 64],
                          params: AffineInt4Layout.params(groupSize: 32))
        try w.beginComponent(role: "qweight", dtype: .u8, shape: [32, 16])
        try fx.withData(fx.info(name + ".packed")!) { try w.append(UnsafeRawBufferPointer($0)) }
        try w.endComponent()
        try w.beginComponent(role: "scales", dtype: .f16, shape: [32, 2])
        try fx.withData(fx.info(name + ".scales")!) { try w.append(UnsafeRawBufferPointer($0)) }
        try w.endComponent()
        try w.beginComponent(role: "zeros", dtype: .u8, shape: [32, 2])
        try [UInt8](repeating: 4, count: 64).withUnsafeBytes { try w.append($0) }
        try w.endComponent()
        try w.endTensor()
        let config = try Array(Data(contentsOf: URL(fileURLWithPath: fixturesDir + "/tiny-llama/config.json")))
        try w.finish(metadata: I2QMetadata(files: [("config.json", config)], provenance: Provenance(source: .null, passes: [])))
        let f = try I2QFile(path: dir + "/bad.i2q")
        assertThrowsMentioning([name, "outside 0…3"]) { _ = try FourBitWeight.packed(f.entries[0], file: f) }
    }
}
