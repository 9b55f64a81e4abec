import I2QCore

/// Why a GGUF's `tokenizer.ggml.*` metadata gives no tokenizer.
public enum GGUFTokenizerError: I2QError, Equatable {
    /// No `tokenizer.ggml.model`: the file carries no vocabulary.
    case missing(file: String)
    /// A valid vocabulary i2q's tokenizer cannot reproduce.
    case unsupported(file: String, key: String, value: String, detail: String)
    /// Keys of the wrong type, counts that disagree, ids out of range: a corrupt file.
    case invalid(file: String, key: String, detail: String)

    public var description: String {
        switch self {
        case let .missing(f):
            return "\(f): the GGUF has no tokenizer (no tokenizer.ggml.model key). Its weights convert, but to run or evaluate the model put the model's tokenizer.json and tokenizer_config.json next to the converted model (i2q cast \(f) --dtype f32 --format safetensors -o DIR)."
        case let .unsupported(f, k, v, d):
            return "\(f): metadata key \"\(k)\" is \"\(v)\": \(d)"
        case let .invalid(f, k, d):
            return "\(f): metadata key \"\(k)\": \(d) The tokenizer metadata is corrupt: convert or download the GGUF again."
        }
    }
}

/// The Hugging Face tokenizer files of a GGUF, built from its `tokenizer.ggml.*` metadata exactly as
/// transformers 5.24 builds its tokenizer for `AutoTokenizer.from_pretrained(dir, gguf_file=…)`
/// (`integrations/gguf/gguf_tokenizer_mapping.py`, then `TokenizersBackend`) and `save_pretrained`
/// writes it: `tokenizer.json` is byte-identical to transformers' (checked on SmolLM2's GGUF and on
/// small gpt2 / llama vocabularies, Tests/Fixtures/gguf-tokenizer), `tokenizer_config.json` holds the
/// same special tokens plus `add_bos_token` / `add_eos_token`.
///
/// - `gpt2` (byte-level BPE, `byte_level_tokenizer` → `GPT2Tokenizer`): tokens outside GPT-2's byte
///   alphabet are respelled byte by byte; merges from `tokenizer.ggml.merges` (or rebuilt from the
///   scores); ByteLevel pre-tokenizer (GPT-2's split, no prefix space) and decoder; `<|endoftext|>`
///   added as GPT2Tokenizer's default special token. `tokenizer.ggml.pre` "gpt-2", "smollm" and
///   "default" (or none) get GPT-2's split, as in transformers; values transformers splits with its
///   own regex ("llama-bpe", "qwen2", …) and unknown values are refused (i2q implements GPT-2's split
///   only). For "smollm", llama.cpp also isolates every digit: its ids differ from transformers' (and
///   i2q's) on text with digits after spaces (150 of the 7,438 lines of the tokenizer corpus).
/// - `llama` (SentencePiece-style BPE with byte fallback, `LlamaTokenizer`): merges from
///   `tokenizer.ggml.merges`, else rebuilt from the scores with transformers' `generate_merges` (every
///   split of a token into two vocabulary tokens, ranked by the token's score, then the lengths);
///   Metaspace `first`, decoder Replace/ByteFallback/Fuse/Strip; `<unk>`, `<s>`, `</s>` added as
///   special; BOS added unless `tokenizer.ggml.add_bos_token` is false. `tokenizer.ggml.pre` and
///   `tokenizer.ggml.add_space_prefix` are ignored, as transformers ignores them (llama.cpp honours a
///   false `add_space_prefix`).
/// - Added tokens: control tokens (type 3; for gpt2 only those spelled in the byte alphabet) as
///   special, user-defined ones (type 4) as plain added tokens, then the BOS/EOS/UNK/PAD tokens named
///   by the `*_token_id` keys as special — with tokenizers' `add_tokens` id rules (a token in the
///   vocabulary keeps its id, others get the next free id).
/// - The post-processor adds BOS / EOS as `add_bos_token` / `add_eos_token` say (transformers'
///   `update_post_processor`).
public struct GGUFTokenizer: Sendable {
    public enum Kind: String, Sendable { case gpt2, llama }

