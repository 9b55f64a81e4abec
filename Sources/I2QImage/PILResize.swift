import Foundation
/// `PIL.Image.resize(size, Image.Resampling.BILINEAR)` for an RGB image, bit for bit as Pillow 13.0
/// computes it (libImaging/Resample.c, 8 bits per channel, default box, no `reducing_gap`):
///
/// - coefficients per output pixel from a triangle filter whose support is scaled by the
///   downscaling factor (`precompute_coeffs`, in double precision, normalised to sum 1), then
///   converted to fixed point with 22 fractional bits (`normalize_coeffs_8bpc`);
/// - two separable passes, each accumulating `int` sums starting at 1<<21 and clipping `sum >> 22`
///   to 0…255, so the intermediate image is rounded to uint8;
/// - the pass order of Pillow 13: horizontal first, unless the height shrinks by more than twice as
///   many pixels as the width does (then vertical first); a pass is skipped when its size is
///   unchanged, and an unchanged size returns a copy.
///
/// LANCZOS (Idefics3/SmolVLM's filter) is the same machinery with Pillow's `lanczos_filter`
/// (support 3: sinc(x)·sinc(x/3) on [-3, 3), sin from the C library as Pillow's), bit for bit too.
public enum PILResize {
    static let precisionBits = 32 - 8 - 2

    /// Pillow's resampling filters (Image.Resampling values).
    public enum Filter: Int, Sendable {
        case lanczos = 1, bilinear = 2

        var support: Double { self == .lanczos ? 3.0 : 1.0 }

        @inline(__always)
        func callAsFunction(_ x: Double) -> Double {
            switch self {
            case .bilinear: return PILResize.bilinear(x)
            case .lanczos: return (-3.0 <= x && x < 3.0) ? PILResize.sinc(x) * PILResize.sinc(x / 3) : 0.0
            }
        }
    }

    @inline(__always)
    static func sinc(_ x: Double) -> Double {
        if x == 0.0 { return 1.0 }
        let y = x * Double.pi
        return sin(y) / y
    }

    /// Fixed-point coefficients of one pass.
    struct Coefficients {
        var ksize: Int
        /// (first input index, count) per output index.
        var bounds: [Int]
        /// `outSize * ksize` fixed-point weights.
        var weights: [Int32]
    }

    @inline(__always)
    static func bilinear(_ x: Double) -> Double {
        let a = x < 0 ? -x : x
        return a < 1.0 ? 1.0 - a : 0.0
    }

    /// Resample.c `precompute_coeffs` + `normalize_coeffs_8bpc`.
    static func coefficients(inSize: Int, in0: Float, in1: Float, outSize: Int, filter: Filter = .bilinear) -> Coefficients {
        let support0 = filter.support
        let scale = Double(in1 - in0) / Double(outSize)
        let filterscale = scale < 1.0 ? 1.0 : scale
        let support = support0 * filterscale
        let ksize = Int(support.rounded(.up)) * 2 + 1
        var bounds = [Int](repeating: 0, count: outSize * 2)
        var kk = [Double](repeating: 0, count: outSize * ksize)
        let invFilterscale = 1.0 / filterscale
        for xx in 0..<outSize {
            let center = Double(in0) + (Double(xx) + 0.5) * scale
            var ww = 0.0
            var xmin = Int(center - support + 0.5)  // C (int) cast: truncation toward zero
            if xmin < 0 { xmin = 0 }
            var xmax = Int(center + support + 0.5)
            if xmax > inSize { xmax = inSize }
            xmax -= xmin
            let base = xx * ksize
            var x = 0
            while x < xmax {
                let w = filter((Double(x + xmin) - center + 0.5) * invFilterscale)
                kk[base + x] = w
                ww += w
                x += 1
            }
            if ww != 0.0 {
                for i in 0..<max(xmax, 0) { kk[base + i] /= ww }
            }
            bounds[xx * 2] = xmin
            bounds[xx * 2 + 1] = max(xmax, 0)
        }
        let one = Double(1 << precisionBits)
        let weights = kk.map { v -> Int32 in
            v < 0 ? Int32(-0.5 + v * one) : Int32(0.5 + v * one)
        }
        return Coefficients(ksize: ksize, bounds: bounds, weights: weights)
    }

    @inline(__always)
    static func clip8(_ v: Int32) -> UInt8 {
        let s = v >> Int32(precisionBits)
        return s < 0 ? 0 : s > 255 ? 255 : UInt8(s)
    }

