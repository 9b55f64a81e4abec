import CBLAS
import CI2QKernels
import Dispatch
import Foundation
import I2QCore
import I2QQuant

/// A 4-bit weight [rows, cols] read in place from a mapped `.i2q` file (no widened copy is kept).
///
/// Two code layouts (Formats/i2q-format.md):
/// - `table` (schemes nf4 / fp4, bitsandbytes): `packed` holds the row-major flattened tensor, two
///   codes per byte, the FIRST element in the HIGH nibble; blocks of `unit` consecutive elements of
///   the flattened tensor (they may straddle rows) share one absmax, stored as float32 or, with
///   double quantization, as uint8 codes restored as `dynamic[code] · nested[b / 256] + offset`.
///   Value: `code[q] · absmax` (bitsandbytes 0.50 `dequantize_4bit`, float32).
/// - `affine` (schemes affine_int4/3/2, AWQ-style): `packed` is [rows, cols·bits/8], each row a
///   little-endian bit stream of `bits`-bit codes (int4: the FIRST element in the LOW nibble); groups
///   of `unit` consecutive elements of a row share an f16 scale and a u8 zero point (2^(bits−1) when
///   the file has no `zeros`). Value: `(Float(q) − Float(z)) · Float(s)` (AutoAWQ's dequant, float32;
///   `AffineInt4.dequantizeRows`). The fused SIMD and int8 decode kernels take int4 only; int3/int2
///   rows decode through `dequantize` (one row into a buffer, then a float32 dot product).
///
/// `dequantize` reproduces those values exactly (bit for bit); the GEMV kernels compute the same
/// products in a different summation order (see `QuantGemv`).
struct PackedFourBit: @unchecked Sendable {
    enum Layout { case table(FourBitType), affine }

    let layout: Layout
    let rows: Int, cols: Int
    let packed: UnsafePointer<UInt8>
    /// Block size (table) or group size (affine).
    let unit: Int
    /// table: f32 [blocks] (no double quant) or u8 [blocks] codes (with `nested`).
    let absmax: UnsafeRawPointer?
    /// table with double quantization: f32 [ceil(blocks / 256)].
    let nested: UnsafeRawPointer?
    let offset: Float
    /// affine: f16 [rows, cols/unit].
    let scales: UnsafePointer<Float16>?
    /// affine: u8 [rows, cols/unit]; nil means zero point 8 (`zero_point` = 0).
    let zeros: UnsafePointer<UInt8>?
    /// Keeps the mapping of `packed`/`absmax`/... alive.
    let owner: AnyObject
    /// affine: code width (4, 3 or 2); table: 4.
    var bits = 4

    /// The absmax of table block `b` (bnb: float32 `dynamic[c] · nested + offset`, no FMA).
    @inline(__always)
    func tableScale(_ b: Int) -> Float {
        if let nested {
            let c = Int(absmax!.load(fromByteOffset: b, as: UInt8.self))
            return QuantTables.dynamic[c] * nested.loadUnaligned(fromByteOffset: (b >> 8) * 4, as: Float.self) + offset
        }
        return absmax!.loadUnaligned(fromByteOffset: b * 4, as: Float.self)
    }

    /// Scale and zero point of affine group `g` of row `r`.
    @inline(__always)
    func affineScale(_ r: Int, _ g: Int) -> (s: Float, z: Float) {
        let i = r * (cols / unit) + g
        return (Float(scales![i]), zeros.map { Float($0[i]) } ?? Float(1 << (bits - 1)))
    }

