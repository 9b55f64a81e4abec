import I2QCore
import I2QFormats
import I2QQuant

/// The `tokenizer.ggml.*` metadata of a model, built from its tokenizer.json / tokenizer_config.json
/// (and config.json for fallback token ids) as gguf-py's `SpecialVocab` and convert_hf_to_gguf's
/// `_set_vocab_gpt2` / `_set_vocab_llama_hf` do (differences: see `GGUFExportPass`).
struct GGUFVocabulary {
    var metadata: [(key: String, value: GGUFValue)] = []
    var notes: [String] = []

    /// gguf-py `TokenType`.
    enum TokenType: Int32 { case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6 }

    init(source: any ModelSource, vocabSize: Int, config t: TextConfig) throws {
        let path = source.path
        if let g = source as? GGUFModel, g.gguf.value("tokenizer.ggml.model") != nil {
            // A GGUF source already holds llama.cpp's vocabulary: carried over unchanged.
            metadata = g.gguf.metadata.filter { $0.key.hasPrefix("tokenizer.") }
            return
        }
        let files = TokenizerFiles(files: try source.auxiliaryFiles(), path: path)
        guard let tok = try files.json("tokenizer.json") else {
            throw GGUFExportError.tokenizer(path: path, detail: "the model has no tokenizer.json; llama.cpp needs the vocabulary in the GGUF. Put the model's tokenizer.json (and tokenizer_config.json) next to it and convert again.")
        }
        let tcfg = try files.json("tokenizer_config.json")
        var vocab = try BPEVocab(tok, vocabSize: vocabSize, path: path)
        let special = SpecialVocab(tok: tok, tcfg: tcfg, added: vocab.added, config: source.rawConfig, vocabSize: vocabSize)
        var merges = try Self.merges(vocab.mergesJSON, path: path)

        let modelName: String, pre: String
        var scores: [Float]? = nil
        if !vocab.byteFallback {
            // GPT-2 byte-level BPE (SmolLM2, Llama 3 style): _set_vocab_gpt2.
            modelName = "gpt2"
            pre = try Self.gpt2PreTokenizer(tok["pre_tokenizer"], path: path)
            vocab.typeAddedTokensGPT2()
        } else {
            // SentencePiece-style BPE with byte fallback (Llama 2, Mistral, Idefics2): _set_vocab_llama_hf.
            modelName = "llama"
            pre = "default"
            guard tok["decoder"]?["type"]?.stringValue == "Sequence" else {
                throw GGUFExportError.tokenizer(path: path, detail: "a byte-fallback BPE tokenizer without a Sequence decoder is not a Llama/Mistral SentencePiece tokenizer.")
            }
            vocab.typeTokensLlamaHF(specialIds: Set(special.ids.map(\.1)))
            scores = vocab.mergeRankScores(merges)
            merges = []  // llama.cpp's SPM tokenizer does not use merges; gguf-py writes none here
        }
        let (tokenBytes, padded) = vocab.tokenBytes()
        if padded > 0 { notes.append("\(padded) id(s) below vocab_size \(vocabSize) have no token; written as [PADn] (unused), as convert_hf_to_gguf does.") }

        func put(_ k: String, _ v: GGUFValue) { metadata.append((k, v)) }
        if let aps = tcfg?["add_prefix_space"]?.boolValue { put("tokenizer.ggml.add_space_prefix", .bool(aps)) }
        put("tokenizer.ggml.model", .text(modelName))
        put("tokenizer.ggml.pre", .text(pre))
        put("tokenizer.ggml.tokens", .strings(tokenBytes))
        if let scores { put("tokenizer.ggml.scores", .array(.float32, scores.map { .float32($0) })) }
        put("tokenizer.ggml.token_type", .array(.int32, vocab.types.map { .int32($0.rawValue) }))
        if !merges.isEmpty { put("tokenizer.ggml.merges", .strings(merges.map { Array($0.utf8) })) }
        let keyName = ["bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id", "sep": "seperator_token_id",
                       "pad": "padding_token_id", "cls": "cls_token_id", "mask": "mask_token_id"]  // gguf-py's spelling
        for (typ, id) in special.ids { put("tokenizer.ggml.\(keyName[typ]!)", .uint32(UInt32(id))) }
        for (typ, v) in special.add { put("tokenizer.ggml.add_\(typ)_token", .bool(v)) }
        if let template = try Self.chatTemplate(tcfg, files: files) { put("tokenizer.chat_template", .string(template)) }
    }

