import Foundation

/// AWQ's scale groups as data, per architecture (as mlx-lm's awq.py `AWQConfig`: previous op → the
/// linears it feeds): a per-input-channel scale s divides the previous op's output (a norm's weight,
/// or a linear's output rows) and multiplies the group's linears' input columns, leaving the layer's
/// function unchanged; AWQ searches s to minimise the error of `loss`'s output after quantization.
public struct AWQScaleGroup: Sendable, Equatable {
    /// What the scale is divided into.
    public enum Previous: Sendable, Equatable {
        /// A norm's weight: "input_layernorm" / "post_attention_layernorm".
        case norm(String)
        /// A linear's output rows (and its bias): "v", "up".
        case linear(String)
    }
    /// Whose output the search loss compares (AutoAWQ's `module2inspect`).
    public enum Loss: Sendable, Equatable {
        case attention  // self_attn (q/k/v through attention and o_proj)
        case linears    // the group's own linears
        case mlp        // the whole MLP (gate/up → act → down)
    }
    /// The state file's key ("qkv", "vo", "gateup", "updown").
    public let name: String
    public let previous: Previous
    /// Short names of the scaled linears (q, k, v, o, gate, up, down).
    public let linears: [String]
    public let loss: Loss
    /// Only when the previous linear's output width equals the group's input width (AutoAWQ: "v_proj
    /// and o_proj shapes match", i.e. no GQA).
    public let needsMatchingShapes: Bool

    public init(name: String, previous: Previous, linears: [String], loss: Loss, needsMatchingShapes: Bool = false) {
        self.name = name; self.previous = previous; self.linears = linears; self.loss = loss
        self.needsMatchingShapes = needsMatchingShapes
    }

    /// The Llama/Mistral decoder layer (AutoAWQ LlamaAWQForCausalLM.get_layers_for_scaling; mlx-lm
    /// awq.py's llama config), in application order.
    public static let llamaDecoder: [AWQScaleGroup] = [
        AWQScaleGroup(name: "qkv", previous: .norm("input_layernorm"), linears: ["q", "k", "v"], loss: .attention),
        AWQScaleGroup(name: "vo", previous: .linear("v"), linears: ["o"], loss: .linears, needsMatchingShapes: true),
        AWQScaleGroup(name: "gateup", previous: .norm("post_attention_layernorm"), linears: ["gate", "up"], loss: .mlp),
        AWQScaleGroup(name: "updown", previous: .linear("up"), linears: ["down"], loss: .linears),
    ]
}
