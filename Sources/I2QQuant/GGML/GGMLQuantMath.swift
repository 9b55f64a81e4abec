/// The scalar helpers of ggml's quantizers (ggml/src/ggml-quants.c: `nearest_int`, `make_qx_quants`,
/// `make_qkx2_quants`, `make_qkx3_quants`, `make_qp_quants`, `get_scale_min_k4`, GGML_FP32_TO_FP16),
/// as the same float32 operations in the same order.
///
/// The reference is llama-cpp-python 0.3.36's libggml-base.so (x86-64, SSE2 code only: no FMA or
/// AVX instruction in it, so no multiply-add is contracted there), and Swift does not contract
/// `a * b + c` either: each `*`, `+`, `/` below is one rounded float32 operation. C's implicit
/// conversions are spelled out: int → float where C promotes, and float → small integer as x86-64
/// gcc does it (`cvttss2si` to 32 bits, then the low byte), so out-of-range values wrap the same way.
enum GGMLQuantMath {
    /// GROUP_MAX_EPS: a group whose largest |x| is below this is all zero.
    static let groupMaxEps: Float = 1e-15

    /// `nearest_int`: round half to even through the 1.5·2^23 magic number, taking the low 23 bits —
    /// the bit trick itself, so values outside ±2^22 wrap exactly as in ggml (its assert is compiled out).
    @inline(__always)
    static func nearestInt(_ f: Float) -> Int32 {
        let v = f + 12582912
        return Int32(bitPattern: v.bitPattern & 0x007F_FFFF) - 0x0040_0000
    }

    /// C's float → int32 on x86-64 (`cvttss2si`): truncation; NaN and out-of-range give INT32_MIN.
    @inline(__always)
    static func cvtt(_ f: Float) -> Int32 {
        guard f.isFinite, f > -2_147_483_904, f < 2_147_483_648 else { return Int32.min }
        return Int32(f)
    }

    /// `(int8_t)f` / `(uint8_t)f` as gcc compiles them: cvttss2si, then the low byte.
    @inline(__always)
    static func lowByte(_ f: Float) -> UInt8 { UInt8(truncatingIfNeeded: cvtt(f)) }

    /// GGML_FP32_TO_FP16 (ggml's software conversion: round to nearest even, ±inf on overflow,
    /// NaN → 0x7E00 with the sign). The scales fed to it here are never NaN for finite input.
    @inline(__always)
    static func fp16(_ f: Float) -> UInt16 {
        f.isNaN ? UInt16(truncatingIfNeeded: f.bitPattern >> 16) & 0x8000 | 0x7E00 : Float16(f).bitPattern
    }

    /// GGML_FP16_TO_FP32 (exact).
    @inline(__always)
    static func fp32(_ h: UInt16) -> Float { Float(Float16(bitPattern: h)) }

