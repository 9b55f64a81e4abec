import I2QCore
import I2QFormats

/// The README.md model card written into every HF directory output (`export --to hf|hf-bnb|hf-awq`,
/// `cast --format safetensors`), as mlx-lm's `save` and AutoAWQ's `save_quantized` users expect: YAML
/// front matter the Hub reads (library, base model, pipeline, tags), what the model is, every pass
/// that made it with its parameters (the provenance), what `--verify` measured when it ran, the
/// files, and how to load it in transformers / vLLM.
///
/// Everything comes from the finished temporary directory (config.json's `quantization_config`,
/// `i2q_verify.json`, the shard files) and the pipeline's provenance, so a new export format needs
/// no card code unless it wants its own loading snippet.
enum ModelCard {
    static let fileName = "README.md"

    static func write(into dir: String, output: String, provenance: Provenance, modelType: String, vision: Bool) throws {
        // config.json is the one this output just wrote: unreadable would be a bug, so it throws.
        let config = try JSONParser.parse(try FileSystem.readFile(dir + "/config.json"), source: dir + "/config.json")
        let q = config["quantization_config"]
        let scheme = describe(q, config: config)
        var files = try FileSystem.listDirectory(dir).filter { $0 != fileName }.sorted()
        files.removeAll { $0.hasPrefix(".") }
        let sizes = files.map { FileSystem.fileSize(dir + "/" + $0) ?? 0 }
        let sourcePath = provenance.source["path"]?.stringValue ?? "?"
        let base = FileSystem.basename(sourcePath)
        var tags = ["i2q", modelType] + scheme.tags
        tags = tags.reduce(into: []) { if !$0.contains($1) { $0.append($1) } }

        var md = "---\n"
        md += "library_name: transformers\n"
        md += "base_model: \(yaml(base))\n"
        md += "pipeline_tag: \(vision ? "image-text-to-text" : "text-generation")\n"
        md += "tags:\n" + tags.map { "- \(yaml($0))\n" }.joined()
        md += "---\n\n"
        md += "# \(FileSystem.basename(output))\n\n"
        md += "\(modelType) model, **\(scheme.text)**, made by i2q \(provenance.i2qVersion) (commit \(I2QBuild.commit)) "
        md += "from `\(sourcePath)`.\n\n"

        md += "## How it was made\n\n| step | parameters |\n|---|---|\n"
        let src = provenance.source
        let srcFacts = [src["kind"]?.stringValue, src["tensor_count"]?.intValue.map { "\($0) tensors" },
                        (src["tensor_bytes"]?.intValue ?? src["file_size"]?.intValue).map(formatBytes)].compactMap { $0 }
        md += "| source | `\(cell(sourcePath))` (\(srcFacts.joined(separator: ", "))) |\n"
        for p in provenance.passes where p.name != "verify" {
            md += "| \(p.name) | \(cell(p.params.map { "\($0.0)=\(JSONWriter.string($0.1))" }.joined(separator: " "))) |\n"
        }
        md += "\n## What it cost\n\n"
        let measured = try verifyLines(provenance: provenance, dir: dir)
        if measured.isEmpty {
            md += "Not measured when this was written. `i2q verify \(output) \(sourcePath) --text FILE` (perplexity, KL "
            md += "divergence, same-top) and `--docvqa DIR` (answer accuracy, ANLS) say what the transform cost.\n"
        } else {
            md += measured.map { "- \($0)\n" }.joined()
        }
        md += "\n## Files\n\n\(files.count) files, \(formatBytes(sizes.reduce(0, +))) in all:\n\n"
        for (f, s) in zip(files, sizes) { md += "- `\(f)` (\(formatBytes(s)))\n" }
        md += "\n## Load it\n\n" + loading(scheme: scheme, vision: vision).replacingOccurrences(of: "THIS_DIR", with: output)
        try FileSystem.writeFile(dir + "/" + fileName, Array(md.utf8))
    }

    struct Scheme { var text: String; var tags: [String]; var requirement: String?; var vllm: String? }

    /// The stored format, from config.json's `quantization_config` (transformers' keys).
    static func describe(_ q: JSONValue?, config: JSONValue?) -> Scheme {
        switch q?["quant_method"]?.stringValue {
        case "bitsandbytes":
            let t = q?["bnb_4bit_quant_type"]?.stringValue ?? "nf4"
            let dq = q?["bnb_4bit_use_double_quant"]?.boolValue == true ? ", double quantization" : ""
            let c = q?["bnb_4bit_compute_dtype"]?.stringValue.map { ", compute dtype \($0)" } ?? ""
            return Scheme(text: "bitsandbytes 4-bit \(t)\(dq)\(c)", tags: ["4-bit", "bitsandbytes", t],
                          requirement: "pip install transformers bitsandbytes", vllm: "--quantization bitsandbytes")
        case "awq":
            let g = q?["group_size"]?.intValue.map { ", group size \($0)" } ?? ""
            let v = q?["version"]?.stringValue.map { " (\($0))" } ?? ""
            return Scheme(text: "AWQ int4\(g), zero point\(v)", tags: ["4-bit", "awq", "int4"],
                          requirement: "pip install transformers autoawq", vllm: "--quantization awq")
        case let m?:
            return Scheme(text: "quantized (\(m))", tags: [m], requirement: nil, vllm: nil)
        case nil:
            let d = config?["torch_dtype"]?.stringValue ?? config?["dtype"]?.stringValue ?? "float32"
            return Scheme(text: "\(d) safetensors", tags: [d], requirement: "pip install transformers", vllm: "")
        }
    }

