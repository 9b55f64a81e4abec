import ArgumentParser
import I2QCore
import I2QFormats
import I2QPasses
import I2QQuant

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize the linear layers to 4 bits, bitsandbytes-style (NF4 or FP4, blockwise, double quant), into an .i2q file.")

    @Argument(help: "HF model directory, .i2q file, or llama.cpp .gguf file.")
    var model: String

    @Flag(help: "NF4 (the default).") var nf4 = false
    @Flag(help: "FP4.") var fp4 = false

    @Option(help: "Elements per absmax block (bitsandbytes: 64).")
    var blockSize = 64

    @Flag(help: "Keep absmax in float32 instead of double-quantizing it.")
    var noDoubleQuant = false

    @Option(help: "The dtype dequantization produces: bf16, f16 or f32.")
    var computeDtype = "bf16"

    @Option(help: "Keep tensors whose name contains PATTERN unquantized (repeatable), e.g. vision_model.")
    var skip: [String] = []

    @Option(help: "Cast the tensors kept unquantized to f16, bf16 or f32 (default: keep their dtype).")
    var dtype: String?

    @OptionGroup var out: OutputOptions

    func validate() throws {
        if nf4 && fp4 { throw ValidationError("choose one of --nf4 and --fp4") }
        guard FourBitCodec.validBlockSizes.contains(blockSize) else {
            throw ValidationError("--block-size must be one of \(FourBitCodec.validBlockSizes.map(String.init).joined(separator: ", "))")
        }
        guard DType(userSpelling: computeDtype) != nil else { throw ValidationError("--compute-dtype must be bf16, f16 or f32") }
        if let d = dtype, DType(userSpelling: d) == nil { throw ValidationError("--dtype must be f16, bf16 or f32") }
    }

    func run() throws {
        try runReportingErrors {
            var o = QuantizeOptions()
            o.type = fp4 ? .fp4 : .nf4
            o.blockSize = blockSize
            o.doubleQuant = !noDoubleQuant
            o.computeDType = DType(userSpelling: computeDtype)!
            o.skip = skip
            o.dtype = dtype.flatMap { DType(userSpelling: $0) }
            let r = try QuantizePass.run(source: try openModel(model), output: out.output, options: o, settings: out.baseSettings)
            let q = r.tensors.filter { $0.to == .u8 }.count
            printSummary("quantized \(q) of \(r.tensors.count) tensors to \(o.type.rawValue)", r)
        }
    }
}
