import Foundation
import I2QFormats

/// Rotary position embedding, half-split layout (transformers' `rotate_half`: cat(-x2, x1)).
///
/// Reference: transformers 5.24 `LlamaRotaryEmbedding` (default rope type): inv_freq =
/// 1 / theta^(arange(0, d, 2) / d) in float32; freqs = position (float32) × inv_freq (float32
/// product); cos/sin of that float32 angle. Tolerance: the angle is the same float32 value; cos/sin
/// are computed in double and rounded (torch's float32 cos/sin are within 1 ulp).
public struct RoPE: Sendable {
    public let headDim: Int
    /// [headDim / 2]
    public private(set) var invFreq: [Float]

    public init(headDim: Int, theta: Double) {
        self.headDim = headDim
        invFreq = RopeParameters.inverseFrequencies(headDim: headDim, theta: theta)
    }

    /// The rope of a decoder config: the default one, or with `llama3` scaling (Llama 3.1/3.2,
    /// Idefics3-8B): transformers 5.24 `_compute_llama3_parameters` in float32 — wavelen = 2π/inv_freq,
    /// inv_freq/factor beyond original/low_freq_factor, a smooth blend between original/high and
    /// original/low (((1 − s)·f)/factor + s·f, s = (original/wavelen − low)/(high − low)), attention
    /// factor 1. Other rope types run as the default (a pre-existing limitation).
    public init(headDim: Int, parameters r: RopeParameters) {
        self.init(headDim: headDim, theta: r.theta)
        guard r.ropeType == "llama3", let factor = r.factor, let low = r.lowFreqFactor, let high = r.highFreqFactor,
              let old = r.originalMaxPositionEmbeddings else { return }
        // python-float scalars meet float32 tensors: each scalar is rounded to float32 first
        let f = Float(factor), lo = Float(low), range = Float(high - low), oldLen = Float(old)
        let lowWavelen = Float(Double(old) / low), highWavelen = Float(Double(old) / high)
        invFreq = invFreq.map { inv in
            let wavelen = Float(2 * Double.pi) / inv
            var v = wavelen > lowWavelen ? inv / f : inv
            let smooth = (oldLen / wavelen - lo) / range
            let smoothed = (1 - smooth) * v / f + smooth * v
            let medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen)
            if medium { v = smoothed }
            return v
        }
    }

    /// cos/sin of positions start..<start+count, computed once per forward and shared by every layer.
    public struct Angles: Sendable {
        public let start: Int
        /// [count, headDim / 2] each
        let cos: [Float], sin: [Float]
    }

    /// The angles of positions start..<start+count (each as `apply` computes it).
    public func angles(start: Int, count: Int) -> Angles {
        let half = headDim / 2
        var c = [Float](repeating: 0, count: count * half), s = [Float](repeating: 0, count: count * half)
        for r in 0..<count {
            let p = Float(start + r)
            for i in 0..<half {
                let angle = p * invFreq[i]
                c[r * half + i] = Float(Foundation.cos(Double(angle)))
                s[r * half + i] = Float(Foundation.sin(Double(angle)))
            }
        }
        return Angles(start: start, cos: c, sin: s)
    }

    /// Rotates a query row (`heads` heads) and its key row (`yHeads` heads; y nil: none) at position
    /// `pos`, with the position's precomputed cos/sin (`angles` covers pos).
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, and y: UnsafeMutablePointer<Float>?, heads yHeads: Int,
                      pos: Int, angles: Angles) {
        let half = headDim / 2, o = (pos - angles.start) * half
        angles.cos.withUnsafeBufferPointer { c in
            angles.sin.withUnsafeBufferPointer { s in
                rotate(x, heads: heads, c.baseAddress! + o, s.baseAddress! + o)
                if let y { rotate(y, heads: yHeads, c.baseAddress! + o, s.baseAddress! + o) }
            }
        }
    }

    /// Rotates `heads` vectors of `headDim` (stride `headDim`) at position `pos`, in place.
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, pos: Int) {
        apply(x, heads: heads, and: nil, heads: 0, pos: pos)
    }

    /// Rotates `heads` heads of x and `yHeads` heads of y (a query row and its key row) at one
    /// position, with one evaluation of the position's cos/sin.
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, and y: UnsafeMutablePointer<Float>?, heads yHeads: Int, pos: Int) {
        apply(x, heads: heads, and: y, heads: yHeads, pos: pos, angles: angles(start: pos, count: 1))
    }

    private func rotate(_ x: UnsafeMutablePointer<Float>, heads: Int, _ cosv: UnsafePointer<Float>, _ sinv: UnsafePointer<Float>) {
        let half = headDim / 2
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
