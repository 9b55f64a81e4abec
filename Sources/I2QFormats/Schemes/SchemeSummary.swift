import I2QCore

/// A model's tensors by storage scheme, as stored: plain tensors by dtype, nf4/fp4 with block size
/// ("nf4 b64 dq"), int4 with group size ("int4 g128"), .i2q ggml entries by type ("ggml q4_k"),
/// GGUF tensors by ggml type ("q4_1"). Bytes
/// count everything a quantized tensor stores (packed codes, scales, absmax, zeros, code tables), so
/// bits per weight = 8·bytes/parameters. Built from headers only (no tensor data is read); what
/// `i2q inspect` lists under "by scheme" and `i2q verify` reports for its two models.
public struct SchemeSummary: Sendable {
    /// One tensor: its dtype as read (a GGUF tensor: dequantized), parameters, stored bytes, scheme label.
    public struct Tensor: Sendable {
        public let name: String
        public let dtype: DType
        public let parameters: Int
        public let bytes: Int
        public let scheme: String

        public init(name: String, dtype: DType, parameters: Int, bytes: Int, scheme: String) {
            self.name = name; self.dtype = dtype; self.parameters = parameters; self.bytes = bytes; self.scheme = scheme
        }
    }

    /// All tensors of one scheme label.
    public struct Scheme: Sendable {
        public let scheme: String
        public internal(set) var tensors = 0
        public internal(set) var parameters = 0
        public internal(set) var bytes = 0
        public var bitsPerWeight: Double { SchemeSummary.bitsPerWeight(bytes: bytes, parameters: parameters) }

        public init(scheme: String, tensors: Int = 0, parameters: Int = 0, bytes: Int = 0) {
            self.scheme = scheme; self.tensors = tensors; self.parameters = parameters; self.bytes = bytes
        }
    }

    /// Every tensor, in the source's order.
    public let tensors: [Tensor]
    /// Schemes in the order their first tensor appears.
    public let schemes: [Scheme]
    public let totalParameters: Int
    public let totalBytes: Int
    /// 8 · totalBytes / totalParameters.
    public var bitsPerWeight: Double { Self.bitsPerWeight(bytes: totalBytes, parameters: totalParameters) }

    /// 8·bytes/parameters; 0 for no parameters.
    public static func bitsPerWeight(bytes: Int, parameters: Int) -> Double {
        parameters > 0 ? Double(bytes) * 8 / Double(parameters) : 0
    }

    public init(_ m: any ModelSource) {
        // (name, dtype, parameters, stored bytes) of every tensor.
        var all: [(String, DType, Int, Int)] = m.tensors.map { ($0.name, $0.dtype, $0.elementCount, $0.byteCount) }
        var label: [String: String] = [:]
        if let f = m as? I2QFile {
            all = f.entries.map { e in (e.name, e.dtype, e.shape.reduce(1, *), e.components.reduce(0) { $0 + $1.size }) }
            for e in f.entries { label[e.name] = Self.label(e) }
        } else if let gm = m as? GGUFModel {
            // A GGUF tensor is read dequantized; count what the file stores.
            for (hf, gname) in gm.sourceNames {
                if let info = gm.gguf.tensor(gname) { label[hf] = info.type.name.lowercased() }
            }
            all = all.map { t in
                guard let gname = gm.sourceNames[t.0], let info = gm.gguf.tensor(gname) else { return t }
                return (t.0, t.1, t.2, info.elementCount / info.type.blockSize * info.type.typeSize)
            }
        }
        self.init(tensors: all.map { Tensor(name: $0.0, dtype: $0.1, parameters: $0.2, bytes: $0.3, scheme: label[$0.0] ?? $0.1.rawValue) })
    }

    /// A summary from its per-scheme totals alone (as a verify report stores them; `tensors` empty).
    public init(schemes: [Scheme]) {
        tensors = []
        self.schemes = schemes
        totalParameters = schemes.reduce(0) { $0 + $1.parameters }
        totalBytes = schemes.reduce(0) { $0 + $1.bytes }
    }

    /// The summary of these tensors.
    public init(tensors: [Tensor]) {
        self.tensors = tensors
        var sc: [String: Scheme] = [:]
        var order: [String] = []
        for t in tensors {
            if sc[t.scheme] == nil { order.append(t.scheme); sc[t.scheme] = Scheme(scheme: t.scheme) }
            sc[t.scheme]!.tensors += 1
            sc[t.scheme]!.parameters += t.parameters
            sc[t.scheme]!.bytes += t.bytes
        }
        schemes = order.map { sc[$0]! }
        totalParameters = tensors.reduce(0) { $0 + $1.parameters }
        totalBytes = tensors.reduce(0) { $0 + $1.bytes }
    }

    /// "nf4 b64 dq", "fp4 b64", "int4 g64", "int4 g128 sym", "ggml q4_k"; a plain tensor: its dtype. A malformed
    /// entry is deliberately shown under its bare scheme name here: inspect lists what the file holds,
    /// and every verb that reads the entry (run, fuse, exports) names what is wrong with it.
    public static func label(_ e: I2QTensorEntry) -> String {
        switch SchemeLayouts.type(of: e.scheme) {
        case is BnbFourBitLayout.Type:
            // Deliberately quiet: a malformed entry is named by the reader's problems list; here it is only labelled by its scheme.
            guard let l = try? BnbFourBitLayout(e) else { return e.scheme }
            return "\(e.scheme) b\(l.blockSize)\(l.doubleQuant ? " dq" : "")"
        case is AffineInt4Layout.Type:
            guard let l = try? AffineInt4Layout(e) else { return e.scheme }  // as above
            return "int\(l.bits) g\(l.groupSize)\(l.zeros == nil ? " sym" : "")"
        case is GGMLBlockLayout.Type:
            guard let l = try? GGMLBlockLayout(e) else { return e.scheme }  // as above
            return "ggml \(l.type.name.lowercased())"
        case is PlainLayout.Type: return e.dtype.rawValue
        default: return e.scheme
        }
    }
}
