import Foundation
import I2QCore
import I2QFormats
import I2QTestSupport

/// Rebuilds the 2-layer idefics2-8b slice at real width that
/// scripts/fixtures/make_fullwidth_slice_golden.py generated its golden from: config and processor
/// files from the golden JSON, the tokenizer of Tests/Fixtures/tiny-idefics2-a, and every weight
/// from the counter-based hash the script documents (bit-identical to numpy's):
///
///     z = splitmix64_mix(seed &+ (e + 1) &* 0x9E3779B97F4A7C15)
///     j = (Int(z >> 56) − 128) >> shift
///     value = offset + Float(j) · 2^exp      (float32, exact in bf16; stored as bf16)
///
/// Returns, per tensor, the (Σj, Σj²) it generated, for the caller to check against the golden's.
enum FullWidthSlice {
    struct Spec {
        let name: String
        let shape: [Int]
        let seed: UInt64
        let exp, shift: Int
        let offset: Float
        let sumJ, sumJ2: Int
    }

    static func specs(_ golden: JSONValue) throws -> [Spec] {
        guard let ts = golden["tensors"]?.arrayValue else { throw ConfigError.invalid(path: "fullwidth-slice.json", detail: "no tensors") }
        return try ts.map { t in
            guard let name = t["name"]?.stringValue, let shape = t["shape"]?.arrayValue?.compactMap(\.intValue),
                  let seed = t["seed"]?.stringValue.flatMap({ UInt64($0) }), let exp = t["exp"]?.intValue,
                  let shift = t["shift"]?.intValue, let offset = t["offset"]?.doubleValue,
                  let sj = t["sum_j"]?.intValue, let sj2 = t["sum_j2"]?.intValue else {
                throw ConfigError.invalid(path: "fullwidth-slice.json", detail: "malformed tensor entry \(JSONWriter.string(t))")
            }
            return Spec(name: name, shape: shape, seed: seed, exp: exp, shift: shift, offset: Float(offset), sumJ: sj, sumJ2: sj2)
        }
    }

    @inline(__always) static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// bf16 bits of elements [first, first + n) of `s` into `out`; adds to Σj, Σj².
    static func generate(_ s: Spec, first: Int, n: Int, into out: UnsafeMutablePointer<UInt16>, sumJ: inout Int, sumJ2: inout Int) {
        let step = Float(sign: .plus, exponent: s.exp, significand: 1)
        var a = 0, b = 0
        for i in 0..<n {
            let z = mix(s.seed &+ UInt64(first + i + 1) &* 0x9E37_79B9_7F4A_7C15)
            let j = (Int(z >> 56) - 128) >> s.shift
            a += j; b += j * j
            out[i] = UInt16(truncatingIfNeeded: (s.offset + Float(j) * step).bitPattern >> 16)
        }
        sumJ += a; sumJ2 += b
    }

    /// Writes the slice into `dir`; returns each tensor's generated (Σj, Σj²).
    static func build(_ golden: JSONValue, into dir: String) throws -> [String: (Int, Int)] {
        for (key, file) in [("config", "config.json"), ("preprocessor", "preprocessor_config.json"), ("processor", "processor_config.json")] {
            guard let v = golden[key] else { throw ConfigError.invalid(path: "fullwidth-slice.json", detail: "no \(key)") }
            try JSONWriter.string(v, indent: 2).write(toFile: dir + "/" + file, atomically: true, encoding: .utf8)
        }
        for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"] {
            try FileManager.default.copyItem(atPath: fixturesDir + "/tiny-idefics2-a/" + f, toPath: dir + "/" + f)
        }
        let specs = try specs(golden)
        let writer = try SafetensorsWriter(directory: dir, tensors: specs.map { PlannedTensor(name: $0.name, dtype: .bf16, shape: $0.shape) },
                                           maxShardSize: Int.max)
        let chunk = 1 << 20
        let buf = UnsafeMutablePointer<UInt16>.allocate(capacity: chunk)  // [chunk] bf16 bits
        defer { buf.deallocate() }
        var sums: [String: (Int, Int)] = [:]
        for s in specs {
            let n = s.shape.reduce(1, *)
            var sj = 0, sj2 = 0
            try writer.begin(s.name)
            var e = 0
            while e < n {
                let m = min(chunk, n - e)
                generate(s, first: e, n: m, into: buf, sumJ: &sj, sumJ2: &sj2)
                try writer.append(UnsafeRawBufferPointer(start: buf, count: 2 * m))
                e += m
            }
            try writer.end()
            sums[s.name] = (sj, sj2)
        }
        try writer.finish()
        return sums
    }
}
