import I2QCore
import I2QQuant

/// The per-tensor assignment of `quantize --target-bpw` as data (issue 22), written as JSON next to
/// the output and reusable with `--recipe FILE` (same recipe, same model, same importance → the same
/// bytes). It keeps the measured cost table, so `--recipe FILE --target-bpw Y` re-optimizes for
/// another budget without measuring again.
///
/// ```json
/// {"i2q_recipe": 1, "target_bpw": 4.5, "achieved_bpw": 4.49, "candidates": ["int4g64", "q8_0"],
///  "cost": "...", "tensors": [{"name": "model.layers.0.mlp.down_proj.weight", "scheme": "q4_k",
///  "parameters": 884736, "options": {"int4g64": {"bits": 3870720, "cost": 0.0123}, ...}}]}
/// ```
public struct MixedRecipe: Sendable, Equatable {
    public struct Tensor: Sendable, Equatable {
        public var name: String
        public var scheme: String
        public var parameters: Int
        /// Candidate name → (bits stored, estimated cost); empty in a hand-written recipe.
        public var options: [(name: String, bits: Int, cost: Double)]
        public static func == (a: Tensor, b: Tensor) -> Bool {
            a.name == b.name && a.scheme == b.scheme && a.parameters == b.parameters
                && a.options.map(\.name) == b.options.map(\.name) && a.options.map(\.bits) == b.options.map(\.bits)
                && a.options.map(\.cost) == b.options.map(\.cost)
        }
    }
    public static let version = 1
    public static let costDescription = "estimated KLD contribution: alpha_t * sum_j imp_j * sum_i (w_ij - q(w)_ij)^2, imp the mean squared input activation on the calibration data, alpha_t = KL(f32 || the model with tensor t alone at its cheapest candidate) on the probe tokens / that proxy (alpha_t = 1 without a probe)"

    public var targetBPW: Double?
    public var candidates: [String]
    public var tensors: [Tensor]

    public init(targetBPW: Double?, candidates: [String], tensors: [Tensor]) {
        self.targetBPW = targetBPW; self.candidates = candidates; self.tensors = tensors
    }

    /// Bits per weight of the assignment over its tensors (scales and zeros included).
    public var achievedBPW: Double {
        var bits = 0, params = 0
        for t in tensors {
            params += t.parameters
            if let o = t.options.first(where: { $0.name == t.scheme }) { bits += o.bits }
        }
        return params == 0 ? 0 : Double(bits) / Double(params)
    }

    public var json: JSONValue {
        var top: [(String, JSONValue)] = [("i2q_recipe", .int(Self.version))]
        if let t = targetBPW { top.append(("target_bpw", .number("\(t)"))) }
        top.append(("achieved_bpw", .number(formatFixed(achievedBPW, 4))))
        top.append(("candidates", .array(candidates.map { .string($0) })))
        top.append(("cost", .string(Self.costDescription)))
        top.append(("tensors", .array(tensors.map { t in
            .object([("name", .string(t.name)), ("scheme", .string(t.scheme)), ("parameters", .int(t.parameters)),
                     ("options", .object(t.options.map { ($0.name, .object([("bits", .int($0.bits)), ("cost", .number("\($0.cost)"))])) }))])
        })))
        return .object(top)
    }

    public static func read(path: String) throws -> MixedRecipe {
        let v = try JSONParser.parse(try FileSystem.readFile(path), source: path)
        func bad(_ d: String) -> MixedRecipeError { .invalid(path: path, detail: d) }
        guard v["i2q_recipe"]?.intValue == version else { throw bad("not an i2q recipe (\"i2q_recipe\": \(version) missing); it is written by `i2q quantize --target-bpw`") }
        guard let cands = v["candidates"]?.arrayValue?.compactMap(\.stringValue), !cands.isEmpty else { throw bad("\"candidates\" must be a non-empty array of scheme names") }
        for c in cands where MixedCandidate(name: c) == nil { throw bad("candidate \"\(c)\" is not one of \(MixedCandidate.allNames.joined(separator: ", "))") }
        guard let ts = v["tensors"]?.arrayValue else { throw bad("\"tensors\" must be an array") }
        var tensors: [Tensor] = []
        for (i, t) in ts.enumerated() {
            guard let name = t["name"]?.stringValue, let scheme = t["scheme"]?.stringValue, let p = t["parameters"]?.intValue, p > 0 else {
                throw bad("tensors[\(i)] needs \"name\", \"scheme\" and a positive \"parameters\"")
            }
            guard MixedCandidate(name: scheme) != nil else { throw bad("tensor \"\(name)\": scheme \"\(scheme)\" is not one of \(MixedCandidate.allNames.joined(separator: ", "))") }
            var opts: [(name: String, bits: Int, cost: Double)] = []
            for (k, o) in t["options"]?.objectEntries ?? [] {
                guard MixedCandidate(name: k) != nil, let b = o["bits"]?.intValue, b > 0, let c = o["cost"]?.doubleValue, c.isFinite, c >= 0 else {
                    throw bad("tensor \"\(name)\": option \"\(k)\" needs a known scheme, positive \"bits\" and a finite \"cost\" ≥ 0")
                }
                opts.append((k, b, c))
            }
            tensors.append(Tensor(name: name, scheme: scheme, parameters: p, options: opts))
        }
        let dup = Dictionary(grouping: tensors.map(\.name), by: { $0 }).first { $0.value.count > 1 }
        if let d = dup { throw bad("tensor \"\(d.key)\" is listed twice") }
        return MixedRecipe(targetBPW: v["target_bpw"]?.doubleValue, candidates: cands, tensors: tensors)
    }
}

public enum MixedRecipeError: I2QError, Equatable {
    case invalid(path: String, detail: String)
    public var description: String {
        switch self {
        case let .invalid(p, d): return "\(p): \(d)"
        }
    }
}
