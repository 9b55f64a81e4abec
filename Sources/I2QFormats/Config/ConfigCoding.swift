import Foundation
import I2QCore

/// Errors reading a model's configuration files.
public enum ConfigError: I2QError {
    case missingFile(path: String, why: String)
    case invalid(path: String, detail: String)
    case unsupportedModelType(path: String, modelType: String?)

    public var description: String {
        switch self {
        case let .missingFile(p, why): return "\(p) is missing: \(why)"
        case let .invalid(p, d): return "\(p): \(d)"
        case let .unsupportedModelType(p, t):
            let known = ModelRegistry.modelTypes.joined(separator: ", ")
            if let t { return "\(p): model_type \"\(t)\" is not supported (supported: \(known))." }
            return "\(p): no \"model_type\" key; i2q needs it to know the architecture (supported: \(known))."
        }
    }

    /// Turns a DecodingError into a message naming the key path and what was expected.
    static func from(_ e: Error, path: String) -> ConfigError {
        guard let d = e as? DecodingError else { return .invalid(path: path, detail: "\(e)") }
        func keyPath(_ c: [CodingKey]) -> String { c.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".") }
        switch d {
        case let .typeMismatch(t, c):
            return .invalid(path: path, detail: "key \"\(keyPath(c.codingPath))\" has the wrong type (expected \(t)): fix the value in the file.")
        case let .valueNotFound(t, c):
            return .invalid(path: path, detail: "key \"\(keyPath(c.codingPath))\" is null (expected \(t)).")
        case let .keyNotFound(k, c):
            return .invalid(path: path, detail: "required key \"\(keyPath(c.codingPath + [k]))\" is missing.")
        case let .dataCorrupted(c):
            return .invalid(path: path, detail: "not valid JSON or bad value at \"\(keyPath(c.codingPath))\": \(c.debugDescription)")
        @unknown default:
            return .invalid(path: path, detail: "\(d)")
        }
    }
}

/// Coding keys from arbitrary strings (config files are snake_case).
struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { return nil }
}

extension KeyedDecodingContainer where K == AnyKey {
    /// The value for `key`, or `def` when the key is absent or null. A present value of the wrong
    /// type is an error (never silently replaced by the default).
    func value<T: Decodable>(_ key: String, default def: T) throws -> T {
        try decodeIfPresent(T.self, forKey: AnyKey(key)) ?? def
    }
    func optional<T: Decodable>(_ key: String) throws -> T? {
        try decodeIfPresent(T.self, forKey: AnyKey(key))
    }
    func has(_ key: String) -> Bool { contains(AnyKey(key)) }
}

/// An int or a list of ints (`eos_token_id` may be either).
public struct IntOrList: Codable, Sendable, Equatable {
    public var values: [Int]
    public init(_ v: [Int]) { values = v }
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let i = try? c.decode(Int.self) { values = [i]; return }  // deliberate: try the scalar form first, then the list form (which throws the real error)
        values = try c.decode([Int].self)
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        if values.count == 1 { try c.encode(values[0]) } else { try c.encode(values) }
    }
}

/// RoPE settings: transformers 4.x writes `rope_theta` (+ `rope_scaling`), 5.x writes
/// `rope_parameters: {rope_type, rope_theta, ...}`. Both are read; 5.x wins if both are present.
/// `llama3` (Llama 3.1/3.2, Idefics3-8B) carries factor, low/high_freq_factor and
/// original_max_position_embeddings (the runtime's `RoPE` applies them).
public struct RopeParameters: Sendable, Equatable {
    public var ropeType: String = "default"
    public var theta: Double
    public var factor: Double?
    public var lowFreqFactor: Double?
    public var highFreqFactor: Double?
    public var originalMaxPositionEmbeddings: Int?

    public init(ropeType: String = "default", theta: Double) { self.ropeType = ropeType; self.theta = theta }

