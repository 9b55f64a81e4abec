import I2QCore

/// A tensor of a checkpoint and the mapped shard that holds it.
public struct StoredTensor: Sendable {
    public let info: TensorInfo
    public let shard: SafetensorsFile
    public var name: String { info.name }
}

/// The weights of an HF checkpoint: one `.safetensors` file, or shards listed by
/// `model.safetensors.index.json`. Every shard is memory-mapped and validated on open; the index is
/// checked against the shards (each listed shard exists and holds the tensor, no shard holds an
/// unlisted tensor, no tensor is in two shards).
public final class SafetensorsCheckpoint: @unchecked Sendable {
    public static let indexName = "model.safetensors.index.json"
    public static let singleName = "model.safetensors"

    /// All tensors, shard by shard (shards in name order), in data order within a shard.
    public let tensors: [StoredTensor]
    public let shards: [SafetensorsFile]
    /// The index file, if the checkpoint is sharded.
    public let indexPath: String?
    /// Non-fatal findings (e.g. a stale total_size), for `inspect`.
    public private(set) var problems: [String] = []
    private let byName: [String: Int]

    /// Opens a directory (index, `model.safetensors`, or all `*.safetensors`) or a single file.
    public init(path: String) throws {
        var shardPaths: [String] = []
        var index: (path: String, map: [(String, String)], total: UInt64?)? = nil
        if FileSystem.isDirectory(path) {
            let ip = path + "/" + Self.indexName
            if FileSystem.exists(ip) {
                index = try Self.readIndex(ip)
                var seen = Set<String>()
                for (t, f) in index!.map where seen.insert(f).inserted {
                    let sp = path + "/" + f
                    guard FileSystem.exists(sp) else {
                        throw SafetensorsError.indexMissingShard(index: ip, shard: sp, tensor: t)
                    }
                    shardPaths.append(sp)
                }
                shardPaths.sort()
            } else if FileSystem.exists(path + "/" + Self.singleName) {
                shardPaths = [path + "/" + Self.singleName]
            } else {
                shardPaths = try FileSystem.listDirectory(path).filter { $0.hasSuffix(".safetensors") }.map { path + "/" + $0 }
            }
            if shardPaths.isEmpty { throw SafetensorsError.noWeights(directory: path) }
        } else {
            guard FileSystem.exists(path) else { throw FileSystem.whyMissing(path) }
            shardPaths = [path]
        }

        shards = try shardPaths.map { try SafetensorsFile(path: $0) }
        var all: [StoredTensor] = []
        var names: [String: Int] = [:]
        for s in shards {
            for t in s.tensors {
                if let j = names[t.name] {
                    throw SafetensorsError.tensorInTwoShards(tensor: t.name, first: all[j].shard.path, second: s.path)
                }
                names[t.name] = all.count
                all.append(StoredTensor(info: t, shard: s))
            }
        }
        tensors = all
        byName = names
        indexPath = index?.path

        if let index {
            let dir = FileSystem.dirname(index.path)
            var listed = Set<String>()
            for (t, f) in index.map {
                listed.insert(t)
                guard let i = names[t], all[i].shard.path == dir + "/" + f else {
                    throw SafetensorsError.indexTensorNotInShard(index: index.path, shard: dir + "/" + f, tensor: t)
                }
            }
            for t in all where !listed.contains(t.name) {
                throw SafetensorsError.indexTensorUnlisted(index: index.path, shard: t.shard.path, tensor: t.name)
            }
            let actual = all.reduce(UInt64(0)) { $0 + UInt64($1.info.byteCount) }
            if let declared = index.total, declared != actual {
                problems.append(SafetensorsError.indexTotalSize(index: index.path, declared: declared, actual: actual).description)
            }
        }
    }

    public func tensor(_ name: String) -> StoredTensor? { byName[name].map { tensors[$0] } }

    public var totalBytes: Int { tensors.reduce(0) { $0 + $1.info.byteCount } }

    /// Parses an index: `{"metadata": {"total_size": N}, "weight_map": {tensor: shard}}`.
    static func readIndex(_ path: String) throws -> (path: String, map: [(String, String)], total: UInt64?) {
        let json: JSONValue
        do { json = try JSONParser.parse(FileSystem.readFile(path), source: path) } catch let e as JSONError {
            if let k = e.duplicateKey, e.depth == 2 {
                throw SafetensorsError.indexJSON(file: path, detail: "weight_map lists tensor \"\(k)\" twice")
            }
            throw SafetensorsError.indexJSON(file: path, detail: "not valid JSON (byte \(e.offset): \(e.message))")
        }
        guard let wm = json["weight_map"]?.objectEntries else {
            throw SafetensorsError.indexJSON(file: path, detail: "no \"weight_map\" object; is this a safetensors index?")
        }
        var map: [(String, String)] = []
        for (t, v) in wm {
            guard let f = v.stringValue, !f.isEmpty, !f.contains("/") || !f.hasPrefix("/"), !f.contains("..") else {
                throw SafetensorsError.indexJSON(file: path, detail: "weight_map entry for \"\(t)\" must be a shard file name in the same directory")
            }
            map.append((t, f))
        }
        var total: UInt64? = nil
        if let ts = json["metadata"]?["total_size"] {
            total = ts.uint64Value ?? ts.doubleValue.flatMap { $0 >= 0 && $0 < 1.8e19 ? UInt64($0) : nil }
        }
        return (path, map, total)
    }
}
