import I2QCore
import I2QFormats

/// The on-disk state of a `--target-bpw` measurement, `OUTPUT.bpw-state/` (AWQState's mechanism:
/// a fingerprint, pieces written under a temporary name and renamed when complete, `--resume` /
/// `--restart`):
/// - `run.json`: the fingerprint (source identity, candidates, calibration / importance settings);
/// - `importance.gguf`: the importance matrix collected on the calibration data (llama.cpp's imatrix
///   format), written once the collection finished;
/// - `cost-NNNN.json`: tensor N's measured options (`{"name", "options": {candidate: {bits, cost}}}`),
///   written as each tensor finishes — a killed run loses at most the tensor it was measuring.
final class MixedState {
    let dir: String
    let fingerprint: String

    init(output: String, fingerprint fp: [(String, JSONValue)], resume: Bool, restart: Bool) throws {
        var out = output
        while out.count > 1 && out.hasSuffix("/") { out.removeLast() }
        dir = out + ".bpw-state"
        fingerprint = JSONWriter.string(.object(fp), indent: 2) + "\n"
        let runFile = dir + "/run.json"
        if FileSystem.exists(dir) && !resume && !restart {
            let finished = try FileSystem.listDirectory(dir).filter { $0.hasPrefix("cost-") || $0 == "importance.gguf" }.count
            if finished > 0 { throw MixedQuantizeError.stateExists(path: dir, pieces: finished) }
        }
        if FileSystem.exists(dir) && resume {
            let stored = String(decoding: try FileSystem.readFile(runFile), as: UTF8.self)
            guard stored == fingerprint else { throw MixedQuantizeError.stateMismatch(path: dir, differing: AWQState.differing(stored, fingerprint)) }
        } else {
            FileSystem.removeTree(dir)
            try FileSystem.makeDirectory(dir)
            try AWQState.atomicWrite(runFile, Array(fingerprint.utf8))
        }
    }

    var importanceFile: String { dir + "/importance.gguf" }
    func costFile(_ i: Int) -> String { dir + "/cost-" + AWQState.pad4(i) + ".json" }

    /// Tensor `i`'s stored options, nil when not measured yet; a file naming another tensor is an error.
    func costs(_ i: Int, name: String) throws -> [(name: String, bits: Int, cost: Double)]? {
        let p = costFile(i)
        guard FileSystem.exists(p) else { return nil }
        let v = try JSONParser.parse(try FileSystem.readFile(p), source: p)
        guard v["name"]?.stringValue == name, let opts = v["options"]?.objectEntries else {
            throw MixedQuantizeError.stateMismatch(path: dir, differing: ["cost-\(AWQState.pad4(i)).json"])
        }
        return try opts.map { k, o in
            guard let b = o["bits"]?.intValue, let c = o["cost"]?.doubleValue else { throw MixedQuantizeError.stateMismatch(path: dir, differing: [p]) }
            return (k, b, c)
        }
    }

    func store(_ i: Int, name: String, options: [(name: String, bits: Int, cost: Double)]) throws {
        let v: JSONValue = .object([("name", .string(name)), ("options", .object(options.map {
            ($0.name, .object([("bits", .int($0.bits)), ("cost", .number("\($0.cost)"))]))
        }))])
        try AWQState.atomicWrite(costFile(i), Array(JSONWriter.string(v).utf8))
    }

    /// Removes the state when nothing worth resuming is in it.
    func removeIfEmpty() {
        // Deliberately quiet: an unreadable state is kept, never removed on a guess.
        guard let names = try? FileSystem.listDirectory(dir), !names.contains(where: { $0.hasPrefix("cost-") || $0 == "importance.gguf" }) else { return }
        FileSystem.removeTree(dir)
    }

    func remove() { FileSystem.removeTree(dir) }
}
