import I2QCore
import Synchronization

/// A model turns one pre-tokenized word into ids.
protocol TokenizerModel: Sendable {
    func tokenize(_ word: [UInt8], into ids: inout [Int])
    func tokenToId(_ token: [UInt8]) -> Int?
    func idToToken(_ id: Int) -> [UInt8]?
    var vocabulary: [[UInt8]: Int] { get }
}

/// Byte-pair encoding exactly as huggingface/tokenizers' `BPE` does it: characters (Unicode
/// scalars) looked up in the vocabulary, byte fallback to `<0xNN>` tokens, unknown characters to
/// `unk_token` (fused or not) or dropped, then merges applied lowest rank first, leftmost on ties,
/// with a priority queue over a linked list of symbols (stale entries are skipped exactly as the
/// reference skips them). Words are cached.
final class BPEModel: TokenizerModel {
    struct Options {
        var unkToken: String? = nil
        var continuingSubwordPrefix: String? = nil
        var endOfWordSuffix: String? = nil
        var fuseUnk = false
        var byteFallback = false
        var ignoreMerges = false
    }

    let vocabulary: [[UInt8]: Int]
    private let idToTokenTable: [Int: [UInt8]]
    /// Single-scalar tokens (most lookups) without hashing arrays.
    private let scalarIds: [UInt32: Int32]
    /// pair (a << 32 | b) -> rank << 32 | new id
    private let merges: [UInt64: UInt64]
    private let byteFallbackIds: [Int32]?  // `<0xNN>` ids, when every one exists
    private let byteFallbackPartial: [Int32?]
    private let unkId: Int?
    private let prefix: [UInt8]?
    private let suffix: [UInt8]?
    private let options: Options
    private let cache = Mutex<[[UInt8]: [Int32]]>([:])
    static let cacheCapacity = 10_000
    static let cacheMaxWordLength = 256

    init(vocabulary: [[UInt8]: Int], merges: [([UInt8], [UInt8])], options: Options, file: String) throws {
        self.vocabulary = vocabulary
        self.options = options
        var back: [Int: [UInt8]] = [:]
        back.reserveCapacity(vocabulary.count)
        var sids: [UInt32: Int32] = [:]
        for (k, id) in vocabulary {
            back[id] = k
            if !k.isEmpty, utf8Length(k[0]) == k.count { sids[scalars(k)[0]] = Int32(id) }
        }
        idToTokenTable = back
        scalarIds = sids
        let prefixBytes = options.continuingSubwordPrefix.map { Array($0.utf8) }
        let prefixLength = prefixBytes?.count ?? 0
        var m: [UInt64: UInt64] = [:]
        m.reserveCapacity(merges.count)
        for (rank, (a, b)) in merges.enumerated() {
            guard let ia = vocabulary[a] else {
                throw TokenizerError.mergeTokenNotInVocabulary(file: file, index: rank, token: String(decoding: a, as: UTF8.self))
            }
            guard let ib = vocabulary[b] else {
                throw TokenizerError.mergeTokenNotInVocabulary(file: file, index: rank, token: String(decoding: b, as: UTF8.self))
            }
            let merged = a + b.dropFirst(min(prefixLength, b.count))
            guard let inew = vocabulary[merged] else {
                throw TokenizerError.mergeTokenNotInVocabulary(file: file, index: rank, token: String(decoding: merged, as: UTF8.self))
            }
            m[UInt64(ia) << 32 | UInt64(ib)] = UInt64(rank) << 32 | UInt64(inew)
        }
        self.merges = m
        var partial = [Int32?](repeating: nil, count: 256)
        for b in 0..<256 {
            let hex = String(b, radix: 16, uppercase: true)
            let name = "<0x" + (hex.count == 1 ? "0" + hex : hex) + ">"
            partial[b] = vocabulary[Array(name.utf8)].map { Int32($0) }
        }
        byteFallbackPartial = partial
        byteFallbackIds = partial.allSatisfy { $0 != nil } ? partial.map { $0! } : nil
        if let u = options.unkToken {
            guard let id = vocabulary[Array(u.utf8)] else {
                throw TokenizerError.unknownToken(file: file, path: "model.unk_token", token: u)
            }
            unkId = id
        } else {
            unkId = nil
        }
        prefix = prefixBytes.flatMap { $0.isEmpty ? nil : $0 }
        suffix = options.endOfWordSuffix.flatMap { $0.isEmpty ? nil : Array($0.utf8) }
    }

    func tokenToId(_ token: [UInt8]) -> Int? { vocabulary[token] }
    func idToToken(_ id: Int) -> [UInt8]? { idToTokenTable[id] }

    func tokenize(_ word: [UInt8], into ids: inout [Int]) {
        if word.isEmpty { return }
        if options.ignoreMerges, let id = vocabulary[word] { ids.append(id); return }
        if let hit = cache.withLock({ $0[word] }) {
            for id in hit { ids.append(Int(id)) }
            return
        }
        let result = mergeWord(word)
        for id in result { ids.append(Int(id)) }
        if word.count < Self.cacheMaxWordLength {
            cache.withLock { c in if c.count < Self.cacheCapacity { c[word] = result } }
        }
    }

