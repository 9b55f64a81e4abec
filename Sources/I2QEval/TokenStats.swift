import Dispatch
import Foundation

/// What one scored position contributes when a candidate model's logits are compared with the
/// base (reference) model's logits at the same position and target token.
///
/// Definitions as llama.cpp's `llama-perplexity --kl-divergence` (tools/perplexity/perplexity.cpp):
/// log-softmax of each row in double precision over the float32 logits,
///   nll    = −log p(target)                     (per model)
///   kld    = Σ_v p_base(v)·(log p_base(v) − log p_cand(v))   (KL(base ‖ candidate), nats)
///   Δp     = p_cand(target) − p_base(target)
///   sameTop: argmax_v base == argmax_v candidate  (first index on ties, as numpy.argmax)
/// Matches Tests/Fixtures/verify (numpy float64 over the same float32 logits) to ≤ 1e-9 relative.
public struct TokenComparison: Sendable, Equatable {
    public var nllBase: Double
    public var nllCandidate: Double
    public var kld: Double
    public var deltaP: Double
    public var sameTop: Bool

    public init(nllBase: Double, nllCandidate: Double, kld: Double, deltaP: Double, sameTop: Bool) {
        self.nllBase = nllBase; self.nllCandidate = nllCandidate; self.kld = kld; self.deltaP = deltaP; self.sameTop = sameTop
    }

    /// Compares one row: `base`, `candidate`: [vocab] f32 logits; `target` in 0..<vocab.
    public static func compare(base: UnsafePointer<Float>, candidate: UnsafePointer<Float>, vocab: Int, target: Int) -> TokenComparison {
        var mb = -Float.infinity, mc = -Float.infinity
        var ab = 0, ac = 0
        for j in 0..<vocab {
            if base[j] > mb { mb = base[j]; ab = j }
            if candidate[j] > mc { mc = candidate[j]; ac = j }
        }
        var sb = 0.0, sc = 0.0
        let dmb = Double(mb), dmc = Double(mc)
        for j in 0..<vocab {
            sb += Foundation.exp(Double(base[j]) - dmb)  // the difference in double, as numpy over float64 copies
            sc += Foundation.exp(Double(candidate[j]) - dmc)
        }
        let lseB = Foundation.log(sb) + dmb  // log Σ exp(base)
        let lseC = Foundation.log(sc) + dmc
        // Σ p_b (lb − lc) with lb = b − lseB, lc = c − lseC; p_b = exp(lb).
        var kl = 0.0
        for j in 0..<vocab {
            let lb = Double(base[j]) - lseB
            let lc = Double(candidate[j]) - lseC
            kl += Foundation.exp(lb) * (lb - lc)
        }
        let nb = lseB - Double(base[target])
        let nc = lseC - Double(candidate[target])
        return TokenComparison(nllBase: nb, nllCandidate: nc, kld: kl,
                               deltaP: Foundation.exp(-nc) - Foundation.exp(-nb), sameTop: ab == ac)
    }

    /// Compares `rows` rows of [rows, vocab] logits, split over both cores (row order kept).
    public static func compareRows(base: UnsafePointer<Float>, candidate: UnsafePointer<Float>, rows: Int, vocab: Int,
                                   targets: [Int]) -> [TokenComparison] {
        precondition(targets.count == rows)
        var out = [TokenComparison](repeating: TokenComparison(nllBase: 0, nllCandidate: 0, kld: 0, deltaP: 0, sameTop: false), count: rows)
        out.withUnsafeMutableBufferPointer { op in
            // The two halves write disjoint rows of `out` and only read the logits.
            let p = RowPointers(out: op.baseAddress!, base: base, candidate: candidate)
            let parts = rows >= 4 ? 2 : 1
            DispatchQueue.concurrentPerform(iterations: parts) { part in
                let lo = rows * part / parts, hi = rows * (part + 1) / parts
                for r in lo..<hi {
                    p.out[r] = compare(base: p.base + r * vocab, candidate: p.candidate + r * vocab, vocab: vocab, target: targets[r])
                }
            }
        }
        return out
    }
}

/// Pointers shared by the row-parallel comparison (disjoint writes).
private struct RowPointers: @unchecked Sendable {
    let out: UnsafeMutablePointer<TokenComparison>
    let base: UnsafePointer<Float>
    let candidate: UnsafePointer<Float>
}

/// Percentile of sorted values with linear interpolation between order statistics (numpy.percentile's
/// default "linear" method, and llama.cpp's `percentile` helper): rank = q·(n−1).
public func interpolatedPercentile(sorted v: [Double], _ q: Double) -> Double {
    guard !v.isEmpty else { return .nan }
    if q <= 0 { return v[0] }
    if q >= 1 { return v[v.count - 1] }
    let p = q * Double(v.count - 1)
    let i = Int(p.rounded(.down))
    let f = p - Double(i)
    let j = min(i + 1, v.count - 1)
    return v[i] + f * (v[j] - v[i])
}

