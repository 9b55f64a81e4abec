import I2QCore
import I2QFormats
import I2QTokenizer

/// A model's own chat template, applied as transformers' `apply_chat_template(…, tokenize=False,
/// add_generation_prompt=True)` does (the Jinja subset: I2QTokenizer/ChatTemplate), with the
/// tokenizer's BOS/EOS strings as `bos_token`/`eos_token`. Found where transformers looks, in the
/// model's small files (an HF directory, an .i2q's embedded files, a GGUF's `tokenizer.chat_template`).
///
/// Special tokens when the text is tokenized: a tokenizer's `apply_chat_template(tokenize=True)`
/// adds none (the template writes BOS itself when the model wants one); a processor's adds them
/// unless the text already starts with BOS (transformers 5.24 `ProcessorMixin.apply_chat_template`).
/// `TextSession.run(chat:)` and `userTurn(…, forProcessor:)` follow those two rules.
public struct ChatPrompt: Sendable {
    public let template: ChatTemplate
    public let bosToken: String?
    public let eosToken: String?

    public init(template: ChatTemplate, bosToken: String?, eosToken: String?) {
        self.template = template; self.bosToken = bosToken; self.eosToken = eosToken
    }

    /// The model's template, or nil when it has none.
    public static func load(_ source: any ModelSource, tokenizer: Tokenizer) throws -> ChatPrompt? {
        let files = try source.auxiliaryFiles()
        guard let t = try ChatTemplate.load(origin: source.path, file: { n in files.first { $0.name == n }?.bytes }) else { return nil }
        return ChatPrompt(template: t, bosToken: tokenizer.bosTokenId.flatMap(tokenizer.idToToken),
                          eosToken: tokenizer.eosTokenId.flatMap(tokenizer.idToToken))
    }

    /// The rendered conversation, ending with the generation prompt.
    public func render(_ messages: [ChatMessage]) throws -> String {
        try template.render(messages: messages, addGenerationPrompt: true, bosToken: bosToken, eosToken: eosToken)
    }

    /// One user turn (after a system turn when `system` is given): `images` image parts, then the
    /// text — the order transformers' VLM examples use (`[{"type": "image"}, {"type": "text", …}]`);
    /// plain string content when there is no image. `forProcessor`: a leading BOS is dropped, since
    /// the session's tokenizer adds it (the processor rule above gives the same ids).
    public func userTurn(_ text: String, images: Int, system: String? = nil, forProcessor: Bool = false) throws -> String {
        var messages: [ChatMessage] = []
        if let system { messages.append(.system(system)) }
        messages.append(images == 0 ? .user(text)
                        : ChatMessage(role: "user", parts: Array(repeating: ChatPart.image, count: images) + [.text(text)]))
        let s = try render(messages)
        if forProcessor, let b = bosToken, !b.isEmpty, s.hasPrefix(b) { return String(s.dropFirst(b.count)) }
        return s
    }
}

/// `run --chat` on a model without a template.
public struct NoChatTemplateError: I2QError {
    public let path: String
    public init(path: String) { self.path = path }
    public var description: String {
        "\(path) has no chat template (chat_template.jinja, chat_template.json or tokenizer_config.json's chat_template); give the whole prompt with --prompt and no --chat"
    }
}
