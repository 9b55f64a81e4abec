import I2QCore
import I2QFormats

/// What one model of a verification is, as stored: its file, size on disk, schemes and bits per
/// weight (`SchemeSummary`, the numbers `i2q inspect` lists "by scheme"). report.json's "candidate"
/// and "reference" objects, summary.md's "Models" table and every plot title say this.
public struct ModelStorage: Sendable {
    /// As given on the command line.
    public let path: String
    /// The file (or directory) name.
    public let name: String
    /// Size on disk: the file; for a directory, its regular files together (not descending).
    public let bytes: Int
    public let schemes: SchemeSummary

    public init(path: String, name: String, bytes: Int, schemes: SchemeSummary) {
        self.path = path; self.name = name; self.bytes = bytes; self.schemes = schemes
    }

    public init(path: String, source: any ModelSource) {
        self.init(path: path, name: FileSystem.basename(path), bytes: Self.diskBytes(path), schemes: SchemeSummary(source))
    }

    /// The storage read back from report.json's "candidate"/"reference" object (`json`); nil when a key
    /// is missing (`verify --merge` rebuilds a report from its shards).
    public init?(json j: JSONValue) {
        guard let path = j["path"]?.stringValue, let name = j["name"]?.stringValue, let bytes = j["bytes"]?.intValue,
              let list = j["schemes"]?.arrayValue else { return nil }
        var schemes: [SchemeSummary.Scheme] = []
        for s in list {
            guard let n = s["scheme"]?.stringValue, let t = s["tensors"]?.intValue, let p = s["params"]?.intValue,
                  let b = s["bytes"]?.intValue else { return nil }
            schemes.append(.init(scheme: n, tensors: t, parameters: p, bytes: b))
        }
        self.init(path: path, name: name, bytes: bytes, schemes: SchemeSummary(schemes: schemes))
    }

    /// Size on disk of a file, or of the regular files directly inside a directory.
    public static func diskBytes(_ path: String) -> Int {
        guard FileSystem.isDirectory(path) else { return FileSystem.fileSize(path) ?? 0 }
        let names = (try? FileSystem.listDirectory(path)) ?? []  // unreadable: size unknown, reported as 0
        return names.reduce(0) { n, f in
            let p = path + "/" + f
            return n + (FileSystem.isDirectory(p) ? 0 : FileSystem.fileSize(p) ?? 0)
        }
    }

    /// Schemes by parameters, largest first (ties: the order they appear in the file).
    public var schemesBySize: [SchemeSummary.Scheme] {
        schemes.schemes.enumerated().sorted { ($1.element.parameters, $0.offset) < ($0.element.parameters, $1.offset) }.map(\.element)
    }

    /// Whether `scheme` is a plain dtype ("F32", "BF16"; GGUF's "f32", "f16"), not a quantization scheme.
    public static func isPlain(_ scheme: String) -> Bool { DType(rawValue: scheme.uppercased()) != nil }

    /// "nf4 b64 dq 4.36 bpw (2.0M params) + F32 (8.2M)": quantized schemes first with their bits per
    /// weight, then plain dtypes, each group largest first; `counts: false` leaves out the parameters.
    public func schemesText(counts: Bool = true) -> String {
        let q = schemesBySize.filter { !Self.isPlain($0.scheme) }, p = schemesBySize.filter { Self.isPlain($0.scheme) }
        return (q.map { "\($0.scheme) \(formatFixed($0.bitsPerWeight, 2)) bpw" } + p.map(\.scheme)).enumerated().map { i, t in
            let s = i < q.count ? q[i] : p[i - q.count]
            return counts ? t + " (\(formatCount(s.parameters))\(i == 0 ? " params" : ""))" : t
        }.joined(separator: " + ")
    }

    /// "35.4 MB, 26.67 bpw overall".
    public var sizeText: String { "\(formatBytes(bytes)), \(formatFixed(schemes.bitsPerWeight, 2)) bpw overall" }

    public var json: JSONValue {
        .object([
            ("path", .string(path)), ("name", .string(name)), ("bytes", .int(bytes)),
            ("params", .int(schemes.totalParameters)), ("tensor_bytes", .int(schemes.totalBytes)),
            ("schemes", .array(schemes.schemes.map { s in
                .object([("scheme", .string(s.scheme)), ("tensors", .int(s.tensors)), ("params", .int(s.parameters)),
                         ("bytes", .int(s.bytes)), ("bits_per_weight", jsonNumber(s.bitsPerWeight))])
            })),
            ("bits_per_weight", jsonNumber(schemes.bitsPerWeight)),
        ])
    }
}
