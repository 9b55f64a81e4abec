import I2QCore
import I2QFormats

/// The image processor's settings are the processor config itself (I2QFormats' `ProcessorConfig`:
/// preprocessor_config.json / processor_config.json, transformers 5.24's defaults, range-checked) —
/// one type from the file to the pixels.
///
/// `doConvertRGB` is carried for completeness but not consulted: the processor takes `RGBImage`s,
/// i.e. images already converted as `convert_to_rgb` does (`ImageDecoder.decodeRGB`). With
/// `do_convert_rgb: false` transformers would hand the raw Pillow mode to numpy, which is the same
/// for RGB images and fails in `normalize` (or uses palette indices) for others.
/// `imageSeqLen` is for the prompt expansion, not the pixels.
public typealias Idefics2ImageSettings = ProcessorConfig

/// The processor's output, laid out as transformers' `pixel_values` / `pixel_attention_mask`.
public struct ProcessedImages: Sendable, Equatable {
    /// Samples in the batch.
    public let batchSize: Int
    /// Image slots per sample (the largest number of images, after splitting, of any sample).
    public let maxImages: Int
    /// Padded height and width (the largest of any processed image in the batch).
    public let height: Int
    public let width: Int
    /// float32 `[batchSize, maxImages, 3, height, width]`; padding and unused slots are 0.
    public var pixelValues: [Float]
    /// `[batchSize, maxImages, height, width]`: 1 for real pixels, 0 for padding and unused slots
    /// (transformers uses int64; the values are the same).
    public var pixelAttentionMask: [UInt8]
    /// Images per sample after splitting (5 per input image with splitting, else 1).
    public let imagesPerSample: [Int]
    /// Real (unpadded) height and width of every processed image, per sample.
    public let imageSizes: [[(height: Int, width: Int)]]

    public var pixelValuesShape: [Int] { [batchSize, maxImages, 3, height, width] }
    public var pixelAttentionMaskShape: [Int] { [batchSize, maxImages, height, width] }

    public static func == (a: ProcessedImages, b: ProcessedImages) -> Bool {
        a.batchSize == b.batchSize && a.maxImages == b.maxImages && a.height == b.height && a.width == b.width
            && a.pixelValues == b.pixelValues && a.pixelAttentionMask == b.pixelAttentionMask
            && a.imagesPerSample == b.imagesPerSample
            && a.imageSizes.map { $0.map { [$0.height, $0.width] } } == b.imageSizes.map { $0.map { [$0.height, $0.width] } }
    }
}

public enum ImageProcessingError: I2QError, Equatable {
    case invalidSettings(String)
    case emptyBatch
    case imageTooSmallToSplit(width: Int, height: Int)
    case raggedWithoutPadding

    public var description: String {
        switch self {
        case let .invalidSettings(s): return "invalid image processor settings: \(s)"
        case .emptyBatch: return "no images to process"
        case let .imageTooSmallToSplit(w, h):
            return "a \(w)x\(h) image cannot be split into 4 crops (needs at least 2x2 pixels); disable image splitting"
        case .raggedWithoutPadding:
            return "do_pad is false but the images differ in size or number per sample; enable padding"
        }
    }
}

/// transformers 5.24's `Idefics2ImageProcessorPil` (the PIL path), bit for bit:
/// optional splitting into 4 crops (integer halves) + the original, resize with the
/// longest/shortest-edge rule and Pillow's BILINEAR filter, `rescale` (uint8 → float64 × factor →
/// float32), `normalize` ((x − mean) / std in float32), channels first, zero padding to the batch's
/// largest height and width with `pixel_attention_mask`.
public struct Idefics2ImageProcessor: Sendable {
    public let settings: Idefics2ImageSettings

    public init(settings: Idefics2ImageSettings = Idefics2ImageSettings()) throws {
        if settings.doResize {
            guard settings.longestEdge > 0, settings.shortestEdge > 0 else {
                throw ImageProcessingError.invalidSettings(
                    "size needs both longest_edge and shortest_edge > 0 (got \(settings.longestEdge), \(settings.shortestEdge))")
            }
        }
        if settings.doNormalize {
            guard settings.imageMean.count == 3, settings.imageStd.count == 3 else {
                throw ImageProcessingError.invalidSettings("image_mean and image_std need 3 values each")
            }
        }
        self.settings = settings
    }

    /// `get_resize_output_image_size` of transformers' Idefics2 processor: (height, width).
    public static func resizeOutputSize(height: Int, width: Int, longestEdge maxLen: Int, shortestEdge minLen: Int) -> (height: Int, width: Int) {
        var h = height, w = width
        let aspect = Double(width) / Double(height)
        if w >= h && w > maxLen {
            w = maxLen
            h = Int(Double(w) / aspect)
        } else if h > w && h > maxLen {
            h = maxLen
            w = Int(Double(h) * aspect)
        }
        return (max(h, minLen), max(w, minLen))
    }

