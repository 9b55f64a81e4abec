/// Per-decoder-layer error of a candidate against the base on the same inputs: the residual stream
/// after each layer (TextDecoder's `onLayer` hook, before the final norm) of both models, each
/// running on its own previous layers' outputs (so errors accumulate with depth, as in use).
///
///   rel_error            = ‖H_cand − H_base‖_F / ‖H_base‖_F over every position seen
///   mean_token_rel_error = mean over positions of ‖h_cand − h_base‖ / ‖h_base‖
///   max_token_rel_error  = the largest of those
/// Sums in double precision.
public struct LayerErrorAccumulator: Sendable {
    public let layers: Int
    var diff2: [Double]       // [layers] Σ‖Δ‖²
    var base2: [Double]       // [layers] Σ‖h_base‖²
    var tokenSum: [Double]    // [layers] Σ per-position relative error
    var tokenMax: [Double]    // [layers]
    public internal(set) var positions: [Int]  // [layers] positions seen

    public init(layers: Int) {
        self.layers = layers
        diff2 = Array(repeating: 0, count: layers); base2 = diff2; tokenSum = diff2; tokenMax = diff2
        positions = Array(repeating: 0, count: layers)
    }

    /// Adds `rows` positions of layer `layer`: `base`, `candidate`: [rows, width] f32.
    public mutating func add(layer: Int, base: UnsafePointer<Float>, candidate: UnsafePointer<Float>, rows: Int, width: Int) {
        for r in 0..<rows {
            var d2 = 0.0, b2 = 0.0
            let b = base + r * width, c = candidate + r * width
            for j in 0..<width {
                let bj = Double(b[j])
                let dj = Double(c[j]) - bj
                d2 += dj * dj; b2 += bj * bj
            }
            diff2[layer] += d2; base2[layer] += b2
            let rel = b2 > 0 ? (d2 / b2).squareRoot() : (d2 > 0 ? Double.infinity : 0)
            tokenSum[layer] += rel
            tokenMax[layer] = max(tokenMax[layer], rel)
        }
        positions[layer] += rows
    }

    /// Adds another accumulator's positions (`verify --merge`): the sums add, the maxima combine. Equal
    /// to accumulating both inputs in one to float rounding (the sums are added in another order).
    public mutating func merge(_ o: LayerErrorAccumulator) {
        precondition(o.layers == layers)
        for i in 0..<layers {
            diff2[i] += o.diff2[i]; base2[i] += o.base2[i]; tokenSum[i] += o.tokenSum[i]
            tokenMax[i] = max(tokenMax[i], o.tokenMax[i]); positions[i] += o.positions[i]
        }
    }

    public struct Layer: Sendable, Equatable {
        public let layer: Int
        public let relError: Double
        public let meanTokenRelError: Double
        public let maxTokenRelError: Double
    }

    public var result: [Layer] {
        (0..<layers).map { i in
            Layer(layer: i, relError: base2[i] > 0 ? (diff2[i] / base2[i]).squareRoot() : 0,
                  meanTokenRelError: positions[i] > 0 ? tokenSum[i] / Double(positions[i]) : 0,
                  maxTokenRelError: tokenMax[i])
        }
    }
}
