/// Q4_K (super-block of 256 = 8 sub-blocks of 32; 144 bytes: f16 `d`, f16 `dmin`, 12 bytes of
/// six-bit sub-block scales and mins, 128 bytes of nibbles — byte 32·(g/2) + e%32 holds element e
/// of sub-block g in its low (g even) or high nibble; x ≈ d·sc[g]·q − dmin·m[g]).
/// Bit-exact to ggml's `quantize_row_q4_K_ref` (no importance) and `quantize_row_q4_K_impl`
/// (importance-weighted), i.e. to `ggml_quantize_chunk(GGML_TYPE_Q4_K, …)` — checked byte for byte
/// against Tests/Fixtures/kquant (scripts/fixtures/make_kquant_fixtures.py).
enum GGMLQ4_K {
    static let bytes = 144

    /// `quantize_row_q4_K_ref`. x: [blocks × 256]; y: [blocks × 144].
    static func ref(_ x: UnsafePointer<Float>, blocks: Int, _ y: UnsafeMutableRawPointer, _ s: GGMLQuantScratch) {
        for i in 0..<blocks {
            GGMLKQuant.refScalesMins(x + 256 * i, nmax: 15, rmin: -1, rdelta: 0.1, nstep: 20, y + 144 * i, s)
            finish(x + 256 * i, y + 144 * i, s)
        }
    }

    /// `quantize_row_q4_K_impl` for one row (n a multiple of 256). x, qw: [n]; y: [n / 256 × 144].
    static func impl(_ x: UnsafePointer<Float>, _ n: Int, _ y: UnsafeMutableRawPointer, _ qw: UnsafePointer<Float>,
                     _ s: GGMLQuantScratch) {
        for i in 0..<(n / 256) {
            GGMLKQuant.implScalesMins(x + 256 * i, qw + 256 * i, nmax: 15, clampTo63: false, y + 144 * i, s)
            finish(x + 256 * i, y + 144 * i, s)
        }
    }

    /// Requantizes with the stored (f16) scales and packs the nibbles. s.L holds the codes of
    /// sub-blocks whose scale came out 0 (kept from the search, as ggml does).
    @inline(__always)
    static func finish(_ x: UnsafePointer<Float>, _ o: UnsafeMutableRawPointer, _ s: GGMLQuantScratch) {
        GGMLKQuant.requantize(x, o, nmax: 15, s)
        for j in stride(from: 0, to: 256, by: 64) {
            for l in 0..<32 { o.storeBytes(of: s.L[j + l] | (s.L[j + l + 32] << 4), toByteOffset: 16 + j / 2 + l, as: UInt8.self) }
        }
    }
}

/// What Q4_K and Q5_K share: the sub-block scale/min search and the requantization.
enum GGMLKQuant {
    /// The scale/min half of `quantize_row_q4_K_ref` / `q5_K_ref` for one super-block: per sub-block,
    /// weights av_x + |x| (av_x = √(Σx²/32)), `make_qkx2_quants(32, nmax, …)`; the 8 scales and mins
    /// as six-bit codes of max/63; d, dmin (f16) and the 12 scale bytes written to o[0..<16].
    static func refScalesMins(_ x: UnsafePointer<Float>, nmax: Int32, rmin: Float, rdelta: Float, nstep: Int,
                              _ o: UnsafeMutableRawPointer, _ s: GGMLQuantScratch) {
        var maxScale: Float = 0, maxMin: Float = 0
        for j in 0..<8 {
            let xj = x + 32 * j
            var sumX2: Float = 0
            for l in 0..<32 { sumX2 += xj[l] * xj[l] }
            let avX = (sumX2 / 32).squareRoot()
            for l in 0..<32 { s.weights[l] = avX + abs(xj[l]) }
            var m: Float = 0
            s.scales[j] = GGMLQuantMath.makeQkxQuants(32, nmax, xj, s.weights, s.L + 32 * j, &m, s.laux, rmin, rdelta, nstep, qkx3: false)
            s.mins[j] = m
            if s.scales[j] > maxScale { maxScale = s.scales[j] }
            if m > maxMin { maxMin = m }
        }
        let invScale: Float = maxScale > 0 ? 63 / maxScale : 0
        let invMin: Float = maxMin > 0 ? 63 / maxMin : 0
        for j in 0..<8 {
            s.ls[j] = Swift.min(63, UInt8(truncatingIfNeeded: GGMLQuantMath.nearestInt(invScale * s.scales[j])))
            s.lm[j] = Swift.min(63, UInt8(truncatingIfNeeded: GGMLQuantMath.nearestInt(invMin * s.mins[j])))
        }
        store(o, d: GGMLQuantMath.fp16(maxScale / 63), dmin: GGMLQuantMath.fp16(maxMin / 63), s)
    }