    /// The model's auxiliary files by name; JSON ones parsed (an invalid one is a tokenizer error).
    struct TokenizerFiles {
        let files: [(name: String, bytes: [UInt8])]
        let path: String

        func file(_ n: String) -> [UInt8]? { files.first { $0.name == n }?.bytes }

        func json(_ n: String) throws -> JSONValue? {
            guard let b = file(n) else { return nil }
            do { return try JSONParser.parse(b, source: path + "/" + n) } catch let e as JSONError {
                throw GGUFExportError.tokenizer(path: path, detail: "\(n) is not valid JSON (byte \(e.offset): \(e.message))")
            }
        }
    }

    /// tokenizer.json's BPE model: id → (text, type), the ids of the texts, its added tokens and its
    /// merges as written there.
    struct BPEVocab {
        var tokens: [String?]
        var types: [TokenType]
        var ids: [String: Int] = [:]
        var added: [(id: Int, content: String, special: Bool)] = []
        let byteFallback: Bool
        let mergesJSON: [JSONValue]

        init(_ tok: JSONValue, vocabSize: Int, path: String) throws {
            guard let model = tok["model"], model["type"]?.stringValue == "BPE",
                  let vocabEntries = model["vocab"]?.objectEntries, let mergesJSON = model["merges"]?.arrayValue else {
                throw GGUFExportError.tokenizer(path: path, detail: "tokenizer.json's model is not BPE with a vocab and merges (WordPiece/Unigram vocabularies are not exported).")
            }
            self.mergesJSON = mergesJSON
            byteFallback = model["byte_fallback"]?.boolValue ?? false

            // id → (text, type, score)
            tokens = [String?](repeating: nil, count: vocabSize)
            types = [TokenType](repeating: .unused, count: vocabSize)
            for (text, v) in vocabEntries {
                guard let id = v.intValue, id >= 0 else { throw GGUFExportError.tokenizer(path: path, detail: "vocab entry \"\(text)\" has no valid id") }
                guard id < vocabSize else {
                    throw GGUFExportError.tokenizer(path: path, detail: "token \"\(text)\" has id \(id) but the model's vocab_size is \(vocabSize).")
                }
                tokens[id] = text; types[id] = .normal; ids[text] = id
            }
            for a in tok["added_tokens"]?.arrayValue ?? [] {
                guard let id = a["id"]?.intValue, let c = a["content"]?.stringValue, id >= 0 else { continue }
                guard id < vocabSize else {
                    throw GGUFExportError.tokenizer(path: path, detail: "added token \"\(c)\" has id \(id) but the model's vocab_size is \(vocabSize).")
                }
                added.append((id, c, a["special"]?.boolValue ?? false))
            }
        }

        /// _set_vocab_gpt2: added tokens replace the vocabulary's, control when special or looking
        /// special, else user-defined (with SentencePiece's ▁ as a space).
        mutating func typeAddedTokensGPT2() {
            for a in added {
                var c = a.content
                let isControl = a.special || GGUFVocabulary.looksSpecial(c)
                if !isControl { c = c.replacingOccurrences(of: "\u{2581}", with: " ") }
                tokens[a.id] = c
                types[a.id] = isControl ? .control : .userDefined
            }
        }

        /// _set_vocab_llama_hf: `<0xHH>` pieces are bytes, special tokens control; added tokens fill the
        /// ids the vocabulary leaves empty.
        mutating func typeTokensLlamaHF(specialIds: Set<Int>) {
            let addedIds = Set(added.map(\.id))
            for (id, text) in tokens.enumerated() {
                guard let text else { continue }
                if GGUFVocabulary.isByteToken(text) { types[id] = .byte } else if specialIds.contains(id) || (addedIds.contains(id) && added.first(where: { $0.id == id })!.special) { types[id] = .control }
            }
            for a in added where tokens[a.id] == nil {
                tokens[a.id] = a.content
                types[a.id] = a.special || specialIds.contains(a.id) ? .control : .userDefined
            }
        }

        /// Score of a token made by merge r: −r (llama.cpp merges the highest-scored bigram first);
        /// tokens no merge makes rank below every merge; control/byte/user tokens −1000 as gguf-py.
        func mergeRankScores(_ merges: [String]) -> [Float] {
            let vocabSize = tokens.count
            var s = [Float](repeating: -Float(merges.count + 1), count: vocabSize)
            for (r, m) in merges.enumerated() {
                guard let sp = m.firstIndex(of: " ") else { continue }
                let joined = String(m[..<sp]) + String(m[m.index(after: sp)...])
                if let id = ids[joined], s[id] == -Float(merges.count + 1) { s[id] = -Float(r) }
            }
            for i in 0..<vocabSize where types[i] != .normal { s[i] = -1000 }
            return s
        }

