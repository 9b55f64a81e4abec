import Foundation
import I2QCore
import I2QFormats
import I2QRuntime
import I2QTokenizer

/// The DocVQA half of `i2q verify`: prompts, answers and the answer-token KLD.
extension Verifier {
    /// The prompt for a text model: two worked examples, then the page text and the question — as
    /// chat turns through the model's own chat template when it has one (`ChatPrompt`: one
    /// user/assistant turn per example, then the question's user turn and the generation prompt;
    /// SmolLM2's template adds its default system turn), otherwise plain "Document/Question/Answer"
    /// blocks. docs/verify.md shows both.
    public static func documentTextPrompt(question: String, documentText: String, session: TextSession) throws -> String {
        let chat = try ChatPrompt.load(session.source, tokenizer: session.tokenizer)
        return try documentTextPrompt(question: question, documentText: documentText, tokenizer: session.tokenizer, chat: chat)
    }

    /// `documentTextPrompt`, with the document text cut at the end (whole characters) when the prompt
    /// and `maxNewTokens` would not fit the model's context; `truncated(kept characters)` is told.
    public static func fittedDocumentPrompt(question: String, documentText: String, session: TextSession, maxNewTokens: Int,
                                            truncated: (Int) -> Void) throws -> String {
        let limit = session.decoder.maxContext - maxNewTokens - 1
        var doc = Substring(documentText)
        var prompt = try documentTextPrompt(question: question, documentText: documentText, session: session)
        var n = session.tokenizer.encode(prompt).count
        guard n > limit else { return prompt }
        let empty = session.tokenizer.encode(try documentTextPrompt(question: question, documentText: "", session: session)).count
        guard empty < limit else {
            throw RuntimeError.contextLimit(detail: "the question alone needs \(empty) of the model's \(session.decoder.maxContext) positions with --max-new-tokens \(maxNewTokens); lower --max-new-tokens")
        }
        while n > limit && !doc.isEmpty {
            // Characters per token of this text, with a 5 % margin; then shrink until it fits.
            let share = Double(limit - empty) / Double(max(1, n - empty)) * 0.95
            doc = doc.prefix(max(0, min(doc.count - 1, Int(Double(doc.count) * share))))
            prompt = try documentTextPrompt(question: question, documentText: String(doc), session: session)
            n = session.tokenizer.encode(prompt).count
        }
        truncated(doc.count)
        return prompt
    }

    /// The same from a tokenizer and the model's chat template, if any. The result is tokenized with
    /// the tokenizer's special tokens (as every verify prompt is), so a template that writes BOS
    /// itself (Llama 3's) has it dropped here when the tokenizer adds one.
    public static func documentTextPrompt(question: String, documentText: String, tokenizer: Tokenizer, chat: ChatPrompt?) throws -> String {
        func user(_ doc: String, _ q: String) -> String { "Document:\n\(doc)\n\nQuestion: \(q)\n\(answerInstruction)" }
        guard let chat else {
            let shots = examples.map { "Document:\n\(exampleDocument)\n\nQuestion: \($0.question)\nAnswer: \($0.answer)\n\n" }.joined()
            return shots + "Document:\n\(documentText)\n\nQuestion: \(question)\nAnswer:"
        }
        let turns = examples.flatMap { [ChatMessage.user(user(exampleDocument, $0.question)), .assistant($0.answer)] }
        var s = try chat.render(turns + [.user(user(documentText, question))])
        if let b = chat.bosToken, !b.isEmpty, s.hasPrefix(b), let id = tokenizer.bosTokenId, tokenizer.encode("").first == id {
            s.removeFirst(b.count)
        }
        return s
    }

    /// Per vision-encoder layer error on one image: both towers on the same processed image(s) (the
    /// crops and the original when the processor splits images), each on its own previous layers;
    /// real patches only. Returns the number of real patches compared.
    public static func compareVision(base: any VisionLanguageSession, candidate: any VisionLanguageSession, imagePath: String,
                                     into acc: inout LayerErrorAccumulator) throws -> Int {
        let width = base.visionWidth
        func realRows(_ h: UnsafeBufferPointer<Float>, _ mask: [Bool]) -> [Float] {  // [real patches, width]
            var out: [Float] = []
            out.reserveCapacity(mask.filter { $0 }.count * width)
            for (i, real) in mask.enumerated() where real { out += h[(i * width)..<((i + 1) * width)] }
            return out
        }
        var patches = 0
        var local = acc
        for im in try base.visionInputs(paths: [imagePath]) where im.pixels.contains(where: { $0 != 0 }) {
            var stored: [[Float]] = []  // [layers][real patches × width]: the base's layer outputs
            try base.encodeVision(im) { _, h, mask in
                stored.append(realRows(h, mask))
            }
            try candidate.encodeVision(im) { li, h, mask in
                let c = realRows(h, mask)
                guard li < stored.count, stored[li].count == c.count, !c.isEmpty else { return }
                c.withUnsafeBufferPointer { cp in
                    stored[li].withUnsafeBufferPointer { bp in
                        local.add(layer: li, base: bp.baseAddress!, candidate: cp.baseAddress!, rows: c.count / width, width: width)
                    }
                }
            }
            patches += (stored.first?.count ?? 0) / width
        }
        acc = local
        return patches
    }

    /// Σ KL(base ‖ candidate) over the positions of the base's greedy `answer` (its end token
    /// included), both models teacher-forced on it; log-softmax in double precision.
    static func answerKLD(base: any VisionLanguageSession, candidate: any VisionLanguageSession, prompt: String, baseFeatures: [Float],
                          candidateFeatures: [Float], answer: [Int]) throws -> (sum: Double, tokens: Int) {
        guard !answer.isEmpty else { return (0, 0) }
        let lb = try base.continuationLogits(prompt: prompt, features: baseFeatures, continuation: answer)
        let lc = try candidate.continuationLogits(prompt: prompt, features: candidateFeatures, continuation: answer)
        let v = lb.count / answer.count
        var sum = 0.0
        lb.withUnsafeBufferPointer { pb in
            lc.withUnsafeBufferPointer { pc in
                for r in 0..<answer.count {
                    sum += TokenComparison.compare(base: pb.baseAddress! + r * v, candidate: pc.baseAddress! + r * v,
                                                   vocab: v, target: answer[r]).kld
                }
            }
        }
        return (sum, answer.count)
    }

    /// A text model's greedy answer to one question, from the page text (end tokens dropped, whitespace
    /// trimmed). Idefics2 answers in `run`, where one vision forward serves all questions of an image.
    static func answer(_ m: VerifyModel, _ item: DocVQAItem, set: DocVQASet, maxNewTokens: Int,
                       log: ((String) -> Void)?) throws -> String {
        guard let doc = item.documentText else { throw VerifyError.noDocumentText(file: set.file, questionId: item.questionId) }
        let prompt = try fittedDocumentPrompt(question: item.question, documentText: doc, session: m.text, maxNewTokens: maxNewTokens) {
            log?("warning: \(set.file): question \(item.questionId): document_text truncated to \($0) of \(doc.count) characters to fit the model's \(m.text.decoder.maxContext)-position context (as transformers' question-answering pipeline truncates the context, not the question)")
        }
        let r = try m.text.run(prompt: prompt, maxNewTokens: maxNewTokens, wantLogits: false)
        return r.text.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
