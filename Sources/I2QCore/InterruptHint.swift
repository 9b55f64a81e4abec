#if canImport(Glibc)
import Glibc
#endif

/// A line the CLI's SIGINT/SIGTERM handler prints after cleaning up, set by long computations that
/// leave resumable state (AWQ: "continue with --resume"). Stored as a C string so the handler can
/// write it with write(2), which is async-signal-safe.
public enum InterruptHint {
    nonisolated(unsafe) private static var text: UnsafeMutablePointer<CChar>? = nil

    /// Sets (or with nil clears) the hint. The previous string is not freed: a handler may be reading it.
    public static func set(_ s: String?) { text = s.map { strdup($0) } }

    /// Writes the hint to stderr (from a signal handler).
    public static func write() {
        guard let t = text else { return }
        _ = Glibc.write(2, t, strlen(t))
    }
}
