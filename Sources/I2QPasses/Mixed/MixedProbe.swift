import I2QCore
import I2QEval
import I2QFormats
import I2QImage
import I2QQuant
import I2QRuntime

/// A source that reads as `base` except for one tensor replaced by float32 values held in memory
/// (the sensitivity probe's "only this tensor quantized" model).
final class OverlaySource: ModelSource, @unchecked Sendable {
    let base: any ModelSource
    let replacement: SourceTensor
    init(_ base: any ModelSource, name: String, shape: [Int], values: [Float]) {
        self.base = base
        replacement = SourceTensor(name: name, dtype: .f32, shape: shape) { first, count, dst in
            values.withUnsafeBytes { dst.copyMemory(from: $0.baseAddress! + first * 4, byteCount: count * 4) }
        }
    }
    var path: String { base.path }
    var rawConfig: JSONValue { base.rawConfig }
    var config: ModelConfig { base.config }
    var tensors: [SourceTensor] { base.tensors.map { $0.name == replacement.name ? replacement : $0 } }
    var quantizedTensorNames: [String] { base.quantizedTensorNames }
    func auxiliaryFiles() throws -> [(name: String, bytes: [UInt8])] { try base.auxiliaryFiles() }
    var provenance: Provenance? { base.provenance }
    var identity: JSONValue { base.identity }
    var problems: [String] { base.problems }
}

/// The measured half of the cost (issue 22: "KLD contribution on the calibration data"): the proxy
/// Σ_j imp_j Σ_i Δw² ranks a tensor's candidates well but weighs tensors against each other poorly
/// (an error in q/k, or in an early layer, travels differently from one added to the residual late).
/// So each tensor is also stored alone in its cheapest candidate and the model run on `tokens`
/// calibration positions: α_t = mean KL(f32 ‖ that model) / proxy_t(cheapest), and every candidate's
/// cost becomes α_t · proxy_t(s) — an estimate of its KLD contribution.
final class SensitivityProbe {
    let source: any ModelSource
    let ids: [Int]
    /// [n, hidden]: the reference model's input embeddings (image features merged for Idefics2).
    let embeddings: [Float]
    /// Positions whose embedding comes from the token table (not an image feature).
    let textPositions: [Bool]
    /// [n, vocab]: the reference model's logits.
    let reference: [Float]
    let vocab: Int

    init(source: any ModelSource, calibration: ImatrixSettings, tokens: Int) throws {
        self.source = source
        let loaded = try RuntimeRegistry.open(source)
        let dec = loaded.text.decoder, tok = loaded.text.tokenizer
        var ids: [Int], emb: [Float], text: [Bool]
        if FileSystem.isDirectory(calibration.calibration) {
            let set = try DocVQASet.load(directory: calibration.calibration)
            guard let item = set.select(samples: 1, seed: calibration.seed).first else { throw ImatrixPassError.empty(path: calibration.calibration) }
            if let vl = loaded.visionLanguage {
                let prompt = try vl.chatPrompt(question: item.question, image: calibration.images, answer: item.answers.first ?? "")
                (ids, emb) = calibration.images ? try vl.promptEmbeddings(prompt: prompt, imagePaths: [item.imagePath]) : (tok.encode(prompt), [])
                if emb.isEmpty { emb = try dec.embed(ids) }
                text = ids.map { !vl.isImageToken($0) }
            } else {
                guard let doc = item.documentText else { throw ImatrixPassError.noText(path: set.file) }
                ids = tok.encode(doc + "\n" + CalibrationData.textPrompt(item))
                emb = try dec.embed(ids)
                text = ids.map { _ in true }
            }
        } else {
            let bytes = try FileSystem.readFile(calibration.calibration)
            guard let s = String(validating: bytes, as: UTF8.self) else {
                throw ConfigError.invalid(path: calibration.calibration, detail: "is neither a DocVQA-format directory nor valid UTF-8 text")
            }
            ids = tok.encode(s)
            emb = try dec.embed(Array(ids.prefix(tokens)))
            text = ids.map { _ in true }
        }
        let n = min(ids.count, tokens)
        let h = dec.config.hiddenSize
        self.ids = Array(ids.prefix(n))
        embeddings = Array(emb.prefix(n * h))
        textPositions = Array(text.prefix(n))
        vocab = dec.config.vocabSize
        reference = try Self.logits(dec, embeddings: embeddings, n: n)
    }

    static func logits(_ dec: TextDecoder, embeddings: [Float], n: Int) throws -> [Float] {
        let cache = try dec.makeCache(capacity: n)
        let hidden = try dec.forward(embeddings: embeddings, cache: cache)  // [n, hidden]
        return try dec.logits(hidden, rows: 0..<n)                           // [n, vocab]
    }

    /// Mean KL(reference ‖ model with `name` replaced by `values`) over the probe positions.
    func kld(name: String, shape: [Int], values: [Float]) throws -> Double {
        let dec = try TextDecoder(source: OverlaySource(source, name: name, shape: shape, values: values))
        var emb = embeddings
        if name.hasSuffix("embed_tokens.weight") {
            // The token table itself changed: text positions look their rows up again.
            let h = dec.config.hiddenSize
            let fresh = try dec.embed(ids)
            for i in 0..<ids.count where textPositions[i] { emb.replaceSubrange(i * h..<(i + 1) * h, with: fresh[i * h..<(i + 1) * h]) }
        }
        let n = ids.count
        let cand = try Self.logits(dec, embeddings: emb, n: n)
        let rows = reference.withUnsafeBufferPointer { rb in cand.withUnsafeBufferPointer { cb in
            TokenComparison.compareRows(base: rb.baseAddress!, candidate: cb.baseAddress!, rows: n, vocab: vocab, targets: [Int](repeating: 0, count: n))
        } }
        return rows.reduce(0) { $0 + $1.kld } / Double(max(n, 1))
    }
}
