import I2QCore
import I2QFormats
#if canImport(Glibc)
import Glibc
#endif

/// Options shared by passes that stream plain tensors to an output.
public struct OutputSettings: Sendable {
    public var format: OutputFormat = .i2q
    /// Largest shard (bytes of tensor data) of safetensors output; transformers' default is 5 GB.
    public var maxShardSize: Int = 5_000_000_000
    /// Alignment of tensor data in an .i2q file.
    public var alignment: Int = I2QSpec.defaultAlignment
    public var overwrite = false
    public var showProgress = ProgressBar.stderrIsTerminal
    /// Runs on the complete output at its temporary path, just before it is renamed into place
    /// (`--verify` checks the model there and appends its result to the provenance). A throw
    /// abandons the output, like any other failure of the pass.
    public var beforeCommit: (@Sendable (_ tempPath: String) throws -> Void)?
    public init() {}
}

/// What a pass did to one tensor.
public struct TensorCastResult: Sendable {
    public let name: String
    public let from: DType
    public let to: DType
    public let elements: Int
    public let stats: CastStats
}

public struct PassReport: Sendable {
    public let output: String
    public let files: [String]
    public let tensors: [TensorCastResult]
    public let bytesRead: Int
    public let bytesWritten: Int
    /// Wall time of the whole pass (for AWQ: calibration and search included).
    public var seconds: Double
    /// Tensors in which finite values became ±inf — the user must see these.
    public var overflowing: [TensorCastResult] { tensors.filter { $0.stats.overflowed > 0 } }
}

public enum PassError: I2QError {
    case insufficientSpace(path: String, needed: Int, available: Int)
    case quantizedInput(path: String, tensors: [String], verb: String)

    public var description: String {
        switch self {
        case let .insufficientSpace(p, n, a):
            return "not enough disk space for \(p): the output needs \(formatBytes(n)) and \(formatBytes(a)) is free. Free some space or write elsewhere (-o)."
        case let .quantizedInput(p, t, v):
            return "\(p): \(t.count) tensor(s) are quantized (first: \(t[0])); \(v) needs plain tensors. Run it on the unquantized model."
        }
    }
}
