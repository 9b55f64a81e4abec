import I2QCore
import I2QFormats
import I2QQuant

/// `i2q export MODEL.i2q --to hf-gptq`: GPTQ's HF checkpoint (AutoGPTQ/GPTQModel `gptq` format,
/// checkpoint_format "gptq" = v1) as GPTQModel 7.7 saves it (TorchQuantLinear.pack; utils/model.py
/// `convert_gptq_v2_to_v1_format_module`), which transformers + gptqmodel load.
///
/// Per affine_int4 linear `X` ([out, in], group G), from the stored codes q, zeros z, fp16 scales s
/// (dequantized (q − z)·s, GPTQ's formula; no requantization):
///   X.qweight I32 [in/8, out]:   word[j, o] = Σ_k q[o, 8j + k] << 4k
///   X.qzeros  I32 [in/G, out/8]: word[g, c] = (Σ_k z[8c + k, g] << 4k) − 0x11111111 (mod 2³²: the v1
///                                "zero − 1" form, by GPTQModel's own whole-word subtraction)
///   X.scales  F16 [in/G, out]
///   X.g_idx   I32 [in] = i / G (i2q's act-order uses static groups, so groups stay consecutive)
/// Plain tensors keep their dtype. config.json's `quantization_config` and quantize_config.json:
/// bits 4, group_size G, desc_act false (the stored order needs no permutation), sym false,
/// checkpoint_format "gptq", meta.quantizer naming gptqmodel 7.7.0 (the v1-zeros marker its loader checks).
public enum HFGPTQExportPass {
    public static let target = "hf-gptq"
    static let v1Offset: UInt32 = 0x1111_1111

    public static func run(source: any ModelSource, output: String, settings: OutputSettings) throws -> PassReport {
        try Int4Export.run(source: source, output: output, settings: settings, target: target, plainDType: { $0 },
            linear: { m, e, gs in
                let (rows, cols) = (e.shape[0], e.shape[1])
                guard cols % 8 == 0, rows % 8 == 0 else {
                    throw Int4ExportError.malformed(path: source.path, tensor: e.name, detail: "GPTQ packs 8 inputs and 8 output channels per int32; its shape \(e.shape) needs both dimensions multiples of 8 (re-quantize with --skip for it)")
                }
                return outputs(module: m, rows: rows, cols: cols, groupSize: gs)
            },
            config: { f, _, gs in f.rawConfig.setting("quantization_config", quantizeConfig(groupSize: gs)) },
            extraFiles: { cfg in
                guard let q = cfg["quantization_config"] else { return [] }
                return [("quantize_config.json", Array((JSONWriter.string(q, indent: 2) + "\n").utf8))]
            })
    }

    /// The tensors of one linear (module name `m`, weight [rows, cols], group G).
    static func outputs(module m: String, rows: Int, cols: Int, groupSize gs: Int) -> [Int4Export.Output] {
        [
            .init(plan: PlannedTensor(name: m + ".qweight", dtype: .i32, shape: [cols / 8, rows])) { l in
                Int4Export.bytes(Int4Export.transpose(Int4Export.packRows(l.codes, rows: l.rows, cols: l.cols), rows: l.rows, cols: l.cols / 8))
            },
            .init(plan: PlannedTensor(name: m + ".qzeros", dtype: .i32, shape: [cols / gs, rows / 8])) { l in
                let w = Int4Export.packRows(Int4Export.transpose(l.zeros, rows: l.rows, cols: l.groups), rows: l.groups, cols: l.rows)
                return Int4Export.bytes(w.map { Int32(bitPattern: UInt32(bitPattern: $0) &- v1Offset) })
            },
            .init(plan: PlannedTensor(name: m + ".scales", dtype: .f16, shape: [cols / gs, rows])) { l in
                try l.scaleBytes(.f16, transposed: true)
            },
            .init(plan: PlannedTensor(name: m + ".g_idx", dtype: .i32, shape: [cols])) { l in
                Int4Export.bytes((0..<l.cols).map { Int32($0 / l.groupSize) })
            },
        ]
    }

    /// GPTQModel 7.7's QuantizeConfig.to_dict() keys that describe the stored layout.
    public static func quantizeConfig(groupSize: Int) -> JSONValue {
        .object([
            ("bits", .int(4)), ("group_size", .int(groupSize)), ("desc_act", .bool(false)), ("lm_head", .bool(false)),
            ("method", .string("gptq")), ("quant_method", .string("gptq")), ("format", .string("gptq")),
            ("checkpoint_format", .string("gptq")), ("pack_dtype", .string("int32")), ("sym", .bool(false)),
            ("static_groups", .bool(false)), ("true_sequential", .bool(true)),
            // GPTQModel refuses an asymmetric v1 checkpoint unless `meta.quantizer` names gptqmodel ≥ 0.9
            // (loader.py: older AutoGPTQ asym v1 files stored zeros nibble-wise, which loses z = 0); the
            // marker says the zeros are GPTQModel's whole-word v2 → v1 form, as written here. "i2q"
            // names the actual producer.
            ("meta", .object([("quantizer", .array([.string("gptqmodel:7.7.0"), .string("i2q")])),
                              ("uri", .string("https://github.com/modelcloud/gptqmodel"))])),
        ])
    }
}
