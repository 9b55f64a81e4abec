import Foundation
import I2QCore
import I2QFormats
import I2QQuant

/// `i2q export --to gguf --mmproj FILE`: the vision tower and connector of an Idefics3 / SmolVLM
/// model as llama.cpp's `idefics3` projector (convert_hf_to_gguf.py `SmolVLMModel(MmprojModel)` with
/// `--mmproj`, the copy vendored by llama-cpp-python 0.3.36): `clip.*` metadata in the converter's
/// order, tensors in checkpoint-name order (safetensors' sorted keys) under gguf-py's MMPROJ names
/// (`mm.model.fc.weight` for `modality_projection.proj`), 1-D tensors, biases and everything under
/// `.embeddings.` f32, the other weights of `type` (the converter's `--outtype`: f32, f16, bf16, q8_0 —
/// ggml's Q8_0 reference encoder, F16 for rows that are not whole 32-blocks —, or auto, its default:
/// bf16 when the first 16-bit 2-D tensor is bf16, else f16). The whole file, metadata included
/// (`general.name` / `size_label` as GGUFGeneralMetadata derives them), is the converter's byte for byte.
public enum MmprojExportPass {
    /// `--mmproj-type`: convert_hf_to_gguf.py's `--outtype` values that apply to a projector.
    public enum OutType: String, CaseIterable, Sendable { case auto, f32, f16, bf16, q8_0 }

    public struct Report: Sendable {
        public let output: String
        public let tensors: Int
        public let bytesWritten: Int
        /// The file type written (`f16`, `bf16`, `f32`, `q8_0`): `auto` resolved.
        public let type: OutType
    }

    /// gguf-py `TensorNameMap` entries of the SigLIP encoder layer (MODEL_TENSOR.V_ENC_* / V_*).
    static let layer = ["layer_norm1": "ln1", "layer_norm2": "ln2", "mlp.fc1": "ffn_up", "mlp.fc2": "ffn_down",
                        "self_attn.k_proj": "attn_k", "self_attn.q_proj": "attn_q", "self_attn.v_proj": "attn_v",
                        "self_attn.out_proj": "attn_out"]

    /// The GGUF name of a vision/connector tensor, or nil (not part of the projector).
    static func ggufName(_ n: String) -> String? {
        let fixed = ["model.connector.modality_projection.proj.weight": "mm.model.fc.weight",
                     "model.vision_model.embeddings.patch_embedding.weight": "v.patch_embd.weight",
                     "model.vision_model.embeddings.patch_embedding.bias": "v.patch_embd.bias",
                     "model.vision_model.embeddings.position_embedding.weight": "v.position_embd.weight",
                     "model.vision_model.post_layernorm.weight": "v.post_ln.weight",
                     "model.vision_model.post_layernorm.bias": "v.post_ln.bias"]
        if let f = fixed[n] { return f }
        guard let (i, rest) = ImatrixNames.layer(n, "model.vision_model.encoder.layers.") else { return nil }
        for suffix in [".weight", ".bias"] where rest.hasSuffix(suffix) {
            if let m = layer[String(rest.dropLast(suffix.count))] { return "v.blk.\(i).\(m)\(suffix)" }
        }
        return nil
    }

