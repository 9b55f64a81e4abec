import I2QCore
import I2QFormats
import I2QQuant

/// `i2q export MODEL.i2q --to compressed-tensors`: the `pack-quantized` W4A16 asymmetric-group
/// checkpoint that llm-compressor writes and transformers (+ the compressed-tensors package) and
/// vLLM load natively — compressed-tensors 0.19.0 `PackedQuantizationCompressor`
/// (compressors/pack_quantized/base.py, helpers.py `pack_to_int32`) and `ModelCompressor.update_config`.
///
/// Per affine_int4 linear `X` ([out, in], group G), from the stored codes q ∈ 0…15, zeros z and
/// Float16 scales s (dequantized (q − z)·s; compressed-tensors: (x − zp)·s with x = q − 8 and
/// zp = z − 8 as int8, and `pack_to_int32` adds the offset 8 back before packing, so the nibbles
/// are q and z themselves):
///   X.weight_packed      I32 [out, ⌈in/8⌉]:  word[o, j] = Σ_k q[o, 8j + k] << 4k
///   X.weight_zero_point  I32 [⌈out/8⌉, in/G]: word[j, g] = Σ_k z[8j + k, g] << 4k  (packed along dim 0)
///   X.weight_scale       [out, in/G] in the entry's dtype (the model dtype, as llm-compressor
///                        writes it): exact for f32/f16 models, rounded to bf16 for a bf16 model
///   X.weight_shape       I64 [2] = [out, in]
/// Every plain tensor keeps its dtype. config.json gets `quantization_config` as
/// `ModelCompressor.update_config` writes it: one config group targeting "Linear", the modules
/// kept unquantized in `ignore` (lm_head, the vision tower and connector as `re:` prefixes, any
/// other plain linear by name). Tested against the package's own packing and config
/// (Tests/Fixtures/compressed-tensors, scripts/fixtures/make_compressed_tensors_fixtures.py).
public enum CompressedTensorsExportPass {
    public static let target = "compressed-tensors"
    /// The compressed-tensors version whose layout and config keys are written.
    public static let version = "0.19.0"

    public static func run(source: any ModelSource, output: String, settings: OutputSettings) throws -> PassReport {
        try Int4Export.run(source: source, output: output, settings: settings, target: target, plainDType: { $0 },
            linear: { m, e, gs in
                outputs(module: m, rows: e.shape[0], cols: e.shape[1], groupSize: gs,
                        scaleDType: [.f32, .f16, .bf16].contains(e.dtype) ? e.dtype : .f16)
            },
            config: { f, entries, gs in
                f.rawConfig.setting("quantization_config", quantizationConfig(groupSize: gs, ignore: ignoreList(f, entries: entries)))
            })
    }

    /// The tensors of one linear (module name `m`, weight [rows, cols], group G).
    static func outputs(module m: String, rows: Int, cols: Int, groupSize gs: Int, scaleDType: DType) -> [Int4Export.Output] {
        [
            .init(plan: PlannedTensor(name: m + ".weight_packed", dtype: .i32, shape: [rows, (cols + 7) / 8])) { l in
                Int4Export.bytes(Int4Export.packRows(l.codes, rows: l.rows, cols: l.cols))
            },
            .init(plan: PlannedTensor(name: m + ".weight_scale", dtype: scaleDType, shape: [rows, cols / gs])) { l in
                try l.scaleBytes(scaleDType, transposed: false)
            },
            .init(plan: PlannedTensor(name: m + ".weight_shape", dtype: .i64, shape: [2])) { l in
                Int4Export.bytes([Int64(l.rows), Int64(l.cols)])
            },
            .init(plan: PlannedTensor(name: m + ".weight_zero_point", dtype: .i32, shape: [(rows + 7) / 8, cols / gs])) { l in
                let zt = Int4Export.transpose(l.zeros, rows: l.rows, cols: l.groups)  // [groups, rows]
                let w = Int4Export.packRows(zt, rows: l.groups, cols: l.rows)        // [groups, ⌈rows/8⌉]
                return Int4Export.bytes(Int4Export.transpose(w, rows: l.groups, cols: (l.rows + 7) / 8))
            },
        ]
    }

    /// compressed-tensors' `ignore`: module names and `re:` patterns (matched with re.match).
    static func ignoreList(_ f: I2QFile, entries: [I2QTensorEntry]) -> [String] {
        let u = Int4Export.unquantizedModules(f, entries: entries)
        return u.prefixes.map { "re:" + $0.replacingOccurrences(of: ".", with: "\\.") + ".*" } + u.modules
    }

    /// `quantization_config` exactly as compressed-tensors 0.19.0 `ModelCompressor.update_config`
    /// writes it for llm-compressor's W4A16 asymmetric group scheme (keys sorted, as its
    /// `json.dump(..., sort_keys=True)`).
    public static func quantizationConfig(groupSize: Int, ignore: [String]) -> JSONValue {
        let weights: JSONValue = .object([
            ("actorder", .null), ("block_structure", .null), ("dynamic", .bool(false)), ("group_size", .int(groupSize)),
            ("num_bits", .int(4)), ("observer", .string("memoryless_minmax")), ("observer_kwargs", .object([])), ("scale_dtype", .null),
            ("strategy", .string("group")), ("symmetric", .bool(false)), ("type", .string("int")), ("zp_dtype", .string("torch.int8")),
        ])
        let group: JSONValue = .object([
            ("format", .string("pack-quantized")), ("input_activations", .null), ("output_activations", .null),
            ("targets", .array([.string("Linear")])), ("weights", weights),
        ])
        return .object([
            ("config_groups", .object([("group_0", group)])), ("format", .string("pack-quantized")),
            ("global_compression_ratio", .null), ("ignore", .array(ignore.map { .string($0) })), ("kv_cache_scheme", .null),
            ("quant_method", .string("compressed-tensors")), ("quantization_status", .string("compressed")),
            ("sparsity_config", .object([])), ("transform_config", .object([])), ("version", .string(version)),
        ])
    }
}
