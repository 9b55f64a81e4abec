import I2QCore
import I2QFormats
import I2QQuant

public enum BnbExportError: I2QError {
    case notFourBit(path: String)
    case otherScheme(path: String, tensor: String, scheme: String)
    case malformed(path: String, tensor: String, detail: String)

    public var description: String {
        switch self {
        case let .notFourBit(p):
            return "\(p): no NF4/FP4 tensors; hf-bnb exports a 4-bit model. Run `i2q quantize --nf4 MODEL -o OUT.i2q` first, or use --to hf."
        case let .otherScheme(p, t, s):
            return "\(p): tensor \"\(t)\" is \(s); hf-bnb holds only bitsandbytes NF4/FP4 tensors (use --to hf-awq for affine int4)."
        case let .malformed(p, t, d):
            return "\(p): 4-bit tensor \"\(t)\": \(d). The file was not written by `i2q quantize`; re-create it."
        }
    }
}

/// `i2q export MODEL.i2q --to hf-bnb`: the state dict transformers' `save_pretrained` writes for a
/// bitsandbytes 4-bit model, so `from_pretrained(dir)` loads it without quantizing again.
///
/// Per quantized linear `X` (bitsandbytes 0.50 `Linear4bit._save_to_state_dict` +
/// `QuantState.as_dict(packed=True)`, checked byte for byte against Tests/Fixtures/bnb-export):
///   X.weight                                 U8  [ceil(n/2), 1]   the packed codes
///   X.weight.absmax                          U8  [blocks] with double quant, else F32 [blocks]
///   X.weight.quant_map                       F32 [16]             the NF4/FP4 code table
///   X.weight.nested_absmax                   F32 [ceil(blocks/256)]   (double quant only)
///   X.weight.nested_quant_map                F32 [256]            (double quant only)
///   X.weight.quant_state.bitsandbytes__nf4   U8  [len]            UTF-8 of json.dumps({quant_type,
///       blocksize, dtype, shape[, nested_blocksize, nested_dtype, nested_offset]})
/// Plain tensors are copied unchanged; config.json gains transformers' `quantization_config`.
/// Streams one tensor at a time (the .i2q is mapped; pages are read once).
public enum BnbExportPass {
    struct Item {
        let plan: PlannedTensor
        let bytes: (I2QFile) -> [UInt8]?   // small components made in memory
        let component: I2QComponent?      // or a component copied from the file
        let plain: SourceTensor?          // or a plain tensor of the source
        /// The stored entry whose checksums cover `component` (the fused entry, for a part).
        var owner: I2QTensorEntry? = nil
    }

