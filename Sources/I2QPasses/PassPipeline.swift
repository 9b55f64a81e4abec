import I2QCore
import I2QFormats
#if canImport(Glibc)
import Glibc
#endif

/// The one pipeline every pass that writes a model goes through (cast, quantize --nf4/--fp4,
/// quantize --rtn/--awq, fuse, and every export):
///
///     plan       the pass resolves its whole output first (names, shapes, dtypes, layouts)
///     claim      `init`: the destination is free (or --overwrite allows it) and the disk has room
///     stage      `stage()`: a temporary name beside the output, locked (StagedOutput)
///     sink       `run`'s body writes the output there with the format's writer
///     provenance `provenance`: the source's passes + this pass's record (the .i2q metadata)
///     verify     settings.beforeCommit (`--verify`) sees the complete temporary output
///     card       an HF directory output gets its README.md model card (ModelCard)
///     commit     rename into place; on any error before it nothing appears at the output path
///
/// A pass that computes for a long time before writing (AWQ) calls `stage()` early, so a second
/// writer of the same output is refused before the hours, not after.
final class PassPipeline {
    let source: any ModelSource
    let output: String
    let settings: OutputSettings
    let directory: Bool
    /// The source's provenance (or its identity) with this pass's record appended, stamped with this version.
    private(set) var provenance: Provenance
    private var staged: StagedOutput?

    /// Claims `output`: refused when it exists without --overwrite, or when `neededBytes` exceed the
    /// free space of its directory.
    init(source: any ModelSource, output: String, settings: OutputSettings, record: PassRecord?, directory: Bool,
         neededBytes: Int? = nil) throws {
        self.source = source
        self.output = output
        self.settings = settings
        self.directory = directory
        var prov = source.provenance ?? Provenance(source: source.identity, passes: [])
        if let record { prov.passes.append(record) }
        prov.i2qVersion = I2QVersion.string
        provenance = prov
        if FileSystem.exists(output) && !settings.overwrite { throw IOError.exists(path: output) }
        if let needed = neededBytes, let free = Self.freeBytes(FileSystem.dirname(output)), free < needed {
            throw PassError.insufficientSpace(path: output, needed: needed, available: free)
        }
    }

    /// Appends this pass's record when it is known only after the claim (quantize --target-bpw:
    /// the recipe comes out of the measurement).
    func append(_ record: PassRecord) { provenance.passes.append(record) }

    static func freeBytes(_ dir: String) -> Int? {
        var s = statvfs()
        guard statvfs(dir, &s) == 0 else { return nil }
        return Int(s.f_bavail) * Int(s.f_frsize)
    }

    /// The temporary path the output is written under (made and locked on first call).
    @discardableResult
    func stage() throws -> String {
        if let staged { return staged.tempPath }
        let s = try StagedOutput(finalPath: output, directory: directory, overwrite: settings.overwrite, inputs: [source.path])
        staged = s
        return s.tempPath
    }

    /// Stages, lets `write` produce the whole output under the temporary path, runs the verify hook
    /// on it, and commits. Returns what `write` returned.
    func run<R>(_ write: (_ tempPath: String) throws -> R) throws -> R {
        let temp = try stage()
        let r = try write(temp)
        try settings.beforeCommit?(temp)
        if directory {
            // Every HF directory output carries its model card (after the verify hook: its numbers go in).
            try ModelCard.write(into: temp, output: output, provenance: provenance, modelType: source.config.modelType,
                                vision: source.config.architecture.visionLinear != nil)
        }
        try staged!.commit()
        return r
    }

    /// Completes an .i2q output written through `w` (metadata: the source's config and files, and
    /// `provenance`), stops `progress`, and reports the pass over the source's plain tensors.
    func finishI2Q(_ w: I2QWriter, progress: ProgressBar, tensors: [TensorCastResult], bytesWritten: Int) throws -> PassReport {
        try w.finish(metadata: try i2qMetadata())
        progress.finish()
        return PassReport(output: output, files: [FileSystem.basename(output)], tensors: tensors,
                          bytesRead: source.tensorBytes, bytesWritten: bytesWritten, seconds: progress.elapsed)
    }

    /// The .i2q metadata of an output: config.json (`config`, else the source's), the source's other
    /// small files, and `provenance`.
    func i2qMetadata(config: [UInt8]? = nil) throws -> I2QMetadata {
        let cfg = config ?? Array((JSONWriter.string(source.rawConfig, indent: 2) + "\n").utf8)
        return I2QMetadata(files: [("config.json", cfg)] + (try source.auxiliaryFiles()), provenance: provenance)
    }
}
