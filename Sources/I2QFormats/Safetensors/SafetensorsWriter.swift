import I2QCore

/// A tensor the writer will receive, known before anything is written.
public struct PlannedTensor: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public var byteCount: Int { shape.reduce(1, *) * dtype.size }
    public init(name: String, dtype: DType, shape: [Int]) { self.name = name; self.dtype = dtype; self.shape = shape }
}

public enum WriterError: I2QError {
    case outOfOrder(expected: String?, got: String)
    case wrongByteCount(tensor: String, expected: Int, got: Int)
    case state(String)
    case duplicateName(String)

    public var description: String {
        switch self {
        case let .outOfOrder(e, g): return "internal error: writer expected tensor \(e ?? "<none>") but got \(g)"
        case let .wrongByteCount(t, e, g): return "internal error: tensor \(t) should have \(e) bytes, got \(g)"
        case let .state(s): return "internal error: writer \(s)"
        case let .duplicateName(n): return "two output tensors are named \"\(n)\""
        }
    }
}

/// Writes a (possibly sharded) safetensors checkpoint in the layout transformers' `save_pretrained`
/// uses: `model.safetensors`, or `model-0000K-of-0000N.safetensors` plus `model.safetensors.index.json`
/// when the tensors exceed `maxShardSize`. Headers are planned up front (every shape and dtype is
/// known), so tensor data streams straight to disk.
///
/// State machine: `.ready` →(begin)→ `.tensor` →(append…, end)→ `.ready` … →(finish)→ `.finished`.
/// Tensors must arrive in plan order.
public final class SafetensorsWriter {
    public struct Shard: Sendable {
        public let fileName: String
        public let tensors: [PlannedTensor]
        public var dataBytes: Int { tensors.reduce(0) { $0 + $1.byteCount } }
    }

    enum State { case ready, tensor(index: Int, written: Int), finished }

    public let directory: String
    public let shards: [Shard]
    private let plan: [PlannedTensor]
    private let shardOfTensor: [Int]
    private var state = State.ready
    private var next = 0
    private var file: OutputFile?
    private var currentShard = -1
    private let metadata: [(String, String)]

    /// Splits like huggingface_hub's `split_torch_state_dict_into_shards`: a tensor larger than the
    /// limit gets a shard of its own; otherwise a new shard starts when the next tensor would overflow.
    public static func planShards(_ tensors: [PlannedTensor], maxShardSize: Int) -> [[PlannedTensor]] {
        var out: [[PlannedTensor]] = []
        var cur: [PlannedTensor] = []
        var size = 0
        for t in tensors {
            if t.byteCount > maxShardSize {
                if !cur.isEmpty { out.append(cur); cur = []; size = 0 }
                out.append([t])
                continue
            }
            if size + t.byteCount > maxShardSize && !cur.isEmpty {
                out.append(cur); cur = []; size = 0
            }
            cur.append(t)
            size += t.byteCount
        }
        if !cur.isEmpty || out.isEmpty { out.append(cur) }
        return out
    }

    public init(directory: String, tensors: [PlannedTensor], maxShardSize: Int,
                metadata: [(String, String)] = [("format", "pt")]) throws {
        var seen = Set<String>()
        for t in tensors where !seen.insert(t.name).inserted { throw WriterError.duplicateName(t.name) }
        self.directory = directory
        self.plan = tensors
        self.metadata = metadata
        let groups = Self.planShards(tensors, maxShardSize: maxShardSize)
        func pad5(_ i: Int) -> String { let s = String(i); return String(repeating: "0", count: max(0, 5 - s.count)) + s }
        shards = groups.enumerated().map { i, g in
            Shard(fileName: groups.count == 1 ? SafetensorsCheckpoint.singleName
                  : "model-\(pad5(i + 1))-of-\(pad5(groups.count)).safetensors", tensors: g)
        }
        var sot: [Int] = []
        for (i, g) in groups.enumerated() { sot += Array(repeating: i, count: g.count) }
        shardOfTensor = sot
    }