    static func decode(_ c: KeyedDecodingContainer<AnyKey>, defaultTheta: Double) throws -> RopeParameters {
        var r: RopeParameters
        let s: KeyedDecodingContainer<AnyKey>?
        if c.has("rope_parameters"), try !c.decodeNil(forKey: AnyKey("rope_parameters")) {
            let p = try c.nestedContainer(keyedBy: AnyKey.self, forKey: AnyKey("rope_parameters"))
            r = RopeParameters(ropeType: try p.value("rope_type", default: "default"),
                               theta: try p.value("rope_theta", default: try c.value("rope_theta", default: defaultTheta)))
            s = p
        } else {
            r = RopeParameters(theta: try c.value("rope_theta", default: defaultTheta))
            if c.has("rope_scaling"), try !c.decodeNil(forKey: AnyKey("rope_scaling")) {
                let sc = try c.nestedContainer(keyedBy: AnyKey.self, forKey: AnyKey("rope_scaling"))
                r.ropeType = try sc.optional("rope_type") ?? (try sc.value("type", default: "default"))
                s = sc
            } else {
                s = nil
            }
        }
        if let s {
            r.factor = try s.optional("factor")
            r.lowFreqFactor = try s.optional("low_freq_factor")
            r.highFreqFactor = try s.optional("high_freq_factor")
            r.originalMaxPositionEmbeddings = try s.optional("original_max_position_embeddings")
        }
        return r
    }

    /// The default rope's inverse frequencies 1 / theta^(arange(0, d, 2) / d) in float32, as torch
    /// computes them (transformers' `_compute_default_rope_parameters`, convert_hf_to_gguf's llama3
    /// `rope_freqs`): the exponent a float32 quotient, the power rounded to float32, a float32 reciprocal.
    /// [headDim / 2]
    public static func inverseFrequencies(headDim: Int, theta: Double) -> [Float] {
        (0..<(headDim / 2)).map { i in
            let exponent = Float(2 * i) / Float(headDim)  // float32, as torch: arange(0,d,2).float() / d
            return 1 / Float(Foundation.pow(theta, Double(exponent)))
        }
    }

    /// Range checks of the scaling fields of the rope types the runtime implements.
    func validate(_ r: ConfigRanges) throws {
        guard ropeType == "llama3" else { return }
        guard let f = factor, let lo = lowFreqFactor, let hi = highFreqFactor, let old = originalMaxPositionEmbeddings else {
            throw r.bad("rope_type llama3 needs factor, low_freq_factor, high_freq_factor and original_max_position_embeddings")
        }
        guard f.isFinite, f > 0, lo.isFinite, lo > 0, hi.isFinite, hi > lo, old > 0 else {
            throw r.bad("llama3 rope scaling {factor \(f), low_freq_factor \(lo), high_freq_factor \(hi), original_max_position_embeddings \(old)} needs factor > 0, 0 < low < high, original > 0")
        }
    }
}

/// `torch_dtype` (4.x) or `dtype` (5.x).
func decodeTorchDType(_ c: KeyedDecodingContainer<AnyKey>) throws -> String? {
    if let d: String = try c.optional("dtype") { return d }
    return try c.optional("torch_dtype")
}

/// Captures the top-level keyed container of a JSON document.
struct CapturedObject: Decodable {
    let c: KeyedDecodingContainer<AnyKey>
    init(from decoder: Decoder) throws { c = try decoder.container(keyedBy: AnyKey.self) }
}

/// Runs `body` on the top-level object of `data`, turning decoding errors into a `ConfigError`
/// that names `path` and the key.
func withConfigObject<R>(_ data: Data, path: String, _ body: (KeyedDecodingContainer<AnyKey>) throws -> R) throws -> R {
    do {
        return try body(JSONDecoder().decode(CapturedObject.self, from: data).c)
    } catch let e as ConfigError {
        throw e
    } catch {
        throw ConfigError.from(error, path: path)
    }
}
