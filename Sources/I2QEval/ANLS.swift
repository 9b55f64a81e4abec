/// Average Normalized Levenshtein Similarity, the DocVQA metric (Biten et al. 2019; the official
/// evaluation script of the Robust Reading Competition, rrc.cvc.uab.es, "Document VQA" task):
///
///     for each ground-truth answer g:
///         g' = ' '.join(g.strip().lower().split());  p' = ' '.join(p.strip().lower().split())
///         nl = levenshtein(g', p') / max(len(g'), len(p))      (0 when both are empty)
///     score = 1 − min nl;  score = 0 if score < 0.5 (threshold τ = 0.5)
///     ANLS = mean score over questions
///
/// As in the official script, the length of the prediction is taken *before* normalisation
/// (`len(detObject['answer'].upper())`); lengths and distances count Unicode code points, like
/// Python's `len` on `str`. Tests/Fixtures/verify/anls.json (scripts/fixtures/make_verify_goldens.py, a
/// transcription of that script) checks tricky pairs.
public enum ANLS {
    public static let threshold = 0.5

    /// Python's `str.isspace` for one code point: Unicode White_Space plus U+001C…U+001F.
    static func isSpace(_ u: Unicode.Scalar) -> Bool {
        u.properties.isWhitespace || (0x1C...0x1F).contains(u.value)
    }

    /// `' '.join(s.strip().lower().split())`, as code points.
    public static func normalize(_ s: String) -> [Unicode.Scalar] {
        let lower = s.lowercased()
        var out: [Unicode.Scalar] = []
        var pendingSpace = false
        for u in lower.unicodeScalars {
            if isSpace(u) {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace { out.append(" ") }
                pendingSpace = false
                out.append(u)
            }
        }
        return out
    }

    /// Levenshtein distance (unit costs) between code point sequences; O(n·m) time, O(m) memory.
    public static func levenshtein(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count)
        var cur = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            cur[0] = i
            for j in 1...b.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[b.count]
    }

    /// The score of one question: max over answers of the thresholded similarity (0 with no answers).
    public static func score(prediction: String, answers: [String]) -> Double {
        guard !answers.isEmpty else { return 0 }
        let p = normalize(prediction)
        let rawLength = prediction.uppercased().unicodeScalars.count
        var best = 0.0
        for a in answers {
            let g = normalize(a)
            let length = max(g.count, rawLength)
            let nl = length == 0 ? 0.0 : Double(levenshtein(g, p)) / Double(length)
            best = max(best, 1 - nl)
        }
        return best < threshold ? 0 : best
    }

    /// Whether the normalised prediction equals one of the normalised answers.
    public static func exactMatch(prediction: String, answers: [String]) -> Bool {
        let p = normalize(prediction)
        return answers.contains { normalize($0) == p }
    }

    /// Mean score over questions.
    public static func mean(predictions: [String], answers: [[String]]) -> Double {
        precondition(predictions.count == answers.count)
        guard !predictions.isEmpty else { return .nan }
        return zip(predictions, answers).map { score(prediction: $0, answers: $1) }.reduce(0, +) / Double(predictions.count)
    }
}