    /// Elements [first, first + count) of the row-major tensor as float32 — exactly the reference
    /// values (bnb `dequantize_4bit` / AutoAWQ dequantization).
    func dequantize(first: Int, count: Int, into out: UnsafeMutablePointer<Float>) {
        var i = first
        let end = first + count
        switch layout {
        case .table(let type):
            let code = QuantTables.code(type)
            var lut = (Float(0), Float(0), Float(0), Float(0), Float(0), Float(0), Float(0), Float(0),
                       Float(0), Float(0), Float(0), Float(0), Float(0), Float(0), Float(0), Float(0))
            withUnsafeMutableBytes(of: &lut) { raw in
                let t = raw.baseAddress!.assumingMemoryBound(to: Float.self)  // [16] code · absmax
                while i < end {
                    let b = i / unit
                    let stop = min(end, (b + 1) * unit)
                    let s = tableScale(b)
                    for q in 0..<16 { t[q] = code[q] * s }
                    for j in i..<stop {
                        let byte = packed[j >> 1]
                        out[j - first] = t[Int(j & 1 == 0 ? byte >> 4 : byte & 15)]
                    }
                    i = stop
                }
            }
        case .affine where bits == 4:
            while i < end {
                let r = i / cols, c = i - r * cols, g = c / unit
                let stop = min(end, r * cols + (g + 1) * unit)
                let (s, z) = affineScale(r, g)
                let row = packed + r * (cols / 2)
                for j in i..<stop {
                    let cc = j - r * cols
                    let byte = row[cc >> 1]
                    out[j - first] = (Float(cc & 1 == 0 ? byte & 15 : byte >> 4) - z) * s
                }
                i = stop
            }
        case .affine:
            // int3 / int2: codes from the row's bit stream (AffineInt4.code), the same float32 value.
            let b = bits, rowBytes = cols * b / 8
            while i < end {
                let r = i / cols, c = i - r * cols, g = c / unit
                let stop = min(end, r * cols + (g + 1) * unit)
                let (s, z) = affineScale(r, g)
                let row = packed + r * rowBytes
                var lut = (Float(0), Float(0), Float(0), Float(0), Float(0), Float(0), Float(0), Float(0))
                withUnsafeMutableBytes(of: &lut) { raw in
                    let t = raw.baseAddress!.assumingMemoryBound(to: Float.self)  // [8] (q − z) · s
                    for q in 0 ..< (1 << b) { t[q] = (Float(q) - z) * s }
                    for j in i..<stop { out[j - first] = t[Int(AffineInt4.code(row, j - r * cols, bits: b))] }
                }
                i = stop
            }
        }
    }

    /// Rows [first, first + n) as float32 [n, cols] into `dst`, split over the cores when large.
    func dequantizeRows(_ first: Int, _ n: Int, into dst: UnsafeMutablePointer<Float>) {
        let me = self, d = UnsafeSendable(dst), k = cols
        Kernels.parallelRows(n, cost: n * k) { range in
            me.dequantize(first: (first + range.lowerBound) * k, count: range.count * k, into: d.p + range.lowerBound * k)
        }
    }

    /// Rows can use the fused SIMD kernels: every 64-element run of a row lies in one block/group.
    var fastRows: Bool { bits == 4 && cols % 64 == 0 && unit % 64 == 0 }

    /// Table (NF4/FP4) rows the int8-activation decode kernel (`QuantGemv.Int8.tableRows`) accepts:
    /// blocks of 32 activations never straddle an absmax block.
    var int8TableRows: Bool {
        guard case .table = layout, absmax != nil else { return false }
        return cols % 32 == 0 && unit % 32 == 0 && unit > 0
    }

    /// Affine rows the int8-activation decode kernel (`QuantGemv.Int8`) accepts: blocks of 32
    /// activations never straddle a group.
    var int8Rows: Bool {
        guard case .affine = layout, bits == 4, scales != nil else { return false }
        return cols % 32 == 0 && unit % 32 == 0 && unit > 0 && cols % unit == 0
    }
}

