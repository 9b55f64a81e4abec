import Foundation
import I2QCore

/// A tokenizer read from `tokenizer.json` (+ `tokenizer_config.json`) that gives the ids
/// transformers 5.24 gives: huggingface/tokenizers' pipeline (added tokens → normalizer →
/// pre-tokenizer → BPE → post-processor; decoders on the way back), with what transformers'
/// loading does on top of the file:
///
/// - `tokenizer_class` `LlamaTokenizer`/`GPT2Tokenizer` (and their `Fast` names) rebuild the
///   pipeline around the file's vocabulary and merges exactly as transformers' classes do (the
///   file's normalizer, pre-tokenizer, decoder and BPE options are ignored, its post-processor
///   kept). Llama: Metaspace with `prepend_scheme` `first` (`legacy: false`, the default) or
///   `always` (`legacy: true`), byte fallback; GPT-2: ByteLevel without prefix space.
/// - BOS/EOS come from the file's post-processor: transformers ignores the config's
///   `add_bos_token` / `add_eos_token` when a tokenizer.json exists.
/// - added tokens of the config (`added_tokens_decoder`) and the named special tokens
///   (`bos_token`, ..., `additional_special_tokens` / `extra_special_tokens`) are added when the
///   file lacks them.
public final class Tokenizer: Sendable {
    let normalizer: (any Normalizer)?
    let preTokenizer: (any PreTokenizer)?
    let model: BPEModel
    let postProcessor: (any PostProcessor)?
    let decoder: (any TokenDecoder)?
    let added: AddedVocabulary

    /// Where the files came from (a directory or an `.i2q` file), used in messages.
    public let source: String
    public let bosTokenId: Int?
    public let eosTokenId: Int?
    /// Distinct tokens: the model's vocabulary plus added tokens not in it (`len(tokenizer)`).
    public let vocabSize: Int