    /// The id of one character of a word (with the continuing prefix / end-of-word suffix when set).
    @inline(__always)
    private func characterId(_ w: UnsafeBufferPointer<UInt8>, _ start: Int, _ length: Int, scalar: UInt32, first: Bool, last: Bool) -> Int32? {
        let usePrefix = !first && prefix != nil
        let useSuffix = last && suffix != nil
        if !usePrefix && !useSuffix { return scalarIds[scalar] }
        var s: [UInt8] = []
        if usePrefix { s += prefix! }
        s += UnsafeBufferPointer(rebasing: w[start..<(start + length)])
        if useSuffix { s += suffix! }
        return vocabulary[s].map { Int32($0) }
    }

    /// The symbols of a word before merging, then `merge_all`.
    func mergeWord(_ word: [UInt8]) -> [Int32] {
        var c: [Int32] = []
        var len: [Int32] = []
        c.reserveCapacity(word.count)
        len.reserveCapacity(word.count)
        var unk: (Int32, Int32)? = nil
        word.withUnsafeBufferPointer { w in
            var i = 0
            while i < w.count {
                let (scalar, l) = decodeScalar(w, i)
                let first = i == 0, last = i + l == w.count
                if let id = characterId(w, i, l, scalar: scalar, first: first, last: last) {
                    if let u = unk { c.append(u.0); len.append(u.1); unk = nil }
                    c.append(id); len.append(Int32(l))
                    i += l
                    continue
                }
                if options.byteFallback {
                    // The character's bytes (with the prefix/suffix, as the reference does).
                    var bytes = Array(UnsafeBufferPointer(rebasing: w[i..<(i + l)]))
                    if !first, let p = prefix { bytes = p + bytes }
                    if last, let s = suffix { bytes += s }
                    if bytes.allSatisfy({ byteFallbackPartial[Int($0)] != nil }) {
                        for b in bytes { c.append(byteFallbackPartial[Int(b)]!); len.append(1) }
                        i += l
                        continue
                    }
                }
                if let uid = unkId {
                    if let u = unk {
                        if options.fuseUnk {
                            unk = (u.0, u.1 + Int32(l))
                        } else {
                            c.append(u.0); len.append(u.1)
                            unk = (Int32(uid), Int32(l))
                        }
                    } else {
                        unk = (Int32(uid), Int32(l))
                    }
                }
                i += l
            }
        }
        if let u = unk { c.append(u.0); len.append(u.1) }
        if c.count < 2 { return c }
        return mergeAll(c, len)
    }

    /// tokenizers' `Word::merge_all` (without dropout).
    private func mergeAll(_ symbols: [Int32], _ lengths: [Int32]) -> [Int32] {
        let n = symbols.count
        var c = symbols
        var len = lengths
        var prev = [Int32](repeating: -1, count: n)
        var next = [Int32](repeating: -1, count: n)
        for i in 0..<n {
            prev[i] = Int32(i - 1)
            next[i] = i + 1 < n ? Int32(i + 1) : -1
        }
        // Min-heap of (rank << 32 | pos) with the new id alongside.
        var heap = MergeHeap(capacity: n)
        for i in 0..<(n - 1) {
            if let m = merges[UInt64(UInt32(bitPattern: c[i])) << 32 | UInt64(UInt32(bitPattern: c[i + 1]))] {
                heap.push(key: (m >> 32) << 32 | UInt64(i), newId: Int32(truncatingIfNeeded: m & 0xFFFF_FFFF))
            }
        }
        while let (key, newId) = heap.pop() {
            let pos = Int(key & 0xFFFF_FFFF)
            if len[pos] == 0 { continue }
            let nx = next[pos]
            if nx == -1 { continue }
            let right = Int(nx)
            // Skip expired entries: the pair at pos must still produce the same token.
            guard let m = merges[UInt64(UInt32(bitPattern: c[pos])) << 32 | UInt64(UInt32(bitPattern: c[right]))],
                  Int32(truncatingIfNeeded: m & 0xFFFF_FFFF) == newId else { continue }
            c[pos] = newId
            len[pos] += len[right]
            next[pos] = next[right]
            len[right] = 0
            if next[right] > -1 && Int(next[right]) < n { prev[Int(next[right])] = Int32(pos) }
            let p = prev[pos]
            if p >= 0 {
                let pi = Int(p)
                if let m2 = merges[UInt64(UInt32(bitPattern: c[pi])) << 32 | UInt64(UInt32(bitPattern: c[pos]))] {
                    heap.push(key: (m2 >> 32) << 32 | UInt64(pi), newId: Int32(truncatingIfNeeded: m2 & 0xFFFF_FFFF))
                }
            }
            let nn = next[pos]
            if nn >= 0 && Int(nn) < n {
                if let m2 = merges[UInt64(UInt32(bitPattern: c[pos])) << 32 | UInt64(UInt32(bitPattern: c[Int(nn)]))] {
                    heap.push(key: (m2 >> 32) << 32 | UInt64(pos), newId: Int32(truncatingIfNeeded: m2 & 0xFFFF_FFFF))
                }
            }
        }
        var out: [Int32] = []
        out.reserveCapacity(n)
        for i in 0..<n where len[i] != 0 { out.append(c[i]) }
        return out
    }
}

