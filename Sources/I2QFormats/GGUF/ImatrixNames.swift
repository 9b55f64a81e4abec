/// The names of importance-matrix entries: the GGUF tensor name llama-quantize looks the weight up by.
///
/// - Decoder (Llama/Mistral, Idefics2's text model): llama.cpp's names, `blk.N.attn_q.weight` …
///   `output.weight` (`GGUFNames`, the table the GGUF exporter uses).
/// - Other modules (a vision tower, a connector): the family's `ModelArchitecture.otherGGUFName`
///   (Idefics2: llama.cpp's mmproj names for SigLIP, short `mm.*` / `resampler.*` names for the connector).
/// - Anything else keeps its checkpoint name.
public enum ImatrixNames {
    public static func name(checkpoint n: String, architecture a: ModelArchitecture) -> String {
        if n == GGUFNames.output.1 { return GGUFNames.output.0 }
        if n == a.textPrefix + GGUFNames.embedding.1 { return GGUFNames.embedding.0 }
        if let (i, rest) = layer(n, a.textPrefix + "layers."), let m = GGUFNames.llamaLayer.first(where: { $0.hf == rest }) {
            return "blk.\(i).\(m.gguf)"
        }
        return a.otherGGUFName(n) ?? n
    }

    /// "PREFIX N.rest" → (N, rest).
    public static func layer(_ n: String, _ prefix: String) -> (Int, String)? {
        guard n.hasPrefix(prefix) else { return nil }
        let tail = n.dropFirst(prefix.count)
        guard let dot = tail.firstIndex(of: "."), let i = Int(tail[..<dot]) else { return nil }
        return (i, String(tail[tail.index(after: dot)...]))
    }
}