    static func loading(scheme: Scheme, vision: Bool) -> String {
        var s = ""
        if let r = scheme.requirement { s += "```sh\n\(r)\n```\n\n" }
        s += "```python\n"
        if vision {
            s += "from transformers import AutoModelForImageTextToText, AutoProcessor\n"
            s += "model = AutoModelForImageTextToText.from_pretrained(\"THIS_DIR\")\n"
            s += "processor = AutoProcessor.from_pretrained(\"THIS_DIR\")\n"
        } else {
            s += "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            s += "model = AutoModelForCausalLM.from_pretrained(\"THIS_DIR\")\n"
            s += "tokenizer = AutoTokenizer.from_pretrained(\"THIS_DIR\")\n"
        }
        s += "```\n\n"
        if let v = scheme.vllm { s += "vLLM: `vllm serve THIS_DIR\(v.isEmpty ? "" : " " + v)`. " }
        s += "i2q reads it back too: `i2q run THIS_DIR --prompt …`, `i2q verify THIS_DIR REFERENCE …`.\n"
        return s
    }

    /// Verify results: records in the provenance (a `--verify` that ran when an .i2q in the chain was
    /// made) and this output's own `i2q_verify.json`.
    static func verifyLines(provenance: Provenance, dir: String) throws -> [String] {
        var out: [String] = []
        for p in provenance.passes where p.name == "verify" {
            let v = Dictionary(p.params.map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
            out.append(headline(reference: v["reference"]?.stringValue, text: v["text"]?.stringValue,
                                ppl: v["ppl"]?.doubleValue, pplRef: v["ppl_reference"]?.doubleValue, kld: v["mean_kld"]?.doubleValue,
                                sameTop: v["same_top"]?.doubleValue, docvqa: v["docvqa"]?.stringValue,
                                anls: v["anls"]?.doubleValue, anlsRef: v["anls_reference"]?.doubleValue, questions: v["questions"]?.intValue))
        }
        if FileSystem.exists(dir + "/i2q_verify.json") {  // written by --verify's hook just before; absent without --verify
            let r = try JSONParser.parse(try FileSystem.readFile(dir + "/i2q_verify.json"), source: dir + "/i2q_verify.json")
            let t = r["text"], d = r["docvqa"]
            out.append(headline(reference: r["reference"]?["path"]?.stringValue ?? r["reference"]?.stringValue, text: t?["file"]?.stringValue,
                                ppl: t?["ppl_candidate"]?.doubleValue, pplRef: t?["ppl_base"]?.doubleValue,
                                kld: t?["kld"]?["mean"]?.doubleValue, sameTop: t?["same_top"]?["share"]?.doubleValue,
                                docvqa: d?["directory"]?.stringValue, anls: d?["anls_candidate"]?.doubleValue,
                                anlsRef: d?["anls_base"]?.doubleValue, questions: d?["samples"]?.intValue) + " (`i2q_verify.json`)")
        }
        return out
    }

    static func headline(reference: String?, text: String?, ppl: Double?, pplRef: Double?, kld: Double?, sameTop: Double?,
                         docvqa: String?, anls: Double?, anlsRef: Double?, questions: Int?) -> String {
        var parts: [String] = []
        if let ppl, let pplRef {
            parts.append("perplexity \(formatFixed(ppl, 3)) vs \(formatFixed(pplRef, 3)) on `\(text ?? "?")`"
                         + (kld.map { ", mean KLD \(formatFixed($0, 5))" } ?? "") + (sameTop.map { ", same top token \(formatFixed(100 * $0, 1)) %" } ?? ""))
        }
        if let anls, let anlsRef {
            parts.append("ANLS \(formatFixed(anls, 4)) vs \(formatFixed(anlsRef, 4)) on \(questions ?? 0) questions of `\(docvqa ?? "?")`")
        }
        return "against `\(reference ?? "?")`: " + (parts.isEmpty ? "no numbers recorded" : parts.joined(separator: "; "))
    }

    static func yaml(_ s: String) -> String {
        s.allSatisfy { $0.isLetter || $0.isNumber || "-_.".contains($0) } ? s : "\"" + s.replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    static func cell(_ s: String) -> String { s.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ") }
}
