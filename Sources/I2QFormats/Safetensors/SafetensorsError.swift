import I2QCore

/// Why a safetensors file or shard index was rejected. Each case names the file, the tensor where
/// there is one, and the rule of the reference reader (huggingface/safetensors `SafeTensors::read_metadata`
/// and `Metadata::validate`) that failed.
public enum SafetensorsError: I2QError, Equatable {
    case tooSmall(file: String, size: Int)
    case headerTooLarge(file: String, length: UInt64)
    case headerPastEnd(file: String, length: UInt64, fileSize: Int)
    case headerNotUTF8(file: String)
    case headerStart(file: String)
    case headerJSON(file: String, detail: String)
    case headerShape(file: String, tensor: String?, detail: String)
    case unknownDType(file: String, tensor: String, dtype: String)
    case duplicateTensor(file: String, tensor: String)
    case offsetsOverlapOrGap(file: String, tensor: String, expectedBegin: UInt64, begin: UInt64, end: UInt64)
    case sizeMismatch(file: String, tensor: String, shape: [Int], dtype: String, expectedBytes: UInt64, actualBytes: UInt64)
    case dataLengthMismatch(file: String, dataEnd: UInt64, dataLength: UInt64)
    case indexJSON(file: String, detail: String)
    case indexMissingShard(index: String, shard: String, tensor: String)
    case indexTensorNotInShard(index: String, shard: String, tensor: String)
    case indexTensorUnlisted(index: String, shard: String, tensor: String)
    case indexTotalSize(index: String, declared: UInt64, actual: UInt64)
    case tensorInTwoShards(tensor: String, first: String, second: String)
    case noWeights(directory: String)
    case missingTensor(tensor: String, where: String)

    public var description: String {
        switch self {
        case let .tooSmall(f, s):
            return "\(f): not a safetensors file (\(s) bytes; at least 8 are needed for the header length). The file is truncated or not safetensors."
        case let .headerTooLarge(f, n):
            return "\(f): header length \(n) exceeds the 100 MB limit of the safetensors format. The file is corrupt or not safetensors."
        case let .headerPastEnd(f, n, s):
            return "\(f): header length \(n) runs past the end of the \(s)-byte file. The file is truncated: download or copy it again."
        case let .headerNotUTF8(f):
            return "\(f): header is not valid UTF-8. The file is corrupt."
        case let .headerStart(f):
            return "\(f): header does not start with '{'. The file is corrupt or not safetensors."
        case let .headerJSON(f, d):
            return "\(f): header is not valid JSON: \(d)"
        case let .headerShape(f, t, d):
            return "\(f): \(t.map { "tensor \"\($0)\": " } ?? "")\(d)"
        case let .unknownDType(f, t, d):
            return "\(f): tensor \"\(t)\" has unknown dtype \"\(d)\" (known: \(DType.allCases.map(\.rawValue).joined(separator: ", ")))."
        case let .duplicateTensor(f, t):
            return "\(f): tensor \"\(t)\" appears twice in the header."
        case let .offsetsOverlapOrGap(f, t, e, b, en):
            let kind = b < e ? "overlaps the previous tensor" : (b > e ? "leaves a gap after the previous tensor" : "ends before it begins")
            return "\(f): tensor \"\(t)\" data_offsets [\(b), \(en)] \(kind) (expected to begin at \(e)); tensor data must be contiguous. The file is corrupt."
        case let .sizeMismatch(f, t, s, d, e, a):
            return "\(f): tensor \"\(t)\" has shape \(s) of \(d) = \(e) bytes but its data_offsets span \(a) bytes. The file is corrupt."
        case let .dataLengthMismatch(f, end, len):
            if end > len {
                return "\(f): tensor data ends at byte \(end) of the data section but the file holds only \(len) bytes there. The file is truncated: download or copy it again."
            }
            return "\(f): the data section holds \(len) bytes but the tensors use only \(end). The file is corrupt (trailing bytes)."
        case let .indexJSON(f, d):
            return "\(f): \(d)"
        case let .indexMissingShard(i, s, t):
            return "\(i): weight_map sends tensor \"\(t)\" to \(s), which does not exist. Copy the missing shard or fix the index."
        case let .indexTensorNotInShard(i, s, t):
            return "\(i): weight_map sends tensor \"\(t)\" to \(s), but that shard does not hold it. The index and shards are from different checkpoints."
        case let .indexTensorUnlisted(i, s, t):
            return "\(i): shard \(s) holds tensor \"\(t)\" that the weight_map does not list. The index and shards are from different checkpoints."
        case let .indexTotalSize(i, d, a):
            return "\(i): metadata.total_size is \(d) but the tensors listed hold \(a) bytes. The index is stale; regenerate it."
        case let .tensorInTwoShards(t, a, b):
            return "tensor \"\(t)\" is in both \(a) and \(b)."
        case let .noWeights(d):
            return "\(d): no model.safetensors, model.safetensors.index.json or *.safetensors file found."
        case let .missingTensor(t, w):
            return "\(w): no tensor named \"\(t)\"."
        }
    }
}
