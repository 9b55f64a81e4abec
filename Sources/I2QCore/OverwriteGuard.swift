#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What `--overwrite` may replace: only outputs i2q itself writes. A file is replaceable when it starts
/// with the signature of a format i2q writes (the i2q magic of Formats/i2q-format.md, GGUF's "GGUF",
/// NumPy's "\x93NUMPY" of `--logits-out`); a directory when it is flat (plain files only, as every
/// directory i2q writes) and is an HF model (config.json + *.safetensors: cast --format safetensors,
/// export --to hf/hf-bnb/hf-awq) or a verify report (report.json). Anything else — a model's parent
/// folder, a home directory, an unrelated file — is refused with a message instead of being deleted.
public enum OverwriteGuard {
    public enum Refusal: I2QError {
        case notOurs(path: String, reason: String)
        case containsInput(output: String, input: String)

        public var description: String {
            switch self {
            case let .notOurs(p, r):
                return "\(p) exists and is not an output i2q wrote (\(r)); --overwrite only replaces i2q's own outputs. Choose another output path, or remove it yourself if it is really meant to go"
            case let .containsInput(o, i):
                return "the output \(o) would replace the input \(i) (or a directory holding it); write the output somewhere else"
            }
        }
    }

    /// File signatures of the formats i2q writes.
    static let signatures: [[UInt8]] = [
        [0x89, 0x49, 0x32, 0x51, 0x0D, 0x0A, 0x1A, 0x0A],  // .i2q (I2QSpec.magic)
        Array("GGUF".utf8),                                 // export --to gguf
        [0x93] + Array("NUMPY".utf8),                       // run --logits-out
        Array("{\n  \"i2q_recipe\"".utf8),                  // quantize --target-bpw's recipe (MixedRecipe)
    ]
    /// Throws unless `path` (which exists) is an i2q output that `--overwrite` may replace.
    public static func checkReplaceable(_ path: String) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            let head = readHead(path, 24)
            guard signatures.contains(where: { head.starts(with: $0) }) else {
                throw Refusal.notOurs(path: path, reason: "a file that is not an .i2q, GGUF or .npy file")
            }
        case S_IFDIR:
            let names = try FileSystem.listDirectory(path)
            for n in names {
                var s = stat()
                guard lstat(path + "/" + n, &s) == 0, (s.st_mode & S_IFMT) == S_IFREG else {
                    throw Refusal.notOurs(path: path, reason: "a directory holding \(n), which is not a plain file")
                }
            }
            let hf = names.contains("config.json") && names.contains { $0.hasSuffix(".safetensors") }
            guard hf || names.contains("report.json") else {
                throw Refusal.notOurs(path: path, reason: "a directory that is neither an HF model (config.json + *.safetensors) nor a verify report (report.json)")
            }
        default:
            throw Refusal.notOurs(path: path, reason: "neither a regular file nor a directory")
        }
    }

    /// Throws when writing `output` would replace any of `inputs` wholesale: the output is the input
    /// directory, or a directory that holds an input. (Replacing an input *file* by a file is allowed:
    /// the output is renamed over it atomically once complete, after the input was read.)
    public static func checkNotContainingInputs(_ output: String, inputs: [String]) throws {
        guard let o = realPath(output), FileSystem.isDirectory(o) else { return }
        for input in inputs {
            guard let i = realPath(input) else { continue }
            if i == o || i.hasPrefix(o.hasSuffix("/") ? o : o + "/") { throw Refusal.containsInput(output: output, input: input) }
        }
    }

    static func realPath(_ p: String) -> String? {
        guard let r = realpath(p, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }

    static func readHead(_ path: String, _ n: Int) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: n)
        let got = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, n) }
        return got > 0 ? Array(buf.prefix(got)) : []
    }
}
