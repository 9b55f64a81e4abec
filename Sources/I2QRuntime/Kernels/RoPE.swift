import Foundation

/// Rotary position embedding, half-split layout (transformers' `rotate_half`: cat(-x2, x1)).
///
/// Reference: transformers 5.24 `LlamaRotaryEmbedding` (default rope type): inv_freq =
/// 1 / theta^(arange(0, d, 2) / d) in float32; freqs = position (float32) × inv_freq (float32
/// product); cos/sin of that float32 angle. Tolerance: the angle is the same float32 value; cos/sin
/// are computed in double and rounded (torch's float32 cos/sin are within 1 ulp).
public struct RoPE: Sendable {
    public let headDim: Int
    /// [headDim / 2]
    public let invFreq: [Float]

    public init(headDim: Int, theta: Double) {
        self.headDim = headDim
        invFreq = (0..<(headDim / 2)).map { i in
            let exponent = Float(2 * i) / Float(headDim)  // float32, as torch: arange(0,d,2).float() / d
            return 1 / Float(pow(theta, Double(exponent)))
        }
    }

    /// Rotates `heads` vectors of `headDim` (stride `headDim`) at position `pos`, in place.
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, pos: Int) {
        let half = headDim / 2
        var cosv = [Float](repeating: 0, count: half), sinv = [Float](repeating: 0, count: half)
        let p = Float(pos)
        for i in 0..<half {
            let angle = p * invFreq[i]
            cosv[i] = Float(cos(Double(angle)))
            sinv[i] = Float(sin(Double(angle)))
        }
        for h in 0..<heads {
            let v = x + h * headDim
            for i in 0..<half {
                let a = v[i], b = v[i + half]
                v[i] = a * cosv[i] - b * sinv[i]
                v[i + half] = b * cosv[i] + a * sinv[i]
            }
        }
    }
}
