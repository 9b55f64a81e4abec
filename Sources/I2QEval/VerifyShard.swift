import I2QCore
import I2QFormats

/// `verify --shard I/N`: which deterministic slice of the inputs one machine scores. I is 0-based
/// (0..<N, as Kubernetes' JOB_COMPLETION_INDEX and a Slurm array `--array=0-(N−1)`). The slice depends
/// only on the inputs and the flags, never on the machine:
///   --text:   windows [W·I/N, W·(I+1)/N) of the W windows (contiguous, in order);
///   --docvqa: the selected questions (after --samples/--seed, so the selection is the unsharded one)
///             grouped by page image in order of first appearance, the G groups cut into N contiguous
///             runs of about Q/N questions each (every shard at least one page), so that each page's
///             vision forward and layer comparison happens on one shard only.
public struct VerifyShard: Sendable, Equatable {
    public let index: Int
    public let count: Int

    public init(index: Int, count: Int) throws {
        guard count >= 1, index >= 0, index < count else { throw VerifyShardError.badSpec("\(index)/\(count)") }
        self.index = index; self.count = count
    }

    /// "I/N" with 0 ≤ I < N.
    public static func parse(_ s: String) throws -> VerifyShard {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]) else { throw VerifyShardError.badSpec(s) }
        return try VerifyShard(index: i, count: n)
    }

    public var label: String { "\(index)/\(count)" }

    /// This shard's windows of `total`.
    public func windows(of total: Int) throws -> Range<Int> {
        guard total >= count else { throw VerifyShardError.tooFewWindows(windows: total, shards: count) }
        return (total * index / count)..<(total * (index + 1) / count)
    }

    /// Positions (into `images`, the selected questions' page images in selection order) of this shard's
    /// questions, ascending.
    public func questions(images: [String]) throws -> [Int] {
        var groupOf: [String: Int] = [:]
        var groups: [[Int]] = []
        for (p, im) in images.enumerated() {
            if let g = groupOf[im] { groups[g].append(p) } else { groupOf[im] = groups.count; groups.append([p]) }
        }
        let g = groups.count, q = images.count
        guard g >= count else { throw VerifyShardError.tooFewPages(pages: g, questions: q, shards: count) }
        var before = [0]  // questions before group k
        for grp in groups { before.append(before.last! + grp.count) }
        // Cut k (k = 1..<N): the first group that starts at or after k·Q/N questions, kept so that every
        // shard has at least one group.
        var cuts = [0]
        for k in 1..<count {
            let first = (0..<g).first { before[$0] * count >= k * q } ?? g
            cuts.append(min(max(first, cuts.last! + 1), g - (count - k)))
        }
        cuts.append(g)
        return groups[cuts[index]..<cuts[index + 1]].flatMap { $0 }.sorted()
    }
}

public enum VerifyShardError: I2QError {
    case badSpec(String)
    case tooFewWindows(windows: Int, shards: Int)
    case tooFewPages(pages: Int, questions: Int, shards: Int)
    case notAReport(file: String, why: String)
    case notAShard(file: String)
    case differs(file: String, key: String, first: String, value: String, firstValue: String)
    case duplicate(file: String, other: String, shard: String)
    case missing(shards: [Int], count: Int, given: Int)
    case nothingToMerge

    public var description: String {
        switch self {
        case let .badSpec(s):
            return "--shard \(s): give I/N with N ≥ 1 and I in 0..<N (0-based: Kubernetes' JOB_COMPLETION_INDEX, or a Slurm array --array=0-(N-1)'s SLURM_ARRAY_TASK_ID)"
        case let .tooFewWindows(w, n):
            return "--shard …/\(n): the text has only \(w) windows of --ctx tokens; use at most \(w) shards (or a longer text / smaller --ctx)"
        case let .tooFewPages(p, q, n):
            return "--shard …/\(n): the \(q) selected DocVQA questions are on \(p) page images and a page's questions stay on one shard; use at most \(p) shards"
        case let .notAReport(f, why):
            return "\(f): not an i2q verify report (\(why)); --merge takes the report.json (or report directory) of each `verify --shard I/N` run"
        case let .notAShard(f):
            return "\(f) is a whole i2q verify report, not a shard: it has no \"shard\" key; --merge takes the reports of `verify --shard I/N` runs"
        case let .differs(f, k, first, v, fv):
            return "\(f) was made with \(k) = \(v), but \(first) with \(fv); --merge combines shards of one run (same models, inputs and flags)"
        case let .duplicate(f, o, s):
            return "\(f) and \(o) are both shard \(s); give each shard's report once"
        case let .missing(s, n, given):
            return "shard\(s.count == 1 ? "" : "s") \(s.map(String.init).joined(separator: ", ")) of \(n) missing (\(given) report\(given == 1 ? "" : "s") given); run `verify --shard I/\(n)` for \(s.count == 1 ? "it" : "them") and merge all \(n)"
        case .nothingToMerge:
            return "--merge needs the report of every shard: --merge DIR_OR_JSON…"
        }
    }
}

