import I2QFormats

/// SwiGLU MLP of Llama/Mistral: down(silu(gate(x)) · up(x)) (transformers `LlamaMLP`).
struct MLP {
    let gate, up, down: Weight
    let hidden, intermediate: Int

    init(_ w: WeightLoader, prefix: String, config c: TextConfig) throws {
        hidden = c.hiddenSize; intermediate = c.intermediateSize
        gate = try w.weight(prefix + "gate_proj.weight", [intermediate, hidden])
        up = try w.weight(prefix + "up_proj.weight", [intermediate, hidden])
        down = try w.weight(prefix + "down_proj.weight", [hidden, intermediate])
    }

    /// x: [t, hidden] normalised; adds the MLP output into `residual` [t, hidden].
    func callAsFunction(_ x: UnsafePointer<Float>, t: Int, residual: UnsafeMutablePointer<Float>, ws: Workspace) throws {
        let g = ws.gate(t * intermediate), u = ws.up(t * intermediate)  // [t, intermediate] each
        if t == 1, let gd = gate.direct, let ud = up.direct {
            Gemv.runMany([(gd, g, intermediate), (ud, u, intermediate)], x: x, k: hidden)  // one dispatch
        } else {
            try gate.linear(x: x, y: g, m: t, scratch: ws.scratch)
            try up.linear(x: x, y: u, m: t, scratch: ws.scratch)
        }
        Kernels.siluMul(g, u, g, n: t * intermediate)
        try down.linear(x: g, y: residual, m: t, accumulate: true, scratch: ws.scratch)
    }
}

/// Per-forward buffers, grown as needed and reused across layers and calls.
final class Workspace: @unchecked Sendable {
    let scratch = Scratch()
    private var buffers: [String: (UnsafeMutablePointer<Float>, Int)] = [:]

    deinit { for (_, b) in buffers { b.0.deallocate() } }

    private func get(_ key: String, _ n: Int) -> UnsafeMutablePointer<Float> {
        if let b = buffers[key], b.1 >= n { return b.0 }
        buffers[key]?.0.deallocate()
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
        buffers[key] = (p, n)
        return p
    }

    func q(_ n: Int) -> UnsafeMutablePointer<Float> { get("q", n) }
    func scores(_ n: Int) -> UnsafeMutablePointer<Float> { get("scores", n) }
    func attn(_ n: Int) -> UnsafeMutablePointer<Float> { get("attn", n) }
    func gate(_ n: Int) -> UnsafeMutablePointer<Float> { get("gate", n) }
    func up(_ n: Int) -> UnsafeMutablePointer<Float> { get("up", n) }
    func normed(_ n: Int) -> UnsafeMutablePointer<Float> { get("normed", n) }
    func row(_ n: Int) -> UnsafeMutablePointer<Float> { get("row", n) }
    func stackedQ(_ n: Int) -> UnsafeMutablePointer<Float> { get("stackedQ", n) }
    func stackedOut(_ n: Int) -> UnsafeMutablePointer<Float> { get("stackedOut", n) }
}