    public let kind: Kind
    /// tokenizer.json as transformers saves it.
    public let tokenizerJSON: JSONValue
    /// tokenizer_config.json (special tokens, add_bos_token / add_eos_token, tokenizer class).
    public let tokenizerConfig: JSONValue
    /// Where the result differs from what llama.cpp does with the same file (for `problems`).
    public let notes: [String]

    /// `tokenizer.ggml.pre` values whose split is GPT-2's in transformers (and in i2q).
    public static let gpt2SplitPre: Set<String> = ["default", "gpt-2", "smollm"]
    /// `tokenizer.ggml.pre` values transformers 5.24 splits with a regex of its own
    /// (`GGUF_PRE_TOKENIZER_SPLITS`): i2q's tokenizer does not implement them.
    static let transformersRegexPre: Set<String> = [
        "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano",
        "dbrx", "smaug-bpe", "tekken", "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "qwen35", "gpt-4o",
        "llama4", "kanana2", "talkie", "minimax-m2",
    ]
    /// transformers' `model_max_length` default (`VERY_LARGE_INTEGER`, `int(1e30)`).
    static let veryLargeInteger = "1000000000000000019884624838656"

    /// The files: `tokenizer.json` (compact key order and spelling of tokenizers' serializer, two-space
    /// indent, no trailing newline) and `tokenizer_config.json`.
    public var files: [(name: String, bytes: [UInt8])] {
        [("tokenizer.json", Array(JSONWriter.string(tokenizerJSON, indent: 2, asciiOnly: false).utf8)),
         ("tokenizer_config.json", Array((JSONWriter.string(tokenizerConfig, indent: 2, asciiOnly: false) + "\n").utf8))]
    }

    /// Whether the file holds a tokenizer i2q builds: reads and checks every `tokenizer.ggml.*` key
    /// (types, counts, id ranges; not the merges' contents). Throws `.missing`, `.unsupported` or
    /// `.invalid`; returns the notes on where llama.cpp tokenizes this file differently.
    @discardableResult
    public static func check(_ g: GGUFFile) throws -> [String] { try Keys(g).notes }

    /// The `tokenizer.ggml.*` keys, read and checked.
    struct Keys {
        let kind: Kind
        let tokens: [[UInt8]]
        let types: [Int]?
        let scores: [Double]?
        let merges: [[UInt8]]?
        /// bos, eos, unk, pad: the token each `*_token_id` names.
        let named: [(attr: String, token: [UInt8]?)]
        let addBos: Bool?
        let addEos: Bool?
        var notes: [String] = []

        init(_ g: GGUFFile) throws {
            let m = Meta(g)
            let path = g.path
            func invalid(_ k: String, _ d: String) -> GGUFTokenizerError { .invalid(file: path, key: k, detail: d) }
            guard let model = try m.string("tokenizer.ggml.model") else { throw GGUFTokenizerError.missing(file: path) }
            guard let kind = Kind(rawValue: model) else {
                throw GGUFTokenizerError.unsupported(file: path, key: "tokenizer.ggml.model", value: model, detail: "i2q builds \"gpt2\" (byte-level BPE) and \"llama\" (SentencePiece-style BPE) vocabularies only. The weights still convert; to run the model, put a tokenizer.json that i2q reads next to the converted model.")
            }
            self.kind = kind
            let pre = try m.string("tokenizer.ggml.pre")
            if kind == .gpt2, let pre, !gpt2SplitPre.contains(pre) {
                let why = transformersRegexPre.contains(pre)
                    ? "transformers splits this vocabulary with its own regex before BPE, and i2q's tokenizer implements GPT-2's split only."
                    : "an unknown pre-tokenizer; i2q knows \(gpt2SplitPre.sorted().map { "\"\($0)\"" }.joined(separator: ", ")) (GPT-2's split) and will not guess another."
                throw GGUFTokenizerError.unsupported(file: path, key: "tokenizer.ggml.pre", value: pre, detail: why + " The weights still convert; to run the model, put a tokenizer.json that i2q reads next to the converted model.")
            }
            if kind == .gpt2 && pre == "smollm" {
                notes.append("tokenizer.ggml.pre \"smollm\": llama.cpp isolates every digit before BPE; transformers' GGUF tokenizer (and i2q's, which matches it) does not, so text with numbers can get other ids than in llama.cpp.")
            }
            if kind == .llama, try m.bool("tokenizer.ggml.add_space_prefix") == false {
                notes.append("tokenizer.ggml.add_space_prefix is false: llama.cpp then adds no leading \"▁\"; transformers' GGUF tokenizer (and i2q's, which matches it) still does.")
            }