/// Code tables as pointers (no array bounds checks in the kernels); written once, then only read.
enum QuantTables {
    nonisolated(unsafe) static let nf4: UnsafePointer<Float> = table(FourBitType.nf4.code)
    nonisolated(unsafe) static let fp4: UnsafePointer<Float> = table(FourBitType.fp4.code)
    nonisolated(unsafe) static let dynamic: UnsafePointer<Float> = table(DynamicMap.code)
    /// The int8 code tables of the int8 decode kernel: t[q] = round(127 · code[q]) (half away from zero).
    nonisolated(unsafe) static let nf4Int8: UnsafePointer<Int8> = int8(FourBitType.nf4.code)
    nonisolated(unsafe) static let fp4Int8: UnsafePointer<Int8> = int8(FourBitType.fp4.code)
    static func int8Code(_ t: FourBitType) -> UnsafePointer<Int8> { t == .nf4 ? nf4Int8 : fp4Int8 }
    private static func int8(_ v: [Float]) -> UnsafePointer<Int8> {
        let p = UnsafeMutablePointer<Int8>.allocate(capacity: v.count)
        for (i, c) in v.enumerated() { p[i] = Int8((127 * Double(c)).rounded()) }
        return UnsafePointer(p)
    }
    /// 16 splat vectors of each code table (the select tree of `QuantGemv.lookup`).
    nonisolated(unsafe) static let nf4Splat: UnsafePointer<SIMD16<Float>> = splat(FourBitType.nf4.code)
    nonisolated(unsafe) static let fp4Splat: UnsafePointer<SIMD16<Float>> = splat(FourBitType.fp4.code)

    static func code(_ t: FourBitType) -> UnsafePointer<Float> { t == .nf4 ? nf4 : fp4 }
    static func splats(_ t: FourBitType) -> UnsafePointer<SIMD16<Float>> { t == .nf4 ? nf4Splat : fp4Splat }

    private static func table(_ v: [Float]) -> UnsafePointer<Float> {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: v.count)
        p.initialize(from: v, count: v.count)
        return UnsafePointer(p)
    }
    private static func splat(_ v: [Float]) -> UnsafePointer<SIMD16<Float>> {
        let p = UnsafeMutablePointer<SIMD16<Float>>.allocate(capacity: 16)
        for i in 0..<16 { p[i] = SIMD16(repeating: v[i]) }
        return UnsafePointer(p)
    }
}

/// Matrix products with 4-bit weights.
///
/// Reference: dequantize-then-`F.linear` in float32 — bitsandbytes 0.50 `dequantize_4bit` for
/// nf4/fp4, AutoAWQ's `(q − z) · s` for affine_int4 — i.e. `Matmul.linear` on
/// `PackedFourBit.dequantize`'s output. The prefill path (m > 1) multiplies exactly those
/// dequantized rows with sgemm (same results as Matmul.linear). The decode GEMV (m = 1) fuses the
/// dequantization into the dot product: per 64-element run it sums `code[q] · x` (table) or
/// `(q − z) · x` (affine, exact small integers) and multiplies by the run's scale once, so it
/// differs from the reference by float32 rounding of the sums only: |Δy| ≲ k · 2⁻²³ · Σ|w·x|
/// (tests: ≤ 1e-5 relative to Σ|w||x|, QuantKernelTests).
///
/// 4-bit decode by default uses int8 activations instead (`Int8`, when the CPU has AVX2 or AVX-512
/// VNNI): affine int4 as llama.cpp's Q4_1 × Q8_1, |Δy| ≤ Σ|w|·max|x_block|/254 per row plus float32
/// rounding (Int8GemvTests); NF4/FP4 as IQ4_NL × Q8_0 (an int8 code table, Table4GemvTests). `exactDecode` (env `I2Q_EXACT_GEMV=1`) forces the float path above;
/// prefill (m > 1) always uses the exact dequantized tiles.
enum QuantGemv {
    static let threads = Gemv.threads

    /// Forces the exact float32 decode GEMV for affine int4 weights (env `I2Q_EXACT_GEMV=1`, or set
    /// by code that compares decode outputs against the dequantize-then-multiply reference).
    nonisolated(unsafe) static var exactDecode: Bool = ProcessInfo.processInfo.environment["I2Q_EXACT_GEMV"] == "1"

    /// Whether `runMany` uses the int8-activation kernel for affine rows that allow it.
    static var int8Decode: Bool { !exactDecode && Int8.available }

    /// y[n] (+)= W[n, k] · x[k] (decode).
    static func run(_ w: PackedFourBit, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, accumulate: Bool) {
        runMany([(w, y)], x: x, accumulate: accumulate)
    }