/// What a shard report carries so that `--merge` can rebuild the whole run's report exactly: the
/// per-position values of the text, the raw sums of the layer errors, and per question the position in
/// the selection and the answer KLD sum. Written under report.json's "shard" key (docs/verify.md).
public struct VerifyShardData: Sendable {
    public var spec: VerifyShard
    /// Must be equal in every shard of one run (models excepted: compared without their paths).
    public var settings: JSONValue = .object([])
    public var textWindows: Range<Int>? = nil
    public var tokens: [TokenComparison] = []
    public var decoder: LayerErrorAccumulator? = nil
    public var vision: LayerErrorAccumulator? = nil
    public var connector: LayerErrorAccumulator? = nil
    public var visionImages = 0, visionPatches = 0, connectorTokens = 0
    /// Positions of this shard's questions in the selection (report order: ascending).
    public var questionPositions: [Int] = []

    public init(spec: VerifyShard) { self.spec = spec }

    /// Little-endian IEEE-754 float64 values, base64 (numpy: `np.frombuffer(base64.b64decode(s), "<f8")`).
    static func f64(_ xs: [Double]) -> JSONValue {
        var b = [UInt8]()
        b.reserveCapacity(xs.count * 8)
        for x in xs { withUnsafeBytes(of: x.bitPattern.littleEndian) { b += $0 } }
        return .string(Base64.encode(b))
    }

    static func f64(_ v: JSONValue?, count: Int) -> [Double]? {
        guard let s = v?.stringValue, let b = Base64.decode(s), b.count == count * 8 else { return nil }
        return (0..<count).map { i in
            var u: UInt64 = 0
            for k in 0..<8 { u |= UInt64(b[i * 8 + k]) << (8 * k) }
            return Double(bitPattern: u)
        }
    }

    static func accumulatorJSON(_ a: LayerErrorAccumulator) -> JSONValue {
        .object([("layers", .int(a.layers)), ("positions", .array(a.positions.map { .int($0) })),
                 ("diff2", f64(a.diff2)), ("base2", f64(a.base2)), ("token_sum", f64(a.tokenSum)), ("token_max", f64(a.tokenMax))])
    }

    static func accumulator(_ j: JSONValue?) -> LayerErrorAccumulator? {
        guard let j, let n = j["layers"]?.intValue, n >= 0, let pos = j["positions"]?.arrayValue?.compactMap(\.intValue), pos.count == n,
              let d = f64(j["diff2"], count: n), let b = f64(j["base2"], count: n), let s = f64(j["token_sum"], count: n),
              let m = f64(j["token_max"], count: n) else { return nil }
        var a = LayerErrorAccumulator(layers: n)
        a.diff2 = d; a.base2 = b; a.tokenSum = s; a.tokenMax = m; a.positions = pos
        return a
    }

    func json(docvqa: DocVQAComparison?) -> JSONValue {
        var e: [(String, JSONValue)] = [("index", .int(spec.index)), ("count", .int(spec.count)), ("index_base", .int(0)),
                                        ("settings", settings)]
        if let w = textWindows {
            e.append(("text", .object([
                ("windows", .array([.int(w.lowerBound), .int(w.upperBound)])), ("positions", .int(tokens.count)),
                ("nll_base", Self.f64(tokens.map(\.nllBase))), ("nll_candidate", Self.f64(tokens.map(\.nllCandidate))),
                ("kld", Self.f64(tokens.map(\.kld))), ("delta_p", Self.f64(tokens.map(\.deltaP))),
                ("same_top", .string(Base64.encode(tokens.map { $0.sameTop ? 1 : 0 }))),
            ])))
        }
        var layers: [(String, JSONValue)] = []
        if let a = decoder { layers.append(("decoder", Self.accumulatorJSON(a))) }
        if let a = vision {
            layers += [("vision", Self.accumulatorJSON(a)), ("vision_images", .int(visionImages)), ("vision_patches", .int(visionPatches))]
        }
        if let a = connector { layers += [("connector", Self.accumulatorJSON(a)), ("connector_tokens", .int(connectorTokens))] }
        if !layers.isEmpty { e.append(("layers", .object(layers))) }
        if let d = docvqa {
            e.append(("docvqa", .object([
                ("positions", .array(questionPositions.map { .int($0) })),
                ("kld_sum", .array(d.items.map { $0.kldSum.map { jsonNumber($0) } ?? .null })),
                ("answer_tokens", .array(d.items.map { .int($0.answerTokens) })),
            ])))
        }
        return .object(e)
    }
}