    /// The header bytes of a shard: u64 length + JSON padded with spaces to a multiple of 8.
    public static func header(for tensors: [PlannedTensor], metadata: [(String, String)]) -> [UInt8] {
        var entries: [(String, JSONValue)] = []
        if !metadata.isEmpty { entries.append(("__metadata__", .object(metadata.map { ($0.0, .string($0.1)) }))) }
        var off = 0
        for t in tensors {
            entries.append((t.name, .object([
                ("dtype", .string(t.dtype.rawValue)),
                ("shape", .array(t.shape.map { .int($0) })),
                ("data_offsets", .array([.int(off), .int(off + t.byteCount)])),
            ])))
            off += t.byteCount
        }
        var json = Array(JSONWriter.string(.object(entries), asciiOnly: false).utf8)
        while (json.count % 8) != 0 { json.append(0x20) }
        var out = [UInt8]()
        out.reserveCapacity(8 + json.count)
        var n = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(contentsOf: json)
        return out
    }

    /// Starts the next tensor; it must be `name`.
    public func begin(_ name: String) throws {
        guard case .ready = state else { throw WriterError.state("begin(\(name)) while a tensor is open or after finish") }
        guard next < plan.count, plan[next].name == name else {
            throw WriterError.outOfOrder(expected: next < plan.count ? plan[next].name : nil, got: name)
        }
        let s = shardOfTensor[next]
        if s != currentShard {
            try file?.close()
            currentShard = s
            let f = try OutputFile(creating: directory + "/" + shards[s].fileName, direct: true)
            try f.write(Self.header(for: shards[s].tensors, metadata: metadata))
            file = f
        }
        state = .tensor(index: next, written: 0)
    }

    public func append(_ bytes: UnsafeRawBufferPointer) throws {
        guard case let .tensor(i, w) = state, let file else { throw WriterError.state("append without begin") }
        guard w + bytes.count <= plan[i].byteCount else {
            throw WriterError.wrongByteCount(tensor: plan[i].name, expected: plan[i].byteCount, got: w + bytes.count)
        }
        try file.write(bytes)
        state = .tensor(index: i, written: w + bytes.count)
    }

    public func end() throws {
        guard case let .tensor(i, w) = state else { throw WriterError.state("end without begin") }
        guard w == plan[i].byteCount else { throw WriterError.wrongByteCount(tensor: plan[i].name, expected: plan[i].byteCount, got: w) }
        next += 1
        state = .ready
    }

    /// Convenience: one whole tensor.
    public func write(_ name: String, _ bytes: UnsafeRawBufferPointer) throws {
        try begin(name); try append(bytes); try end()
    }

    /// Closes the last shard and writes the index (sharded output only).
    public func finish() throws {
        guard case .ready = state, next == plan.count else {
            throw WriterError.state("finish before every tensor was written (\(next) of \(plan.count))")
        }
        if file == nil {
            // No tensors at all: still write a valid empty file.
            let f = try OutputFile(creating: directory + "/" + shards[0].fileName)
            try f.write(Self.header(for: [], metadata: metadata))
            file = f
        }
        try file?.close()
        file = nil
        if shards.count > 1 {
            let total = plan.reduce(0) { $0 + $1.byteCount }
            var wm: [(String, JSONValue)] = []
            for s in shards { for t in s.tensors { wm.append((t.name, .string(s.fileName))) } }
            wm.sort { $0.0 < $1.0 }
            let index: JSONValue = .object([
                ("metadata", .object([("total_size", .int(total))])),
                ("weight_map", .object(wm)),
            ])
            try FileSystem.writeFile(directory + "/" + SafetensorsCheckpoint.indexName,
                                     Array((JSONWriter.string(index, indent: 2) + "\n").utf8))
        }
        state = .finished
    }
}
