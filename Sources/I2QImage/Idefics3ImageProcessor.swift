import I2QCore
import I2QFormats

/// transformers 5.24's `Idefics3ImageProcessorPil` / `SmolVLMImageProcessorPil` (the same code), bit
/// for bit: resize so the longest edge is `size.longest_edge` (the other edge rounded to even, both
/// capped at 4096), then with splitting resize up to multiples of `max_image_size` and cut into
/// max_image_size² tiles row by row plus the whole image resized to one tile (the global image), or
/// without splitting resize to one tile; every resize with Pillow's `resample` filter (LANCZOS by
/// default) on uint8; rescale/normalize as Idefics2's (`Idefics2ImageProcessor.valueTable`); zero
/// padding to the batch's largest tile with `pixel_attention_mask`.
public struct Idefics3ImageProcessor: Sendable {
    public let settings: ProcessorConfig
    let filter: PILResize.Filter
    static let maxImageSize = 4096  // MAX_IMAGE_SIZE

    public init(settings: ProcessorConfig = .idefics3) throws {
        guard let f = PILResize.Filter(rawValue: settings.resample) else {
            throw ImageProcessingError.invalidSettings("resample \(settings.resample) is not supported (1 LANCZOS, 2 BILINEAR)")
        }
        filter = f
        self.settings = settings
    }

    /// `get_resize_output_image_size`: `_resize_output_size_rescale_to_max_len` then
    /// `_resize_output_size_scale_below_upper_bound(4096)`; (height, width).
    public static func resizeOutputSize(height: Int, width: Int, longestEdge maxLen: Int) -> (height: Int, width: Int) {
        var h = height, w = width
        let aspect = Double(w) / Double(h)
        if w >= h {
            w = maxLen
            h = Int(Double(w) / aspect)
            if h % 2 != 0 { h += 1 }
        } else {
            h = maxLen
            w = Int(Double(h) * aspect)
            if w % 2 != 0 { w += 1 }
        }
        h = max(h, 1); w = max(w, 1)
        let aspect2 = Double(w) / Double(h)
        if w >= h && w > maxImageSize {
            w = maxImageSize
            h = Int(Double(w) / aspect2)
        } else if h > w && h > maxImageSize {
            h = maxImageSize
            w = Int(Double(h) * aspect2)
        }
        return (max(h, 1), max(w, 1))
    }

    /// `resize_for_vision_encoder`: both edges up to multiples of `tile`; (height, width).
    public static func visionEncoderSize(height: Int, width: Int, tile: Int) -> (height: Int, width: Int) {
        var h = height, w = width
        let aspect = Double(w) / Double(h)
        func ceilTo(_ v: Int) -> Int { (v + tile - 1) / tile * tile }
        if w >= h {
            w = ceilTo(w)
            h = ceilTo(Int(Double(w) / aspect))
        } else {
            h = ceilTo(h)
            w = ceilTo(Int(Double(h) * aspect))
        }
        return (h, w)
    }

    /// One image's tiles (row by row, then the global image) and its grid (0, 0 when not split).
    public func tiles(_ image: RGBImage) -> (tiles: [RGBImage], rows: Int, cols: Int) {
        var img = image
        if settings.doResize {
            let (h, w) = Self.resizeOutputSize(height: img.height, width: img.width, longestEdge: settings.longestEdge)
            img = PILResize.resize(img, width: w, height: h, filter: filter)
        }
        let m = settings.maxImageSize
        guard settings.doImageSplitting else {
            return ([PILResize.resize(img, width: m, height: m, filter: filter)], 0, 0)
        }
        let (h, w) = Self.visionEncoderSize(height: img.height, width: img.width, tile: m)
        img = PILResize.resize(img, width: w, height: h, filter: filter)
        guard h > m || w > m else { return ([img], 0, 0) }
        let rows = (h - m) / m + 1, cols = (w - m) / m + 1
        var out: [RGBImage] = []
        for r in 0..<rows {
            for c in 0..<cols {
                // numpy slicing clips at the edge (the sizes are multiples of m, so it never does)
                out.append(img.cropped(top: r * m, left: c * m, height: min(m, h - r * m), width: min(m, w - c * m)))
            }
        }
        out.append(PILResize.resize(img, width: m, height: m, filter: filter))
        return (out, rows, cols)
    }

    /// Processes one sample's images: transformers' `pixel_values` [1, tiles, 3, H, W] /
    /// `pixel_attention_mask`, and each image's (rows, cols) for the prompt.
    public func process(_ images: [RGBImage]) throws -> (images: ProcessedImages, grids: [(rows: Int, cols: Int)]) {
        guard !images.isEmpty else { throw ImageProcessingError.emptyBatch }
        let split = images.map { tiles($0) }
        let all = split.flatMap(\.tiles)
        let maxH = all.map(\.height).max()!, maxW = all.map(\.width).max()!
        let table = Idefics2ImageProcessor.valueTable(settings)
        let plane = maxH * maxW
        var values = [Float](repeating: 0, count: all.count * 3 * plane)  // [tiles, 3, H, W]
        var mask = [UInt8](repeating: 0, count: all.count * plane)  // [tiles, H, W]
        for (n, img) in all.enumerated() {
            let w = img.width, h = img.height
            for c in 0..<3 {
                let t = table[c], base = (n * 3 + c) * plane
                for y in 0..<h { for x in 0..<w { values[base + y * maxW + x] = t[Int(img.pixels[(y * w + x) * 3 + c])] } }
            }
            for y in 0..<h { for x in 0..<w { mask[n * plane + y * maxW + x] = 1 } }
        }
        let p = ProcessedImages(batchSize: 1, maxImages: all.count, height: maxH, width: maxW, pixelValues: values,
                                pixelAttentionMask: mask, imagesPerSample: [all.count],
                                imageSizes: [all.map { ($0.height, $0.width) }])
        return (p, split.map { ($0.rows, $0.cols) })
    }
}