    /// Several products sharing x[k] (q/k/v or gate/up) in one dispatch; rows split over the cores.
    static func runMany(_ items: [(w: PackedFourBit, y: UnsafeMutablePointer<Float>)], x: UnsafePointer<Float>,
                        accumulate: Bool = false) {
        guard let k = items.first?.w.cols else { return }
        precondition(items.allSatisfy { $0.w.cols == k }, "QuantGemv.runMany: inputs of different widths")
        // x permuted into the lane order of the fused kernels, once per call: [k] f32 per layout.
        let needTable = items.contains { if case .table = $0.w.layout { return $0.w.fastRows }; return false }
        let needAffine = items.contains { if case .affine = $0.w.layout { return $0.w.fastRows }; return false }
        let int8 = int8Decode && items.contains { $0.w.int8Rows || $0.w.int8TableRows }
        let xq = int8 ? Int8.Activations(x, k: k) : nil  // x quantized once for every int8 item
        let needAffineFloat = items.contains { if case .affine = $0.w.layout { return $0.w.fastRows && !(int8 && $0.w.int8Rows) }; return false }
        let needTableFloat = items.contains { if case .table = $0.w.layout { return $0.w.fastRows && !(int8 && $0.w.int8TableRows) }; return false }
        let xt = needTable && needTableFloat ? permuted(x, k: k, highFirst: true) : nil
        let xa = needAffine && needAffineFloat ? permuted(x, k: k, highFirst: false) : nil
        defer { xt?.deallocate(); xa?.deallocate() }
        let total = items.reduce(0) { $0 + $1.w.rows }
        let box = UnsafeSendable((items, x, xt.map { UnsafePointer($0) }, xa.map { UnsafePointer($0) }))
        let parts = total * k >= 1 << 15 ? threads : 1
        let rowsPer = (total + parts - 1) / parts
        WorkerPool.run(parts) { part in
            let (items, x, xt, xa) = box.p
            let lo = part * rowsPer, hi = min(total, lo + rowsPer)
            var base = 0
            var buf: UnsafeMutablePointer<Float>? = nil  // [k] one dequantized row (odd shapes only)
            defer { buf?.deallocate() }
            for it in items {
                let a = max(lo, base), b = min(hi, base + it.w.rows)
                base += it.w.rows
                guard a < b else { continue }
                let r0 = a - (base - it.w.rows), r1 = b - (base - it.w.rows)
                let w = it.w, y = it.y
                if let xq, w.int8Rows {
                    Int8.rows(w, r0..<r1, xq, y, accumulate: accumulate)
                    continue
                }
                if let xq, w.int8TableRows {
                    Int8.tableRows(w, r0..<r1, xq, y, accumulate: accumulate)
                    continue
                }
                for r in r0..<r1 {
                    let s: Float
                    if w.fastRows, case .table(let type) = w.layout {
                        s = tableRow(w, r, xt!, QuantTables.splats(type))
                    } else if w.fastRows {
                        s = affineRow(w, r, xa!)
                    } else {
                        if buf == nil { buf = .allocate(capacity: k) }
                        w.dequantize(first: r * k, count: k, into: buf!)
                        s = dot(buf!, x, k)
                    }
                    y[r] = accumulate ? y[r] + s : s
                }
            }
        }
    }

    /// y[m, n] (+)= x[m, k] · Wᵀ for m > 1 (prefill): tiles of rows dequantized into `scratch`
    /// (at most ~4 MiB, never the whole weight), each multiplied with sgemm.
    static func linear(_ w: PackedFourBit, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, m: Int,
                       accumulate: Bool, scratch: UnsafeMutablePointer<Float>, tileRows: Int) {
        tiledLinear(w, x: x, y: y, m: m, accumulate: accumulate, scratch: scratch, tileRows: tileRows)
    }