    /// Reads `tokenizer.json` and, when present, `tokenizer_config.json` and (for older
    /// checkpoints whose config lacks them) `special_tokens_map.json` from a model directory.
    public convenience init(directory: String) throws {
        func read(_ name: String, required: Bool) throws -> [UInt8]? {
            let path = (directory as NSString).appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: path) else {
                if required { throw TokenizerError.unreadable(file: path, reason: "no such file") }
                return nil
            }
            guard let data = FileManager.default.contents(atPath: path) else {
                throw TokenizerError.unreadable(file: path, reason: "cannot read the file")
            }
            return [UInt8](data)
        }
        try self.init(tokenizerJSON: try read("tokenizer.json", required: true)!,
                      tokenizerConfigJSON: try read("tokenizer_config.json", required: false),
                      specialTokensMapJSON: try read("special_tokens_map.json", required: false),
                      source: directory)
    }

    /// Builds the tokenizer from the bytes of `tokenizer.json` and `tokenizer_config.json` (as
    /// an `.i2q` file keeps them). `source` names their origin in error messages.
    public convenience init(tokenizerJSON: [UInt8], tokenizerConfigJSON: [UInt8]?, specialTokensMapJSON: [UInt8]? = nil,
                source: String) throws {
        try self.init(tokenizer: try parseJSON(tokenizerJSON, source + "/tokenizer.json"),
                      config: try tokenizerConfigJSON.map { try parseJSON($0, source + "/tokenizer_config.json") },
                      specialTokensMap: try specialTokensMapJSON.map { try parseJSON($0, source + "/special_tokens_map.json") },
                      source: source)
    }

    /// Builds the tokenizer from parsed files.
    init(tokenizer root: JSONValue, config configValue: JSONValue?, specialTokensMap: JSONValue? = nil, source: String) throws {
        self.source = source
        let file = source + "/tokenizer.json"
        let configFile = source + "/tokenizer_config.json"
        let r = JSONReader(file: file)
        guard root.objectEntries != nil else { throw TokenizerError.invalidField(file: file, path: "(root)", expected: "an object") }
        var config = configValue ?? JSONValue.object([])
        guard config.objectEntries != nil else {
            throw TokenizerError.invalidField(file: configFile, path: "(root)", expected: "an object")
        }
        let cr = JSONReader(file: configFile)
        if let map = specialTokensMap {
            // Legacy: special_tokens_map.json fills what the config does not say (transformers
            // reads it only when the config has no added_tokens_decoder).
            if cr.field(config, "added_tokens_decoder") == nil, let entries = map.objectEntries {
                for (k, v) in entries where cr.field(config, k) == nil { config = config.setting(k, v) }
            }
        }

        // Which pipeline: the file's, or the one a transformers class rebuilds.
        var tokenizerClass = try cr.optionalString(config, "tokenizer_class", "") ?? ""
        if tokenizerClass.hasSuffix("Fast") { tokenizerClass.removeLast(4) }
        let kind: ClassKind
        switch tokenizerClass {
        case "LlamaTokenizer": kind = .llama
        case "GPT2Tokenizer": kind = .gpt2
        default: kind = .file
        }
        let modelValue = try r.required(root, "model", "")
        switch kind {
        case .file:
            model = try makeBPE(modelValue, r)
        case .llama:
            model = try makeBPE(modelValue, r, options: BPEModel.Options(
                unkToken: nil, continuingSubwordPrefix: nil, endOfWordSuffix: nil, fuseUnk: true, byteFallback: true, ignoreMerges: false))
        case .gpt2:
            model = try makeBPE(modelValue, r, options: BPEModel.Options(
                unkToken: nil, continuingSubwordPrefix: "", endOfWordSuffix: "", fuseUnk: false, byteFallback: false, ignoreMerges: false))
        }
        switch kind {
        case .file:
            normalizer = try r.field(root, "normalizer").map { try makeNormalizer($0, "normalizer", r) }
            preTokenizer = try r.field(root, "pre_tokenizer").map { try makePreTokenizer($0, "pre_tokenizer", r) }
            decoder = try r.field(root, "decoder").map { try makeDecoder($0, "decoder", r) }
        case .llama:
            // transformers' LlamaTokenizer.__init__
            let addPrefixSpace = try cr.optionalBool(config, "add_prefix_space", "") ?? true
            let legacy = try cr.optionalBool(config, "legacy", "") ?? false
            normalizer = nil
            preTokenizer = MetaspacePreTokenizer(replacement: "▁", prependScheme: addPrefixSpace ? (legacy ? .always : .first) : .never,
                                                 split: false)
            var ds: [any TokenDecoder] = [ReplaceDecoder(pattern: Array("▁".utf8), content: [0x20]), ByteFallbackDecoder(), FuseDecoder()]
            if addPrefixSpace { ds.append(StripDecoder(content: 0x20, start: 1, stop: 0)) }
            decoder = SequenceDecoder(decoders: ds)
        case .gpt2:
            // transformers' GPT2Tokenizer.__init__
            normalizer = nil
            preTokenizer = ByteLevelPreTokenizer(addPrefixSpace: try cr.optionalBool(config, "add_prefix_space", "") ?? false, useRegex: true)
            decoder = ByteLevelDecoder()
        }

        // Added tokens.
        var builder = AddedTokensBuilder(model: model)
        let fileTokens = try readAddedTokens(root, r)
        let configTokens = try readConfigAddedTokens(config, cr)
        if kind == .file {
            builder.add(fileTokens)
            builder.add(configTokens)
        } else {
            builder.add(configTokens.isEmpty ? fileTokens : configTokens)
        }
        let defaults: [String: String]
        switch kind {
        case .file: defaults = [:]
        case .llama: defaults = ["bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"]
        case .gpt2: defaults = ["bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"]
        }
        var named: [String: AddedToken] = [:]
        var extra: [AddedToken] = []
        for key in ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"] {
            if let v = cr.field(config, key) {
                named[key] = try specialToken(v, key, cr)
            } else if let d = defaults[key] {
                named[key] = AddedToken(content: Array(d.utf8), id: -1, special: true)
            }
        }
        for key in ["additional_special_tokens", "extra_special_tokens"] {
            guard let v = cr.field(config, key) else { continue }
            if let list = v.arrayValue {
                for (i, t) in list.enumerated() { extra.append(try specialToken(t, "\(key)[\(i)]", cr)) }
            } else if let entries = v.objectEntries {  // model-specific named tokens
                for (k, t) in entries { extra.append(try specialToken(t, "\(key).\(k)", cr)) }
            } else {
                throw TokenizerError.invalidField(file: configFile, path: key, expected: "a list of tokens")
            }
        }
        var missing: [AddedToken] = []
        for key in ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"] {
            if let t = named[key], !builder.contains(t.content), !missing.contains(where: { $0.content == t.content }) { missing.append(t) }
        }
        for t in extra where !builder.contains(t.content) && !missing.contains(where: { $0.content == t.content }) { missing.append(t) }
        builder.add(missing)
        added = AddedVocabulary(builder.tokens, normalizer: normalizer)

        let addedTokens = added
        let bpe = model
        func id(_ content: [UInt8]) -> Int? { addedTokens.byContent[content] ?? bpe.tokenToId(content) }
        bosTokenId = named["bos_token"].flatMap { id($0.content) }
        eosTokenId = named["eos_token"].flatMap { id($0.content) }

        // Post-processor: the file's. transformers drops add_bos_token / add_eos_token from the
        // config whenever tokenizer.json exists, so they change nothing.
        postProcessor = try r.field(root, "post_processor").map { try makePostProcessor($0, "post_processor", r) }

        var size = bpe.vocabulary.count
        for t in addedTokens.tokens where bpe.tokenToId(t.content) == nil { size += 1 }
        vocabSize = size
    }

    private enum ClassKind { case file, llama, gpt2 }

    // MARK: Encoding

    /// The ids of `text`, with the special tokens the post-processor adds (BOS for Llama/Mistral)
    /// when `addSpecialTokens`.
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int] {
        var pieces = added.extractAndNormalize(Array(text.utf8), normalizer: normalizer)
        if let p = preTokenizer { pieces = p.preTokenize(pieces) }
        var ids: [Int] = []
        ids.reserveCapacity(text.utf8.count / 3 + 4)
        for piece in pieces {
            if let t = piece.tokenId { ids.append(t) } else { model.tokenize(piece.bytes, into: &ids) }
        }
        if let pp = postProcessor { ids = pp.process(ids, addSpecialTokens: addSpecialTokens) }
        return ids
    }

    // MARK: Decoding

    /// The text of `ids` as transformers' `decode` gives it (no clean-up of spaces: transformers
    /// skips it for BPE tokenizers). Unknown ids are skipped.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var tokens: [[UInt8]] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            guard let t = added.decodingForm(id) ?? model.idToToken(id) else { continue }
            if skipSpecialTokens && added.specialContents.contains(t) { continue }
            tokens.append(t)
        }
        let bytes: [UInt8]
        if let d = decoder {
            bytes = Array(d.decodeChain(tokens).joined())
        } else {
            bytes = Array(tokens.joined(separator: [0x20]))
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    // MARK: Vocabulary

    public func tokenToId(_ s: String) -> Int? {
        let b = Array(s.utf8)
        return added.byContent[b] ?? model.tokenToId(b)
    }

    public func idToToken(_ id: Int) -> String? {
        if let i = added.byId[id] { return String(decoding: added.tokens[i].content, as: UTF8.self) }
        return model.idToToken(id).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Whether `id` is an added token marked special (skipped by `decode(skipSpecialTokens:)`).
    public func isSpecial(_ id: Int) -> Bool {
        guard let i = added.byId[id] else { return false }
        return added.tokens[i].special
    }
}

private func parseJSON(_ bytes: [UInt8], _ file: String) throws -> JSONValue {
    do {
        return try JSONParser.parse(bytes, source: file)
    } catch let e as JSONError {
        throw TokenizerError.invalidJSON(file: file, message: "invalid JSON at byte \(e.offset): \(e.message)")
    }
}

/// tokenizers' `AddedVocabulary::add_tokens`: ids come from the existing added token or the
/// model's vocabulary, else the next free id.
struct AddedTokensBuilder {
    private var byId: [Int: AddedToken] = [:]
    private var idByContent: [[UInt8]: Int] = [:]
    private var specials = Set<[UInt8]>()
    let model: BPEModel

    init(model: BPEModel) { self.model = model }

    func contains(_ content: [UInt8]) -> Bool { idByContent[content] != nil }

    mutating func add(_ batch: [AddedToken]) {
        let size = model.vocabulary.count
        var next = byId.keys.max().map { $0 >= size || size == 0 ? $0 + 1 : size } ?? size
        for var t in batch where !t.content.isEmpty {
            if let id = idByContent[t.content], var existing = byId[id] {
                existing.id = t.id
                if existing == t { continue }
            }
            let id: Int
            if let i = idByContent[t.content] ?? model.tokenToId(t.content) {
                id = i
            } else {
                id = next
                next += 1
            }
            t.id = id
            idByContent[t.content] = id
            if t.special { specials.insert(t.content) }
            byId[id] = t
        }
    }

    /// The tokens by id; `special` as the reference's set of special contents says.
    var tokens: [AddedToken] {
        byId.keys.sorted().compactMap { id in
            guard var t = byId[id], idByContent[t.content] == id else { return nil }
            t.special = t.special || specials.contains(t.content)
            return t
        }
    }
}

/// One entry of tokenizer.json's `added_tokens` or the config's `added_tokens_decoder`.
private func addedToken(_ v: JSONValue, _ path: String, _ r: JSONReader, id: Int) throws -> AddedToken {
    let content = try r.string(try r.required(v, "content", path), r.join(path, "content"))
    let special = try r.optionalBool(v, "special", path) ?? false
    return AddedToken(content: Array(content.utf8), id: id,
                      singleWord: try r.optionalBool(v, "single_word", path) ?? false,
                      lstrip: try r.optionalBool(v, "lstrip", path) ?? false,
                      rstrip: try r.optionalBool(v, "rstrip", path) ?? false,
                      normalized: try r.optionalBool(v, "normalized", path) ?? !special,
                      special: special)
}

private func readAddedTokens(_ root: JSONValue, _ r: JSONReader) throws -> [AddedToken] {
    guard let list = r.field(root, "added_tokens") else { return [] }
    return try r.array(list, "added_tokens").enumerated().map { i, v in
        let path = "added_tokens[\(i)]"
        return try addedToken(v, path, r, id: try r.optionalInt(v, "id", path) ?? -1)
    }
}

private func readConfigAddedTokens(_ config: JSONValue, _ r: JSONReader) throws -> [AddedToken] {
    guard let d = r.field(config, "added_tokens_decoder") else { return [] }
    var out: [AddedToken] = []
    for (k, v) in try r.object(d, "added_tokens_decoder") {
        guard let id = Int(k) else {
            throw TokenizerError.invalidField(file: r.file, path: "added_tokens_decoder[\(debugQuoted(k))]", expected: "an integer id as key")
        }
        out.append(try addedToken(v, "added_tokens_decoder[\(debugQuoted(k))]", r, id: id))
    }
    return out.sorted { $0.id < $1.id }
}

/// A special token named in the config: a string or an AddedToken object.
private func specialToken(_ v: JSONValue, _ path: String, _ r: JSONReader) throws -> AddedToken {
    if let s = v.stringValue { return AddedToken(content: Array(s.utf8), id: -1, special: true) }
    if v.objectEntries != nil {
        var t = try addedToken(v, path, r, id: -1)
        t.special = true
        if r.field(v, "normalized") == nil { t.normalized = false }
        return t
    }
    throw TokenizerError.invalidField(file: r.file, path: path, expected: "a token string or object")
}
