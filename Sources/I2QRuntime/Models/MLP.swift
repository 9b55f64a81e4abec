import I2QFormats

/// SwiGLU MLP of Llama/Mistral: down(silu(gate(x)) · up(x)) (transformers `LlamaMLP`).
struct MLP {
    /// gate, up: one fused `gate_up_proj` product when the file holds it (FusedWeights.swift).
    let gateUp: ProjectionGroup
    let down: Weight
    let hidden, intermediate: Int
    var gate: Weight { gateUp.parts[0] }
    var up: Weight { gateUp.parts[1] }

    init(_ w: WeightLoader, prefix: String, config c: TextConfig) throws {
        hidden = c.hiddenSize; intermediate = c.intermediateSize
        gateUp = try w.group([prefix + "gate_proj.weight", prefix + "up_proj.weight"],
                             widths: [intermediate, intermediate], inDim: hidden, bias: false)
        down = try w.weight(prefix + "down_proj.weight", [hidden, intermediate])
    }

    /// x: [t, hidden] normalised; adds the MLP output into `residual` [t, hidden].
    func callAsFunction(_ x: UnsafePointer<Float>, t: Int, residual: UnsafeMutablePointer<Float>, ws: Workspace) throws {
        let g = ws.gate(t * intermediate), u = ws.up(t * intermediate)  // [t, intermediate] each
        try gateUp(x, m: t, outputs: [g, u], ws: ws)
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
    /// Output of a fused projection group before it is split: [rows, Σ part widths].
    func fused(_ n: Int) -> UnsafeMutablePointer<Float> { get("fused", n) }
    func normed(_ n: Int) -> UnsafeMutablePointer<Float> { get("normed", n) }
    func row(_ n: Int) -> UnsafeMutablePointer<Float> { get("row", n) }
    func stackedQ(_ n: Int) -> UnsafeMutablePointer<Float> { get("stackedQ", n) }
    func stackedOut(_ n: Int) -> UnsafeMutablePointer<Float> { get("stackedOut", n) }
}
