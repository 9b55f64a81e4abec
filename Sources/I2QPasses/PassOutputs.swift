import I2QCore
import I2QFormats

/// The output side shared by the exports that write an HF directory from an .i2q (`hf-bnb`,
/// `hf-awq`): safetensors shards of a plan resolved beforehand, then config.json and the model's
/// other small files, all under a temporary name renamed into place when complete.
enum HFDirectoryOutput {
    /// `tensor(i, writer)` appends the bytes of `plan[i]` (begin/end are done here) and returns the
    /// dtype it was made from and its cast statistics.
    static func write(from f: I2QFile, output: String, settings: OutputSettings, plan: [PlannedTensor], config: JSONValue,
                      extraFiles: [(name: String, bytes: [UInt8])] = [],
                      tensor: (Int, SafetensorsWriter) throws -> (from: DType, stats: CastStats)) throws -> PassReport {
        let pipeline = try PassPipeline(source: f, output: output, settings: settings, record: nil, directory: true)
        return try pipeline.run { temp in
        let writer = try SafetensorsWriter(directory: temp, tensors: plan, maxShardSize: settings.maxShardSize)
        let progress = ProgressBar(label: "export", totalBytes: plan.reduce(0) { $0 + $1.byteCount }, enabled: settings.showProgress)
        var results: [TensorCastResult] = []
        var written = 0
        for (i, p) in plan.enumerated() {
            try writer.begin(p.name)
            let r = try tensor(i, writer)
            try writer.end()
            progress.advance(p.byteCount)
            written += p.byteCount
            results.append(TensorCastResult(name: p.name, from: r.from, to: p.dtype, elements: p.shape.reduce(1, *), stats: r.stats))
        }
        try writer.finish()
        try FileSystem.writeFile(temp + "/config.json", Array((JSONWriter.string(config, indent: 2) + "\n").utf8))
        for file in try f.auxiliaryFiles() where file.name != "config.json" && !extraFiles.contains(where: { $0.name == file.name }) {
            try FileSystem.writeFile(temp + "/" + file.name, file.bytes)
        }
        for file in extraFiles { try FileSystem.writeFile(temp + "/" + file.name, file.bytes) }
        progress.finish()
        return PassReport(output: output, files: writer.shards.map(\.fileName), tensors: results,
                          bytesRead: f.storedBytes, bytesWritten: written, seconds: progress.elapsed)
        }
    }
}

/// The chunked "read, cast, append" copy of a plain tensor (or a row range of it) that the passes
/// writing through an append-only writer share (quantize's kept tensors, AWQ's unreplaced parts,
/// the hf-awq export's plain tensors). Buffers are allocated once per copier.
final class CastCopier {
    static let chunkElements = 1 << 20
    private let raw = UnsafeMutableRawPointer.allocate(byteCount: CastCopier.chunkElements * 8, alignment: 64)  // [chunk] source dtype
    private let out = UnsafeMutableRawPointer.allocate(byteCount: CastCopier.chunkElements * 8, alignment: 64)  // [chunk] output dtype
    deinit { raw.deallocate(); out.deallocate() }

    /// Appends elements [first, first + count) of `t` cast to `to` (the conversion's `first`/`total`
    /// relative to that range), calling `advance` with the source bytes of each chunk; returns the
    /// cast statistics.
    func copy(_ t: SourceTensor, first: Int = 0, count: Int, to: DType, append: (UnsafeRawBufferPointer) throws -> Void,
              advance: (Int) -> Void = { _ in }) throws -> CastStats {
        var stats = CastStats()
        var i = 0
        while i < count {
            let m = min(Self.chunkElements, count - i)
            try t.read(elements: first + i, count: m, into: raw)
            if to == t.dtype {
                try append(UnsafeRawBufferPointer(start: raw, count: m * to.size))
            } else {
                stats += try FloatConversion.convert(from: t.dtype, to: to, count: m, src: raw, dst: out, first: i, total: count)
                try append(UnsafeRawBufferPointer(start: out, count: m * to.size))
            }
            advance(m * t.dtype.size)
            i += m
        }
        return stats
    }
}