            // The raw vocabulary (transformers decodes every string as strict UTF-8).
            guard let tokens = try m.strings("tokenizer.ggml.tokens") else {
                throw invalid("tokenizer.ggml.tokens", "is missing; a GGUF vocabulary needs its tokens.")
            }
            guard !tokens.isEmpty else { throw invalid("tokenizer.ggml.tokens", "is empty.") }
            self.tokens = tokens
            let n = tokens.count
            types = try m.ints("tokenizer.ggml.token_type")
            if let t = types, t.count != n { throw invalid("tokenizer.ggml.token_type", "has \(t.count) entries but tokenizer.ggml.tokens has \(n).") }
            scores = try m.floats("tokenizer.ggml.scores")
            if let s = scores {
                guard s.count == n else { throw invalid("tokenizer.ggml.scores", "has \(s.count) entries but tokenizer.ggml.tokens has \(n).") }
                if let i = s.firstIndex(where: { $0.isNaN }) { throw invalid("tokenizer.ggml.scores", "entry \(i) is NaN.") }
            }
            merges = try m.strings("tokenizer.ggml.merges")
            if merges == nil && scores == nil {
                throw invalid("tokenizer.ggml.merges", "is missing and so is tokenizer.ggml.scores: the merges cannot be rebuilt.")
            }
            var named: [(attr: String, token: [UInt8]?)] = []
            for (attr, key) in [("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"), ("unk_token", "unknown_token_id"), ("pad_token", "padding_token_id")] {
                let k = "tokenizer.ggml." + key
                guard let v = g.value(k) else { named.append((attr, nil)); continue }
                guard let id = v.intValue else { throw invalid(k, "must be an integer, found \(m.describe(v)).") }
                guard id >= 0, id < n else { throw invalid(k, "is \(id), outside the \(n)-token vocabulary.") }
                named.append((attr, tokens[id]))
            }
            self.named = named
            addBos = try m.bool("tokenizer.ggml.add_bos_token")
            addEos = try m.bool("tokenizer.ggml.add_eos_token")
        }
    }

    public init(file g: GGUFFile) throws {
        let keys = try Keys(g)
        var notes = keys.notes
        let path = g.path
        func invalid(_ k: String, _ d: String) -> GGUFTokenizerError { .invalid(file: path, key: k, detail: d) }
        kind = keys.kind
        let tokens = keys.tokens, types = keys.types, scores = keys.scores, fileMerges = keys.merges, named = keys.named
        let n = tokens.count
        var addBos = keys.addBos
        let addEos = keys.addEos ?? false
        if kind == .llama && addBos == nil { addBos = true }  // get_gguf_tokenizer: setdefault for "llama"

        // The model's vocabulary: content → id (a repeated token keeps its last id, as a Python dict),
        // written in id order.
        let spelled: [[UInt8]] = kind == .gpt2 ? tokens.map(ByteAlphabet.respelled) : tokens
        var vocab: [[UInt8]: Int] = [:]
        vocab.reserveCapacity(n)
        for (i, t) in spelled.enumerated() { vocab[t] = i }
        if vocab.count < n { notes.append("\(n - vocab.count) token(s) of tokenizer.ggml.tokens repeat an earlier token; the last id wins (as transformers).") }

        // Merges: the file's, else rebuilt from the scores.
        var merges: [([UInt8], [UInt8])] = []
        if let fm = fileMerges {
            merges.reserveCapacity(fm.count)
            for (i, s) in fm.enumerated() {
                let parts = s.split(separator: 0x20, omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw invalid("tokenizer.ggml.merges", "entry \(i) \(quoted(s)) is not two tokens separated by one space.") }
                let a = Array(parts[0]), b = Array(parts[1])
                for p in [a, b, a + b] where vocab[p] == nil {  // tokenizers' BPE requires all three
                    throw invalid("tokenizer.ggml.merges", "entry \(i) \(quoted(s)) needs \(quoted(p)), which is not in tokenizer.ggml.tokens.")
                }
                merges.append((a, b))
            }
        } else {
            let s = scores!  // Keys: merges or scores
            var raw: [[UInt8]: Int] = [:]
            for (i, t) in tokens.enumerated() { raw[t] = i }
            merges = Self.generateMerges(tokens: tokens, vocab: raw, scores: s)
            if kind == .gpt2 {
                for (a, b) in merges { for p in [a, b, a + b] where vocab[p] == nil {
                    throw GGUFTokenizerError.unsupported(file: path, key: "tokenizer.ggml.merges", value: "(absent)", detail: "merges rebuilt from the scores name \(quoted(p)), which is not spelled in the byte alphabet; transformers cannot load this vocabulary either.")
                } }
            }
        }

        // Added tokens, in the order transformers adds them.
        var added = AddedTokens(vocab: vocab)
        let defaults = kind == .gpt2 ? ["<|endoftext|>"] : ["<s>", "</s>", "<unk>"]  // the class's bos, eos, unk
        for d in defaults { added.add(Array(d.utf8), special: true) }
        if let types {
            var skipped = 0
            for (i, t) in types.enumerated() where t == 3 {
                if kind == .gpt2 && !ByteAlphabet.isSpelled(tokens[i]) { skipped += 1; continue }
                added.add(tokens[i], special: true)
            }
            if skipped > 0 { notes.append("\(skipped) control token(s) are not spelled in the byte alphabet and are not special tokens (transformers skips them too).") }
            for (i, t) in types.enumerated() where t == 4 && added.inVocabulary(tokens[i]) {
                added.add(tokens[i], special: false)
            }
        }
        for (_, t) in named { if let t { added.add(t, special: true) } }

        // Post-processor: update_post_processor with the named BOS / EOS.
        let bos = named[0].token, eos = named[1].token
        let useBos = (addBos ?? false) && bos != nil, useEos = addEos && eos != nil
        var specials: [([UInt8], Int)] = []
        if useBos, let b = bos { specials.append((b, added.id(b)!)) }
        if useEos, let e = eos { specials.append((e, added.id(e)!)) }
        func special(_ t: [UInt8], _ typeId: Int) -> JSONValue { .object([("SpecialToken", .object([("id", .string(str(t))), ("type_id", .int(typeId))]))]) }
        func sequence(_ s: String, _ typeId: Int) -> JSONValue { .object([("Sequence", .object([("id", .string(s)), ("type_id", .int(typeId))]))]) }
        var single: [JSONValue] = [], pair: [JSONValue] = []
        for typeId in 0...1 {
            var part: [JSONValue] = []
            if useBos { part.append(special(bos!, typeId)) }
            part.append(sequence(typeId == 0 ? "A" : "B", typeId))
            if useEos { part.append(special(eos!, typeId)) }
            if typeId == 0 { single = part }
            pair += part
        }
        var specialEntries: [[UInt8]: Int] = [:]
        for (t, id) in specials { specialEntries[t] = id }
        let postProcessor: JSONValue = .object([
            ("type", .string("TemplateProcessing")), ("single", .array(single)), ("pair", .array(pair)),
            ("special_tokens", .object(specialEntries.keys.sorted { $0.lexicographicallyPrecedes($1) }.map { t in
                (str(t), .object([("id", .string(str(t))), ("ids", .array([.int(specialEntries[t]!)])), ("tokens", .array([.string(str(t))]))]))
            })),
        ])

        let preTokenizer: JSONValue, decoder: JSONValue, model: JSONValue
        let vocabJSON: JSONValue = .object(spelled.enumerated().compactMap { i, t in vocab[t] == i ? (str(t), .int(i)) : nil })
        let mergesJSON: JSONValue = .array(merges.map { .array([.string(str($0.0)), .string(str($0.1))]) })
        switch kind {
        case .gpt2:
            let byteLevel: (Bool) -> JSONValue = { prefix in
                .object([("type", .string("ByteLevel")), ("add_prefix_space", .bool(prefix)), ("trim_offsets", .bool(true)), ("use_regex", .bool(true))])
            }
            preTokenizer = byteLevel(false)
            decoder = byteLevel(true)
            model = .object([
                ("type", .string("BPE")), ("dropout", .null), ("unk_token", .null), ("continuing_subword_prefix", .string("")),
                ("end_of_word_suffix", .string("")), ("fuse_unk", .bool(false)), ("byte_fallback", .bool(false)),
                ("ignore_merges", .bool(false)), ("vocab", vocabJSON), ("merges", mergesJSON),
            ])
        case .llama:
            preTokenizer = .object([("type", .string("Metaspace")), ("replacement", .string("▁")), ("prepend_scheme", .string("first")), ("split", .bool(false))])
            decoder = .object([("type", .string("Sequence")), ("decoders", .array([
                .object([("type", .string("Replace")), ("pattern", .object([("String", .string("▁"))])), ("content", .string(" "))]),
                .object([("type", .string("ByteFallback"))]),
                .object([("type", .string("Fuse"))]),
                .object([("type", .string("Strip")), ("content", .string(" ")), ("start", .int(1)), ("stop", .int(0))]),
            ]))])
            model = .object([
                ("type", .string("BPE")), ("dropout", .null), ("unk_token", .null), ("continuing_subword_prefix", .null),
                ("end_of_word_suffix", .null), ("fuse_unk", .bool(true)), ("byte_fallback", .bool(true)),
                ("ignore_merges", .bool(false)), ("vocab", vocabJSON), ("merges", mergesJSON),
            ])
        }
        tokenizerJSON = .object([
            ("version", .string("1.0")), ("truncation", .null), ("padding", .null),
            ("added_tokens", .array(added.sorted.map { id, t in
                .object([("id", .int(id)), ("content", .string(str(t.content))), ("single_word", .bool(false)), ("lstrip", .bool(false)),
                         ("rstrip", .bool(false)), ("normalized", .bool(false)), ("special", .bool(t.special))])
            })),
            ("normalizer", .null), ("pre_tokenizer", preTokenizer), ("post_processor", postProcessor), ("decoder", decoder), ("model", model),
        ])

        // tokenizer_config.json: what save_pretrained writes (less the loader's is_local /
        // local_files_only), plus the BOS/EOS flags.
        var cfg: [(String, JSONValue)] = [("add_bos_token", .bool(addBos ?? false)), ("add_eos_token", .bool(addEos)), ("backend", .string("tokenizers"))]
        let tokenOf = Dictionary(named.map { ($0.attr, $0.token) }, uniquingKeysWith: { a, _ in a })
        cfg.append(("bos_token", tokenOf["bos_token"]!.map { .string(str($0)) } ?? .null))
        cfg.append(("eos_token", tokenOf["eos_token"]!.map { .string(str($0)) } ?? .null))
        cfg.append(("model_max_length", .number(Self.veryLargeInteger)))
        cfg.append(("pad_token", tokenOf["pad_token"]!.map { .string(str($0)) } ?? .null))
        cfg.append(("tokenizer_class", .string("TokenizersBackend")))
        cfg.append(("unk_token", tokenOf["unk_token"]!.map { .string(str($0)) } ?? .null))
        tokenizerConfig = .object(cfg)
        self.notes = notes
    }

    /// transformers' `generate_merges(vocab, vocab_scores)` (tokenization_utils_base.py): for every
    /// token (first occurrence order, last score), each split into two vocabulary tokens, the splits
    /// ordered by the parts' ids; then all of them by (score, length of left, length of right)
    /// descending, ties kept in order (Python's stable `sorted(reverse=True)`). Lengths count code points.
    static func generateMerges(tokens: [[UInt8]], vocab: [[UInt8]: Int], scores: [Double]) -> [([UInt8], [UInt8])] {
        struct M { let l: [UInt8], r: [UInt8], score: Double, ll: Int, rl: Int }
        var lastScore: [[UInt8]: Double] = [:]
        for (i, t) in tokens.enumerated() { lastScore[t] = scores[i] }
        var seen = Set<[UInt8]>()
        var all: [M] = []
        for t in tokens where seen.insert(t).inserted {
            let score = lastScore[t]!
            // UTF-8 offsets of the code point boundaries inside t.
            var bounds: [Int] = []
            for (k, b) in t.enumerated() where k > 0 && (b & 0xC0) != 0x80 { bounds.append(k) }
            let total = bounds.count + 1
            var local: [(M, Int, Int)] = []
            for (j, k) in bounds.enumerated() {
                let l = Array(t[..<k]), r = Array(t[k...])
                if let li = vocab[l], let ri = vocab[r] { local.append((M(l: l, r: r, score: score, ll: j + 1, rl: total - j - 1), li, ri)) }
            }
            local.sort { ($0.1, $0.2) < ($1.1, $1.2) }  // ids are distinct per split: no ties
            all += local.map(\.0)
        }
        let order = all.indices.sorted { a, b in
            let x = all[a], y = all[b]
            if x.score != y.score { return x.score > y.score }
            if x.ll != y.ll { return x.ll > y.ll }
            if x.rl != y.rl { return x.rl > y.rl }
            return a < b
        }
        return order.map { (all[$0].l, all[$0].r) }
    }
}

