import I2QCore

/// Schemes `affine_int4`, `affine_int3`, `affine_int2`: asymmetric b-bit (b = 4, 3, 2) with per-row
/// groups along the input dimension, as AutoAWQ / llm-awq compute it (Formats/i2q-format.md,
/// "affine_int4"); dequantized value (q − z) · s. The code width is the scheme string's (a reader that
/// does not know `affine_int3` refuses it instead of misreading it as int4).
///
/// Shape [out, in]. Params: `group_size` (int, divides `in`; `in · b` a multiple of 8), `pack_order`
/// ("sequential", the only one defined), `zero_point` (int 1, default; 0 = symmetric, no `zeros`).
/// Components: `qweight` u8 [out, in·b/8] (each row one little-endian bit stream of b-bit codes; int4:
/// even column in the low nibble), `scales` f16 [out, in/G], `zeros` u8 [out, in/G] (values
/// 0…2^b−1). A fused part is rows [s, s+len) of each.
public struct AffineInt4Layout: SchemeLayout {
    public static let scheme = I2QSpec.Scheme.affineInt4
    public static let schemes: Set<String> = [scheme, I2QSpec.Scheme.affineInt3, I2QSpec.Scheme.affineInt2]
    /// The scheme string of `bits`-bit codes (4: `affine_int4`).
    public static func scheme(bits: Int) -> String {
        switch bits {
        case 3: return I2QSpec.Scheme.affineInt3
        case 2: return I2QSpec.Scheme.affineInt2
        default: precondition(bits == 4, "affine: \(bits) bits"); return scheme
        }
    }
    /// The code width of an affine scheme string, or nil.
    public static func bits(scheme s: String) -> Int? {
        switch s {
        case I2QSpec.Scheme.affineInt4: return 4
        case I2QSpec.Scheme.affineInt3: return 3
        case I2QSpec.Scheme.affineInt2: return 2
        default: return nil
        }
    }
    public enum Role { public static let qweight = "qweight", scales = "scales", zeros = "zeros" }
    public static let packOrder = "sequential"

    /// The params AWQ / RTN write.
    public static func params(groupSize: Int) -> [(String, I2QParam)] {
        [("group_size", .int(Int64(groupSize))), ("pack_order", .string(packOrder)), ("zero_point", .int(1))]
    }

    public let rows: Int
    public let cols: Int
    public let groupSize: Int
    /// Code width: 4, 3 or 2 (from the scheme string).
    public let bits: Int
    public var groups: Int { cols / groupSize }
    /// Bytes of one row of `qweight`.
    public var rowBytes: Int { cols * bits / 8 }
    public let qweight: I2QComponent
    public let scales: I2QComponent
    public let zeros: I2QComponent?

    public init(_ e: I2QTensorEntry) throws {
        guard let b = Self.bits(scheme: e.scheme) else { throw SchemeLayoutError("scheme \(e.scheme) is not an affine scheme") }
        bits = b
        guard e.shape.count == 2, e.shape[0] > 0, e.shape[1] > 0 else { throw SchemeLayoutError("\(e.scheme) needs a 2-D [out, in] shape, got \(e.shape)") }
        (rows, cols) = (e.shape[0], e.shape[1])
        guard let g = try e.intParam("group_size") else { throw SchemeLayoutError("parameter group_size is missing") }
        if b == 4 {
            guard g > 0, cols % g == 0, cols % 2 == 0 else { throw SchemeLayoutError("group_size \(g) must divide the even input size \(cols)") }
        } else {
            guard g > 0, cols % g == 0 else { throw SchemeLayoutError("group_size \(g) must divide the input size \(cols)") }
            guard cols * b % 8 == 0 else { throw SchemeLayoutError("a row of \(cols) \(b)-bit codes is not a whole number of bytes") }
        }
        groupSize = g
        if let o = e.param("pack_order"), o != .string(Self.packOrder) {
            throw SchemeLayoutError("pack_order \(o) is not supported (this reader knows \"\(Self.packOrder)\")")
        }
        let zp = try e.intParam("zero_point") ?? 1
        guard zp == 0 || zp == 1 else { throw SchemeLayoutError("zero_point \(zp) must be 0 or 1") }
        qweight = try e.requireComponent(Role.qweight, .u8, [rows, cols * b / 8], exactShape: true)
        scales = try e.requireComponent(Role.scales, .f16, [rows, cols / g], exactShape: true)
        zeros = zp == 1 ? try e.requireComponent(Role.zeros, .u8, [rows, cols / g], exactShape: true) : nil
    }

    public func partEntries(_ e: I2QTensorEntry) throws -> [I2QTensorEntry] {
        try e.parts.map { p in
            func rowsOf(_ c: I2QComponent) throws -> I2QComponent {
                let rb = c.shape[1] * c.dtype.size
                return try I2QTensorEntry.slice(c, p.start * rb, p.length * rb, [p.length, c.shape[1]])
            }
            return e.partEntry(p, params: e.params, components: try [rowsOf(qweight), rowsOf(scales)] + (zeros.map { [try rowsOf($0)] } ?? []))
        }
    }

    public static func fuseConflict(_ es: [I2QTensorEntry]) -> String? {
        let a = es[0]
        guard es.allSatisfy({ $0.paramsEqual(a) }) else { return "their quantization params differ" }
        guard es.allSatisfy({ $0.componentSignature == a.componentSignature }) else { return "their components differ" }
        return nil
    }
}