    /// Fused entries (i2q fuse) are written as the tensors they hold (transformers' names), or with
    /// `fusedNames` as stored (`qkv_proj`, `gate_up_proj`) — possible for a 4-bit entry only without
    /// double quantization: a bitsandbytes QuantState holds one nested offset, a fused entry one per part.
    public static func run(source: any ModelSource, output: String, settings: OutputSettings, fusedNames: Bool = false) throws -> PassReport {
        guard let f = source as? I2QFile else { throw BnbExportError.notFourBit(path: source.path) }
        let fourBit = f.entries.filter { BnbFourBitLayout.schemes.contains($0.scheme) }
        if fourBit.isEmpty { throw BnbExportError.notFourBit(path: f.path) }
        if let e = f.entries.first(where: { !BnbFourBitLayout.schemes.union(PlainLayout.schemes).contains($0.scheme) }) {
            throw BnbExportError.otherScheme(path: f.path, tensor: e.name, scheme: e.scheme)
        }
        // Resolve the whole plan before touching the disk.
        var items: [Item] = []
        var doubleQuant: Bool?
        var quantType: String?
        var computeDType: DType?
        // Plain tensors by the names written: with fused plain entries un-fused, their parts (row views).
        let plainTensors = Dictionary((!fusedNames && UnfusedSource.hasFused(f) ? try UnfusedSource(f).tensors : f.tensors).map { ($0.name, $0) },
                                      uniquingKeysWith: { a, _ in a })
        for fe in f.entries {
            // A fused entry: its parts, each a view of the stored bytes (checked through the fused entry).
            let unfuse = !fe.parts.isEmpty && !fusedNames
            if !fe.parts.isEmpty && fusedNames && fe.component(BnbFourBitLayout.Role.nestedAbsmax) != nil {
                throw BnbExportError.malformed(path: f.path, tensor: fe.name, detail: "it is fused with double quantization (one nested offset per part), which a bitsandbytes QuantState cannot hold; export without --fused-names")
            }
            let parts = unfuse ? try FusedTensors.partEntries(fe, path: f.path) : [fe]
            for e in parts {
            if e.scheme == I2QSpec.Scheme.plain {
                guard let t = plainTensors[e.name] else { throw BnbExportError.malformed(path: f.path, tensor: e.name, detail: "plain tensor not readable") }
                items.append(Item(plan: PlannedTensor(name: e.name, dtype: e.dtype, shape: e.shape), bytes: { _ in nil }, component: nil, plain: t))
                continue
            }
            var made = try plan4bit(e, file: f)
            for i in made.items.indices where made.items[i].component != nil { made.items[i].owner = unfuse ? fe : e }
            items += made.items
            if let d = doubleQuant, d != made.doubleQuant {
                throw BnbExportError.malformed(path: f.path, tensor: e.name, detail: "mixes double-quantized and plain absmax; transformers' config has one bnb_4bit_use_double_quant")
            }
            if let q = quantType, q != e.scheme {
                throw BnbExportError.malformed(path: f.path, tensor: e.name, detail: "mixes NF4 and FP4; transformers' config has one bnb_4bit_quant_type")
            }
            doubleQuant = made.doubleQuant
            quantType = e.scheme
            computeDType = e.dtype
            }
        }
        let skips = quantizeSkipPatterns(f.provenance)
        let config = try bnbConfig(f, quantType: quantType!, doubleQuant: doubleQuant!, computeDType: computeDType!, skips: skips)

        var s = settings
        s.format = .safetensors
        let copier = CastCopier()  // plain tensors, chunk by chunk
        return try HFDirectoryOutput.write(from: f, output: output, settings: s, plan: items.map(\.plan), config: config) { i, writer in
            let it = items[i]
            if let t = it.plain {
                _ = try copier.copy(t, count: t.elementCount, to: t.dtype, append: { try writer.append($0) })  // unchanged bytes
            } else if let c = it.component {
                if let o = it.owner { try f.ensureVerified(o) }  // once per stored entry (I2QFile's ledger)
                try f.file.withBytes(f.header.dataOffset + c.offset, c.size) { try writer.append($0) }
            } else if let b = it.bytes(f) {
                try b.withUnsafeBytes { try writer.append($0) }
            }
            return (it.plan.dtype, CastStats())
        }
    }