/// tokenizers' `AddedVocabulary::add_tokens` for tokens that are all `normalized: false` and have no
/// strip / single-word flags: a token already present with the same flags is skipped, one present
/// with other flags is replaced; the id is the existing added token's, else the vocabulary's, else
/// the next free id.
private struct AddedTokens {
    let vocab: [[UInt8]: Int]
    var byId: [Int: (content: [UInt8], special: Bool)] = [:]
    var idOf: [[UInt8]: Int] = [:]

    init(vocab: [[UInt8]: Int]) { self.vocab = vocab }

    func id(_ c: [UInt8]) -> Int? { idOf[c] ?? vocab[c] }
    /// `token in tokenizer.get_vocab()`.
    func inVocabulary(_ c: [UInt8]) -> Bool { id(c) != nil }

    mutating func add(_ c: [UInt8], special: Bool) {
        if c.isEmpty || byId.values.contains(where: { $0.content == c && $0.special == special }) { return }
        let newId: Int
        if let i = id(c) {
            newId = i
        } else {
            let size = vocab.count
            newId = idOf.values.max().map { $0 >= size || size == 0 ? $0 + 1 : size } ?? size
        }
        idOf[c] = newId
        byId[newId] = (c, special)
    }

    /// By id, as tokenizers serializes `added_tokens`.
    var sorted: [(Int, (content: [UInt8], special: Bool))] { byId.keys.sorted().map { ($0, byId[$0]!) } }
}