    /// Resizes `image` to `width` x `height` with Pillow's BILINEAR filter.
    public static func bilinear(_ image: RGBImage, width: Int, height: Int) -> RGBImage {
        resize(image, width: width, height: height, filter: .bilinear)
    }

    /// Resizes `image` to `width` x `height` with one of Pillow's filters.
    public static func resize(_ image: RGBImage, width: Int, height: Int, filter: Filter) -> RGBImage {
        precondition(width > 0 && height > 0, "PILResize: target size \(width)x\(height)")
        let inW = image.width, inH = image.height
        if inW == width && inH == height { return image }
        let needHorizontal = width != inW
        let needVertical = height != inH
        let horizontalFirst = horizontalPassFirst(inWidth: inW, inHeight: inH, outWidth: width, outHeight: height)
        var current = image
        if horizontalFirst {
            if needHorizontal { current = horizontalPass(current, width: width, filter: filter) }
            if needVertical { current = verticalPass(current, height: height, filter: filter) }
        } else {
            if needVertical { current = verticalPass(current, height: height, filter: filter) }
            if needHorizontal { current = horizontalPass(current, width: width, filter: filter) }
        }
        return current
    }

    /// Pillow 13's pass order (Resample.c `ImagingResampleInner`): vertical first only when the
    /// height shrinks by more than twice as many pixels as the width does.
    public static func horizontalPassFirst(inWidth: Int, inHeight: Int, outWidth: Int, outHeight: Int) -> Bool {
        !((inHeight - outHeight) > 0 && (inHeight - outHeight) > (inWidth - outWidth) * 2)
    }

    /// One horizontal pass over every row (Pillow restricts it to the rows the vertical pass will
    /// read; the rows it computes are identical).
    static func horizontalPass(_ image: RGBImage, width: Int, filter: Filter = .bilinear) -> RGBImage {
        let c = coefficients(inSize: image.width, in0: 0, in1: Float(image.width), outSize: width, filter: filter)
        let inW = image.width, h = image.height
        var out = [UInt8](repeating: 0, count: width * h * 3)
        let half = Int32(1) << Int32(precisionBits - 1)
        image.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                c.weights.withUnsafeBufferPointer { kk in
                    c.bounds.withUnsafeBufferPointer { bounds in
                        for y in 0..<h {
                            let line = src.baseAddress! + y * inW * 3
                            let outLine = dst.baseAddress! + y * width * 3
                            for xx in 0..<width {
                                let xmin = bounds[xx * 2], xmax = bounds[xx * 2 + 1]
                                let k = kk.baseAddress! + xx * c.ksize
                                var s0 = half, s1 = half, s2 = half
                                for x in 0..<xmax {
                                    let p = line + (x + xmin) * 3
                                    s0 &+= Int32(p[0]) &* k[x]
                                    s1 &+= Int32(p[1]) &* k[x]
                                    s2 &+= Int32(p[2]) &* k[x]
                                }
                                outLine[xx * 3] = clip8(s0)
                                outLine[xx * 3 + 1] = clip8(s1)
                                outLine[xx * 3 + 2] = clip8(s2)
                            }
                        }
                    }
                }
            }
        }
        return RGBImage(width: width, height: h, pixels: out)
    }

    static func verticalPass(_ image: RGBImage, height: Int, filter: Filter = .bilinear) -> RGBImage {
        let c = coefficients(inSize: image.height, in0: 0, in1: Float(image.height), outSize: height, filter: filter)
        let w = image.width
        let rowLen = w * 3
        var out = [UInt8](repeating: 0, count: w * height * 3)
        let half = Int32(1) << Int32(precisionBits - 1)
        var acc = [Int32](repeating: 0, count: rowLen)
        image.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                c.weights.withUnsafeBufferPointer { kk in
                    acc.withUnsafeMutableBufferPointer { acc in
                        for yy in 0..<height {
                            let ymin = c.bounds[yy * 2], ymax = c.bounds[yy * 2 + 1]
                            let k = kk.baseAddress! + yy * c.ksize
                            for i in 0..<rowLen { acc[i] = half }
                            // Same sums as Pillow's per-pixel loop over y (integer addition is exact).
                            for y in 0..<ymax {
                                let line = src.baseAddress! + (y + ymin) * rowLen
                                let ky = k[y]
                                for i in 0..<rowLen { acc[i] &+= Int32(line[i]) &* ky }
                            }
                            let outLine = dst.baseAddress! + yy * rowLen
                            for i in 0..<rowLen { outLine[i] = clip8(acc[i]) }
                        }
                    }
                }
            }
        }
        return RGBImage(width: w, height: height, pixels: out)
    }
}
