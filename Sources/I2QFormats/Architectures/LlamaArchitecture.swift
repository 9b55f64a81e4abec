import Foundation

/// Llama and Mistral decoders (SmolLM2, Mistral-7B, Llama 2/3): everything under `model.`.
extension ModelArchitecture {
    public static let llama = ModelArchitecture(
        modelTypes: ["llama", "mistral"],
        decode: { .text(try TextConfig.decode($0, path: $1)) },
        textPrefixes: ["model."])
}