/// GPT-2's byte alphabet (`bytes_to_unicode`): printable Latin-1 bytes stand for themselves, the
/// other 68 map to U+0100 onwards.
enum ByteAlphabet {
    /// [256] byte → code point.
    static let scalars: [UInt32] = {
        var out = [UInt32](repeating: 0, count: 256)
        var extra: UInt32 = 0
        for b in 0..<256 {
            if (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b) {
                out[b] = UInt32(b)
            } else {
                out[b] = 256 + extra
                extra += 1
            }
        }
        return out
    }()
    static let set = Set(scalars)

    /// Every code point of `t` is in the alphabet (`set(token) <= alphabet`; an empty token is).
    static func isSpelled(_ t: [UInt8]) -> Bool {
        String(decoding: t, as: UTF8.self).unicodeScalars.allSatisfy { set.contains($0.value) }
    }

    /// `t` as is when spelled in the alphabet, else its UTF-8 bytes respelled.
    static func respelled(_ t: [UInt8]) -> [UInt8] {
        if isSpelled(t) { return t }
        var s = String.UnicodeScalarView()
        for b in t { s.append(Unicode.Scalar(scalars[Int(b)])!) }
        return Array(String(s).utf8)
    }
}

/// Typed reads of `tokenizer.*` keys: absent → nil, wrong type → `.invalid`.
private struct Meta {
    let g: GGUFFile
    init(_ g: GGUFFile) { self.g = g }

