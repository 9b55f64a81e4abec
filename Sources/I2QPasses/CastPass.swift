import I2QCore
import I2QFormats

/// A resolved streaming pass: every plain tensor of `source` is written to the output, converted to
/// `plan[i].dtype` (torch rounding, see FloatConversion) or copied unchanged. The whole plan —
/// input validated, output shapes and dtypes, destination free, enough space — is resolved in
/// `init`, before anything touches the disk. Memory stays bounded: one chunk at a time, and the
/// source pages already processed are released.
public struct StreamingPass {
    public let source: any ModelSource
    public let outputPath: String
    public let settings: OutputSettings
    public let plan: [PlannedTensor]
    public let files: [(name: String, bytes: [UInt8])]
    public var provenance: Provenance { pipeline.provenance }
    let label: String
    let pipeline: PassPipeline
    /// Fused tensor name → its parts, kept in an .i2q output.
    var parts: [String: [I2QPart]] = [:]

    public init(label: String, source: any ModelSource, output: String, settings: OutputSettings,
                outputDType: (SourceTensor) -> DType, configJSON: [UInt8], record: PassRecord?, keepFusedNames: Bool = false) throws {
        let q = source.quantizedTensorNames
        if !q.isEmpty { throw PassError.quantizedInput(path: source.path, tensors: q, verb: label) }
        self.label = label
        // Fused tensors (i2q fuse): an .i2q output keeps them fused (their parts travel with them);
        // a safetensors output gets the tensors they hold, under transformers' names.
        var source = source
        if let f = source as? I2QFile, UnfusedSource.hasFused(f) {
            if settings.format == .safetensors && !keepFusedNames { source = try UnfusedSource(f) } else {
                parts = Dictionary(f.entries.filter { !$0.parts.isEmpty }.map { ($0.name, $0.parts) }, uniquingKeysWith: { a, _ in a })
            }
        }
        self.source = source
        self.outputPath = output
        self.settings = settings
        plan = source.tensors.map { PlannedTensor(name: $0.name, dtype: outputDType($0), shape: $0.shape) }
        files = [("config.json", configJSON)] + (try source.auxiliaryFiles())
        pipeline = try PassPipeline(source: source, output: output, settings: settings, record: record,
                                    directory: settings.format == .safetensors,
                                    neededBytes: plan.reduce(0) { $0 + $1.byteCount } + files.reduce(0) { $0 + $1.bytes.count })
    }

    /// Elements per step: bounds the buffers (input ≤ 16 MB, each output buffer ≤ 16 MB).
    static let chunkElements = 2 << 20
    /// Output buffers in flight between the converting thread and the writing thread.
    static let buffersInFlight = 3

    /// Reads (pread) and converts on the calling thread while a second thread writes (and, for
    /// .i2q, checksums) the previous chunks: the two cores overlap conversion with disk writes.
    public func run() throws -> PassReport {
        try pipeline.run { temp in try write(to: temp) }
    }

    private func write(to temp: String) throws -> PassReport {
        let sink: TensorSink = settings.format == .safetensors
            ? try SafetensorsSink(directory: temp, plan: plan, maxShardSize: settings.maxShardSize)
            : try I2QSink(path: temp, alignment: settings.alignment)
        (sink as? I2QSink)?.parts = parts
        let progress = ProgressBar(label: label, totalBytes: source.tensorBytes, enabled: settings.showProgress)
        let writer = PipelinedWriter(sink: sink, buffers: Self.buffersInFlight, bufferSize: Self.chunkElements * 8)
        // input: [chunkElements × ≤ 8 bytes] of the source dtype.
        let input = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.chunkElements * 8, alignment: 4096)
        defer { input.deallocate() }
        var results: [TensorCastResult] = []
        var written = 0

        do {
            for (t, p) in zip(source.tensors, plan) {
                writer.submit { try $0.begin(p) }
                var stats = CastStats()
                let inSize = t.dtype.size
                let n = t.elementCount
                var i = 0
                while i < n {
                    let m = min(Self.chunkElements, n - i)
                    let buffer = try writer.acquire()  // output: [m × p.dtype.size bytes]
                    if p.dtype == t.dtype {
                        try t.read(elements: i, count: m, into: buffer)
                    } else {
                        try t.read(elements: i, count: m, into: input.baseAddress!)
                        stats += try FloatConversion.convert(from: t.dtype, to: p.dtype, count: m,
                                                             src: input.baseAddress!, dst: buffer, first: i, total: n)
                    }
                    writer.submitBuffer(buffer, count: m * p.dtype.size)
                    progress.advance(m * inSize)
                    i += m
                }
                writer.submit { try $0.end() }
                written += p.byteCount
                results.append(TensorCastResult(name: t.name, from: t.dtype, to: p.dtype, elements: n, stats: stats))
            }
            let files = self.files, provenance = self.provenance
            writer.submit { try $0.finish(files: files, provenance: provenance) }
            try writer.drain()
        } catch {
            writer.abandon()
            throw error
        }
        progress.finish()
        return PassReport(output: outputPath, files: sink.outputFiles, tensors: results,
                          bytesRead: source.tensorBytes, bytesWritten: written, seconds: progress.elapsed)
    }
}

/// `i2q cast`: every floating-point tensor to `dtype` with torch's rounding; integer and bool
/// tensors pass through unchanged; config.json's dtype is updated.
public enum CastPass {
    public static func make(source: any ModelSource, output: String, dtype: DType, settings: OutputSettings) throws -> StreamingPass {
        let cfg = Array((JSONWriter.string(source.rewrittenConfig(dtype: dtype), indent: 2) + "\n").utf8)
        return try StreamingPass(label: "cast", source: source, output: output, settings: settings,
                                 outputDType: { $0.dtype.isCastableFloat ? dtype : $0.dtype },
                                 configJSON: cfg,
                                 record: PassRecord(name: "cast", params: [("dtype", .string(dtype.rawValue))]))
    }
}

/// `i2q export --to hf`: the model's tensors and files, unchanged, as an HF safetensors directory.
/// Fused tensors (i2q fuse) are written as the tensors they hold, under transformers' names (byte
/// for byte the unfused tensors), or — `fusedNames` — as they are stored (vLLM-style `qkv_proj`,
/// `gate_up_proj`, which vLLM's loaders accept as pre-fused weights).
public enum ExportPass {
    public static func makeHF(source: any ModelSource, output: String, settings: OutputSettings, fusedNames: Bool = false) throws -> StreamingPass {
        var s = settings
        s.format = .safetensors
        let cfg: [UInt8]
        if let i2q = source as? I2QFile, let bytes = i2q.metadata.file("config.json") {
            cfg = bytes  // verbatim: the round trip is byte-identical
        } else {
            cfg = Array((JSONWriter.string(source.rawConfig, indent: 2) + "\n").utf8)
        }
        return try StreamingPass(label: "export", source: source, output: output, settings: s,
                                 outputDType: { $0.dtype }, configJSON: cfg, record: nil, keepFusedNames: fusedNames)
    }
}