/// Text statistics of a candidate against a base over the same tokens, as llama-perplexity
/// --kl-divergence prints them (errors are one standard error of the mean, as there).
public struct TokenStatistics: Sendable {
    public let count: Int
    public let pplBase: Double, pplBaseErr: Double
    public let pplCandidate: Double, pplCandidateErr: Double
    /// mean(nll_cand − nll_base) = ln(PPL(cand)/PPL(base)), and its standard error.
    public let meanLnRatio: Double, meanLnRatioErr: Double
    /// exp(meanLnRatio) = PPL(cand)/PPL(base); error = ratio·meanLnRatioErr.
    public let pplRatio: Double, pplRatioErr: Double
    /// Pearson correlation of the per-token nll of the two models (llama.cpp: Cor(ln(PPL(Q)), ln(PPL(base)))).
    public let nllCorrelation: Double
    public let kldMean: Double, kldMeanErr: Double
    /// KLD percentiles keyed "max", "p99_9", "p99", "p90", "median", "p10", "p5", "p1", "min".
    public let kldPercentiles: [(String, Double)]
    public let deltaPMean: Double, deltaPMeanErr: Double
    public let deltaPRMS: Double, deltaPRMSErr: Double
    /// Δp percentiles keyed "max", "p99_9", "p99", "p95", "p90", "p75", "median", "p25", "p10", "p5", "p1", "p0_1", "min".
    public let deltaPPercentiles: [(String, Double)]
    public let sameTop: Double, sameTopErr: Double
    /// Sorted per-token KLD (for the histogram/CDF plots; not written to JSON).
    public let sortedKLD: [Double]

    static let kldQuantiles: [(String, Double)] = [("max", 1), ("p99_9", 0.999), ("p99", 0.99), ("p90", 0.90), ("median", 0.5),
                                                  ("p10", 0.10), ("p5", 0.05), ("p1", 0.01), ("min", 0)]
    static let deltaPQuantiles: [(String, Double)] = [("max", 1), ("p99_9", 0.999), ("p99", 0.99), ("p95", 0.95), ("p90", 0.90),
                                                     ("p75", 0.75), ("median", 0.5), ("p25", 0.25), ("p10", 0.10), ("p5", 0.05),
                                                     ("p1", 0.01), ("p0_1", 0.001), ("min", 0)]

    /// Summarises per-token comparisons (at least 2).
    public init(_ tokens: [TokenComparison]) {
        let n = Double(tokens.count)
        count = tokens.count
        // Standard error of a mean from E[x] and E[x²]: sqrt((E[x²] − E[x]²)/(n − 1)) (llama.cpp's mean_and_uncertainty).
        func meanErr(_ sum: Double, _ sum2: Double) -> (Double, Double) {
            let m = sum / n
            let v = sum2 / n - m * m
            return (m, n > 1 ? (max(v, 0) / (n - 1)).squareRoot() : .nan)
        }
        var sb = 0.0, sb2 = 0.0, sc = 0.0, sc2 = 0.0, sbc = 0.0, sd = 0.0, sd2 = 0.0
        var sk = 0.0, sk2 = 0.0, sp = 0.0, sp2 = 0.0, sp4 = 0.0, same = 0
        for t in tokens {
            sb += t.nllBase; sb2 += t.nllBase * t.nllBase
            sc += t.nllCandidate; sc2 += t.nllCandidate * t.nllCandidate
            sbc += t.nllBase * t.nllCandidate
            let d = t.nllCandidate - t.nllBase
            sd += d; sd2 += d * d
            sk += t.kld; sk2 += t.kld * t.kld
            sp += t.deltaP; let p2 = t.deltaP * t.deltaP; sp2 += p2; sp4 += p2 * p2
            if t.sameTop { same += 1 }
        }
        let (mb, eb) = meanErr(sb, sb2), (mc, ec) = meanErr(sc, sc2)
        pplBase = Foundation.exp(mb); pplBaseErr = pplBase * eb
        pplCandidate = Foundation.exp(mc); pplCandidateErr = pplCandidate * ec
        (meanLnRatio, meanLnRatioErr) = meanErr(sd, sd2)
        pplRatio = Foundation.exp(meanLnRatio); pplRatioErr = pplRatio * meanLnRatioErr
        let cov = sbc / n - mb * mc
        let vb = sb2 / n - mb * mb, vc = sc2 / n - mc * mc
        nllCorrelation = cov / (vb * vc).squareRoot()
        (kldMean, kldMeanErr) = meanErr(sk, sk2)
        (deltaPMean, deltaPMeanErr) = meanErr(sp, sp2)
        // RMS Δp = sqrt(E[Δp²]); error propagated from the standard error of E[Δp²]: err/(2·rms).
        let (ms, msErr) = meanErr(sp2, sp4)
        deltaPRMS = ms.squareRoot(); deltaPRMSErr = ms > 0 ? msErr / (2 * deltaPRMS) : 0
        let p = Double(same) / n
        sameTop = p; sameTopErr = n > 1 ? (p * (1 - p) / (n - 1)).squareRoot() : .nan  // binomial
        let k = tokens.map(\.kld).sorted()
        sortedKLD = k
        kldPercentiles = Self.kldQuantiles.map { ($0.0, interpolatedPercentile(sorted: k, $0.1)) }
        let dp = tokens.map(\.deltaP).sorted()
        deltaPPercentiles = Self.deltaPQuantiles.map { ($0.0, interpolatedPercentile(sorted: dp, $0.1)) }
    }
}
