#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A byte-based progress bar on stderr: `cast  [#####.....]  3.2/16.8 GB  1.9 GB/s  ETA 7s`.
/// Drawn only when stderr is a terminal (and not disabled); redraws at most 10 times a second.
public final class ProgressBar: @unchecked Sendable {
    private let label: String
    private let total: Int
    private var done = 0
    private let enabled: Bool
    private let start: Double
    private var lastDraw: Double = 0
    private let lock = Lock()

    /// When set, progress is counted in these units (e.g. "windows") instead of bytes.
    private let unit: String?
    /// A running value shown after the ETA (perplexity: "ppl 12.345").
    private var note = ""

    public init(label: String, totalBytes: Int, enabled: Bool = ProgressBar.stderrIsTerminal) {
        self.label = label
        self.total = max(totalBytes, 1)
        self.enabled = enabled
        self.start = ProgressBar.now()
        self.unit = nil
    }

    public init(label: String, total: Int, unit: String, enabled: Bool = ProgressBar.stderrIsTerminal) {
        self.label = label
        self.total = max(total, 1)
        self.enabled = enabled
        self.start = ProgressBar.now()
        self.unit = unit
    }

    public static var stderrIsTerminal: Bool { isatty(2) != 0 }

    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    public var elapsed: Double { ProgressBar.now() - start }

    public func advance(_ bytes: Int) {
        lock.withLock {
            done += bytes
            guard enabled else { return }
            let t = ProgressBar.now()
            if t - lastDraw >= 0.1 || done >= total {
                lastDraw = t
                draw(t)
            }
        }
    }

    /// Sets the running value shown after the ETA (drawn with the next update).
    public func setNote(_ s: String) { lock.withLock { note = s } }

    /// Columns of the terminal on stderr (80 when it cannot be asked).
    static func terminalColumns() -> Int {
        var w = winsize()
        if ioctl(2, UInt(TIOCGWINSZ), &w) == 0, w.ws_col > 0 { return Int(w.ws_col) }
        return 80
    }

    public func finish() {
        guard enabled else { return }
        lock.withLock { draw(ProgressBar.now()); writeStderr("\n") }
    }

    private func draw(_ t: Double) {
        let frac = min(1.0, Double(done) / Double(total))
        let dt = max(t - start, 1e-9)
        let rate = Double(done) / dt
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let amounts = unit.map { "\(done)/\(total) \($0)  \(formatFixed(rate, 2))/s" }
            ?? "\(formatBytes(done))/\(formatBytes(total))  \(formatBytes(Int(rate)))/s"
        let tail = "] \(amounts)  ETA \(formatSeconds(eta))" + (note.isEmpty ? "" : "  \(note)")
        let line = Self.render(label: label, fraction: frac, tail: tail, columns: Self.terminalColumns())
        writeStderr("\r" + line + "\u{1B}[K")  // erase what a longer previous line left
    }

    /// One progress line for a terminal `columns` wide: the bar takes what the text leaves (at most 30,
    /// at least 0 columns); a line still too wide is cut, so it never wraps (a wrapped line cannot be
    /// redrawn with \r). At most columns − 1 characters.
    static func render(label: String, fraction: Double, tail: String, columns cols: Int) -> String {
        let width = max(0, min(30, cols - 1 - label.count - 2 - tail.count))
        let filled = Int(min(1, max(0, fraction)) * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let line = "\(label) [\(bar)\(tail)"
        return line.count > cols - 1 ? String(line.prefix(max(1, cols - 1))) : line
    }
}

/// "1.23 GB" with decimal units (as file sizes are usually quoted).
public func formatBytes(_ n: Int) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"]
    var v = Double(n)
    var u = 0
    while v >= 1000 && u < units.count - 1 { v /= 1000; u += 1 }
    if u == 0 { return "\(n) B" }
    return formatFixed(v, v >= 100 ? 0 : (v >= 10 ? 1 : 2)) + " " + units[u]
}

/// "8.40B", "135M", "12.3K".
public func formatCount(_ n: Int) -> String {
    let v = Double(n)
    if v >= 1e9 { return formatFixed(v / 1e9, 2) + "B" }
    if v >= 1e6 { return formatFixed(v / 1e6, 1) + "M" }
    if v >= 1e3 { return formatFixed(v / 1e3, 1) + "K" }
    return String(n)
}

public func formatSeconds(_ s: Double) -> String {
    if !s.isFinite { return "?" }
    if s < 60 { return "\(Int(s.rounded()))s" }
    let m = Int(s) / 60
    return "\(m)m\(String(format2(Int(s) % 60)))s"
}

private func format2(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }

/// Fixed-point formatting without Foundation.
public func formatFixed(_ v: Double, _ digits: Int) -> String {
    if !v.isFinite { return "\(v)" }
    var p = 1.0
    for _ in 0..<digits { p *= 10 }
    let r = (abs(v) * p).rounded()
    let ip = Int(r / p)
    let fp = Int(r - Double(ip) * p)
    var s = (v < 0 && r != 0 ? "-" : "") + String(ip)
    if digits > 0 {
        let f = String(fp)
        s += "." + String(repeating: "0", count: digits - f.count) + f
    }
    return s
}

/// Parses "5GB", "500MB", "2GiB", "1024" (bytes), as transformers' `max_shard_size` does
/// (decimal units for kB/MB/GB, binary for KiB/MiB/GiB).
public func parseByteSize(_ s: String) -> Int? {
    let t = s.trimmingSpaces().uppercased()
    let units: [(String, Double)] = [("KIB", 1024), ("MIB", 1024 * 1024), ("GIB", 1024 * 1024 * 1024),
                                     ("TIB", 1024.0 * 1024 * 1024 * 1024),
                                     ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("B", 1)]
    for (u, m) in units where t.hasSuffix(u) {
        guard let v = Double(t.dropLast(u.count).trimmingSpaces()), v > 0 else { return nil }
        return Int(v * m)
    }
    guard let v = Int(t), v > 0 else { return nil }
    return v
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}

/// Writes to file descriptor 2 directly (no shared C `FILE*` state).
public func writeStderr(_ s: String) {
    var bytes = Array(s.utf8)
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress! + off, $0.count - off) }
        if n <= 0 { if n < 0 && errno == EINTR { continue }; return }
        off += n
    }
}