    /// y[m, n] (+)= x[m, k] · Wᵀ for any weight that produces float32 rows on demand: row tiles of
    /// `tileRows` dequantized into `scratch` ([tileRows, k] f32), each multiplied with sgemm — the same
    /// products as `Matmul.linear` on the whole dequantized weight (float32 rounding of the sums only).
    /// `ldy`: y's row stride (default n; a fused weight's part writes into the strided [m, Σ rows] output).
    static func tiledLinear<W: DequantizableRows>(_ w: W, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, m: Int,
                                                  ldy: Int? = nil, accumulate: Bool, scratch: UnsafeMutablePointer<Float>, tileRows: Int) {
        let n = w.rows, k = w.cols, ldc = ldy ?? w.rows
        let panels = (n + 15) / 16
        let parts = m * n * k >= Matmul.splitThreshold ? min(Gemv.threads, panels) : 1
        // Rows split over the pool (issue 19): each part dequantizes and multiplies its own tiles
        // (the dequantization is parallel too); every output column is still one sgemm over all k.
        let box = UnsafeSendable((w, x, y, scratch))
        WorkerPool.run(parts) { part in
            let (w, x, y, scratch) = box.p
            let lo = panels * part / parts * 16, hi = min(n, panels * (part + 1) / parts * 16)
            guard lo < hi else { return }
            let tile = max(1, min(tileRows, (hi - lo + 15) / 16 * 16))
            let buf = parts == 1 ? scratch : UnsafeMutablePointer<Float>.allocate(capacity: tile * k)  // [tile, k] f32
            defer { if parts > 1 { buf.deallocate() } }
            var r0 = lo
            while r0 < hi {
                let t = min(tile, hi - r0)
                w.dequantizeRows(r0, t, into: buf)  // [t, k] f32
                Matmul.serialSGEMM(transB: true, m: m, n: t, k: k, alpha: 1, a: x, lda: k, b: buf, ldb: k,
                                   beta: accumulate ? 1 : 0, c: y + r0, ldc: ldc)
                r0 += t
            }
        }
    }

    /// Rows per prefill tile: about 1 Mi floats (4 MiB) of dequantized weight.
    static func tileRows(rows: Int, cols: Int) -> Int { max(1, min(rows, (1 << 20) / max(cols, 1))) }

    // MARK: - Fused row kernels

    /// x in the order the kernels consume codes. A 128-element chunk is read as 16 UInt32 lanes;
    /// lane l holds elements 8l…8l+7 and its nibble j (bits 4j…4j+3) is element 8l + j (low nibble
    /// first, affine) or 8l + (j ^ 1) (high nibble first, bnb). xp[c + 16j + l] = x[c + 8l + e(j)].
    /// A last 64-element chunk is laid out like a full one whose lanes 8…15 are zero (the kernels
    /// read it as a 128-element chunk with zero-extended weights).
    static func permuted(_ x: UnsafePointer<Float>, k: Int, highFirst: Bool) -> UnsafeMutablePointer<Float> {
        let xp = UnsafeMutablePointer<Float>.allocate(capacity: k + 64)  // [k rounded up to 128] f32
        let flip = highFirst ? 1 : 0
        var c = 0
        while c + 128 <= k {
            for j in 0..<8 { for l in 0..<16 { xp[c + 16 * j + l] = x[c + 8 * l + (j ^ flip)] } }
            c += 128
        }
        if c + 64 <= k {
            for j in 0..<8 { for l in 0..<16 { xp[c + 16 * j + l] = l < 8 ? x[c + 8 * l + (j ^ flip)] : 0 } }
        }
        return xp
    }

