import I2QCore

/// Why a chat template could not be parsed, rendered or loaded. Positions are 1-based line and
/// column (in code points) of the template source, after Jinja's newline normalization.
public enum ChatTemplateError: I2QError, Equatable {
    /// Not valid Jinja (what Jinja2 reports as TemplateSyntaxError).
    case syntax(line: Int, column: Int, message: String)
    /// Valid Jinja that this interpreter does not implement (a tag, filter, test or operation).
    case unsupported(line: Int, column: Int, what: String)
    /// An error while rendering: an undefined value used, a type error, a sandbox refusal.
    case runtime(line: Int, column: Int, message: String)
    /// The template called `raise_exception(message)`; `message` is exactly what transformers' error says.
    case raised(message: String)
    /// A chat template file in a model directory could not be read or is malformed.
    case file(path: String, reason: String)
    /// The render arguments are refused before rendering (as transformers refuses them).
    case invalidInput(String)

    public var description: String {
        switch self {
        case let .syntax(l, c, m): return "chat template line \(l):\(c): \(m)"
        case let .unsupported(l, c, w): return "chat template line \(l):\(c): unsupported \(w)"
        case let .runtime(l, c, m): return "chat template line \(l):\(c): \(m)"
        case let .raised(m): return "chat template raised an error: \(m)"
        case let .file(p, r): return "\(p): \(r)"
        case let .invalidInput(m): return "chat template: \(m)"
        }
    }
}
