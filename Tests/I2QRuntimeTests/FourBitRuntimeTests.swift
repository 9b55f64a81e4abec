import XCTest
import I2QCore
import I2QFormats
import I2QQuant
import I2QTestSupport
import I2QPasses
@testable import I2QRuntime

/// `i2q quantize` into .i2q and the runtime on NF4/FP4 weights.
final class FourBitRuntimeTests: XCTestCase {
    func testQuantizedFileHoldsTheCodecOutputAndRuns() throws {
        let dir = try makeTempDir("nf4")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let src = try openModel(fixturesDir + "/tiny-llama")
        for type in [FourBitType.nf4, .fp4] {
            let out = dir + "/llama-\(type.rawValue).i2q"
            var o = QuantizeOptions()
            o.type = type
            var s = OutputSettings(); s.showProgress = false
            let r = try QuantizePass.run(source: src, output: out, options: o, settings: s)
            XCTAssertEqual(r.tensors.filter { $0.to == .u8 }.count, 14)  // 2 layers × 7 linear weights
            let f = try I2QFile(path: out)
            XCTAssertTrue(f.verifyAll().isEmpty)
            // The stored bytes are the codec's (bit-exact to bitsandbytes, I2QQuantTests).
            let name = "model.layers.1.mlp.down_proj.weight"
            let e = try XCTUnwrap(f.entries.first { $0.name == name })
            XCTAssertEqual(e.scheme, type.rawValue)
            let w = try XCTUnwrap(src.tensor(name))
            let x: [Float] = try w.withData { b in (0..<w.elementCount).map { b.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
            let q = FourBitCodec.quantize(x, type: type, blockSize: 64, doubleQuant: true)
            let packed = e.component("packed")!, codes = e.component("absmax")!
            XCTAssertEqual(f.file.copyBytes(f.header.dataOffset + packed.offset, packed.size), q.packed)
            XCTAssertEqual(f.file.copyBytes(f.header.dataOffset + codes.offset, codes.size), q.doubleQuant?.codes)
            // The runtime reads the weights as bnb's dequantize_4bit values.
            let dec = try TextDecoder(source: f)
            let g = try loadTextGolden(fixturesDir + "/tiny-llama/golden.safetensors")
            let logits = try dec.logits(try dec.forward(embeddings: try dec.embed(g.ids), cache: dec.makeCache(capacity: 32)), rows: 0..<g.ids.count)
            let rel = maxDiff(logits, g.logits) / standardDeviation(g.logits)
            print("\(type.rawValue): logits vs float32 transformers max|Δ|/std \(rel)")
            XCTAssertTrue(logits.allSatisfy(\.isFinite))
            let deq = FourBitCodec.dequantize(q)
            var row = [Float](repeating: 0, count: w.elementCount)
            try row.withUnsafeMutableBytes { try dec.layers[1].mlp.down.tensor.read(elements: 0, count: w.elementCount, into: $0.baseAddress!) }
            XCTAssertEqual(row, deq)
        }
    }
}
