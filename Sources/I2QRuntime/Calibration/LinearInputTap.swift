import I2QCore

/// Sees the input of linear layers as the runtime multiplies them.
public protocol LinearInputObserver: AnyObject, Sendable {
    /// `x`: [rows, columns] f32 row-major, the input of every weight in `weights` (checkpoint names:
    /// q/k/v or gate/up of one `ProjectionGroup` share one input, each weight is named). Valid only
    /// during the call.
    func observe(weights: [String], x: UnsafePointer<Float>, rows: Int, columns: Int)
}

/// The one hook on the runtime's linears: `Weight.linear` and `ProjectionGroup` (every projection of
/// the decoders, the SigLIP tower — its patch embedding included — and the Idefics2 connector) report
/// their input to the observer bound here, before multiplying. Unbound (the default) it costs one
/// task-local read per product. Bound for the current task / thread only: the runtime calls its
/// linears on the calling thread (worker pools run inside kernels, never around a linear).
public enum LinearInputTap {
    @TaskLocal public static var observer: (any LinearInputObserver)?

    /// Runs `body` with `o` observing every linear input it causes.
    public static func observing<R>(_ o: any LinearInputObserver, _ body: () throws -> R) rethrows -> R {
        try $observer.withValue(o, operation: body)
    }
}

/// llama-imatrix's collector (tools/imatrix/imatrix.cpp `collect_imatrix`, dense MUL_MAT case): per
/// weight, Σ x² of each input column over every row fed to it, and the number of rows. Sums are kept
/// in float64 (llama-imatrix sums in float32: the two agree to float32 summation error) and rounded
/// to float32 only when the file is written. Every call is counted (llama-imatrix skips products of
/// fewer than 16 rows, which in its runs are only generation steps; this collector is run on
/// prefills only, so nothing is skipped).
public final class ImatrixCollector: LinearInputObserver, @unchecked Sendable {
    public struct Stats: Sendable {
        public var sums: [Double]  // [columns] Σ x²
        public var rows: Int
    }
    private var stats: [String: Stats] = [:]
    private let lock = Lock()
    public init() {}

    public func observe(weights: [String], x: UnsafePointer<Float>, rows: Int, columns: Int) {
        guard rows > 0, !weights.isEmpty else { return }
        var sq = [Double](repeating: 0, count: columns)  // [columns]
        sq.withUnsafeMutableBufferPointer { s in
            for r in 0..<rows {
                let row = x + r * columns
                for j in 0..<columns { let v = Double(row[j]); s[j] += v * v }
            }
        }
        lock.withLock {
            for w in weights {
                var e = stats[w] ?? Stats(sums: [Double](repeating: 0, count: columns), rows: 0)
                precondition(e.sums.count == columns, "ImatrixCollector: \(w) seen with \(columns) and \(e.sums.count) columns")
                for j in 0..<columns { e.sums[j] += sq[j] }
                e.rows += rows
                stats[w] = e
            }
        }
    }

    /// What was collected, by checkpoint name.
    public var collected: [String: Stats] { lock.withLock { stats } }
}