    func invalid(_ k: String, _ d: String) -> GGUFTokenizerError { .invalid(file: g.path, key: k, detail: d) }

    func string(_ k: String) throws -> String? {
        guard let v = g.value(k) else { return nil }
        guard case let .string(b) = v else { throw invalid(k, "must be a STRING, found \(v.type.name).") }
        guard let s = String(validating: b, as: UTF8.self) else { throw invalid(k, "is not valid UTF-8.") }
        return s
    }

    func bool(_ k: String) throws -> Bool? {
        guard let v = g.value(k) else { return nil }
        guard let b = v.boolValue else { throw invalid(k, "must be a BOOL, found \(v.type.name).") }
        return b
    }

    /// An array of strings, each valid UTF-8 (transformers decodes them strictly), as bytes.
    func strings(_ k: String) throws -> [[UInt8]]? {
        guard let v = g.value(k) else { return nil }
        guard case let .array(t, items) = v, t == .string else { throw invalid(k, "must be an ARRAY of STRING, found \(describe(v)).") }
        var out: [[UInt8]] = []
        out.reserveCapacity(items.count)
        for (i, item) in items.enumerated() {
            guard case let .string(b) = item else { throw invalid(k, "entry \(i) is not a string.") }
            guard String(validating: b, as: UTF8.self) != nil else { throw invalid(k, "entry \(i) is not valid UTF-8.") }
            out.append(b)
        }
        return out
    }