    /// Σ_c (q − z)·s·x over affine row r (k % 64 == 0, group % 64 == 0). (q − z) is formed exactly
    /// as a float: the bits 0x4B000000 | q are the float 2²³ + q, minus (2²³ + z).
    @inline(__always)
    static func affineRow(_ w: PackedFourBit, _ r: Int, _ xp: UnsafePointer<Float>) -> Float {
        let k = w.cols, g = w.unit, gpr = k / g
        let sc = w.scales! + r * gpr
        let zs = w.zeros.map { $0 + r * gpr }
        let row = UnsafeRawPointer(w.packed + r * (k / 2))
        let x = UnsafeRawPointer(xp)
        let mask = SIMD16<UInt32>(repeating: 15), magic = SIMD16<UInt32>(repeating: 0x4B00_0000)
        @inline(__always) func zoff(_ i: Int) -> Float { 8_388_608 + (zs.map { Float($0[i]) } ?? 8) }
        var total = SIMD16<Float>()
        var c = 0
        while c < k {
            // A last 64-element chunk: the upper 8 lanes are zero weights against zero x.
            let full = c + 128 <= k
            let wv = full ? row.loadUnaligned(fromByteOffset: c / 2, as: SIMD16<UInt32>.self)
                          : SIMD16(lowHalf: row.loadUnaligned(fromByteOffset: c / 2, as: SIMD8<UInt32>.self), highHalf: SIMD8())
            let g0 = c / g, g1 = full ? (c + 64) / g : g0
            let sv = SIMD16<Float>(lowHalf: SIMD8(repeating: Float(sc[g0])), highHalf: SIMD8(repeating: Float(sc[g1])))
            let zv = SIMD16<Float>(lowHalf: SIMD8(repeating: zoff(g0)), highHalf: SIMD8(repeating: zoff(g1)))
            let xb = x + c * 4
            var a0 = SIMD16<Float>(), a1 = SIMD16<Float>()
            for j in stride(from: 0, to: 8, by: 2) {
                let q0 = ((wv &>> UInt32(4 * j)) & mask) | magic
                let q1 = ((wv &>> UInt32(4 * j + 4)) & mask) | magic
                a0 += (unsafeBitCast(q0, to: SIMD16<Float>.self) - zv) * xb.loadUnaligned(fromByteOffset: j * 64, as: SIMD16<Float>.self)
                a1 += (unsafeBitCast(q1, to: SIMD16<Float>.self) - zv) * xb.loadUnaligned(fromByteOffset: j * 64 + 64, as: SIMD16<Float>.self)
            }
            total += (a0 + a1) * sv  // multiply, then add: no FMA, so the portable build needs no fmaf call
            c += 128
        }
        return hsum(total)
    }

    /// Σ_c code[q]·absmax·x over table row r (k % 64 == 0, block % 64 == 0: each 64-element run of
    /// the row lies in one block of the flattened tensor).
    @inline(__always)
    static func tableRow(_ w: PackedFourBit, _ r: Int, _ xp: UnsafePointer<Float>, _ t: UnsafePointer<SIMD16<Float>>) -> Float {
        let k = w.cols, bs = w.unit, flat = r * k
        let row = UnsafeRawPointer(w.packed + flat / 2)
        let x = UnsafeRawPointer(xp)
        let mask = SIMD16<UInt32>(repeating: 15)
        var total = SIMD16<Float>()
        var c = 0
        while c < k {
            let full = c + 128 <= k  // else a last 64-element chunk, zero-extended (see `permuted`)
            let wv = full ? row.loadUnaligned(fromByteOffset: c / 2, as: SIMD16<UInt32>.self)
                          : SIMD16(lowHalf: row.loadUnaligned(fromByteOffset: c / 2, as: SIMD8<UInt32>.self), highHalf: SIMD8())
            let s0 = w.tableScale((flat + c) / bs)
            let sv = SIMD16<Float>(lowHalf: SIMD8(repeating: s0),
                                   highHalf: SIMD8(repeating: full ? w.tableScale((flat + c + 64) / bs) : 0))
            let xb = x + c * 4
            var a0 = SIMD16<Float>(), a1 = SIMD16<Float>()
            for j in 0..<8 {
                let v = lookup((wv &>> UInt32(4 * j)) & mask, t)
                if j & 1 == 0 {
                    a0 += v * xb.loadUnaligned(fromByteOffset: j * 64, as: SIMD16<Float>.self)
                } else {
                    a1 += v * xb.loadUnaligned(fromByteOffset: j * 64, as: SIMD16<Float>.self)
                }
            }
            total += (a0 + a1) * sv  // multiply, then add: no FMA, so the portable build needs no fmaf call
            c += 128
        }
        return hsum(total)
    }

