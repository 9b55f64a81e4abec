import Foundation

/// Element-wise kernels of the Llama/Mistral decoder, float32.
public enum Kernels {
    /// RMSNorm as transformers' LlamaRMSNorm / MistralRMSNorm: y = w · (x · rsqrt(mean(x²) + eps)),
    /// in float32. x, y: [rows, n]; w: [n]. Matches to float32 rounding (the sum order differs: ≤ 1e-6 rel.).
    public static func rmsNorm(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                               rows: Int, n: Int, eps: Float) {
        for r in 0..<rows {
            let xr = x + r * n, yr = y + r * n
            var ss: Float = 0
            for i in 0..<n { ss += xr[i] * xr[i] }
            let inv = 1 / (ss / Float(n) + eps).squareRoot()
            for i in 0..<n { yr[i] = w[i] * (xr[i] * inv) }
        }
    }

    /// out = silu(gate) * up, element-wise over `n` values (transformers' `act_fn(gate_proj(x)) * up_proj(x)`,
    /// silu(x) = x · sigmoid(x)).
    public static func siluMul(_ gate: UnsafePointer<Float>, _ up: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, n: Int) {
        for i in 0..<n {
            let g = gate[i]
            out[i] = g / (1 + expf(-g)) * up[i]
        }
    }

    /// y += x over `n` values.
    public static func add(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, n: Int) {
        for i in 0..<n { y[i] += x[i] }
    }

    /// In-place softmax over `n` values (max-subtracted, float32, as torch.softmax).
    public static func softmax(_ x: UnsafeMutablePointer<Float>, n: Int) {
        var m = -Float.infinity
        for i in 0..<n { m = max(m, x[i]) }
        var s: Float = 0
        for i in 0..<n { let e = expf(x[i] - m); x[i] = e; s += e }
        let inv = 1 / s
        for i in 0..<n { x[i] *= inv }
    }
}
