import I2QCore

/// Scheme `plain`: one component `data` holding the tensor in its dtype, row-major.
/// A fused part is rows [s, s+len) of `data`: bytes [s·cols·size, +len·cols·size).
public struct PlainLayout: SchemeLayout {
    public static let scheme = I2QSpec.Scheme.plain
    public static let schemes: Set<String> = [scheme]
    public static let dataRole = "data"

    public let data: I2QComponent

    public init(_ e: I2QTensorEntry) throws {
        data = try e.requireComponent(Self.dataRole, e.dtype, e.shape)
    }

    public func partEntries(_ e: I2QTensorEntry) throws -> [I2QTensorEntry] {
        let rowBytes = e.rowElements * e.dtype.size
        return try e.parts.map { p in
            e.partEntry(p, params: [], components: [try I2QTensorEntry.slice(data, p.start * rowBytes, p.length * rowBytes, [p.length] + e.shape.dropFirst())])
        }
    }

    public static func fuseConflict(_ es: [I2QTensorEntry]) -> String? { nil }
}