    /// code[q] per lane for q in 0...15: a 4-level select tree over the 16 splat vectors (Swift has
    /// no inlined variable permute; masked blends are single instructions on AVX-512).
    @inline(__always)
    static func lookup(_ q: SIMD16<UInt32>, _ t: UnsafePointer<SIMD16<Float>>) -> SIMD16<Float> {
        let zero = SIMD16<UInt32>()
        let m0 = (q & SIMD16(repeating: 1)) .!= zero, m1 = (q & SIMD16(repeating: 2)) .!= zero
        let m2 = (q & SIMD16(repeating: 4)) .!= zero, m3 = (q & SIMD16(repeating: 8)) .!= zero
        let a0 = t[0].replacing(with: t[1], where: m0), a1 = t[2].replacing(with: t[3], where: m0)
        let a2 = t[4].replacing(with: t[5], where: m0), a3 = t[6].replacing(with: t[7], where: m0)
        let a4 = t[8].replacing(with: t[9], where: m0), a5 = t[10].replacing(with: t[11], where: m0)
        let a6 = t[12].replacing(with: t[13], where: m0), a7 = t[14].replacing(with: t[15], where: m0)
        let b0 = a0.replacing(with: a1, where: m1), b1 = a2.replacing(with: a3, where: m1)
        let b2 = a4.replacing(with: a5, where: m1), b3 = a6.replacing(with: a7, where: m1)
        let c0 = b0.replacing(with: b1, where: m2), c1 = b2.replacing(with: b3, where: m2)
        return c0.replacing(with: c1, where: m3)
    }

    @inline(__always)
    static func hsum(_ v: SIMD16<Float>) -> Float { hsum8(v.lowHalf + v.highHalf) }

    @inline(__always)
    static func hsum8(_ v: SIMD8<Float>) -> Float {
        let h = v.lowHalf + v.highHalf
        return (h[0] + h[2]) + (h[1] + h[3])
    }

    /// Σ a·b over k floats (decode attention's q·k): a one-row `i2q_gemv` (gemv16.c, dispatched;
    /// the same 16-lane order and tree as `hsum`).
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ k: Int) -> Float {
        var y: Float = 0
        i2q_gemv(a, Int32(I2Q_W_F32), b, &y, Int64(k), 0, 1, 0, Int32(I2Q_IMPL_AUTO))
        return y
    }
}

extension QuantGemv {
    /// The int8-activation decode GEMV for affine int4 weights (C kernel `i2q_q4a_gemv`,
    /// Sources/CI2QKernels/q4a_gemv.c).
    ///
    /// Model of the approximation: llama.cpp's Q4_1 × Q8_1 dot product — x quantized once per call
    /// to int8 in blocks of 32 (d = max|x_b|/127, round to nearest even), weight codes × int8 summed
    /// exactly in int32 (AVX-512 VNNI `vpdpbusd`, or AVX2 `vpmaddubsw` + `vpmaddwd`), the zero point applied in integers, then scaled
    /// by d·s in float32. Exact reference: AutoAWQ's float dequantization `(q − z)·s` times the
    /// float32 x (`PackedFourBit.dequantize`; the float path of `runMany`). The result is the exact
    /// product of the dequantized weights with the dequantized activations x̂ up to float32
    /// rounding, so per row |y − y_ref| ≤ Σ_c |w_c|·|x_c − x̂_c| ≤ Σ_c |w_c|·max|x_block(c)|/254
    /// (+ float32 rounding). The AVX-512 VNNI, AVX2 and portable scalar C implementations give
    /// bit-identical results (Int8GemvTests runs every one the CPU supports).
    enum Int8 {
        /// The kernel's implementations (C `I2Q_IMPL_*`), chosen at run time by the CPU's features.
        enum Impl: Int32, CaseIterable, Sendable, CustomStringConvertible {
            case scalar = 1, avx2 = 3, vnni = 2
            public var description: String {
                switch self { case .scalar: return "scalar"; case .avx2: return "avx2+fma+f16c"; case .vnni: return "avx512-vnni" }
            }
        }
        /// The implementation decode uses on this CPU (the fastest it supports).
        static let best = Impl(rawValue: i2q_q4a_impl(Int32(I2Q_IMPL_AUTO))) ?? .scalar
        /// Every implementation this CPU can run (the scalar one always): what the tests compare.
        static let supported: [Impl] = Impl.allCases.filter { i2q_q4a_impl($0.rawValue) == $0.rawValue }
        /// The CPU has a SIMD kernel (AVX2 or AVX-512 VNNI); the scalar C code is far slower than the
        /// float path, so without one decode keeps the float path.
        static let available = best != .scalar

