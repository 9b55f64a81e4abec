import I2QCore
import I2QQuant

/// Scheme `ggml`: a 2-D [out, in] weight stored in one of ggml's block encodings, byte for byte as
/// ggml / GGUF stores it (Formats/i2q-format.md, "ggml"), so a GGUF export copies the bytes and the
/// runtime dequantizes them exactly as gguf-py does (`GGMLDequant`).
///
/// Param `ggml_type` (str): the ggml type name as gguf-py prints it (`Q4_0`, `Q4_1`, `Q5_0`, `Q5_1`,
/// `Q8_0`, `Q2_K`, `Q3_K`, `Q4_K`, `Q5_K`, `Q6_K`); `in` must be a multiple of its block size. One
/// component `blocks` U8 [out, in / blockSize · typeSize]: row r is the row's blocks in order.
/// A fused part is rows [s, s+len) of `blocks`; parts must share the type (`fuseConflict`).
public struct GGMLBlockLayout: SchemeLayout {
    public static let scheme = I2QSpec.Scheme.ggml
    public static let schemes: Set<String> = [scheme]
    public enum Role { public static let blocks = "blocks" }
    public static let typeKey = "ggml_type"

    /// The block types this scheme holds: the dequantizable ones that are not plain floats
    /// (F32 / F16 / BF16 are the `plain` scheme).
    public static let types: [GGMLType] = GGMLType.dequantizable.filter { $0.blockSize > 1 }

    /// The params a writer stores for `type`.
    public static func params(_ type: GGMLType) -> [(String, I2QParam)] { [(typeKey, .string(type.name))] }

    /// Bytes of one row of `cols` elements in `type` (cols a multiple of the block size).
    public static func rowBytes(_ type: GGMLType, cols: Int) -> Int { cols / type.blockSize * type.typeSize }

    public let type: GGMLType
    public let rows: Int
    public let cols: Int
    /// Bytes per row: cols / blockSize · typeSize.
    public let rowBytes: Int
    public let blocks: I2QComponent

    public init(_ e: I2QTensorEntry) throws {
        guard e.shape.count == 2, e.shape[0] > 0, e.shape[1] > 0 else { throw SchemeLayoutError("ggml needs a 2-D [out, in] shape, got \(e.shape)") }
        (rows, cols) = (e.shape[0], e.shape[1])
        guard let p = e.param(Self.typeKey) else { throw SchemeLayoutError("parameter \(Self.typeKey) is missing") }
        guard case let .string(name) = p else { throw SchemeLayoutError("parameter \(Self.typeKey) is not a string") }
        guard let t = Self.types.first(where: { $0.name == name }) else {
            throw SchemeLayoutError("ggml type \"\(name)\" is not one this version computes with (known: \(Self.types.map(\.name).joined(separator: ", ")))")
        }
        type = t
        guard cols % t.blockSize == 0 else {
            throw SchemeLayoutError("input size \(cols) is not a multiple of \(t.name)'s block size \(t.blockSize)")
        }
        rowBytes = Self.rowBytes(t, cols: cols)
        blocks = try e.requireComponent(Role.blocks, .u8, [rows, rowBytes], exactShape: true)
    }

    public func partEntries(_ e: I2QTensorEntry) throws -> [I2QTensorEntry] {
        try e.parts.map { p in
            e.partEntry(p, params: e.params, components: [try I2QTensorEntry.slice(blocks, p.start * rowBytes, p.length * rowBytes, [p.length, rowBytes])])
        }
    }

    public static func fuseConflict(_ es: [I2QTensorEntry]) -> String? {
        let a = es[0]
        guard es.allSatisfy({ $0.param(typeKey) == a.param(typeKey) }) else {
            let names = es.map { e in e.param(typeKey).map { if case let .string(s) = $0 { return s }; return "?" } ?? "?" }
            return "their ggml types differ (\(names.joined(separator: ", ")))"
        }
        guard es.allSatisfy({ $0.componentSignature == a.componentSignature }) else { return "their components differ" }
        return nil
    }
}
