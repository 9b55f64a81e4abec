import I2QCore

/// llama-quantize's file types (`enum llama_ftype`) that i2q writes, by llama.cpp's names.
public enum LlamaFileType: String, CaseIterable, Sendable {
    case q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k

    /// `general.file_type` (LLAMA_FTYPE_MOSTLY_*).
    public var ftype: UInt32 {
        switch self {
        case .q4_0: return 2
        case .q4_1: return 3
        case .q8_0: return 7
        case .q5_0: return 8
        case .q5_1: return 9
        case .q2_k: return 10
        case .q3_k_s: return 11
        case .q3_k_m: return 12
        case .q3_k_l: return 13
        case .q4_k_s: return 14
        case .q4_k_m: return 15
        case .q5_k_s: return 16
        case .q5_k_m: return 17
        case .q6_k: return 18
        }
    }

    /// `llama_ftype_get_default_type`.
    public var defaultType: GGMLType {
        switch self {
        case .q4_0: return .q4_0
        case .q4_1: return .q4_1
        case .q5_0: return .q5_0
        case .q5_1: return .q5_1
        case .q8_0: return .q8_0
        case .q2_k: return .q2_K
        case .q3_k_s, .q3_k_m, .q3_k_l: return .q3_K
        case .q4_k_s, .q4_k_m: return .q4_K
        case .q5_k_s, .q5_k_m: return .q5_K
        case .q6_k: return .q6_K
        }
    }

    /// The per-tensor bumps of `llama_tensor_get_type_impl` for this file type (llama/mistral
    /// decoders: no experts, not Falcon), as data. The output / tied-embedding rule and the 70B
    /// attn_v rule apply to every type and live in `LlamaQuantRecipe`. Bumps of a category apply in
    /// order, the last that hits winning (llama.cpp's if/else chains written as "base, then override").
    var bumps: [LlamaQuantRecipe.Bump] {
        switch self {
        // Q2_K: attn_v Q3_K (Q4_K when n_head / n_head_kv ≥ 4), ffn_down and attn_output Q3_K.
        case .q2_k: return [.init(.attnV, .always, .q3_K), .init(.attnV, .gqaAtLeast(4), .q4_K),
                            .init(.ffnDown, .always, .q3_K), .init(.attnOutput, .always, .q3_K)]
        case .q3_k_s: return []
        // Q3_K_M: attn_v Q5_K for the first two, else Q4_K; ffn_down Q5_K for the first n/16 layers,
        // else Q4_K (llama.cpp's `arch != FALCON || use_more_bits` is always true for llama); attn_output Q4_K.
        case .q3_k_m: return [.init(.attnV, .always, .q4_K), .init(.attnV, .firstN(2), .q5_K),
                              .init(.ffnDown, .always, .q4_K), .init(.ffnDown, .firstSixteenth, .q5_K),
                              .init(.attnOutput, .always, .q4_K)]
        case .q3_k_l: return [.init(.attnV, .always, .q5_K), .init(.ffnDown, .always, .q5_K), .init(.attnOutput, .always, .q5_K)]
        case .q4_k_m, .q5_k_m: return [.init(.attnV, .useMoreBits, .q6_K), .init(.ffnDown, .useMoreBits, .q6_K)]
        case .q4_k_s: return [.init(.attnV, .firstN(4), .q5_K), .init(.ffnDown, .firstEighth, .q5_K)]
        case .q4_0: return [.init(.ffnDown, .firstEighthWithImatrix, .q4_1)]
        case .q5_0: return [.init(.ffnDown, .firstEighthWithImatrix, .q5_1)]
        case .q4_1, .q5_1, .q8_0, .q5_k_s, .q6_k: return []
        }
    }
}

/// `--tensor-type REGEX=TYPE` (llama-quantize): tensors whose name the regular expression matches
/// (searched anywhere in the name, after lowercasing the pattern as llama-quantize does) get TYPE,
/// the first matching override winning; the file type's own rules are then skipped for that tensor,
/// but the width fallback still applies.
public struct TensorTypeOverride: @unchecked Sendable {
    public let pattern: String
    public let type: GGMLType
    let regex: Regex<AnyRegexOutput>

    public init(parsing arg: String) throws {
        guard let eq = arg.firstIndex(of: "=") else { throw LlamaQuantRecipeError.badOverride(arg, "expected REGEX=TYPE, e.g. attn_v=q8_0") }
        let p = String(arg[..<eq]).lowercased(), t = String(arg[arg.index(after: eq)...])
        guard !p.isEmpty else { throw LlamaQuantRecipeError.badOverride(arg, "the tensor-name pattern before '=' is empty") }
        guard !t.isEmpty else { throw LlamaQuantRecipeError.badOverride(arg, "the type after '=' is empty") }
        let allowed = [GGMLType.f32, .f16, .bf16] + GGMLQuantize.blockTypes
        guard let ty = allowed.first(where: { $0.name.lowercased() == t.lowercased() }) else {
            throw LlamaQuantRecipeError.badOverride(arg, "type \"\(t)\" is not one i2q writes (\(allowed.map(\.name).joined(separator: ", ")))")
        }
        do { regex = try Regex(p) } catch {
            throw LlamaQuantRecipeError.badOverride(arg, "\"\(p)\" is not a valid regular expression (\(error))")
        }
        pattern = p
        type = ty
    }