        /// x[k] quantized for the kernel (i2q_q8_quantize); 64-byte aligned, freed on deinit.
        final class Activations: @unchecked Sendable {
            let k: Int
            let raw: UnsafeMutableRawPointer  // [i2q_q8_bytes(k)] bytes
            init(_ x: UnsafePointer<Float>, k: Int) {
                self.k = k
                raw = .allocate(byteCount: max(64, i2q_q8_bytes(Int64(k))), alignment: 64)
                i2q_q8_quantize(x, Int64(k), raw)
            }
            deinit { raw.deallocate() }

            /// x̂ = d·q, the activations the kernel actually multiplies: [k].
            func dequantized() -> [Float] {
                [Float](unsafeUninitializedCapacity: k) { b, n in
                    i2q_q8_dequantize(raw, Int64(k), b.baseAddress!)
                    n = k
                }
            }
        }

        /// y[r] (+)= row r of the NF4/FP4 weight `w` · x̂ for r in `range` (`w.int8TableRows`,
        /// `x.k == w.cols`), the code table replaced by its int8 version t/127 (C `i2q_table4_gemv`:
        /// llama.cpp's IQ4_NL × Q8_0 idea). Per row |y − y_ref| ≤ Σ_c (|w̃_c|·|x_c − x̂_c| +
        /// absmax_c/254·|x_c|) + float32 rounding (Table4GemvTests).
        static func tableRows(_ w: PackedFourBit, _ range: Range<Int>, _ x: Activations, _ y: UnsafeMutablePointer<Float>,
                              accumulate: Bool, impl: Impl? = nil) {
            guard case .table(let type) = w.layout, w.int8TableRows, x.k == w.cols else {
                preconditionFailure("QuantGemv.Int8.tableRows: weight not int8-eligible")
            }
            var a = i2q_absmax(f32: w.nested == nil ? w.absmax!.assumingMemoryBound(to: Float.self) : nil,
                               codes: w.nested == nil ? nil : w.absmax!.assumingMemoryBound(to: UInt8.self),
                               nested: w.nested?.assumingMemoryBound(to: Float.self), dynamic: QuantTables.dynamic, offset: w.offset)
            i2q_table4_gemv(w.packed, Int64(w.cols), Int64(w.unit), &a, QuantTables.int8Code(type), Int64(range.lowerBound),
                            Int64(range.upperBound), x.raw, y, accumulate ? 1 : 0, impl?.rawValue ?? Int32(I2Q_IMPL_AUTO))
        }

        /// y[r] (+)= row r of `w` · x̂ for r in `range` (`w.int8Rows`, `x.k == w.cols`).
        static func rows(_ w: PackedFourBit, _ range: Range<Int>, _ x: Activations, _ y: UnsafeMutablePointer<Float>,
                         accumulate: Bool, impl: Impl? = nil) {
            precondition(w.int8Rows && x.k == w.cols, "QuantGemv.Int8.rows: weight not int8-eligible")
            w.scales!.withMemoryRebound(to: UInt16.self, capacity: w.rows * (w.cols / w.unit)) { sc in  // f16 bits
                i2q_q4a_gemv(w.packed, sc, w.zeros, Int64(w.cols), Int64(w.unit), Int64(range.lowerBound),
                             Int64(range.upperBound), x.raw, y, accumulate ? 1 : 0,
                             impl?.rawValue ?? Int32(I2Q_IMPL_AUTO))
            }
        }
    }
}


/// A quantized weight [rows, cols] that writes its rows as float32 on demand (4-bit packed, ggml blocks):
/// what the tiled prefill product needs.
protocol DequantizableRows {
    var rows: Int { get }
    var cols: Int { get }
    func dequantizeRows(_ first: Int, _ n: Int, into dst: UnsafeMutablePointer<Float>)
}

extension PackedFourBit: DequantizableRows {}
extension GGMLRows: DequantizableRows {}
