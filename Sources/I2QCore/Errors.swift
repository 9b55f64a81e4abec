/// Errors that reach users. Every message says what went wrong, where (file, tensor), and what to do.
public protocol I2QError: Error, CustomStringConvertible {}

/// Errors from the operating system while reading or writing files.
public enum IOError: I2QError {
    case open(path: String, errno: Int32)
    case read(path: String, errno: Int32)
    case write(path: String, errno: Int32)
    case mmap(path: String, errno: Int32)
    case rename(from: String, to: String, errno: Int32)
    case exists(path: String)
    case busy(path: String, pid: Int32?)
    case shrank(path: String, expected: Int)
    case notFound(path: String)
    case mkdir(path: String, errno: Int32)

    public var description: String {
        switch self {
        case let .open(p, e): return "cannot open \(p): \(errnoText(e))"
        case let .read(p, e): return "cannot read \(p): \(errnoText(e))"
        case let .write(p, e):
            if e == 28 /* ENOSPC */ {
                return "cannot write \(p): no space left on the device. Free some space or choose another output directory; the partial output was removed."
            }
            return "cannot write \(p): \(errnoText(e))"
        case let .mmap(p, e): return "cannot memory-map \(p): \(errnoText(e))"
        case let .rename(f, t, e): return "cannot rename \(f) to \(t): \(errnoText(e))"
        case let .exists(p): return "\(p) already exists; remove it or pass --overwrite"
        case let .shrank(p, n):
            return "\(p) shrank while it was being read (it had \(n) bytes when opened); input files must not be modified during a run. Run again once the file is complete"
        case let .busy(p, pid):
            return "another i2q process\(pid.map { " (PID \($0))" } ?? "") is writing \(p); wait for it to finish or choose another output path"
        case let .notFound(p): return "\(p) does not exist"
        case let .mkdir(p, e): return "cannot create directory \(p): \(errnoText(e))"
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public func errnoText(_ e: Int32) -> String {
    guard let s = strerror(e) else { return "errno \(e)" }
    return String(cString: s)
}