    /// `make_qx_quants(n, nmax, x, L, rmse_type = 1, qw)`: a symmetric scale for codes
    /// L ∈ [0, 2·nmax) (stored as l + nmax), weighted least squares over 19 trial scales.
    /// Weights `qw[i]`, or x² when qw is nil. x: [n]; L: [n] (written).
    static func makeQxQuants(_ n: Int, _ nmax: Int32, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<Int8>,
                             _ qw: UnsafePointer<Float>?) -> Float {
        var max: Float = 0, amax: Float = 0
        for i in 0..<n {
            let ax = abs(x[i])
            if ax > amax { amax = ax; max = x[i] }
        }
        if amax < groupMaxEps {
            for i in 0..<n { L[i] = 0 }
            return 0
        }
        let fnmax = Float(nmax)
        @inline(__always) func w(_ i: Int) -> Float { qw.map { $0[i] } ?? x[i] * x[i] }
        @inline(__always) func code(_ iscale: Float, _ i: Int) -> Int32 { Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(iscale * x[i]))) }
        var iscale = -fnmax / max
        var sumlx: Float = 0, suml2: Float = 0
        for i in 0..<n {
            let l = code(iscale, i)
            L[i] = Int8(truncatingIfNeeded: l + nmax)
            let fl = Float(l), wi = w(i)
            sumlx += wi * x[i] * fl
            suml2 += wi * fl * fl
        }
        var scale: Float = suml2 != 0 ? sumlx / suml2 : 0
        var best = scale * sumlx
        for s in -9...9 where s != 0 {
            iscale = -(fnmax + Float(0.1) * Float(s)) / max
            sumlx = 0; suml2 = 0
            for i in 0..<n {
                let fl = Float(code(iscale, i)), wi = w(i)
                sumlx += wi * x[i] * fl
                suml2 += wi * fl * fl
            }
            if suml2 > 0 && sumlx * sumlx > best * suml2 {
                for i in 0..<n { L[i] = Int8(truncatingIfNeeded: nmax + code(iscale, i)) }
                scale = sumlx / suml2
                best = scale * sumlx
            }
        }
        return scale
    }

    /// `make_q3_quants(n, nmax, x, L, do_rmse = true)` (Q3_K's reference): symmetric codes
    /// l ∈ [−nmax, nmax) from iscale = −nmax / max (max: the x of largest |x|), then up to 5 rounds of
    /// per-element code moves under the weights x²; L gets l + nmax. An all-zero group (largest
    /// |x| < GROUP_MAX_EPS) gets L = 0 — not nmax — and scale 0, as in ggml. x: [n]; L: [n] (written).
    static func makeQ3Quants(_ n: Int, _ nmax: Int32, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<Int8>) -> Float {
        var max: Float = 0, amax: Float = 0
        for i in 0..<n {
            let ax = abs(x[i])
            if ax > amax { amax = ax; max = x[i] }
        }
        if amax < groupMaxEps {
            for i in 0..<n { L[i] = 0 }
            return 0
        }
        let iscale = -Float(nmax) / max
        var sumlx: Float = 0, suml2: Float = 0
        for i in 0..<n {
            let l = Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(iscale * x[i])))
            L[i] = Int8(truncatingIfNeeded: l)
            let w = x[i] * x[i], fl = Float(l)
            sumlx += w * x[i] * fl
            suml2 += w * fl * fl
        }
        for _ in 0..<5 {
            var changed = 0
            for i in 0..<n {
                let w = x[i] * x[i], li = Float(L[i])
                var slx = sumlx - w * x[i] * li
                if slx > 0 {
                    var sl2 = suml2 - w * li * li
                    let newL = Swift.max(-nmax, Swift.min(nmax - 1, nearestInt(x[i] * sl2 / slx)))
                    if newL != Int32(L[i]) {
                        let fl = Float(newL)
                        slx += w * x[i] * fl
                        sl2 += w * fl * fl
                        if sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                            L[i] = Int8(truncatingIfNeeded: newL)
                            sumlx = slx
                            suml2 = sl2
                            changed += 1
                        }
                    }
                }
            }
            if changed == 0 { break }
        }
        for i in 0..<n { L[i] = L[i] &+ Int8(truncatingIfNeeded: nmax) }
        return suml2 > 0 ? sumlx / suml2 : 0
    }

    /// `make_qkx2_quants` / `make_qkx3_quants`: an asymmetric scale and min for codes in [0, nmax],
    /// searched over nstep + 1 trial scales. Returns the scale; `theMin` gets −min (≥ 0).
    /// qkx3 differs from qkx2 in its degenerate test (`max <= min` vs `max == min`) and in clamping a
    /// trial code before rounding (`v > 0 ? nearest_int(min(v, nmax)) : 0`); both are the same for
    /// finite input and kept apart anyway. `mad` (`use_mad`, Q2_K's reference) measures the error as
    /// Σw·|diff| instead of Σw·diff². x, weights: [n]; L, Laux: [n] (written).
    static func makeQkxQuants(_ n: Int, _ nmax: Int32, _ x: UnsafePointer<Float>, _ weights: UnsafePointer<Float>,
                              _ L: UnsafeMutablePointer<UInt8>, _ theMin: inout Float, _ Laux: UnsafeMutablePointer<UInt8>,
                              _ rmin: Float, _ rdelta: Float, _ nstep: Int, qkx3: Bool, mad: Bool = false) -> Float {
        var min = x[0], max = x[0]
        var sumW = weights[0]
        var sumX = sumW * x[0]
        for i in 1..<n {
            if x[i] < min { min = x[i] }
            if x[i] > max { max = x[i] }
            let w = weights[i]
            sumW += w
            sumX += w * x[i]
        }
        if min > 0 { min = 0 }
        if qkx3 ? max <= min : max == min {
            for i in 0..<n { L[i] = 0 }
            theMin = -min
            return 0
        }
        let fnmax = Float(nmax)
        var iscale = fnmax / (max - min)
        var scale = 1 / iscale
        var bestError: Float = 0
        for i in 0..<n {
            let l = nearestInt(iscale * (x[i] - min))
            L[i] = UInt8(truncatingIfNeeded: Swift.max(0, Swift.min(nmax, l)))
            var diff = scale * Float(L[i]) + min - x[i]
            diff = mad ? abs(diff) : diff * diff
            bestError += weights[i] * diff
        }
        if nstep < 1 { theMin = -min; return scale }
        for s in 0...nstep {
            iscale = (rmin + rdelta * Float(s) + fnmax) / (max - min)
            var sumL: Float = 0, sumL2: Float = 0, sumXL: Float = 0
            for i in 0..<n {
                let l: Int32
                if qkx3 {
                    let v = iscale * (x[i] - min)
                    l = v > 0 ? nearestInt(Swift.min(v, fnmax)) : 0
                } else {
                    l = Swift.max(0, Swift.min(nmax, nearestInt(iscale * (x[i] - min))))
                }
                Laux[i] = UInt8(truncatingIfNeeded: l)
                let w = weights[i], fl = Float(l)
                sumL += w * fl
                sumL2 += w * fl * fl
                sumXL += w * fl * x[i]
            }
            let D = sumW * sumL2 - sumL * sumL
            if D > 0 {
                var thisScale = (sumW * sumXL - sumX * sumL) / D
                var thisMin = (sumL2 * sumX - sumL * sumXL) / D
                if thisMin > 0 {
                    thisMin = 0
                    thisScale = sumXL / sumL2
                }
                var curError: Float = 0
                for i in 0..<n {
                    var diff = thisScale * Float(Laux[i]) + thisMin - x[i]
                    diff = mad ? abs(diff) : diff * diff
                    curError += weights[i] * diff
                }
                if curError < bestError {
                    for i in 0..<n { L[i] = Laux[i] }
                    bestError = curError
                    scale = thisScale
                    min = thisMin
                }
            }
        }
        theMin = -min
        return scale
    }

    /// `make_qp_quants`: a positive scale for codes in [0, nmax] of non-negative x (the sub-block
    /// scales and mins of the imatrix K-quants), weighted by quant_weights, then up to 5 rounds of
    /// per-element code moves. C stores codes in uint8_t (wrapping) while the sums use the int code;
    /// kept. x, qw: [n]; L: [n] (written).
    static func makeQpQuants(_ n: Int, _ nmax: Int32, _ x: UnsafePointer<Float>, _ L: UnsafeMutablePointer<UInt8>,
                             _ qw: UnsafePointer<Float>) -> Float {
        var max: Float = 0
        for i in 0..<n { max = max > x[i] ? max : x[i] }
        if max < groupMaxEps {
            for i in 0..<n { L[i] = 0 }
            return 0
        }
        let fnmax = Float(nmax)
        var iscale = fnmax / max
        for i in 0..<n { L[i] = UInt8(truncatingIfNeeded: nearestInt(iscale * x[i])) }
        let scale = 1 / iscale
        var bestMse: Float = 0
        for i in 0..<n {
            let diff = x[i] - scale * Float(L[i])
            bestMse += qw[i] * diff * diff
        }
        for s in -4...4 where s != 0 {
            let iscaleS = (Float(0.1) * Float(s) + fnmax) / max
            let scaleS = 1 / iscaleS
            var mse: Float = 0
            for i in 0..<n {
                let l = Swift.min(nmax, nearestInt(iscaleS * x[i]))
                let diff = x[i] - scaleS * Float(l)
                mse += qw[i] * diff * diff
            }
            if mse < bestMse {
                bestMse = mse
                iscale = iscaleS
            }
        }
        var sumlx: Float = 0, suml2: Float = 0
        for i in 0..<n {
            let l = Swift.min(nmax, nearestInt(iscale * x[i]))
            L[i] = UInt8(truncatingIfNeeded: l)
            let w = qw[i], fl = Float(l)
            sumlx += w * x[i] * fl
            suml2 += w * fl * fl
        }
        for _ in 0..<5 {
            var changed = 0
            for i in 0..<n {
                let w = qw[i], li = Float(L[i])
                var slx = sumlx - w * x[i] * li
                var sl2 = suml2 - w * li * li
                if slx > 0 && sl2 > 0 {
                    let newL = Swift.min(nmax, nearestInt(x[i] * sl2 / slx))
                    if newL != Int32(L[i]) {
                        let fl = Float(newL)
                        slx += w * x[i] * fl
                        sl2 += w * fl * fl
                        if slx * slx * suml2 > sumlx * sumlx * sl2 {
                            L[i] = UInt8(truncatingIfNeeded: newL)
                            sumlx = slx
                            suml2 = sl2
                            changed += 1
                        }
                    }
                }
            }
            if changed == 0 { break }
        }
        return suml2 > 0 ? sumlx / suml2 : 0
    }

    /// The 12-byte scales of Q4_K / Q5_K: 8 six-bit scales `ls` and mins `lm`. Sub-blocks 0–3 in the
    /// low 6 bits of bytes 0–3 (scales) and 4–7 (mins); 4–7 as nibbles of bytes 8–11 with their top
    /// 2 bits in bits 6–7 of bytes 0–7. ls, lm: [8]; s: [12] (written).
    @inline(__always)
    static func packScaleMin(_ ls: UnsafePointer<UInt8>, _ lm: UnsafePointer<UInt8>, _ s: UnsafeMutablePointer<UInt8>) {
        for j in 0..<8 {
            if j < 4 {
                s[j] = ls[j]
                s[j + 4] = lm[j]
            } else {
                s[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4)
                s[j - 4] |= (ls[j] >> 4) << 6
                s[j] |= (lm[j] >> 4) << 6
            }
        }
    }

    /// `get_scale_min_k4`: sub-block j's six-bit scale and min from the packed 12 bytes.
    @inline(__always)
    static func scaleMin(_ j: Int, _ q: UnsafePointer<UInt8>) -> (UInt8, UInt8) {
        if j < 4 { return (q[j] & 63, q[j + 4] & 63) }
        return ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Stack-free scratch for one encode call (the encoders run per block; allocating per block would
/// dominate a debug build).
final class GGMLQuantScratch {
    /// L: [256] codes; laux: [32] trial codes; l8: [256] signed codes (make_qx_quants);
    /// weights: [32]; ls, lm: [16] sub-block codes (ls8: signed, Q3_K's make_qx_quants); scales, mins, sw: [16].
    let L = UnsafeMutablePointer<UInt8>.allocate(capacity: 256)
    let laux = UnsafeMutablePointer<UInt8>.allocate(capacity: 32)
    let l8 = UnsafeMutablePointer<Int8>.allocate(capacity: 256)
    let weights = UnsafeMutablePointer<Float>.allocate(capacity: 32)
    let ls8 = UnsafeMutablePointer<Int8>.allocate(capacity: 16)
    let ls = UnsafeMutablePointer<UInt8>.allocate(capacity: 16)
    let lm = UnsafeMutablePointer<UInt8>.allocate(capacity: 16)
    let scales = UnsafeMutablePointer<Float>.allocate(capacity: 16)
    let mins = UnsafeMutablePointer<Float>.allocate(capacity: 16)
    let sw = UnsafeMutablePointer<Float>.allocate(capacity: 16)

    init() {
        L.initialize(repeating: 0, count: 256); laux.initialize(repeating: 0, count: 32)
        l8.initialize(repeating: 0, count: 256); weights.initialize(repeating: 0, count: 32)
        ls8.initialize(repeating: 0, count: 16); ls.initialize(repeating: 0, count: 16); lm.initialize(repeating: 0, count: 16)
        scales.initialize(repeating: 0, count: 16); mins.initialize(repeating: 0, count: 16)
        sw.initialize(repeating: 0, count: 16)
    }

    deinit {
        L.deallocate(); laux.deallocate(); l8.deallocate(); weights.deallocate()
        ls8.deallocate(); ls.deallocate(); lm.deallocate(); scales.deallocate(); mins.deallocate(); sw.deallocate()
    }
}
