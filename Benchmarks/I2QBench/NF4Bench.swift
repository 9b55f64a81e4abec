import Foundation
import I2QCore
import I2QFormats
import I2QQuant

/// `i2q-bench nf4 MODEL NAME...`: the NF4 codec alone (blockwise absmax + nearest code + packing,
/// then double quantization of absmax), one thread, on named tensors of MODEL widened to float32 in
/// memory first — the same work bitsandbytes' `quantize_4bit(..., compress_statistics=True)` does
/// (Benchmarks/bnb_quantize_speed.py times that on the same tensors). Best of 3 per tensor.
func runNF4Bench(_ args: [String]) throws {
    let source = try openModel(args[0])
    var totalElements = 0
    var totalSeconds = 0.0
    for name in args.dropFirst() {
        guard let t = source.tensor(name) else { throw IOError.notFound(path: "\(args[0]): tensor \(name)") }
        let n = t.elementCount
        let raw = UnsafeMutableRawPointer.allocate(byteCount: n * t.dtype.size, alignment: 64)  // [n] source dtype
        let x = UnsafeMutablePointer<Float>.allocate(capacity: n)                                // [n] float32
        let packed = UnsafeMutablePointer<UInt8>.allocate(capacity: (n + 1) / 2)                 // [ceil(n/2)] codes
        var absmax = [Float](repeating: 0, count: FourBitCodec.blockCount(count: n, blockSize: 64))  // [blocks]
        defer { raw.deallocate(); x.deallocate(); packed.deallocate() }
        try t.read(elements: 0, count: n, into: raw)
        FloatConversion.widenToF32(from: t.dtype, count: n, src: raw, dst: x)
        var best = Double.infinity
        for _ in 0..<3 {
            let start = DispatchTime.now().uptimeNanoseconds
            absmax.withUnsafeMutableBufferPointer { a in
                FourBitCodec.quantizeBlocks(UnsafeBufferPointer(start: x, count: n), type: .nf4, blockSize: 64, packed: packed, absmax: a.baseAddress!)
            }
            let dq = DoubleQuant.compress(absmax)
            let s = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            precondition(dq.codes.count == absmax.count)
            best = min(best, s)
        }
        totalElements += n
        totalSeconds += best
        print("\(name) \(t.shape): \(formatFixed(best * 1000, 1)) ms, \(formatFixed(Double(n) / best / 1e6, 0)) M elements/s")
    }
    print("nf4 codec (i2q, 1 thread): \(totalElements) elements in \(formatFixed(totalSeconds, 3)) s = \(formatFixed(Double(totalElements) / totalSeconds / 1e6, 0)) M elements/s")
}
