import I2QCore

/// Schemes `nf4` and `fp4`: bitsandbytes' 4-bit blockwise layout (Formats/i2q-format.md, "nf4 / fp4").
///
/// Params: `blocksize` (int, default 64, even), `double_quant` (int 0/1, informational),
/// `nested_blocksize` (int, default 256) and, with double quantization, `nested_offset` (float; a fused
/// entry has one per part, `nested_offset.<i>`). Components, n = elements, blocks = ceil(n / blocksize):
/// - `packed` u8 [ceil(n/2)]: two codes per byte, first element in the high nibble (bitsandbytes);
/// - `absmax` f32 [blocks], or with double quantization u8 [blocks] (codes of bitsandbytes' dynamic map);
/// - double quantization only: `nested_absmax` f32 [ceil(blocks/nested_blocksize)] (per part, one after
///   another, in a fused entry) and `nested_code` f32 [256] (the dynamic map; shared by fused parts).
///
/// A fused part p (rows [s, s+len), cols per row) is quantized as its own tensor; len·cols must be a
/// multiple of `blocksize`, so its codes and blocks are whole: `packed` bytes [s·cols/2, +len·cols/2),
/// `absmax` blocks [s·cols/bs, +len·cols/bs).
public struct BnbFourBitLayout: SchemeLayout {
    public static let schemes: Set<String> = [I2QSpec.Scheme.nf4, I2QSpec.Scheme.fp4]
    /// The directory string of NF4 (`nf4: true`) or FP4.
    public static func scheme(nf4: Bool) -> String { nf4 ? I2QSpec.Scheme.nf4 : I2QSpec.Scheme.fp4 }
    public enum Role {
        public static let packed = "packed", absmax = "absmax", nestedAbsmax = "nested_absmax", nestedCode = "nested_code"
    }
    public static let sharedRoles: Set<String> = [Role.nestedCode]
    public static let defaultBlockSize = 64
    public static let defaultNestedBlockSize = 256
    public static let nestedCodeCount = 256

    /// The params quantize writes before any nested offset.
    public static func params(blockSize: Int, doubleQuant: Bool) -> [(String, I2QParam)] {
        [("blocksize", .int(Int64(blockSize))), ("double_quant", .int(doubleQuant ? 1 : 0))]
    }
    /// The nested offset's param name: the whole tensor's, or fused part `part`'s.
    public static func nestedOffsetKey(part: Int? = nil) -> String { part.map { "nested_offset.\($0)" } ?? "nested_offset" }

    public let isNF4: Bool
    public let elements: Int
    public let blockSize: Int
    public let blocks: Int
    public let nestedBlockSize: Int
    public let packed: I2QComponent
    public let absmax: I2QComponent
    /// Double quantization: (nested absmax, code table, the offset of an unfused entry).
    public let nested: (absmax: I2QComponent, code: I2QComponent, offset: Double?)?
    public var doubleQuant: Bool { nested != nil }

    public init(_ e: I2QTensorEntry) throws {
        isNF4 = e.scheme == I2QSpec.Scheme.nf4
        elements = e.shape.reduce(1, *)
        guard elements > 0, !e.shape.isEmpty else { throw SchemeLayoutError("empty shape \(e.shape)") }
        blockSize = try e.intParam("blocksize") ?? Self.defaultBlockSize
        guard blockSize > 0, blockSize % 2 == 0 else { throw SchemeLayoutError("blocksize \(blockSize) must be a positive even number") }
        nestedBlockSize = try e.intParam("nested_blocksize") ?? Self.defaultNestedBlockSize
        guard nestedBlockSize > 0 else { throw SchemeLayoutError("nested_blocksize \(nestedBlockSize) must be positive") }
        blocks = (elements + blockSize - 1) / blockSize
        packed = try e.requireComponent(Role.packed, .u8, [(elements + 1) / 2])
        guard let a = e.component(Role.absmax) else { throw SchemeLayoutError("component \"\(Role.absmax)\" is missing") }
        let dq = a.dtype == .u8
        absmax = try e.requireComponent(Role.absmax, dq ? .u8 : .f32, [blocks])
        if dq {
            let nestedCount: Int
            let offset: Double?
            if e.parts.isEmpty {
                nestedCount = (blocks + nestedBlockSize - 1) / nestedBlockSize
                guard let o = try e.floatParam(Self.nestedOffsetKey()) else { throw SchemeLayoutError("double quantization without a float nested_offset") }
                offset = o
            } else {
                let (cols, bs, nbs) = (e.rowElements, blockSize, nestedBlockSize)
                nestedCount = e.parts.reduce(0) { $0 + ($1.length * cols / bs + nbs - 1) / nbs }
                offset = nil
            }
            nested = (try e.requireComponent(Role.nestedAbsmax, .f32, [nestedCount]),
                      try e.requireComponent(Role.nestedCode, .f32, [Self.nestedCodeCount]), offset)
        } else {
            nested = nil
        }
    }