    /// The 4 crops (integer halves) and the original, in transformers' order.
    public static func split(_ image: RGBImage) throws -> [RGBImage] {
        let midW = image.width / 2, midH = image.height / 2
        guard midW > 0, midH > 0 else {
            throw ImageProcessingError.imageTooSmallToSplit(width: image.width, height: image.height)
        }
        return [
            image.cropped(top: 0, left: 0, height: midH, width: midW),
            image.cropped(top: 0, left: midW, height: midH, width: image.width - midW),
            image.cropped(top: midH, left: 0, height: image.height - midH, width: midW),
            image.cropped(top: midH, left: midW, height: image.height - midH, width: image.width - midW),
            image,
        ]
    }

    /// The uint8 images that enter rescale/normalize: split (if enabled) and resized.
    public func resizedImages(_ images: [RGBImage]) throws -> [RGBImage] {
        var list: [RGBImage] = []
        for image in images {
            if settings.doImageSplitting { list += try Self.split(image) } else { list.append(image) }
        }
        guard settings.doResize else { return list }
        return list.map { img in
            let (h, w) = Self.resizeOutputSize(height: img.height, width: img.width,
                                               longestEdge: settings.longestEdge, shortestEdge: settings.shortestEdge)
            return PILResize.bilinear(img, width: w, height: h)
        }
    }

    /// Per-channel lookup table uint8 value → float32 output value (rescale then normalize, with
    /// numpy's float64/float32 steps). Every output value is a function of one uint8 sample.
    public func valueTable() -> [[Float]] { Self.valueTable(settings) }

    /// The table for any processor settings (Idefics3's processor shares it).
    public static func valueTable(_ settings: ProcessorConfig) -> [[Float]] {
        (0..<3).map { c in
            (0..<256).map { v -> Float in
                var x: Float = settings.doRescale ? Float(Double(v) * settings.rescaleFactor) : Float(v)
                if settings.doNormalize {
                    x = (x - Float(settings.imageMean[c])) / Float(settings.imageStd[c])
                }
                return x
            }
        }
    }

    /// Processes a batch: `images[i]` are the images of sample i (already RGB, e.g. from
    /// `ImageDecoder.decodeRGB`).
    public func process(_ images: [[RGBImage]]) throws -> ProcessedImages {
        guard !images.isEmpty, images.contains(where: { !$0.isEmpty }) else { throw ImageProcessingError.emptyBatch }
        let resized = try images.map { try resizedImages($0) }
        let perSample = resized.map(\.count)
        let maxImages = perSample.max()!
        let all = resized.flatMap { $0 }
        let maxH = all.map(\.height).max()!, maxW = all.map(\.width).max()!
        if !settings.doPad {
            // transformers then returns the arrays unpadded and no mask (the model assumes all
            // pixels real): only a rectangular batch is representable.
            guard all.allSatisfy({ $0.height == maxH && $0.width == maxW }), perSample.allSatisfy({ $0 == maxImages }) else {
                throw ImageProcessingError.raggedWithoutPadding
            }
        }
        let table = valueTable()
        let plane = maxH * maxW
        var values = [Float](repeating: 0, count: images.count * maxImages * 3 * plane)
        var mask = [UInt8](repeating: 0, count: images.count * maxImages * plane)
        values.withUnsafeMutableBufferPointer { vals in
            mask.withUnsafeMutableBufferPointer { msk in
                for (b, sample) in resized.enumerated() {
                    for (n, img) in sample.enumerated() {
                        let slot = b * maxImages + n
                        let w = img.width, h = img.height
                        img.pixels.withUnsafeBufferPointer { px in
                            for c in 0..<3 {
                                let t = table[c]
                                let base = (slot * 3 + c) * plane
                                for y in 0..<h {
                                    for x in 0..<w { vals[base + y * maxW + x] = t[Int(px[(y * w + x) * 3 + c])] }
                                }
                            }
                        }
                        for y in 0..<h {
                            for x in 0..<w { msk[slot * plane + y * maxW + x] = 1 }
                        }
                    }
                }
            }
        }
        return ProcessedImages(batchSize: images.count, maxImages: maxImages, height: maxH, width: maxW,
                               pixelValues: values, pixelAttentionMask: mask, imagesPerSample: perSample,
                               imageSizes: resized.map { $0.map { ($0.height, $0.width) } })
    }
}