    public static func run(source: any ModelSource, output: String, type: OutType = .auto, settings: OutputSettings) throws -> Report {
        guard let c = source.config.as(Idefics3Config.self) else {
            throw GGUFExportError.unsupportedModel(path: source.path, detail: "--mmproj writes llama.cpp's idefics3 projector: it needs an Idefics3 or SmolVLM model (this is \(source.config.modelType))")
        }
        if let q = source.quantizedTensorNames.first(where: { ggufName($0) != nil }) {
            throw GGUFExportError.unsupportedModel(path: source.path, detail: "vision/connector tensor \"\(q)\" is quantized; --mmproj needs the float vision tower (quantize without --vision-int4, or export from the original checkpoint)")
        }
        let files = try source.auxiliaryFiles()
        let proc = try ProcessorConfig.load(source: source.path, defaults: .idefics3) { n in files.first { $0.name == n }?.bytes } ?? .idefics3
        // Tensors in sorted checkpoint-name order (the converter iterates safetensors' sorted keys).
        let tensors = source.tensors.filter { ggufName($0.name) != nil }.sorted { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }
        guard !tensors.isEmpty else { throw ModelError.missingTensor(model: source.path, tensor: "model.vision_model.embeddings.patch_embedding.weight") }
        for t in tensors where !t.dtype.isCastableFloat {
            throw GGUFExportError.unsupportedModel(path: source.path, detail: "tensor \"\(t.name)\" is \(t.dtype.rawValue); --mmproj needs float tensors")
        }
        // --outtype auto (LlamaFileType.GUESSED): the first 2-D tensor stored bf16 or f16 decides, else f16.
        let out: OutType = type != .auto ? type : tensors.lazy.filter { $0.shape.count >= 2 && ($0.dtype == .bf16 || $0.dtype == .f16) }.first?.dtype == .bf16 ? .bf16 : .f16
        let (weightType, fileType): (GGMLType, UInt32) = switch out {
        case .f32: (.f32, 0)
        case .bf16: (.bf16, 32)
        case .q8_0: (.q8_0, 7)
        default: (.f16, 1)
        }
        let plan = tensors.map { t -> (src: SourceTensor, decl: GGUFTensorDecl) in
            // tensor_force_quant: `.embeddings.` → F32 (SmolVLMModel); 1-D and non-.weight → F32;
            // other weights → the file type; Q8_0 → F16 when a row is not whole blocks (QuantError fallback)
            let f32 = t.shape.count <= 1 || t.name.contains(".embeddings.") || !t.name.hasSuffix(".weight")
            var ty = f32 ? GGMLType.f32 : weightType
            if t.shape.last! % ty.blockSize != 0 { ty = .f16 }
            return (t, GGUFTensorDecl(name: ggufName(t.name)!, shape: t.shape, type: ty))
        }
        let general = try GGUFGeneralMetadata.entries(source: source, totalParams: tensors.reduce(0) { $0 + $1.elementCount })
        var md: [(String, GGUFValue)] = [("general.architecture", .text("clip")), ("general.type", .text("mmproj"))]
        for (k, v) in general.metadata { md.append((k, v)) }
        md += [
            ("general.file_type", .uint32(fileType)),
            ("clip.has_vision_encoder", .bool(true)),
            ("clip.vision.projection_dim", .uint32(UInt32(c.text.hiddenSize))),
            ("clip.vision.image_size", .uint32(UInt32(c.vision.imageSize))),
            ("clip.vision.patch_size", .uint32(UInt32(c.vision.patchSize))),
            ("clip.vision.embedding_length", .uint32(UInt32(c.vision.hiddenSize))),
            ("clip.vision.feed_forward_length", .uint32(UInt32(c.vision.intermediateSize))),
            ("clip.vision.block_count", .uint32(UInt32(c.vision.numHiddenLayers))),
            ("clip.vision.attention.head_count", .uint32(UInt32(c.vision.numAttentionHeads))),
            ("clip.vision.image_mean", .array(.float32, proc.imageMean.map { .float32(Float($0)) })),
            ("clip.vision.image_std", .array(.float32, proc.imageStd.map { .float32(Float($0)) })),
            ("clip.projector_type", .text("idefics3")),
            ("clip.vision.attention.layer_norm_epsilon", .float32(Float(c.vision.layerNormEps))),
            ("clip.vision.projector.scale_factor", .uint32(UInt32(c.scaleFactor))),
            ("clip.use_gelu", .bool(true)),
            ("clip.vision.preproc_image_size", .uint32(UInt32(proc.longestEdge))),
            ("general.quantization_version", .uint32(2)),
        ]
        let pipeline = try PassPipeline(source: source, output: output, settings: settings, record: nil, directory: false,
                                        neededBytes: tensors.reduce(0) { $0 + $1.elementCount * 4 } + (1 << 20))
        try pipeline.run { temp in
            let w = try GGUFWriter(path: temp)
            for (k, v) in md { try w.add(k, v) }
            for p in plan { try w.declare(p.decl) }
            try w.writeHeader()
            for p in plan {
                let n = p.src.elementCount
                // raw: [n] source dtype; f32: [n] (the vision tower is small: one tensor at a time)
                var raw = [UInt8](repeating: 0, count: n * p.src.dtype.size)
                var f32 = [Float](repeating: 0, count: n)
                try raw.withUnsafeMutableBytes { rb in
                    try p.src.read(elements: 0, count: n, into: rb.baseAddress!)
                    try f32.withUnsafeMutableBytes { fb in
                        _ = try FloatConversion.convert(from: p.src.dtype, to: .f32, count: n, src: rb.baseAddress!, dst: fb.baseAddress!)
                    }
                }
                try w.beginTensor(p.decl.name)
                // out: [n / blockSize × typeSize] bytes of the tensor's GGUF type
                var out = [UInt8](repeating: 0, count: n / p.decl.type.blockSize * p.decl.type.typeSize)
                try f32.withUnsafeBufferPointer { fb in
                    try out.withUnsafeMutableBytes { ob in
                        _ = try GGMLQuantize.encode(p.decl.type, fb.baseAddress!, count: n, ob.baseAddress!)
                    }
                }
                try w.append(out)
                try w.endTensor()
            }
            try w.finish()
        }
        return Report(output: output, tensors: plan.count, bytesWritten: FileSystem.fileSize(output) ?? 0, type: out)
    }
}
