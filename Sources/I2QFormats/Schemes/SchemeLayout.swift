import I2QCore

/// One quantization scheme's layout inside an .i2q directory entry (Formats/i2q-format.md, "Schemes"
/// and "Fused tensors"): its params, its components (role, dtype, shape), their validation, and how a
/// fused entry's components split into its parts' rows. Writers take roles and params from here,
/// readers validate with `init(_:)`: quantize, AWQ, fuse, the exports and the runtime share one
/// definition. A new scheme is one file conforming to this protocol plus one line in `SchemeLayouts`.
public protocol SchemeLayout: Sendable {
    /// The directory scheme strings this layout reads.
    static var schemes: Set<String> { get }
    /// Component roles stored once for the whole fused entry instead of once per part.
    static var sharedRoles: Set<String> { get }
    /// Reads and validates entry `e`: params, component roles, dtypes and sizes (for a fused entry,
    /// the whole fused tensor). Throws `SchemeLayoutError` saying what is wrong.
    init(_ e: I2QTensorEntry) throws
    /// The logical tensors of fused entry `e` (this layout's entry) as entries of their own whose
    /// components are byte-range views of `e`'s (unaligned offsets, checksum 0).
    func partEntries(_ e: I2QTensorEntry) throws -> [I2QTensorEntry]
    /// Why entries `es` (this scheme, same trailing shape) cannot be stacked into one fused entry
    /// without re-quantizing, or nil when they can.
    static func fuseConflict(_ es: [I2QTensorEntry]) -> String?
    /// The params of the fused entry holding `es` in order.
    static func fusedParams(_ es: [I2QTensorEntry]) throws -> [(String, I2QParam)]
}

public extension SchemeLayout {
    static var sharedRoles: Set<String> { [] }
    static func fusedParams(_ es: [I2QTensorEntry]) throws -> [(String, I2QParam)] { es[0].params }
}

/// What is wrong with an entry, in words; callers wrap it in their own error naming file and tensor.
public struct SchemeLayoutError: Error, Sendable, CustomStringConvertible {
    public let detail: String
    public init(_ detail: String) { self.detail = detail }
    public var description: String { detail }
}

/// The schemes this version reads, by directory string.
public enum SchemeLayouts {
    public static let all: [any SchemeLayout.Type] = [PlainLayout.self, BnbFourBitLayout.self, AffineInt4Layout.self,
                                                        GGMLBlockLayout.self]

    /// The layout type of `scheme`, or nil for a scheme this version does not know.
    public static func type(of scheme: String) -> (any SchemeLayout.Type)? { all.first { $0.schemes.contains(scheme) } }

    /// The validated layout of `e`.
    public static func layout(_ e: I2QTensorEntry) throws -> any SchemeLayout {
        guard let t = type(of: e.scheme) else { throw SchemeLayoutError("scheme \(e.scheme) is not known to this version of i2q") }
        return try t.init(e)
    }
}

/// Helpers shared by the layouts: typed params and components with a message naming what is wrong.
extension I2QTensorEntry {
    func param(_ k: String) -> I2QParam? { params.first { $0.0 == k }?.1 }

    func intParam(_ k: String) throws -> Int? {
        guard let v = param(k) else { return nil }
        guard case let .int(i) = v else { throw SchemeLayoutError("parameter \(k) is not an integer") }
        return Int(i)
    }

    func floatParam(_ k: String) throws -> Double? {
        guard let v = param(k) else { return nil }
        guard case let .float(d) = v else { throw SchemeLayoutError("parameter \(k) is not a float") }
        return d
    }

    /// Component `role`, checked to be `dtype` with `shape`'s element count (`exactShape`: that shape).
    func requireComponent(_ role: String, _ dtype: DType, _ shape: [Int], exactShape: Bool = false) throws -> I2QComponent {
        guard let c = component(role) else { throw SchemeLayoutError("component \"\(role)\" is missing") }
        let ok = exactShape ? c.shape == shape : c.shape.reduce(1, *) == shape.reduce(1, *)
        guard c.dtype == dtype, ok else {
            throw SchemeLayoutError("component \"\(role)\" is \(c.dtype.rawValue) \(c.shape), expected \(dtype.rawValue) \(shape)")
        }
        return c
    }

    /// Bytes [start, start+count) of component `c` as a view (unaligned offset, checksum 0).
    static func slice(_ c: I2QComponent, _ start: Int, _ count: Int, _ shape: [Int]) throws -> I2QComponent {
        guard start >= 0, count >= 0, start + count <= c.size else {
            throw SchemeLayoutError("component \"\(c.role)\" (\(c.size) bytes) is too small for its parts")
        }
        return I2QComponent(role: c.role, dtype: c.dtype, shape: shape, offset: c.offset + start, size: count, checksum: 0)
    }

    /// Part `p` of this fused entry as an entry of its own.
    func partEntry(_ p: I2QPart, params: [(String, I2QParam)], components: [I2QComponent]) -> I2QTensorEntry {
        I2QTensorEntry(name: p.name, scheme: scheme, dtype: dtype, shape: [p.length] + shape.dropFirst(), params: params, parts: [], components: components)
    }

    /// Elements per row (product of the dimensions after the first).
    var rowElements: Int { shape.dropFirst().reduce(1, *) }

    /// "role dtype trailing-shape" of every component, to compare entries' layouts.
    var componentSignature: [String] { components.map { "\($0.role) \($0.dtype.rawValue) \($0.shape.dropFirst())" } }

    func paramsEqual(_ o: I2QTensorEntry, except: String? = nil) -> Bool {
        let a = params.filter { $0.0 != except }, b = o.params.filter { $0.0 != except }
        return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }
}
