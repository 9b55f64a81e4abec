import I2QCore
import I2QFormats

extension GGUFExportPass {
    /// The text export's metadata, in convert_hf_to_gguf's order: `general.architecture`/`type`, the
    /// `general.*` keys gguf-py derives (GGUFGeneralMetadata), the llama hyperparameters with
    /// `general.file_type` and the quantization version among them, then the vocabulary
    /// (GGUFVocabulary); with the notes of the general keys and the vocabulary, in that order.
    static func metadata(source: any ModelSource, plan: [GGUFPlannedTensor],
                         fileType: UInt32) throws -> (metadata: [(key: String, value: GGUFValue)], notes: [String]) {
        let t = source.config.textConfig
        var notes: [String] = []
        var md: [(key: String, value: GGUFValue)] = []
        func put(_ k: String, _ v: GGUFValue) { md.append((k, v)) }
        put("general.architecture", .text("llama"))
        put("general.type", .text("model"))
        let general = try GGUFGeneralMetadata.entries(source: source, totalParams: plan.reduce(0) { $0 + $1.shape.reduce(1, *) })
        md += general.metadata
        notes += general.notes
        put("llama.block_count", .uint32(UInt32(t.numHiddenLayers)))
        put("llama.context_length", .uint32(UInt32(t.maxPositionEmbeddings)))
        put("llama.embedding_length", .uint32(UInt32(t.hiddenSize)))
        put("llama.feed_forward_length", .uint32(UInt32(t.intermediateSize)))
        put("llama.attention.head_count", .uint32(UInt32(t.numAttentionHeads)))
        put("llama.attention.head_count_kv", .uint32(UInt32(t.numKeyValueHeads)))
        put("llama.rope.freq_base", .float32(Float(t.rope.theta)))
        put("llama.attention.layer_norm_rms_epsilon", .float32(Float(t.rmsNormEps)))
        put("llama.attention.key_length", .uint32(UInt32(t.headDim)))
        put("llama.attention.value_length", .uint32(UInt32(t.headDim)))
        put("general.file_type", .uint32(fileType))
        put("llama.vocab_size", .uint32(UInt32(t.vocabSize)))
        put("llama.rope.dimension_count", .uint32(UInt32(t.headDim)))
        put("general.quantization_version", .uint32(2))  // GGML_QNT_VERSION
        let vocab = try GGUFVocabulary(source: source, vocabSize: t.vocabSize, config: t)
        md += vocab.metadata
        notes += vocab.notes
        return (md, notes)
    }
}