        /// The tokens' UTF-8 bytes, ids without a token written as `[PADn]`; and how many those are.
        func tokenBytes() -> (bytes: [[UInt8]], padded: Int) {
            var padded = 0
            let tokenBytes: [[UInt8]] = tokens.enumerated().map { i, s in
                if let s { return Array(s.utf8) }
                padded += 1
                return Array("[PAD\(i)]".utf8)
            }
            return (tokenBytes, padded)
        }
    }

    /// gguf-py SpecialVocab: the post-processor decides add_bos/add_eos/add_sep (and may name the
    /// bos/eos tokens), tokenizer_config's add_*_token fill the rest; special ids come from
    /// tokenizer_config's *_token looked up in added_tokens, then config.json's *_token_id (top
    /// level, then text_config), in gguf-py's order of types.
    struct SpecialVocab {
        /// (type, add) in insertion order, as the Python dict.
        var add: [(String, Bool)] = []
        /// (type, id) in insertion order.
        var ids: [(String, Int)] = []

        init(tok: JSONValue, tcfg: JSONValue?, added: [(id: Int, content: String, special: Bool)], config: JSONValue, vocabSize: Int) {
            func content(_ v: JSONValue?) -> String? { v?.stringValue ?? v?["content"]?.stringValue }
            let typeOrder = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"]
            var text: [String: String] = [:]
            for typ in typeOrder { if let c = content(tcfg?["\(typ)_token"]) { text[typ] = c } }
            if text["bos"] == nil, let c = text["cls"], tcfg != nil { text["bos"] = c }
            if text["eos"] == nil, let c = text["sep"], tcfg != nil { text["eos"] = c }
            if let pp = tok["post_processor"], pp != .null {
                for proc in pp["processors"]?.arrayValue ?? [pp] { readPostProcessor(proc, tcfg: tcfg, text: &text) }
            }
            if tcfg != nil {
                for typ in typeOrder { if let b = tcfg?["add_\(typ)_token"]?.boolValue { setAdd(typ, b, ifAbsent: true) } }
            }
            func setSpecial(_ typ: String, _ id: Int?) {
                guard let id, id >= 0, id < vocabSize, !ids.contains(where: { $0.0 == typ }) else { return }
                ids.append((typ, id))
            }
            if tcfg != nil { for typ in typeOrder { if let c = text[typ] { setSpecial(typ, added.first { $0.content == c }?.id) } } }
            for typ in typeOrder {
                setSpecial(typ, config["\(typ)_token_id"]?.intValue ?? config["text_config"]?["\(typ)_token_id"]?.intValue)
            }
        }

        mutating func setAdd(_ k: String, _ v: Bool, ifAbsent: Bool = false) {
            if let i = add.firstIndex(where: { $0.0 == k }) { if !ifAbsent { add[i].1 = v } } else { add.append((k, v)) }
        }

        /// One post-processor (ByteLevel, RobertaProcessing, TemplateProcessing; others change nothing).
        mutating func readPostProcessor(_ proc: JSONValue, tcfg: JSONValue?, text: inout [String: String]) {
            switch proc["type"]?.stringValue {
            case "ByteLevel":
                setAdd("bos", false, ifAbsent: true); setAdd("eos", false, ifAbsent: true)
            case "RobertaProcessing":
                setAdd("bos", true); setAdd("eos", true); setAdd("sep", true)
            case "TemplateProcessing":
                let single = proc["single"]?.arrayValue ?? [], pair = proc["pair"]?.arrayValue ?? []
                var first: String? = nil, last: String? = nil
                if single.count > 1 {
                    first = single[0]["SpecialToken"]?["id"]?.stringValue
                    if let f = first {
                        if tcfg == nil { text["bos"] = f } else if f != text["bos"] && f != text["cls"] {
                            if text["bos"] == nil { text["bos"] = f }
                            if text["cls"] == nil { text["cls"] = f }
                        }
                        setAdd("bos", f == text["bos"] || f == text["cls"])
                    }
                    last = single[single.count - 1]["SpecialToken"]?["id"]?.stringValue
                    if let l = last {
                        text["eos"] = l  // (gguf-py also keeps a replaced eos as eot/eom: not done here)
                        setAdd("eos", true)
                    }
                }
                // i2q: no leading special token means no BOS (gguf-py leaves add_bos unset here, and
                // llama.cpp would then add one: see GGUFExportPass's doc comment)
                if first == nil { setAdd("bos", false) }
                if !pair.isEmpty {
                    let start = first != nil && pair[0]["SpecialToken"]?["id"]?.stringValue == first ? 1 : 0
                    let stop = last != nil && pair[pair.count - 1]["SpecialToken"]?["id"]?.stringValue == last ? pair.count - 1 : pair.count
                    if start < stop {
                        let sub = Array(pair[start..<stop])
                        if sub[0]["Sequence"]?["id"]?.stringValue == "A", sub[sub.count - 1]["Sequence"]?["id"]?.stringValue == "B", sub.count > 2 {
                            let mid = Array(sub[1..<(sub.count - 1)])
                            var addSep = false
                            if let e = mid[0]["SpecialToken"]?["id"]?.stringValue, e == text["sep"] || e == text["eos"], last == nil { addSep = true }
                            if mid.count == 2, let e = mid[1]["SpecialToken"]?["id"]?.stringValue, e == text["sep"] || e == text["eos"] { addSep = true }
                            setAdd("sep", addSep)
                        }
                    }
                }
            default: break
            }
        }
    }