/// A binary min-heap keyed by (rank, position) packed in a UInt64.
struct MergeHeap {
    private var keys: [UInt64] = []
    private var ids: [Int32] = []

    init(capacity: Int) { keys.reserveCapacity(capacity); ids.reserveCapacity(capacity) }

    mutating func push(key: UInt64, newId: Int32) {
        keys.append(key); ids.append(newId)
        var i = keys.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if keys[parent] <= keys[i] { break }
            keys.swapAt(parent, i); ids.swapAt(parent, i)
            i = parent
        }
    }

    mutating func pop() -> (UInt64, Int32)? {
        guard let top = keys.first else { return nil }
        let topId = ids[0]
        let lastKey = keys.removeLast(), lastId = ids.removeLast()
        if !keys.isEmpty {
            keys[0] = lastKey; ids[0] = lastId
            var i = 0
            let n = keys.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n && keys[l] < keys[m] { m = l }
                if r < n && keys[r] < keys[m] { m = r }
                if m == i { break }
                keys.swapAt(m, i); ids.swapAt(m, i)
                i = m
            }
        }
        return (top, topId)
    }
}

/// The BPE model of tokenizer.json's `model`. `options`, when given, replaces the file's options
/// (transformers classes that rebuild the model from the vocabulary and merges).
func makeBPE(_ model: JSONValue, _ r: JSONReader, options given: BPEModel.Options? = nil) throws -> BPEModel {
    let path = "model"
    if let t = r.field(model, "type") {
        let type = try r.string(t, "model.type")
        guard type == "BPE" else {
            throw TokenizerError.unsupported(file: r.file, path: "model.type", what: "model type \(debugQuoted(type)) (only BPE is implemented)")
        }
    }
    var options = BPEModel.Options()
    if let g = given {
        options = g
    } else {
        if let d = r.field(model, "dropout") {
            guard let x = d.doubleValue else { throw TokenizerError.invalidField(file: r.file, path: "model.dropout", expected: "a number or null") }
            if x != 0 { throw TokenizerError.unsupported(file: r.file, path: "model.dropout", what: "BPE dropout \(x) (encoding would be random)") }
        }
        options.unkToken = try r.optionalString(model, "unk_token", path)
        options.continuingSubwordPrefix = try r.optionalString(model, "continuing_subword_prefix", path)
        options.endOfWordSuffix = try r.optionalString(model, "end_of_word_suffix", path)
        // Both are glued to every piece (real files: "##", "</w>"); a long one multiplies the memory
        // of every encoding by its length.
        for (key, v) in [("continuing_subword_prefix", options.continuingSubwordPrefix), ("end_of_word_suffix", options.endOfWordSuffix)] {
            if let v, v.utf8.count > 64 {
                throw TokenizerError.invalidField(file: r.file, path: "model." + key, expected: "a string of at most 64 bytes (got \(v.utf8.count))")
            }
        }
        options.fuseUnk = try r.optionalBool(model, "fuse_unk", path) ?? false
        options.byteFallback = try r.optionalBool(model, "byte_fallback", path) ?? false
        options.ignoreMerges = try r.optionalBool(model, "ignore_merges", path) ?? false
    }

    let vocabEntries = try r.object(try r.required(model, "vocab", path), "model.vocab")
    var vocab: [[UInt8]: Int] = [:]
    vocab.reserveCapacity(vocabEntries.count)
    for (k, v) in vocabEntries {
        guard let id = v.intValue, id >= 0, id <= Int(Int32.max) else {
            throw TokenizerError.invalidField(file: r.file, path: "model.vocab[\(debugQuoted(k))]", expected: "a non-negative integer id")
        }
        vocab[Array(k.utf8)] = id
    }
    let mergeValues = try r.array(try r.required(model, "merges", path), "model.merges")
    var merges: [([UInt8], [UInt8])] = []
    merges.reserveCapacity(mergeValues.count)
    for (i, m) in mergeValues.enumerated() {
        if let s = m.stringValue {
            if s.hasPrefix("#version") { continue }  // as tokenizers' merges.txt reader
            let parts = s.utf8.split(separator: 0x20, omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw TokenizerError.invalidField(file: r.file, path: "model.merges[\(i)]", expected: "two tokens separated by one space, got \(debugQuoted(s))")
            }
            merges.append((Array(parts[0]), Array(parts[1])))
        } else if let pair = m.arrayValue {
            guard pair.count == 2, let a = pair[0].stringValue, let b = pair[1].stringValue else {
                throw TokenizerError.invalidField(file: r.file, path: "model.merges[\(i)]", expected: "a pair of strings")
            }
            merges.append((Array(a.utf8), Array(b.utf8)))
        } else {
            throw TokenizerError.invalidField(file: r.file, path: "model.merges[\(i)]", expected: "\"a b\" or [\"a\", \"b\"]")
        }
    }
    return try BPEModel(vocabulary: vocab, merges: merges, options: options, file: r.file)
}
