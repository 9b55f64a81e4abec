/// The prompt expansion of transformers 5.24's `Idefics2Processor.__call__`: each `<image>` becomes
/// `<fake_token_around_image>` + `<image>`×image_seq_len + `<fake_token_around_image>` (repeated 5
/// times with image splitting), doubled fake tokens collapse to one, and a space is inserted after a
/// fake token directly followed by a character that is neither whitespace nor `<`.
public enum Idefics2Prompt {
    public static let fake = "<fake_token_around_image>"
    public static let image = "<image>"
    public static let endOfUtterance = "<end_of_utterance>"

    public static func expand(_ text: String, imageSeqLen: Int, splitting: Bool) -> String {
        var one = fake + String(repeating: image, count: imageSeqLen) + fake
        if splitting { one = String(repeating: one, count: 5) }
        var s = text.replacingAll(image, with: one)
        s = s.replacingAll(fake + fake, with: fake)
        // closing_fake_pattern = fake(?=[^\s<]) → "fake "
        var out = ""
        var rest = Substring(s)
        while let r = rest.range(of: fake) {
            out += rest[..<r.upperBound]
            rest = rest[r.upperBound...]
            if let c = rest.first, !c.isWhitespace, c != "<" { out += " " }
        }
        out += rest
        return out
    }

    /// Number of `<image>` placeholders in a prompt.
    public static func imageCount(_ text: String) -> Int {
        var n = 0
        var rest = Substring(text)
        while let r = rest.range(of: image) { n += 1; rest = rest[r.upperBound...] }
        return n
    }
}

extension String {
    /// Python's `str.replace(old, new)`: every non-overlapping occurrence, left to right.
    func replacingAll(_ old: String, with new: String) -> String {
        var out = ""
        var rest = Substring(self)
        while let r = rest.range(of: old) {
            out += rest[..<r.lowerBound]
            out += new
            rest = rest[r.upperBound...]
        }
        out += rest
        return out
    }
}

extension Substring {
    /// Literal (byte-wise, not canonical-equivalence) search.
    func range(of needle: String) -> Range<Substring.Index>? {
        let n = Array(needle.utf8)
        guard !n.isEmpty else { return nil }
        let u = self.utf8
        var i = u.startIndex
        while i != u.endIndex {
            var j = i, k = 0
            while k < n.count, j != u.endIndex, u[j] == n[k] { j = u.index(after: j); k += 1 }
            if k == n.count { return i..<j }
            i = u.index(after: i)
        }
        return nil
    }
}