    /// Deliberate try?: a regex compiled from a pattern string has no custom components, so matching cannot throw.
    func matches(_ name: String) -> Bool { (try? regex.firstMatch(in: name)) != nil }
}

public enum LlamaQuantRecipeError: I2QError, Equatable {
    case badOverride(String, String)
    /// llama.cpp's "no tensor type fallback is defined for type X": rows not a multiple of 32.
    case noFallback(tensor: String, columns: Int, type: String)

    public var description: String {
        switch self {
        case let .badOverride(a, why): return "--tensor-type \"\(a)\": \(why)."
        case let .noFallback(t, n, ty):
            return "tensor \(t) has rows of \(n) values, which \(ty) (blocks of 32) cannot store and llama.cpp has no fallback for; export with --type f16/bf16, or give it another type with --tensor-type '\(t)=f16'."
        }
    }
}

/// llama-quantize's choice of each tensor's type (`llama_tensor_get_type` in src/llama-quant.cpp of
/// the llama.cpp bundled with llama-cpp-python 0.3.36), for llama-architecture GGUFs. Tensors are
/// visited in llama.cpp's order (non-block tensors, then block by block, names sorted within each),
/// since the attn_v counter depends on it.
public struct LlamaQuantRecipe {
    /// Model facts the rules read (llama.cpp hparams).
    public struct Model: Sendable {
        public var layers: Int
        public var heads: Int
        public var kvHeads: Int
        public init(layers: Int, heads: Int, kvHeads: Int) { self.layers = layers; self.heads = heads; self.kvHeads = kvHeads }
        /// llama.cpp's LLM_TYPE_70B: a llama with 80 layers and grouped-query attention.
        var is70B: Bool { layers == 80 && heads != kvHeads }
    }

    /// One tensor: its GGUF name, ne0 (elements per row) and number of dimensions (ggml_n_dims).
    public struct Tensor: Sendable {
        public var name: String
        public var columns: Int
        public var dims: Int
        public init(name: String, columns: Int, dims: Int) { self.name = name; self.columns = columns; self.dims = dims }
    }

    /// What llama-quantize decides for a tensor and what it prints about it.
    public struct Choice: Sendable, Equatable {
        public var type: GGMLType?  // nil: not quantized (kept in the source type)
        public var note: String?
    }

    enum Category { case tokenEmbd, attnV, attnK, attnQ, attnOutput, ffnUp, ffnGate, ffnDown, output, other }
    enum When { case always, useMoreBits, firstN(Int), firstEighth, firstSixteenth, firstEighthWithImatrix, gqaAtLeast(Int) }
    struct Bump {
        let category: Category, when: When, to: GGMLType
        init(_ c: Category, _ w: When, _ t: GGMLType) { category = c; when = w; to = t }
    }

    public let fileType: LlamaFileType
    public let model: Model
    public let overrides: [TensorTypeOverride]
    public let hasImatrix: Bool

    public init(fileType: LlamaFileType, model: Model, overrides: [TensorTypeOverride] = [], hasImatrix: Bool = false) {
        self.fileType = fileType; self.model = model; self.overrides = overrides; self.hasImatrix = hasImatrix
    }

    /// `tensor_get_category` (substring tests, in llama.cpp's order).
    static func category(_ n: String) -> Category {
        if n == "output.weight" { return .output }
        if n == "token_embd.weight" || n == "per_layer_token_embd.weight" { return .tokenEmbd }
        if n.contains("attn_qkv.weight") || n.contains("attn_kv_b.weight") || n.contains("attn_v.weight") { return .attnV }
        if n.contains("attn_k.weight") { return .attnK }
        if n.contains("attn_q.weight") { return .attnQ }
        if n.contains("attn_output.weight") { return .attnOutput }
        if n.contains("ffn_up") { return .ffnUp }
        if n.contains("ffn_gate") { return .ffnGate }
        if n.contains("ffn_down") { return .ffnDown }
        return .other
    }

    /// `tensor_allows_quantization` for the names a llama GGUF holds: ≥ 2-D, ends in "weight", not a
    /// norm (the remaining exclusions name tensors of other architectures).
    static func allowsQuantization(_ t: Tensor) -> Bool {
        t.dims >= 2 && t.name.hasSuffix("weight") && !t.name.contains("_norm.weight") && !t.name.contains("ffn_gate_inp.weight")
    }

