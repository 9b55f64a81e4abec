import Foundation
import ArgumentParser
import I2QCore
import I2QFormats
import I2QPasses
import I2QQuant

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize the linear layers to 4 bits into an .i2q file: bitsandbytes-style NF4/FP4 (blockwise, double quant), affine int4 (AWQ-style groups) with --rtn (round to nearest) or --awq (activation-aware, calibrated), or llama.cpp's types with --type (q4_k_m …, the bytes llama-quantize writes).",
        discussion: """
            Examples:
              i2q quantize idefics2-dir --nf4 -o idefics2-nf4.i2q
              i2q quantize smollm2-dir --rtn -o smollm2-int4.i2q                 (group size: the largest of 128/64/32 that divides)
              i2q quantize idefics2-dir --awq --calibration docvqa-dir --samples 32 -o idefics2-awq.i2q
              i2q quantize smollm2-dir --gptq --group-size 64 --calibration text.txt -o smollm2-gptq.i2q
              (interrupted? rerun the same command with --resume; --restart discards the saved layers)
              i2q imatrix idefics2-dir --calibration docvqa-dir -o idefics2.imatrix.gguf
              i2q quantize idefics2-dir --type q4_k_m --imatrix idefics2.imatrix.gguf -o idefics2-q4_k_m.i2q
              i2q quantize smollm2-dir --target-bpw 4.5 --calibration text.txt -o smollm2-4.5.i2q      (writes smollm2-4.5.recipe.json)
              i2q quantize smollm2-dir --recipe smollm2-4.5.recipe.json --calibration text.txt -o again.i2q
            """)

    @Argument(help: modelHelp("HF model directory, .i2q file, or llama.cpp .gguf file"))
    var model: String

    @OptionGroup var input: ModelInputOptions

    @Flag(help: "NF4 (the default).") var nf4 = false
    @Flag(help: "FP4.") var fp4 = false
    @Flag(help: "Affine int4 (zero point, fp16 scale per group), round to nearest: the decoder's linear layers only.") var rtn = false
    @Flag(help: "Affine int4 with AWQ (AutoAWQ semantics): scales and clipping searched on --calibration data, layer by layer.") var awq = false
    @Flag(help: "Affine int4 with GPTQ (GPTQModel semantics): Hessian-based error feedback from --calibration data, layer by layer.") var gptq = false

    @Flag(name: .customLong("act-order"), help: "--gptq: quantize columns in descending order of the Hessian diagonal, with static groups (GPTQModel desc_act + static_groups; the stored layout is unchanged).")
    var actOrder = false

    @Option(help: "--gptq: dampening, as a fraction of the mean Hessian diagonal added to it (GPTQModel damp_percent).")
    var damp: Double = 0.01

    @Option(help: "--rtn/--awq/--gptq: elements per group along the input dimension (must divide it; default: the largest of 128, 64, 32 that divides every quantized tensor).")
    var groupSize: Int?

    @Option(help: "--rtn/--awq: bits per code: 4 (affine_int4, the default), 3 or 2 (affine_int3 / affine_int2, packed densely; run/verify/perplexity read them; the exports refuse them). --gptq: 4 only.")
    var bits: Int?

    @Option(help: "--awq/--gptq/--target-bpw: calibration data: a UTF-8 text file or a DocVQA-format directory (JSON with data[{questionId, question, image, answers}] beside the images).")
    var calibration: String?

    @Option(help: "--awq/--gptq/--target-bpw: calibration sequences at most (text blocks or DocVQA questions; --target-bpw: llama-imatrix chunks).")
    var samples = 128

    @Option(help: "--awq/--gptq/--target-bpw: tokens per calibration sequence (text block length; longer DocVQA prompts are truncated).")
    var seqLen = 512

    @Option(help: "--awq/--gptq/--target-bpw: seed of the calibration sample selection.")
    var seed: UInt64 = 0

    @Option(help: "--awq: tokens the scale-search losses are computed on (whole sequences for attention, evenly spaced rows elsewhere); 0 = every calibration token (AutoAWQ). The layer forward, x_mean and the clipping search are unaffected.")
    var searchTokens = 0

    @Flag(inversion: .prefixedNo, help: "--awq/--gptq on an Idefics2 model with a DocVQA set: split each page into 4 crops + the page (default: as the model's preprocessor config says; without splitting the vision tower runs ~5x faster).")
    var imageSplitting: Bool? = nil

    @Flag(help: "--awq/--gptq/--target-bpw: continue an interrupted run from its last finished layer / measured tensor (state in OUTPUT.awq-state / .gptq-state / .bpw-state).")
    var resume = false

    @Flag(help: "--awq/--gptq/--target-bpw: discard the state of an earlier run for this output (OUTPUT.awq-state / .gptq-state / .bpw-state) and start over.")
    var restart = false

    @Option(help: "Elements per absmax block (bitsandbytes: 64).")
    var blockSize = 64

    @Flag(help: "Keep absmax in float32 instead of double-quantizing it.")
    var noDoubleQuant = false

    @Option(help: "The dtype dequantization produces: bf16, f16 or f32 (NF4/FP4 default bf16; --rtn/--awq/--gptq default: the source dtype).")
    var computeDtype: String?

    @Option(help: "Keep tensors whose name contains PATTERN unquantized (repeatable), e.g. vision_model.")
    var skip: [String] = []

    @Flag(name: .customLong("vision-int4"), help: "--rtn on Idefics2: the vision tower's linear layers too (q/k/v/out, fc1/fc2 of every encoder layer).")
    var visionInt4 = false

    @Option(help: "Cast the tensors kept unquantized to f16, bf16 or f32 (default: keep their dtype).")
    var dtype: String?

    @Option(help: ArgumentHelp("llama.cpp file type: \(LlamaFileType.allCases.map(\.rawValue).joined(separator: ", ")) — per-tensor types as llama-quantize chooses them, bytes identical to its (scheme ggml; `export --to gguf` copies them).", valueName: "TYPE"))
    var type: String?

    @Option(name: .customLong("tensor-type"), help: ArgumentHelp("--type: per-tensor type as llama-quantize's --tensor-type (the first REGEX found in a tensor's GGUF name gives it TYPE). Repeatable.", valueName: "REGEX=TYPE"))
    var tensorTypes: [String] = []

    @Option(help: ArgumentHelp("--type: importance matrix (llama.cpp's GGUF or .dat imatrix, e.g. from `i2q imatrix`) for the imatrix-weighted quantizers.", valueName: "FILE"))
    var imatrix: String?

    @Option(name: .customLong("target-bpw"), help: ArgumentHelp("Mixed precision by measured sensitivity: average bits per weight (scales included) over the decoder's weights, embedding and lm_head, at most X. Each tensor's cost under each candidate is measured on --calibration (or --imatrix), and the assignment of least total cost within the budget is written, with its recipe (OUTPUT.recipe.json).", valueName: "X"))
    var targetBpw: Double?

    @Option(help: ArgumentHelp("--target-bpw: the schemes a tensor may get (a tensor gets only those its rows hold whole groups/blocks of; a K-quant that does not fit becomes llama.cpp's fallback: q2_k, q3_k → q4_0, q4_k → q5_0, q5_k → q5_1, q6_k → q8_0): \(MixedCandidate.allNames.joined(separator: ", ")). Default \(MixedCandidate.defaultList).", valueName: "LIST"))
    var candidates: String?

    @Option(help: ArgumentHelp("Apply the per-tensor schemes of a recipe written by --target-bpw (same recipe, model and importance → the same bytes); with --target-bpw, re-optimize its measured costs for that budget without measuring.", valueName: "FILE"))
    var recipe: String?

    @Option(name: .customLong("probe-tokens"), help: ArgumentHelp("--target-bpw: calibration positions of the KLD probe that weighs the tensors against each other (each tensor alone at its cheapest candidate, the model run, KL to the original measured); 0: the importance-weighted weight error alone.", valueName: "N"))
    var probeTokens = 128

    @Option(name: .customLong("recipe-out"), help: ArgumentHelp("--target-bpw / --recipe: where the recipe JSON is written (default: OUTPUT without .i2q + .recipe.json).", valueName: "FILE"))
    var recipeOut: String?

    @OptionGroup var out: OutputOptions
    @OptionGroup var verification: VerifyAfterOptions

    func validate() throws {
        try verification.validateVerify()
        let mixed = targetBpw != nil || recipe != nil
        if [nf4, fp4, rtn, awq, gptq, type != nil, mixed].filter({ $0 }).count > 1 { throw ValidationError("choose one of --nf4, --fp4, --rtn, --awq, --gptq, --type and --target-bpw/--recipe") }
        if !gptq && (actOrder || damp != 0.01) { throw ValidationError("--act-order and --damp apply to --gptq") }
        if gptq { guard damp > 0 && damp < 1 else { throw ValidationError("--damp must be between 0 and 1 (exclusive; GPTQModel's default 0.01), got \(damp)") } }
        if let t = targetBpw, !(t.isFinite && t > 0 && t <= 32) { throw ValidationError("--target-bpw must be a number of bits per weight in (0, 32] (got \(t))") }
        if !mixed, candidates != nil || recipeOut != nil { throw ValidationError("--candidates and --recipe-out apply to --target-bpw / --recipe") }
        if recipe != nil, candidates != nil { throw ValidationError("--candidates comes from the recipe with --recipe; leave it out") }
        if let c = candidates { do { _ = try MixedCandidate.parseList(c) } catch { throw ValidationError("--candidates: \(error)") } }
        if let r = recipe, !FileManager.default.fileExists(atPath: r) { throw ValidationError("--recipe \(r): no such file") }
        if mixed {
            if targetBpw != nil, recipe == nil, calibration == nil, imatrix == nil {
                throw ValidationError("--target-bpw measures each tensor's sensitivity: give --calibration FILE.txt or a DocVQA-format directory (or --imatrix FILE)")
            }
            if calibration != nil, imatrix != nil { throw ValidationError("choose one of --calibration and --imatrix") }
            if recipe != nil, resume || restart { throw ValidationError("--resume and --restart apply to the --target-bpw measurement (without --recipe)") }
            try FlagLimits.check("--samples", samples, 1...FlagLimits.samples)
            try FlagLimits.check("--seq-len", seqLen, 2...FlagLimits.positions)
            try FlagLimits.check("--probe-tokens", probeTokens, 0...FlagLimits.positions)
        }
        if let type, LlamaFileType(rawValue: type.lowercased()) == nil {
            throw ValidationError("--type \(type) is not one of \(LlamaFileType.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if type == nil, !tensorTypes.isEmpty { throw ValidationError("--tensor-type applies to --type") }
        if type == nil, !mixed, imatrix != nil { throw ValidationError("--imatrix applies to --type and --target-bpw") }
        for t in tensorTypes { _ = try TensorTypeOverride(parsing: t) }
        if let imatrix, !FileManager.default.fileExists(atPath: imatrix) { throw ValidationError("--imatrix \(imatrix): no such file") }
        if let bits {
            guard rtn || awq else { throw ValidationError("--bits applies to --rtn and --awq (GPTQ writes 4-bit codes only)") }
            guard AffineInt4.supportedBits.contains(bits) else { throw ValidationError("--bits must be 2, 3 or 4 (got \(bits))") }
        }
        if rtn || awq || gptq, let groupSize {
            guard groupSize >= 2, groupSize % 2 == 0 else { throw ValidationError("--group-size must be an even number ≥ 2 (got \(groupSize))") }
            try FlagLimits.check("--group-size", groupSize, 2...(1 << 20))
        }
        if awq || gptq {
            guard calibration != nil else { throw ValidationError("\(gptq ? "--gptq" : "--awq") needs --calibration FILE.txt or a DocVQA-format directory") }
            guard samples >= 1 else { throw ValidationError("--samples must be at least 1") }
            guard seqLen >= 2 else { throw ValidationError("--seq-len must be at least 2") }
            guard searchTokens >= 0 else { throw ValidationError("--search-tokens must be 0 (every token) or positive") }
            try FlagLimits.check("--samples", samples, 1...FlagLimits.samples)
            try FlagLimits.check("--seq-len", seqLen, 2...FlagLimits.positions)
            try FlagLimits.check("--search-tokens", searchTokens, 0...FlagLimits.positions * 64)
            if gptq && searchTokens != 0 { throw ValidationError("--search-tokens applies to --awq") }
        } else if searchTokens != 0 || imageSplitting != nil || (!mixed && (calibration != nil || resume || restart)) {
            throw ValidationError("--calibration, --resume and --restart apply to --awq, --gptq and --target-bpw; --search-tokens to --awq; --[no-]image-splitting to --awq and --gptq")
        }
        if resume && restart { throw ValidationError("choose one of --resume (continue the saved layers) and --restart (discard them)") }
        if visionInt4 && !rtn { throw ValidationError("--vision-int4 goes with --rtn (AWQ calibrates the decoder only; NF4/FP4 quantize the vision tower by default — keep it 16-bit with --skip vision_model)") }
        guard FourBitCodec.validBlockSizes.contains(blockSize) else {
            throw ValidationError("--block-size must be one of \(FourBitCodec.validBlockSizes.map(String.init).joined(separator: ", "))")
        }
        guard computeDtype.map({ DType(userSpelling: $0) != nil }) ?? true else { throw ValidationError("--compute-dtype must be bf16, f16 or f32") }
        if let d = dtype, DType(userSpelling: d) == nil { throw ValidationError("--dtype must be f16, bf16 or f32") }
    }

    func run() throws {
        try runReportingErrors {
            if rtn || awq || gptq { return try runAffine() }
            if targetBpw != nil || recipe != nil { return try runMixed() }
            if let type { return try runGGML(LlamaFileType(rawValue: type.lowercased())!) }
            var o = QuantizeOptions()
            o.type = fp4 ? .fp4 : .nf4
            o.blockSize = blockSize
            o.doubleQuant = !noDoubleQuant
            o.computeDType = DType(userSpelling: computeDtype ?? "bf16")!
            o.skip = skip
            o.dtype = dtype.flatMap { DType(userSpelling: $0) }
            let path = try input.resolve(model)
            let r = try QuantizePass.run(source: try openModel(path), output: out.output, options: o, settings: verification.apply(to: out.baseSettings, reference: path))
            let q = r.tensors.filter { $0.to == .u8 }.count
            printSummary("quantized \(q) of \(r.tensors.count) tensors to \(o.type.rawValue)", r)
        }
    }

    func runGGML(_ t: LlamaFileType) throws {
        var o = GGMLQuantizeOptions(fileType: t)
        o.overrides = try tensorTypes.map(TensorTypeOverride.init(parsing:))
        if let imatrix { o.importance = try ImportanceMatrix.read(path: imatrix); o.importancePath = imatrix }
        let path = try input.resolve(model)
        let r = try GGMLQuantizePass.run(source: try openModel(path), output: out.output, options: o,
                                         settings: verification.apply(to: out.baseSettings, reference: path), note: { printError($0) })
        let q = r.tensors.filter { $0.to == .u8 }.count
        printSummary("quantized \(q) of \(r.tensors.count) tensors to \(t.rawValue)", r)
    }

    func runMixed() throws {
        var o = MixedQuantizeOptions()
        o.targetBPW = targetBpw
        if let c = candidates { o.candidates = try MixedCandidate.parseList(c) }
        if let r = recipe { o.recipe = try MixedRecipe.read(path: r) }
        o.recipeOutput = recipeOut
        o.probeTokens = probeTokens
        if let c = calibration {
            var s = ImatrixSettings(calibration: c)
            s.ctx = seqLen; s.chunks = samples; s.seed = seed
            o.calibration = s
        }
        if let imatrix { o.importance = try ImportanceMatrix.read(path: imatrix) }
        o.resume = resume
        o.restart = restart
        o.log = { printError($0) }
        let path = try input.resolve(model)
        let r = try MixedQuantizePass.run(source: try openModel(path), output: out.output, options: o,
                                          settings: verification.apply(to: out.baseSettings, reference: path))
        let q = r.tensors.filter { $0.to == .u8 }.count
        printSummary("quantized \(q) of \(r.tensors.count) tensors, mixed precision (recipe: \(recipeOut ?? MixedQuantizePass.defaultRecipePath(out.output)))", r)
    }

    func runAffine() throws {
        var o = AffineQuantizeOptions()
        o.method = gptq ? .gptq : (awq ? .awq : .rtn)
        o.gptq.actOrder = actOrder
        o.gptq.damp = damp
        o.groupSize = groupSize
        o.bits = bits ?? 4
        o.computeDType = computeDtype.flatMap { DType(userSpelling: $0) }
        o.skip = skip
        o.vision = visionInt4
        o.dtype = dtype.flatMap { DType(userSpelling: $0) }
        if let c = calibration {
            var cal = CalibrationOptions(path: c)
            cal.samples = samples
            cal.seqLen = seqLen
            cal.seed = seed
            cal.imageSplitting = imageSplitting
            o.calibration = cal
        }
        o.awq.searchTokens = searchTokens
        o.resume = resume
        o.restart = restart
        o.log = { printError($0) }
        let path = try input.resolve(model)
        let source = try openModel(path)
        if groupSize == nil {
            let g = try AffineQuantizePass.defaultGroupSize(source: source, options: o)
            o.groupSize = g
            printError("group size \(g): the largest of \(AffineQuantizePass.defaultGroupSizes.map(String.init).joined(separator: ", ")) that divides every quantized tensor (--group-size to choose)")
        }
        let r = try AffineQuantizePass.run(source: source, output: out.output, options: o, settings: verification.apply(to: out.baseSettings, reference: path))
        let q = r.tensors.filter { $0.to == .u8 }.count
        printSummary("quantized \(q) of \(r.tensors.count) tensors to affine int\(o.bits) (\(o.method.rawValue)\(o.method == .gptq && actOrder ? ", act-order" : ""), group \(o.groupSize!))", r)
    }
}