    func ints(_ k: String) throws -> [Int]? {
        guard let v = g.value(k) else { return nil }
        guard case let .array(_, items) = v else { throw invalid(k, "must be an ARRAY of integers, found \(v.type.name).") }
        return try items.map { x in
            guard let n = x.intValue else { throw invalid(k, "must be an ARRAY of integers, found \(describe(v)).") }
            return n
        }
    }

    func floats(_ k: String) throws -> [Double]? {
        guard let v = g.value(k) else { return nil }
        guard case let .array(_, items) = v else { throw invalid(k, "must be an ARRAY of FLOAT32, found \(v.type.name).") }
        return try items.map { x in
            guard let d = x.doubleValue else { throw invalid(k, "must be an ARRAY of FLOAT32, found \(describe(v)).") }
            return d
        }
    }

    func describe(_ v: GGUFValue) -> String {
        if case let .array(t, _) = v { return "an ARRAY of \(t.name)" }
        return v.type.name
    }
}

private func str(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

private func quoted(_ b: [UInt8]) -> String {
    var s = "\""
    for u in String(decoding: b, as: UTF8.self).unicodeScalars {
        if u.value < 0x20 || u == "\"" || u == "\\" { s += "\\u{\(String(u.value, radix: 16))}" } else { s.unicodeScalars.append(u) }
    }
    return s + "\""
}
