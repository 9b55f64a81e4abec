import I2QCore

/// The optimizer of `quantize --target-bpw`: one option per tensor minimising the total estimated
/// cost subject to Σ bits ≤ budget (a multiple-choice knapsack).
///
/// Greedy over each tensor's lower convex hull of (bits, cost) — the Lagrangian solution: starting
/// from every tensor's fewest-bits option, the hull step with the largest cost drop per added bit is
/// taken while it fits (ties: the earlier tensor); then, with the budget left, any single change that
/// lowers a tensor's cost and still fits, the largest drop first, until none fits. Deterministic.
public enum BitAllocation {
    public struct Option: Sendable, Equatable {
        public let bits: Int
        public let cost: Double
        public init(bits: Int, cost: Double) { self.bits = bits; self.cost = cost }
    }

    /// The chosen option index per item (`options[i]`), or the infeasible error with the smallest bit
    /// count that any assignment reaches.
    public static func solve(_ options: [[Option]], budgetBits: Int) throws -> [Int] {
        precondition(options.allSatisfy { !$0.isEmpty }, "BitAllocation: an item without options")
        // Hull per item: indices into options, bits strictly increasing, cost strictly decreasing,
        // slopes (cost drop per bit) decreasing.
        var hulls: [[Int]] = []
        for opts in options {
            let order = opts.indices.sorted { (opts[$0].bits, opts[$0].cost, $0) < (opts[$1].bits, opts[$1].cost, $1) }
            var mono: [Int] = []  // Pareto front
            for i in order where mono.last.map({ opts[i].cost < opts[$0].cost && opts[i].bits > opts[$0].bits }) ?? true { mono.append(i) }
            var hull: [Int] = []
            for i in mono {
                while hull.count >= 2 {
                    let a = opts[hull[hull.count - 2]], b = opts[hull[hull.count - 1]], c = opts[i]
                    // b lies on or above the segment a–c: drop it.
                    let lhs = (b.cost - a.cost) * Double(c.bits - a.bits), rhs = (c.cost - a.cost) * Double(b.bits - a.bits)
                    if lhs >= rhs { hull.removeLast() } else { break }
                }
                hull.append(i)
            }
            hulls.append(hull)
        }
        var pos = [Int](repeating: 0, count: options.count)  // position on the hull
        var choice = hulls.map { $0[0] }
        var used = zip(options, choice).reduce(0) { $0 + $1.0[$1.1].bits }
        guard used <= budgetBits else { throw BitAllocationError.infeasible(minimumBits: used) }
        var blocked = [Bool](repeating: false, count: options.count)
        while true {
            var best = -1, bestSlope = 0.0
            for i in options.indices where !blocked[i] && pos[i] + 1 < hulls[i].count {
                let a = options[i][hulls[i][pos[i]]], b = options[i][hulls[i][pos[i] + 1]]
                let slope = (a.cost - b.cost) / Double(b.bits - a.bits)
                if best < 0 || slope > bestSlope { best = i; bestSlope = slope }
            }
            guard best >= 0 else { break }
            let a = options[best][hulls[best][pos[best]]], b = options[best][hulls[best][pos[best] + 1]]
            if used - a.bits + b.bits <= budgetBits {
                used += b.bits - a.bits
                pos[best] += 1
                choice[best] = hulls[best][pos[best]]
            } else {
                blocked[best] = true
            }
        }
        // Fill what is left: any cheaper option that fits, the largest drop first.
        while true {
            var best: (item: Int, option: Int, drop: Double)? = nil
            for i in options.indices {
                let cur = options[i][choice[i]]
                for (j, o) in options[i].enumerated() where o.cost < cur.cost && used - cur.bits + o.bits <= budgetBits {
                    let drop = cur.cost - o.cost
                    if best == nil || drop > best!.drop { best = (i, j, drop) }
                }
            }
            guard let b = best else { break }
            used += options[b.item][b.option].bits - options[b.item][choice[b.item]].bits
            choice[b.item] = b.option
        }
        return choice
    }
}

public enum BitAllocationError: I2QError, Equatable {
    case infeasible(minimumBits: Int)
    public var description: String {
        switch self {
        case let .infeasible(b): return "no assignment of the candidates fits the budget: the smallest needs \(b) bits"
        }
    }
}