    /// llama-model-loader's weight_name_comparer: layer number (-1 for non-block tensors), then name.
    static func loaderOrder(_ a: String, _ b: String) -> Bool {
        func layer(_ s: String) -> Int {
            guard s.hasPrefix("blk.") else { return -1 }
            return Int(s.dropFirst(4).prefix { $0.isNumber }) ?? -1
        }
        let (la, lb) = (layer(a), layer(b))
        return la != lb ? la < lb : Array(a.utf8).lexicographicallyPrecedes(Array(b.utf8))
    }

    /// Each tensor's type, keyed by name. Throws where llama.cpp has no fallback for a width.
    public func choose(_ tensors: [Tensor]) throws -> [String: Choice] {
        let nAttnV = tensors.filter { Self.category($0.name) == .attnV }.count
        let tied = !tensors.contains { $0.name == "output.weight" }
        var iAttnV = 0, iFfnDown = 0
        var out: [String: Choice] = [:]
        for t in tensors.sorted(by: { Self.loaderOrder($0.name, $1.name) }) {
            guard Self.allowsQuantization(t) else { out[t.name] = Choice(type: nil, note: nil); continue }
            var type = fileType.defaultType
            var note: String? = nil
            if let o = overrides.first(where: { $0.matches(t.name) }) {
                if o.type != type { note = "manual override: \(type.name) -> \(o.type.name)" }
                type = o.type
            } else {
                type = rules(t, type, tied: tied, iAttnV: &iAttnV, nAttnV: nAttnV, iFfnDown: &iFfnDown)
            }
            let (final, fallbackNote) = try fallback(t, type)
            if let fallbackNote { note = [note, fallbackNote].compactMap { $0 }.joined(separator: "; ") }
            out[t.name] = Choice(type: final, note: note)
        }
        return out
    }

    /// `llama_tensor_get_type_impl` for the file types of LlamaFileType.
    func rules(_ t: Tensor, _ start: GGMLType, tied: Bool, iAttnV: inout Int, nAttnV: Int, iFfnDown: inout Int) -> GGMLType {
        var type = start
        let cat = Self.category(t.name)
        func useMoreBits(_ i: Int, _ n: Int) -> Bool { i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2 }
        func bump(_ c: Category, _ i: Int, _ n: Int) {
            for b in fileType.bumps where b.category == c {
                let hit: Bool
                switch b.when {
                case .always: hit = true
                case let .gqaAtLeast(g): hit = model.kvHeads > 0 && model.heads / model.kvHeads >= g
                case .firstSixteenth: hit = i < n / 16
                case .useMoreBits: hit = useMoreBits(i, n)
                case let .firstN(k): hit = i < k
                case .firstEighth: hit = i < n / 8
                case .firstEighthWithImatrix: hit = hasImatrix && i < n / 8
                }
                if hit { type = b.to }
            }
        }
        if cat == .output || (tied && cat == .tokenEmbd) {
            // The output matrix (or the embedding that doubles as it): Q6_K, or Q8_0 when its rows do
            // not split into the file type's blocks.
            if t.columns % type.blockSize != 0 { type = .q8_0 } else if type != .q8_0 { type = .q6_K }
        } else if cat == .attnV {
            bump(.attnV, iAttnV, nAttnV)
            if model.is70B && (type == .q3_K || type == .q4_K) { type = .q5_K }
            iAttnV += 1
        } else if cat == .ffnDown {
            bump(.ffnDown, iFfnDown, model.layers)
            iFfnDown += 1
        } else if cat == .attnOutput {
            bump(.attnOutput, 0, 0)
        }
        return type
    }

    /// llama.cpp's first fallback for a K-quant whose 256-element block does not divide a row
    /// (`tensor_type_fallback`); nil for the 32-element types, which have none.
    public static func widthFallback(_ type: GGMLType) -> GGMLType? {
        switch type {
        case .q2_K, .q3_K: return .q4_0
        case .q4_K: return .q5_0
        case .q5_K: return .q5_1
        case .q6_K: return .q8_0
        default: return nil
        }
    }

    /// `tensor_type_fallback`: a type whose block does not divide the row falls back
    /// (Q2_K, Q3_K → Q4_0, Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0), to F16 when even that does not fit; the 32-element
    /// types have no fallback in llama.cpp (it stops), so neither has i2q.
    func fallback(_ t: Tensor, _ type: GGMLType) throws -> (GGMLType, String?) {
        guard t.columns % type.blockSize != 0 else { return (type, nil) }
        guard var to = Self.widthFallback(type) else {
            throw LlamaQuantRecipeError.noFallback(tensor: t.name, columns: t.columns, type: type.name)
        }
        var note = "ncols \(t.columns) not divisible by \(type.blockSize) (required for type \(type.name))"
        if t.columns % to.blockSize != 0 {
            note += " (must use F16 due to unusual shape)"
            to = .f16
        }
        return (to, note + " -> falling back to \(to.name)")
    }
}