    /// tokenizer.json's merges as "a b" strings: the [a, b] form's spaces written as U+0120 (gguf-py).
    static func merges(_ mergesJSON: [JSONValue], path: String) throws -> [String] {
        var merges: [String] = []
        merges.reserveCapacity(mergesJSON.count)
        for m in mergesJSON {
            if let s = m.stringValue { merges.append(s); continue }
            guard let pair = m.arrayValue, pair.count == 2, let a = pair[0].stringValue, let b = pair[1].stringValue else {
                throw GGUFExportError.tokenizer(path: path, detail: "tokenizer.json has a merge that is neither \"a b\" nor [\"a\", \"b\"].")
            }
            // gguf-py: spaces inside a part are written as U+0120 so that "a b" stays splittable.
            func enc(_ s: String) -> String { String(s.unicodeScalars.map { $0 == " " ? "\u{120}" : Character($0) }) }
            merges.append(enc(a) + " " + enc(b))
        }
        return merges
    }

    /// llama.cpp's pre-tokenizer name for a byte-level BPE's pre_tokenizer.
    static func gpt2PreTokenizer(_ preTok: JSONValue?, path: String) throws -> String {
        let isByteLevel: (JSONValue?) -> Bool = { $0?["type"]?.stringValue == "ByteLevel" && ($0?["use_regex"]?.boolValue ?? true) }
        if isByteLevel(preTok) {
            return "gpt-2"
        } else if preTok?["type"]?.stringValue == "Sequence", let seq = preTok?["pretokenizers"]?.arrayValue, seq.count == 2,
                  seq[0]["type"]?.stringValue == "Digits", seq[0]["individual_digits"]?.boolValue == true, isByteLevel(seq[1]) {
            return "smollm"  // \p{N} split, then the GPT-2 regex
        } else {
            throw GGUFExportError.tokenizer(path: path, detail: "tokenizer.json's pre_tokenizer \(JSONWriter.string(preTok ?? .null)) has no llama.cpp pre-tokenizer i2q knows (it maps plain ByteLevel to \"gpt-2\" and Digits+ByteLevel to \"smollm\").")
        }
    }

    /// Chat template: tokenizer_config's, else chat_template.jinja, else chat_template.json's.
    static func chatTemplate(_ tcfg: JSONValue?, files: TokenizerFiles) throws -> [UInt8]? {
        if let s = tcfg?["chat_template"]?.stringValue { return Array(s.utf8) }
        if let b = files.file("chat_template.jinja") { return b }
        if let s = try files.json("chat_template.json")?["chat_template"]?.stringValue { return Array(s.utf8) }
        return nil
    }

    /// convert_hf_to_gguf does_token_look_special
    static func looksSpecial(_ s: String) -> Bool {
        ["<pad>", "<mask>", "<2mass>", "[@BOS@]"].contains(s) || (s.hasPrefix("<|") && s.hasSuffix("|>"))
            || (s.hasPrefix("<｜") && s.hasSuffix("｜>")) || (s.hasPrefix("<unused") && s.hasSuffix(">"))
    }

    /// `<0xHH>`: a SentencePiece byte-fallback piece.
    static func isByteToken(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return false }
        func hex(_ c: UInt8) -> Bool { (0x30...0x39).contains(c) || (0x41...0x46).contains(c) || (0x61...0x66).contains(c) }
        return hex(u[3]) && hex(u[4])
    }
}
