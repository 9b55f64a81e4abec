import ArgumentParser
import I2QCore
import I2QFormats
import I2QPasses
import I2QQuant

/// The layouts `export --to` writes. One case per target; each case's pass lives in I2QPasses.
enum ExportTarget: String, CaseIterable, ExpressibleByArgument {
    /// HF safetensors directory (plain tensors) that transformers loads.
    case hf
    /// transformers' bitsandbytes 4-bit state dict + quantization_config (from an nf4/fp4 .i2q).
    case hfBnb = "hf-bnb"
    /// llama.cpp GGUF v3 of the text decoder (llama architecture); tensor type from --type.
    case gguf
    /// AutoAWQ GEMM checkpoint (int32 qweight/qzeros, fp16 scales) from an affine_int4 .i2q (--rtn/--awq).
    case hfAwq = "hf-awq"
    /// compressed-tensors `pack-quantized` W4A16 (llm-compressor's layout: transformers, vLLM) from an affine_int4 .i2q.
    case compressedTensors = "compressed-tensors"
    /// GPTQ's HF checkpoint (qweight/qzeros/scales/g_idx, quantize_config.json: gptqmodel) from an affine_int4 .i2q.
    case hfGptq = "hf-gptq"
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a model in another runtime's layout: hf (transformers), hf-bnb (transformers + bitsandbytes 4-bit), hf-awq (AutoAWQ GEMM int4: transformers, vLLM), compressed-tensors (llm-compressor's pack-quantized int4: transformers, vLLM), hf-gptq (GPTQ int4: gptqmodel), gguf (llama.cpp).",
        discussion: """
            Examples:
              i2q export model-nf4.i2q --to hf-bnb -o model-nf4-hf/
              i2q export model-awq.i2q --to hf-awq -o model-awq-hf/
              i2q export model-gptq.i2q --to compressed-tensors -o model-gptq-ct/
              i2q export model-gptq.i2q --to hf-gptq -o model-gptq-hf/
              i2q export smollm2-dir --to gguf --type q8_0 -o smollm2-q8_0.gguf
              i2q export smollm2-dir --to gguf --type q4_k_m -o smollm2-q4_k_m.gguf
              i2q export smollm2-dir --to gguf --type q4_k_m --tensor-type 'attn_v=q8_0' -o smollm2-q4_k_m-v8.gguf

            --type q4_0 … q6_k, q4_k_m … are llama-quantize's file types: each tensor's type as
            llama-quantize chooses it, and the same bytes llama-quantize writes from i2q's default
            (f16/bf16) GGUF export.
            """)

    @Argument(help: modelHelp("An .i2q file, HF model directory, or .gguf file"))
    var model: String

    @OptionGroup var input: ModelInputOptions

    @Option(help: "Target layout: \(ExportTarget.allCases.map(\.rawValue).joined(separator: ", ")).")
    var to: ExportTarget

    @Option(help: "Largest safetensors shard, e.g. 5GB, 500MB, 2GiB.")
    var maxShardSize: String = "5GB"

    @Option(help: "GGUF tensor type (--to gguf): \(GGUFExportType.allCases.map(\.rawValue).joined(separator: ", ")); default bf16 for bf16 models, else f16.")
    var type: String?

    @Option(name: .customLong("tensor-type"), help: ArgumentHelp("Per-tensor type (--to gguf, llama-quantize types), as llama-quantize's --tensor-type: the first REGEX found in a tensor's GGUF name (e.g. 'attn_v=q8_0', 'blk\\.[0-3]\\.ffn_down=q6_k') gives it TYPE. Repeatable.", valueName: "REGEX=TYPE"))
    var tensorTypes: [String] = []

    @Option(help: ArgumentHelp("Importance matrix for the imatrix-weighted quantizers (--to gguf, llama-quantize types).", valueName: "FILE"))
    var imatrix: String?

    @Option(help: ArgumentHelp("--to gguf of an Idefics3/SmolVLM model: also write its vision tower and connector to FILE as llama.cpp's idefics3 projector (mmproj), as convert_hf_to_gguf.py --mmproj writes it.", valueName: "FILE"))
    var mmproj: String?

    @Option(name: .customLong("mmproj-type"), help: "Weight type of the --mmproj file, as convert_hf_to_gguf.py's --outtype: \(MmprojExportPass.OutType.allCases.map(\.rawValue).joined(separator: ", ")); default auto (bf16 for bf16 models, else f16).")
    var mmprojType: String?

    @Flag(help: "Keep fused tensors (i2q fuse) under their fused names, vLLM-style (qkv_proj, gate_up_proj), instead of transformers' q/k/v and gate/up.")
    var fusedNames = false

    @OptionGroup var out: OutputOptions

    func validate() throws {
        guard parseByteSize(maxShardSize) != nil else {
            throw ValidationError("--max-shard-size must be a size like 5GB, 500MB or 2GiB (got \"\(maxShardSize)\")")
        }
        if let type, GGUFExportType(rawValue: type) == nil || to != .gguf {
            throw ValidationError("--type takes \(GGUFExportType.allCases.map(\.rawValue).joined(separator: ", ")) and only with --to gguf (got \"\(type)\")")
        }
        if to != .gguf, !tensorTypes.isEmpty || imatrix != nil {
            throw ValidationError("--tensor-type and --imatrix apply to --to gguf only")
        }
        if mmproj != nil, to != .gguf { throw ValidationError("--mmproj applies to --to gguf only") }
        if let t = mmprojType {
            guard mmproj != nil else { throw ValidationError("--mmproj-type needs --mmproj FILE") }
            guard MmprojExportPass.OutType(rawValue: t) != nil else {
                throw ValidationError("--mmproj-type takes \(MmprojExportPass.OutType.allCases.map(\.rawValue).joined(separator: ", ")) (got \"\(t)\")")
            }
        }
        for t in tensorTypes {
            do { _ = try TensorTypeOverride(parsing: t) } catch { throw ValidationError("\(error)") }
        }
    }

    func run() throws {
        try runReportingErrors {
            var s = out.baseSettings
            s.maxShardSize = parseByteSize(maxShardSize)!
            let source = try openModel(try input.resolve(model))
            switch to {
            case .hf:
                let r = try ExportPass.makeHF(source: source, output: out.output, settings: s, fusedNames: fusedNames).run()
                printSummary("exported \(r.tensors.count) tensors to hf", r)
            case .hfBnb:
                let r = try BnbExportPass.run(source: source, output: out.output, settings: s, fusedNames: fusedNames)
                printSummary("exported \(r.tensors.count) tensors to hf-bnb", r)
            case .gguf:
                let overrides = try tensorTypes.map(TensorTypeOverride.init(parsing:))
                let importance = try imatrix.map(loadImportance)
                // The text export is planned (model and output checked) before the projector is written.
                let text = try GGUFExportPass(source: source, output: out.output, type: type.flatMap(GGUFExportType.init(rawValue:)), settings: s,
                                              overrides: overrides, importance: importance)
                if let mmproj {
                    let r = try MmprojExportPass.run(source: source, output: mmproj, type: mmprojType.flatMap(MmprojExportPass.OutType.init(rawValue:)) ?? .auto, settings: s)
                    print("exported \(r.tensors) vision/connector tensors to \(r.output) (llama.cpp idefics3 mmproj, \(r.type.rawValue), \(formatCount(r.bytesWritten)) bytes)")
                }
                print(try text.run().summary)
            case .hfAwq:
                let r = try AWQExportPass.run(source: source, output: out.output, settings: s, fusedNames: fusedNames)
                printSummary("exported \(r.tensors.count) tensors to hf-awq", r)
            case .compressedTensors:
                let r = try CompressedTensorsExportPass.run(source: source, output: out.output, settings: s)
                printSummary("exported \(r.tensors.count) tensors to compressed-tensors (pack-quantized)", r)
            case .hfGptq:
                let r = try HFGPTQExportPass.run(source: source, output: out.output, settings: s)
                printSummary("exported \(r.tensors.count) tensors to hf-gptq", r)
            }
        }
    }
}

/// The importance matrix of `--imatrix FILE`: llama.cpp's GGUF or legacy .dat imatrix, or `i2q imatrix`'s.
func loadImportance(_ path: String) throws -> any ImportanceSource {
    try ImportanceMatrix.read(path: path)
}