    public func partEntries(_ e: I2QTensorEntry) throws -> [I2QTensorEntry] {
        let cols = e.rowElements, bs = blockSize, absBytes = doubleQuant ? 1 : 4
        let common = e.params.filter { !$0.0.hasPrefix("nested_offset") }
        var nestedBase = 0
        var out: [I2QTensorEntry] = []
        for (i, p) in e.parts.enumerated() {
            let n = p.length * cols, first = p.start * cols
            guard n % bs == 0 else {
                throw SchemeLayoutError("part \(p.name) holds \(n) values, not a multiple of the block size \(bs); its blocks would straddle parts")
            }
            let partBlocks = n / bs
            var comps = [try I2QTensorEntry.slice(packed, first / 2, n / 2, [n / 2]),
                         try I2QTensorEntry.slice(absmax, first / bs * absBytes, partBlocks * absBytes, [partBlocks])]
            var params = common
            if let nested {
                let count = (partBlocks + nestedBlockSize - 1) / nestedBlockSize
                comps.append(try I2QTensorEntry.slice(nested.absmax, nestedBase * 4, count * 4, [count]))
                comps.append(nested.code)
                nestedBase += count
                guard let o = try e.floatParam(Self.nestedOffsetKey(part: i)) else {
                    throw SchemeLayoutError("double quantization without a float param nested_offset.\(i) for part \(p.name)")
                }
                params.append((Self.nestedOffsetKey(), .float(o)))
            }
            out.append(e.partEntry(p, params: params, components: comps))
        }
        return out
    }

    public static func fuseConflict(_ es: [I2QTensorEntry]) -> String? {
        let a = es[0]
        guard es.allSatisfy({ $0.paramsEqual(a, except: nestedOffsetKey()) }) else { return "their quantization params differ" }
        let bs: Int
        do { bs = try a.intParam("blocksize") ?? defaultBlockSize } catch { return "\(a.name): \(error)" }
        for e in es where e.shape.reduce(1, *) % bs != 0 {
            return "\(e.name) holds \(e.shape.reduce(1, *)) values, not a multiple of the block size \(bs): a block would straddle two parts (re-quantizing would change values)"
        }
        guard es.allSatisfy({ $0.componentSignature == a.componentSignature }) else { return "their components differ" }
        if let c = a.component(Role.nestedCode), es.contains(where: { $0.component(Role.nestedCode)?.checksum != c.checksum }) {
            return "their nested code tables differ"
        }
        return nil
    }

    /// With double quantization each part's `nested_offset` becomes `nested_offset.<i>`.
    public static func fusedParams(_ es: [I2QTensorEntry]) throws -> [(String, I2QParam)] {
        var params = es[0].params
        guard es[0].component(Role.nestedAbsmax) != nil else { return params }
        params.removeAll { $0.0 == nestedOffsetKey() }
        for (i, e) in es.enumerated() {
            guard let o = e.param(nestedOffsetKey()) else { throw SchemeLayoutError("\(e.name): double quantization without a nested_offset param") }
            params.append((nestedOffsetKey(part: i), o))
        }
        return params
    }
}
