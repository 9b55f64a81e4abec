#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How much memory a run may plan to allocate for buffers whose size comes from the input (KV cache,
/// per-sequence activations): `I2Q_MEMORY_BUDGET` (bytes, or "12GB", "16GiB"), else three
/// quarters of physical memory. Sizes above it are refused with the number they would need, before
/// anything is allocated.
public enum MemoryBudget {
    public static var bytes: Int {
        if let s = getenv("I2Q_MEMORY_BUDGET").map({ String(cString: $0) }), let v = parseByteSize(s) { return v }
        let pages = Int(sysconf(Int32(_SC_PHYS_PAGES))), size = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard pages > 0, size > 0 else { return 8 << 30 }
        return pages / 4 * 3 * size
    }

    /// Throws `BudgetError` when `need` bytes (for `what`) exceed the budget.
    public static func check(_ need: Double, for what: String) throws {
        guard need <= Double(bytes) else { throw BudgetError(what: what, need: need, budget: bytes) }
    }
}

public struct BudgetError: I2QError {
    public let what: String, need: Double, budget: Int
    public var description: String {
        "\(what) needs \(formatGiB(need)), more than the memory budget of \(formatGiB(Double(budget))); use a smaller input, or set I2Q_MEMORY_BUDGET if the machine really has the memory"
    }
}

/// "12.3 GB" (10⁹ bytes) for messages about sizes.
public func formatGiB(_ bytes: Double) -> String {
    bytes >= 1e9 ? formatFixed(bytes / 1e9, 1) + " GB" : formatFixed(bytes / 1e6, 1) + " MB"
}
