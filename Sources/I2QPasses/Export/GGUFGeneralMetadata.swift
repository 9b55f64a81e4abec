import Foundation
import I2QCore
import I2QFormats

/// The `general.*` keys convert_hf_to_gguf.py writes before the model's own (`ModelBase.prepare_metadata`:
/// gguf-py 0.19 `Metadata.load` + `set_gguf_meta_model`, the copy vendored by llama-cpp-python 0.3.36):
/// the sampling defaults of generation_config.json, then name, version, organization, finetune,
/// basename and size_label, derived as gguf-py derives them —
/// - from config.json's `_name_or_path` when it is a hub id (at most one "/"), then from the model
///   directory's name (`get_model_id_components`: the name split at "-", parts annotated as version,
///   size, finetune; `id_to_title` for the name);
/// - `size_label` from the name, else from the parameter count of the tensors written
///   (`gguf.size_label`: "46K", "1.0M", "135M").
/// Differences: an .i2q / .gguf source is named by its file name without the extension (the
/// converter reads directories only), a GGUF source's general.name is kept as it is, and the model
/// card (README.md front matter: license, tags, base models, datasets…) is not read — a note says so
/// when the source has one.
enum GGUFGeneralMetadata {
    /// Metadata entries (in the converter's order) and notes.
    static func entries(source: any ModelSource, totalParams: Int) throws -> (metadata: [(key: String, value: GGUFValue)], notes: [String]) {
        var md: [(key: String, value: GGUFValue)] = []
        var notes: [String] = []
        let files = try source.auxiliaryFiles()
        func file(_ n: String) -> [UInt8]? { files.first { $0.name == n }?.bytes }

        // Metadata.load: generation_config.json's sampling settings (an unreadable file is skipped, as gguf-py does).
        if let b = file("generation_config.json"), let g = try? JSONParser.parse(b, source: source.path + "/generation_config.json") {
            let keys: [(String, String, Bool)] = [  // (config key, GGUF key, int32)
                ("sequence", "sequence", false), ("top_k", "top_k", true), ("top_p", "top_p", false), ("min_p", "min_p", false),
                ("xtc_probability", "xtc_probability", false), ("xtc_threshold", "xtc_threshold", false),
                ("temperature", "temp", false), ("penalty_last_n", "penalty_last_n", true),
                ("penalty_repeat", "penalty_repeat", false), ("mirostat", "mirostat", true),
                ("mirostat_tau", "mirostat_tau", false), ("mirostat_eta", "mirostat_eta", false),
            ]
            for (k, gk, int) in keys {
                var v = g[k]
                if k == "penalty_repeat", v == nil || v == .null { v = g["repetition_penalty"] }
                guard let v, v != .null else { continue }
                let key = "general.sampling." + gk
                if k == "sequence", let s = v.stringValue { md.append((key, .text(s))) }
                else if int, let i = v.intValue, let i32 = Int32(exactly: i) { md.append((key, .int32(i32))) }
                else if !int, let d = v.doubleValue { md.append((key, .float32(Float(d)))) }
            }
        }
        if let card = file("README.md"), card.starts(with: Array("---\n".utf8)) || card.starts(with: Array("---\r\n".utf8)) {
            notes.append("README.md's front matter (license, tags, base models, datasets…) is not written to the GGUF; convert_hf_to_gguf.py writes it as general.* keys.")
        }

        var name: String? = nil, org: String? = nil, basename: String? = nil, finetune: String? = nil
        var version: String? = nil, sizeLabel: String? = nil
        func apply(_ id: String, title: Bool) {
            let c = components(id, totalParams: totalParams)
            if name == nil { name = title ? idToTitle(c.full) : c.full }
            if org == nil, let o = c.org { org = idToTitle(o) }
            if basename == nil { basename = c.basename }
            if finetune == nil { finetune = c.finetune }
            if version == nil { version = c.version }
            if sizeLabel == nil { sizeLabel = c.sizeLabel }
        }
        if let n = source.rawConfig["_model_name_or_path"]?.stringValue, !n.isEmpty { name = n }  // a GGUF source's general.name
        if let n = source.rawConfig["_name_or_path"]?.stringValue, n.filter({ $0 == "/" }).count <= 1 { apply(n, title: true) }
        var dir = FileSystem.basename(source.path)
        for ext in [".i2q", ".gguf"] where dir.hasSuffix(ext) && dir.count > ext.count { dir.removeLast(ext.count) }
        apply(dir, title: true)
        if name == nil { name = dir }
        if sizeLabel == nil, totalParams > 0 { sizeLabel = roundedCount(totalParams) }

        md.append(("general.name", .text(name!)))
        if let version { md.append(("general.version", .text(version))) }
        if let org { md.append(("general.organization", .text(org))) }
        if let finetune { md.append(("general.finetune", .text(finetune))) }
        if let basename { md.append(("general.basename", .text(basename))) }
        if let sizeLabel { md.append(("general.size_label", .text(sizeLabel))) }
        return (md, notes)
    }