    /// The scale/min half of `quantize_row_q4_K_impl` / `q5_K_impl`: σ² = 2·Σx²/256 over the
    /// super-block, weights qw·√(σ² + x²), `make_qkx3_quants(32, nmax, …, −0.9, 0.05, 36)`, then the
    /// scales and mins themselves quantized by `make_qp_quants(8, 63, …, sw)` (sw: each sub-block's
    /// weight sum). Q5_K clamps the codes to 63 (Q4_K does not; make_qp_quants stays ≤ 63 anyway).
    static func implScalesMins(_ x: UnsafePointer<Float>, _ qw: UnsafePointer<Float>, nmax: Int32, clampTo63: Bool,
                               _ o: UnsafeMutableRawPointer, _ s: GGMLQuantScratch) {
        var sumX2: Float = 0
        for l in 0..<256 { sumX2 += x[l] * x[l] }
        let sigma2 = 2 * sumX2 / 256
        for j in 0..<8 {
            let xj = x + 32 * j, qj = qw + 32 * j
            for l in 0..<32 { s.weights[l] = qj[l] * (sigma2 + xj[l] * xj[l]).squareRoot() }
            var sumw: Float = 0
            for l in 0..<32 { sumw += s.weights[l] }
            s.sw[j] = sumw
            var m: Float = 0
            s.scales[j] = GGMLQuantMath.makeQkxQuants(32, nmax, xj, s.weights, s.L + 32 * j, &m, s.laux, -0.9, 0.05, 36, qkx3: true)
            s.mins[j] = m
        }
        let dBlock = GGMLQuantMath.makeQpQuants(8, 63, s.scales, s.ls, s.sw)
        let mBlock = GGMLQuantMath.makeQpQuants(8, 63, s.mins, s.lm, s.sw)
        if clampTo63 {
            for j in 0..<8 { s.ls[j] = Swift.min(63, s.ls[j]); s.lm[j] = Swift.min(63, s.lm[j]) }
        }
        store(o, d: GGMLQuantMath.fp16(dBlock), dmin: GGMLQuantMath.fp16(mBlock), s)
    }

    /// o[0..<4] = d, dmin (f16 LE); o[4..<16] = the packed s.ls / s.lm.
    @inline(__always)
    static func store(_ o: UnsafeMutableRawPointer, d: UInt16, dmin: UInt16, _ s: GGMLQuantScratch) {
        o.storeBytes(of: d.littleEndian, as: UInt16.self)
        o.storeBytes(of: dmin.littleEndian, toByteOffset: 2, as: UInt16.self)
        GGMLQuantMath.packScaleMin(s.ls, s.lm, (o + 4).assumingMemoryBound(to: UInt8.self))
    }

    /// Codes from the stored scales: sub-block j with d·sc ≠ 0 gets
    /// `clamp(nearest_int((x + dmin·m) / (d·sc)), 0, nmax)` into s.L; others keep the search's codes.
    @inline(__always)
    static func requantize(_ x: UnsafePointer<Float>, _ o: UnsafeMutableRawPointer, nmax: Int32, _ s: GGMLQuantScratch) {
        let scales = UnsafePointer((o + 4).assumingMemoryBound(to: UInt8.self))
        let d0 = GGMLQuantMath.fp32(UInt16(littleEndian: o.loadUnaligned(as: UInt16.self)))
        let m0 = GGMLQuantMath.fp32(UInt16(littleEndian: o.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
        for j in 0..<8 {
            let (sc, m) = GGMLQuantMath.scaleMin(j, scales)
            let d = d0 * Float(sc)
            if d == 0 { continue }
            let dm = m0 * Float(m)
            for ii in 0..<32 {
                let l = GGMLQuantMath.nearestInt((x[32 * j + ii] + dm) / d)
                s.L[32 * j + ii] = UInt8(truncatingIfNeeded: Swift.max(0, Swift.min(nmax, l)))
            }
        }
    }
}