    /// The tensors of one 4-bit entry, in bitsandbytes' state-dict order.
    static func plan4bit(_ e: I2QTensorEntry, file f: I2QFile) throws -> (items: [Item], doubleQuant: Bool) {
        func bad(_ d: String) -> BnbExportError { .malformed(path: f.path, tensor: e.name, detail: d) }
        guard e.shape.count == 2 else { throw bad("shape \(e.shape) is not [out, in]") }
        let l: BnbFourBitLayout
        do { l = try BnbFourBitLayout(e) } catch let x as SchemeLayoutError { throw bad(x.detail) }
        let (n, blocksize, blocks, packed, absmax, dq) = (l.elements, l.blockSize, l.blocks, l.packed, l.absmax, l.doubleQuant)
        guard let dtypeName = e.dtype.torchName?.replacingOccurrences(of: "torch.", with: "") else { throw bad("dtype \(e.dtype.rawValue) has no torch name") }
        let type = l.isNF4 ? FourBitType.nf4 : FourBitType.fp4
        let w = e.name
        var items = [
            Item(plan: PlannedTensor(name: w, dtype: .u8, shape: [(n + 1) / 2, 1]), bytes: { _ in nil }, component: packed, plain: nil),
            Item(plan: PlannedTensor(name: w + ".absmax", dtype: dq ? .u8 : .f32, shape: [blocks]), bytes: { _ in nil }, component: absmax, plain: nil),
            Item(plan: PlannedTensor(name: w + ".quant_map", dtype: .f32, shape: [16]), bytes: { _ in type.code.withUnsafeBytes { Array($0) } }, component: nil, plain: nil),
        ]
        var state = "{\"quant_type\": \"\(type.rawValue)\", \"blocksize\": \(blocksize), \"dtype\": \"\(dtypeName)\", \"shape\": [\(e.shape[0]), \(e.shape[1])]"
        if dq {
            guard let (nested, code, o) = l.nested, let offset = o else { throw bad("missing param nested_offset") }
            let nestedBlock = l.nestedBlockSize
            items.append(Item(plan: PlannedTensor(name: w + ".nested_absmax", dtype: .f32, shape: [nested.size / 4]), bytes: { _ in nil }, component: nested, plain: nil))
            items.append(Item(plan: PlannedTensor(name: w + ".nested_quant_map", dtype: .f32, shape: [256]), bytes: { _ in nil }, component: code, plain: nil))
            // json.dumps writes the float32 offset widened to a double, shortest round-trip repr.
            state += ", \"nested_blocksize\": \(nestedBlock), \"nested_dtype\": \"float32\", \"nested_offset\": \(pythonRepr(Double(Float(offset))))"
        }
        state += "}"
        let bytes = Array(state.utf8)
        items.append(Item(plan: PlannedTensor(name: w + ".quant_state.bitsandbytes__" + type.rawValue, dtype: .u8, shape: [bytes.count]),
                          bytes: { _ in bytes }, component: nil, plain: nil))
        return (items, dq)
    }

    /// Python's `repr(float)`: shortest round-trip digits; exponent form below 1e-4 and from 1e16.
    static func pythonRepr(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v < 0 ? "-Infinity" : "Infinity" }
        return "\(v)"  // Swift's description is the same shortest round-trip form ("1e-05", "0.25", "1e+16")
    }

    /// The `--skip` patterns the quantize pass recorded (kept 16-bit besides transformers' defaults).
    static func quantizeSkipPatterns(_ p: Provenance?) -> [String] {
        guard let rec = p?.passes.last(where: { $0.name == "quantize" }),
              let skip = rec.params.first(where: { $0.0 == "skip" })?.1.arrayValue else { return [] }
        return skip.compactMap(\.stringValue)
    }

    /// config.json with transformers 5.24's `BitsAndBytesConfig.to_dict()` as `quantization_config`.
    static func bnbConfig(_ f: I2QFile, quantType: String, doubleQuant: Bool, computeDType: DType, skips: [String]) throws -> JSONValue {
        let base: JSONValue
        if let bytes = f.metadata.file("config.json") { base = try JSONParser.parse(bytes, source: f.path + ": config.json") } else { base = f.rawConfig }
        let compute = computeDType.torchName?.replacingOccurrences(of: "torch.", with: "") ?? "float32"
        let skipValue: JSONValue = skips.isEmpty ? .null : .array((["lm_head"] + skips).map { .string($0) })
        let q: JSONValue = .object([
            ("_load_in_4bit", .bool(true)), ("_load_in_8bit", .bool(false)),
            ("bnb_4bit_compute_dtype", .string(compute)), ("bnb_4bit_quant_storage", .string("uint8")),
            ("bnb_4bit_quant_type", .string(quantType)), ("bnb_4bit_use_double_quant", .bool(doubleQuant)),
            ("llm_int8_enable_fp32_cpu_offload", .bool(false)), ("llm_int8_has_fp16_weight", .bool(false)),
            ("llm_int8_skip_modules", skipValue), ("llm_int8_threshold", .number("6.0")),
            ("load_in_4bit", .bool(true)), ("load_in_8bit", .bool(false)), ("quant_method", .string("bitsandbytes")),
        ])
        return base.setting("quantization_config", q)
    }
}