    /// gguf-py `model_weight_count_rounded_notation(n, min_digits=2)`: "28K", "1.0M", "135M", "8.0B".
    static func roundedCount(_ n: Int) -> String {
        let c = Double(n)
        let (scaled, suffix): (Double, String) = c > 1e12 ? (c * 1e-12, "T") : c > 1e9 ? (c * 1e-9, "B") : c > 1e6 ? (c * 1e-6, "M") : (c * 1e-3, "K")
        // python round() (half to even), then str(...).lstrip('0')
        var digits = String(Int(scaled.rounded(.toNearestOrEven)))
        while digits.hasPrefix("0") { digits.removeFirst() }
        let fix = max(2 - digits.count, 0)
        return String(format: "%.\(fix)f", scaled) + suffix  // printf rounds the exact value, as Python's format
    }

    /// gguf-py `Metadata.id_to_title`: "tiny-idefics3" → "Tiny Idefics3" (all-lowercase words title-cased
    /// unless they are versions or start with a digit).
    static func idToTitle(_ s: String) -> String {
        let words = s.trimmingWhitespace().replacingOccurrences(of: "-", with: " ").split(whereSeparator: { $0.isWhitespace })
        return words.map { w -> String in
            let word = String(w)
            let lower = word.contains { $0.isCased } && !word.contains { $0.isUppercase }
            guard lower, (try? #/(v\d+(?:\.\d+)*|\d.*)/#.wholeMatch(in: word)) == nil else { return word }
            var out = "", prevCased = false
            for ch in word {  // str.title(): upper after an uncased character, lower after a cased one
                out += prevCased ? ch.lowercased() : ch.uppercased()
                prevCased = ch.isCased
            }
            return out
        }.joined(separator: " ")
    }

    struct Components { var full: String; var org: String?; var basename, finetune, version, sizeLabel: String? }

    /// gguf-py `Metadata.get_model_id_components` (`total_params` decides whether a size in the name is
    /// the model's or a context length).
    static func components(_ id: String, totalParams: Int) -> Components {
        if id.contains(" ") { return Components(full: id) }
        var org: String? = nil, full = id
        if let slash = id.firstIndex(of: "/") { org = String(id[..<slash]); full = String(id[id.index(after: slash)...]) }
        if let o = org, o.hasPrefix(".") { org = nil }
        var parts = full.split(separator: "-", omittingEmptySubsequences: true).map(String.init)
        var types = [Set<String>](repeating: [], count: parts.count)
        for i in parts.indices {
            var part = parts[i]
            if part.wholeMatch(of: #/(?i)(v|iter)?\d+([.]\d+)*/#) != nil {
                types[i].insert("version")
            } else if part.wholeMatch(of: #/(?i)i?q\d(_\w)*|b?fp?(16|32)/#) != nil {
                types[i].insert("type")
                parts[i] = part.uppercased()
            } else if i > 0, part.wholeMatch(of: #/(?i)(([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl)/#) != nil {
                part = part.replacingOccurrences(of: "_", with: ".")
                var ch = Array(part)
                if ch.last!.isASCIIDigit, ch.count >= 2 {  // bloom-7b1 → 7.1b
                    ch = Array(ch.dropLast(2)) + [".", ch[ch.count - 1], ch[ch.count - 2]]
                }
                if ch.count > 1, ch[ch.count - 2].isASCIIDigit, "kmbt".contains(ch.last!) { ch[ch.count - 1] = Character(ch.last!.uppercased()) }
                part = String(ch)
                if totalParams != 0, let v = Double(String(ch.dropLast())) {
                    let scale = " KMBT".firstIndex(of: ch.last!).map { " KMBT".distance(from: " KMBT".startIndex, to: $0) } ?? -1
                    let label = v * pow1000(scale)
                    let t = Double(totalParams)
                    if (totalParams < 0 && label < Double(abs(totalParams) / 8)) || (totalParams > 0 && abs(label - t) > Double(7 * totalParams / 8)) {
                        types[i].insert("finetune")  // likely a context length
                        part = String(ch.dropLast()) + ch.last!.lowercased()
                    }
                }
                if types[i].isEmpty { types[i].insert("size_label") }
                parts[i] = part
            } else if i > 0, part.wholeMatch(of: #/(?i)chat|instruct|vision|lora/#) != nil {
                types[i].insert(totalParams < 0 && part.lowercased() == "lora" ? "type" : "finetune")
            }
        }
        // Word sizes ("small") are dropped when a numeric size is present.
        if zip(parts, types).contains(where: { $1.contains("size_label") && $0.contains { $0.isNumber } }) {
            for i in parts.indices where types[i].contains("size_label") && parts[i].allSatisfy({ $0.isLetter }) { types[i].remove("size_label") }
        }
        var atStart = true
        for i in parts.indices {
            if atStart && ((types[i].isEmpty && parts[i].first!.isLetter) || types[i].contains("version")) {
                types[i].insert("basename")
            } else {
                atStart = false
                if types[i].isEmpty { types[i].insert("finetune") }
            }
        }
        for i in parts.indices.reversed() {  // a trailing version is not part of the basename
            if types[i].contains("basename") && types[i].count > 1 { types[i].remove("basename") } else { break }
        }
        func join(_ f: (Int) -> Bool) -> String? {
            var seen: [String] = []
            for i in parts.indices where f(i) && !seen.contains(parts[i]) { seen.append(parts[i]) }
            return seen.isEmpty ? nil : seen.joined(separator: "-")
        }
        func joinAll(_ f: (Int) -> Bool) -> String? {
            let s = parts.indices.filter(f).map { parts[$0] }
            return s.isEmpty ? nil : s.joined(separator: "-")
        }
        var c = Components(full: full, org: org)
        c.basename = joinAll { types[$0].contains("basename") }
        c.sizeLabel = join { types[$0].contains("size_label") }
        c.finetune = joinAll { types[$0].contains("finetune") }
        c.version = joinAll { types[$0].contains("version") && !types[$0].contains("basename") }
        if c.sizeLabel == nil && c.finetune == nil && c.version == nil { c.basename = nil }  // too ambiguous
        return c
    }

    /// python `pow(1000, e)` for e in -1...4.
    static func pow1000(_ e: Int) -> Double { e < 0 ? 0.001 : (0..<e).reduce(1.0) { a, _ in a * 1000 } }
}

extension GGUFGeneralMetadata.Components {
    init(full: String, org: String? = nil) { self.full = full; self.org = org }
}

private extension Character {
    /// Python's "cased" (has an upper- or lowercase form).
    var isCased: Bool { isUppercase || isLowercase }
    var isASCIIDigit: Bool { isASCII && isNumber }
}

private extension String {
    func trimmingWhitespace() -> String {
        var s = Substring(self)
        while s.first?.isWhitespace == true { s.removeFirst() }
        while s.last?.isWhitespace == true { s.removeLast() }
        return String(s)
    }
}
