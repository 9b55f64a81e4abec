import I2QCore
import I2QFormats
#if canImport(Glibc)
import Glibc
#endif

/// Output container of a pass.
public enum OutputFormat: String, CaseIterable, Sendable {
    case safetensors
}

public struct CastOptions: Sendable {
    public var dtype: DType
    public var format: OutputFormat = .safetensors
    /// Largest shard (bytes of tensor data) of safetensors output; transformers' default is 5 GB.
    public var maxShardSize: Int = 5_000_000_000
    public var overwrite = false
    public var showProgress = Progress.stderrIsTerminal
    public init(dtype: DType) { self.dtype = dtype }
}

/// What the cast did to one tensor.
public struct TensorCastResult: Sendable {
    public let name: String
    public let from: DType
    public let to: DType
    public let elements: Int
    public let stats: CastStats
}

public struct CastReport: Sendable {
    public let output: String
    public let shards: [String]
    public let tensors: [TensorCastResult]
    public let bytesRead: Int
    public let bytesWritten: Int
    public let seconds: Double
    /// Tensors in which finite values became ±inf — the user must see these.
    public var overflowing: [TensorCastResult] { tensors.filter { $0.stats.overflowed > 0 } }
}

public enum PassError: I2QError {
    case insufficientSpace(path: String, needed: Int, available: Int)
    case unsupportedOutput(String)

    public var description: String {
        switch self {
        case let .insufficientSpace(p, n, a):
            return "not enough disk space for \(p): the output needs \(formatBytes(n)) and \(formatBytes(a)) is free. Free some space or write elsewhere (-o)."
        case let .unsupportedOutput(s): return s
        }
    }
}

/// `i2q cast`: every floating-point tensor to `dtype` with torch's rounding (see FloatConversion);
/// integer and bool tensors pass through unchanged. Streams tensor by tensor, chunk by chunk.
public struct CastPass {
    public let source: ModelDirectory
    public let options: CastOptions
    public let outputPath: String
    /// The output tensors, in input order, with their output dtypes.
    public let planned: [PlannedTensor]

    /// Resolves the whole plan before touching the disk: input validated, output shapes and dtypes
    /// known, destination free, enough space.
    public init(source: ModelDirectory, output: String, options: CastOptions) throws {
        self.source = source
        self.options = options
        self.outputPath = output
        planned = source.weights.tensors.map { t in
            PlannedTensor(name: t.name, dtype: t.info.dtype.isCastableFloat ? options.dtype : t.info.dtype, shape: t.info.shape)
        }
        if FileSystem.exists(output) && !options.overwrite { throw IOError.exists(path: output) }
        let needed = planned.reduce(0) { $0 + $1.byteCount }
        if let free = Self.freeBytes(FileSystem.dirname(output)), free < needed {
            throw PassError.insufficientSpace(path: output, needed: needed, available: free)
        }
    }

    static func freeBytes(_ dir: String) -> Int? {
        var s = statvfs()
        guard statvfs(dir, &s) == 0 else { return nil }
        return Int(s.f_bavail) * Int(s.f_frsize)
    }

    /// Elements converted per step; bounds the buffers (16 MB of f32 in, 8 MB of f16 out).
    static let chunkElements = 4 << 20

    public func run() throws -> CastReport {
        let staged = try StagedOutput(finalPath: outputPath, directory: true, overwrite: options.overwrite)
        let writer = try SafetensorsWriter(directory: staged.tempPath, tensors: planned, maxShardSize: options.maxShardSize)
        let totalIn = source.weights.totalBytes
        let progress = Progress(label: "cast", totalBytes: totalIn, enabled: options.showProgress)
        var results: [TensorCastResult] = []
        var written = 0
        // out: [chunkElements × 8 bytes] — large enough for any output dtype.
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.chunkElements * 8, alignment: 64)
        defer { out.deallocate() }

        for (t, p) in zip(source.weights.tensors, planned) {
            try writer.begin(t.name)
            var stats = CastStats()
            let inSize = t.info.dtype.size
            let n = t.info.elementCount
            var i = 0
            while i < n {
                let m = min(Self.chunkElements, n - i)
                let srcOff = t.info.offset + i * inSize
                if i + m < n { t.shard.file.willNeed(srcOff + m * inSize, min(Self.chunkElements, n - i - m) * inSize) }
                try t.shard.file.withBytes(srcOff, m * inSize) { src in
                    if p.dtype == t.info.dtype {
                        try writer.append(src)  // pass-through: straight from the mapping
                    } else {
                        stats += try FloatConversion.convert(from: t.info.dtype, to: p.dtype, count: m,
                                                             src: src.baseAddress!, dst: out.baseAddress!)
                        try writer.append(UnsafeRawBufferPointer(rebasing: out[0..<(m * p.dtype.size)]))
                    }
                }
                t.shard.file.release(srcOff, m * inSize)
                progress.advance(m * inSize)
                i += m
            }
            try writer.end()
            written += p.byteCount
            results.append(TensorCastResult(name: t.name, from: t.info.dtype, to: p.dtype, elements: n, stats: stats))
        }
        try writer.finish()
        try copyAuxiliaryFiles(into: staged.tempPath)
        try staged.commit()
        progress.finish()
        return CastReport(output: outputPath, shards: writer.shards.map(\.fileName), tensors: results,
                          bytesRead: totalIn, bytesWritten: written, seconds: progress.elapsed)
    }

    func copyAuxiliaryFiles(into dir: String) throws {
        let cfg = source.rewrittenConfig(dtype: options.dtype)
        try FileSystem.writeFile(dir + "/config.json", Array((JSONWriter.string(cfg, indent: 2) + "\n").utf8))
        for f in source.auxiliaryFiles {
            try FileSystem.copyFile(source.path + "/" + f, dir + "/" + f)
        }
    }
}
