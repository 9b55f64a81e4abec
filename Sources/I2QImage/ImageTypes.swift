import I2QCore

/// An 8-bit RGB image, rows top to bottom, pixels interleaved `R G B`, no padding: the input of
/// the Idefics2 image processor (see `RGBConversion` for how a file becomes one).
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// `height * width * 3` bytes.
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0 && pixels.count == width * height * 3,
                     "RGBImage: \(pixels.count) bytes for \(width)x\(height)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// The rectangle `[top, top+height) x [left, left+width)` (a numpy slice of the HWC array).
    public func cropped(top: Int, left: Int, height h: Int, width w: Int) -> RGBImage {
        precondition(top >= 0 && left >= 0 && h >= 0 && w >= 0 && top + h <= height && left + w <= width)
        var out = [UInt8](repeating: 0, count: h * w * 3)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<h {
                    let s = ((top + y) * width + left) * 3
                    for i in 0..<(w * 3) { dst[y * w * 3 + i] = src[s + i] }
                }
            }
        }
        return RGBImage(width: w, height: h, pixels: out)
    }
}

/// How an image becomes the RGB input of the Idefics2 image processor. transformers has two paths
/// that differ for transparent and EXIF-rotated images.
public enum RGBConversion: Sendable {
    /// What the image processor works on under `Idefics2Processor(text=..., images=...)` — the
    /// reference for `i2q run`: `Idefics2Processor` first applies `transformers.image_utils.load_image`
    /// to every image (PIL images included: `ImageOps.exif_transpose`, then `convert("RGB")`, which
    /// drops an alpha band without compositing), then the image processor's `convert_to_rgb`
    /// composites what transparency survived that (`DecodedImage.keyColorAfterConvert`).
    case idefics2Processor
    /// `transformers.image_transforms.convert_to_rgb` on `PIL.Image.open(path)` — the image
    /// processor called directly: alpha composited onto white with `alpha_composite`; no EXIF
    /// orientation.
    case convertToRGB
    /// `load_image(path)` alone (EXIF orientation, `convert("RGB")`).
    case loadImage
}

/// A decoded image as Pillow holds it after `Image.open(path)`, in the form transformers'
/// `convert_to_rgb` starts from: `convert("RGBA")` when the image has transparency (an alpha band or
/// a `transparency` entry from a tRNS chunk), `convert("RGB")` otherwise. Dropping the alpha band
/// gives `convert("RGB")` in every case (Pillow keeps the colour of transparent pixels).
public struct DecodedImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// 3 (RGB) or 4 (RGBA, straight alpha).
    public let channels: Int
    /// `height * width * channels` bytes, as stored (EXIF orientation not applied).
    public var pixels: [UInt8]
    /// What the file held, e.g. "PNG 8-bit palette, interlaced" or "JPEG YCbCr 4:2:0, progressive".
    public let format: String
    /// The EXIF orientation Pillow's `exif_transpose` would apply (1 = none; 2…8 transpose).
    public let orientation: Int
    /// The file has an EXIF block whose TIFF header Pillow rejects: `exif_transpose` (and so
    /// transformers' `load_image`) raises on it.
    public let invalidEXIF: Bool
    /// The colour key the RGB image still carries after `load_image`'s `convert("RGB")`: Pillow
    /// keeps (or translates) a tRNS `transparency` entry of L, 1, I;16, RGB and single-index P
    /// images, and `convert_to_rgb` then makes pixels of exactly that colour white. nil otherwise.
    public let keyColorAfterConvert: [UInt8]?

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8], format: String, orientation: Int = 1,
                invalidEXIF: Bool = false, keyColorAfterConvert: [UInt8]? = nil) {
        precondition(channels == 3 || channels == 4)
        precondition(pixels.count == width * height * channels)
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
        self.format = format
        self.orientation = orientation
        self.invalidEXIF = invalidEXIF
        self.keyColorAfterConvert = keyColorAfterConvert
    }

    public var hasAlpha: Bool { channels == 4 }

    /// The RGB image transformers feeds to the image processor (see `RGBConversion`).
    public func toRGB(_ conversion: RGBConversion = .idefics2Processor) -> RGBImage {
        switch conversion {
        case .idefics2Processor:
            return idefics2ProcessorInput()
        case .convertToRGB:
            return composited()
        case .loadImage:
            let t = Orientation.apply(orientation, width: width, height: height, channels: 3, pixels: convertedRGB())
            return RGBImage(width: t.width, height: t.height, pixels: t.pixels)
        }
    }

    /// What the image processor receives from `Idefics2Processor`: `load_image` (EXIF orientation,
    /// `convert("RGB")`), then the processor's own `convert_to_rgb`, which composites again when
    /// the RGB image still carries a colour key (`keyColorAfterConvert`): pixels of exactly that
    /// colour become white (Pillow's `rgbT2a` + `alpha_composite`), the others stay.
    public func idefics2ProcessorInput() -> RGBImage {
        var rgb = convertedRGB()
        if let key = keyColorAfterConvert {
            let n = width * height
            rgb.withUnsafeMutableBufferPointer { p in
                for i in 0..<n where p[3 * i] == key[0] && p[3 * i + 1] == key[1] && p[3 * i + 2] == key[2] {
                    p[3 * i] = 255; p[3 * i + 1] = 255; p[3 * i + 2] = 255
                }
            }
        }
        let t = Orientation.apply(orientation, width: width, height: height, channels: 3, pixels: rgb)
        return RGBImage(width: t.width, height: t.height, pixels: t.pixels)
    }

    /// Pillow's `convert("RGB")`: the alpha band dropped (transparent pixels keep their colour).
    func convertedRGB() -> [UInt8] {
        guard channels == 4 else { return pixels }
        let n = width * height
        return [UInt8](unsafeUninitializedCapacity: n * 3) { out, count in
            pixels.withUnsafeBufferPointer { src in
                for i in 0..<n {
                    out[3 * i] = src[4 * i]; out[3 * i + 1] = src[4 * i + 1]; out[3 * i + 2] = src[4 * i + 2]
                }
            }
            count = n * 3
        }
    }

    /// transformers' `convert_to_rgb`: RGBA is alpha-composited onto opaque white with
    /// `PIL.Image.alpha_composite` (Pillow's integer arithmetic, bit for bit), then the alpha band
    /// is dropped; RGB passes through.
    func composited() -> RGBImage {
        if channels == 3 { return RGBImage(width: width, height: height, pixels: pixels) }
        let n = width * height
        var out = [UInt8](repeating: 0, count: n * 3)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for i in 0..<n {
                    let (r, g, b) = PILMath.alphaCompositeOverWhite(src[i * 4], src[i * 4 + 1], src[i * 4 + 2], src[i * 4 + 3])
                    dst[i * 3] = r
                    dst[i * 3 + 1] = g
                    dst[i * 3 + 2] = b
                }
            }
        }
        return RGBImage(width: width, height: height, pixels: out)
    }

    func with(orientation: Int, invalidEXIF: Bool) -> DecodedImage {
        DecodedImage(width: width, height: height, channels: channels, pixels: pixels, format: format,
                     orientation: orientation, invalidEXIF: invalidEXIF, keyColorAfterConvert: keyColorAfterConvert)
    }
}

/// Errors decoding an image file. Every message names the file.
public enum ImageError: I2QError, Equatable {
    /// Neither PNG nor JPEG (or an empty file).
    case unsupportedFormat(path: String, detail: String)
    /// A PNG/JPEG feature the decoder (like Pillow) does not handle, e.g. 12-bit JPEG.
    case unsupported(path: String, detail: String)
    /// The file ends before the image data does.
    case truncated(path: String, detail: String)
    /// The data is damaged (bad checksum, invalid stream, impossible header values).
    case corrupt(path: String, detail: String)
    /// Larger than Pillow's decompression-bomb limit (2 × 89,478,485 pixels).
    case tooLarge(path: String, width: Int, height: Int)
    /// The operating system could not start the decoding thread.
    case resources(path: String, detail: String)
    /// An EXIF block Pillow's `exif_transpose` rejects (so transformers' `load_image` fails too).
    case invalidEXIF(path: String)

    public var description: String {
        switch self {
        case let .unsupportedFormat(p, d):
            return "cannot read image \(p): \(d) (supported: PNG and JPEG)"
        case let .unsupported(p, d):
            return "cannot read image \(p): \(d)"
        case let .truncated(p, d):
            return "image \(p) is truncated: \(d). The file is incomplete; copy or download it again"
        case let .corrupt(p, d):
            return "image \(p) is corrupt: \(d)"
        case let .tooLarge(p, w, h):
            return "image \(p) is \(w)x\(h) = \(Double(w) * Double(h)) pixels, more than the \(PILMath.maxImagePixels * 2) pixels Pillow accepts (decompression-bomb limit); downscale it first"
        case let .resources(p, d):
            return "cannot decode image \(p): \(d)"
        case let .invalidEXIF(p):
            return "image \(p) has an EXIF block that is not valid TIFF data; transformers' load_image (Pillow's exif_transpose) fails on it. Remove the EXIF data (e.g. re-save the image) or decode it with the convert_to_rgb path"
        }
    }
}

/// Small pieces of Pillow's integer arithmetic shared by the decoders and the processor.
enum PILMath {
    /// `PIL.Image.MAX_IMAGE_PIXELS`; Pillow refuses images with more than twice as many pixels.
    static let maxImagePixels = 1024 * 1024 * 1024 / 4 / 3

    /// Pillow's decompression-bomb refusal (more than twice `maxImagePixels`), overflow-checked:
    /// headers may declare up to 2³²−1 × 2³²−1.
    static func exceedsPixelLimit(_ width: Int, _ height: Int) -> Bool {
        let (area, overflow) = width.multipliedReportingOverflow(by: height)
        return overflow || area > maxImagePixels * 2
    }

    /// libImaging/ImagingUtils.h `SHIFTFORDIV255`.
    @inline(__always)
    static func shiftForDiv255(_ a: UInt32) -> UInt32 { ((a >> 8) + a) >> 8 }

    /// libImaging/ImagingUtils.h `MULDIV255`: (a*b + 127) / 255, rounded as Pillow does.
    @inline(__always)
    static func mulDiv255(_ a: Int, _ b: Int) -> Int {
        let t = a * b + 128
        return ((t >> 8) + t) >> 8
    }

    /// libImaging/AlphaComposite.c with dst = opaque white (255, 255, 255, 255) and src = the pixel.
    @inline(__always)
    static func alphaCompositeOverWhite(_ r: UInt8, _ g: UInt8, _ b: UInt8, _ a: UInt8) -> (UInt8, UInt8, UInt8) {
        if a == 0 { return (255, 255, 255) }
        let precisionBits: UInt32 = 7
        let sa = UInt32(a)
        let dstA: UInt32 = 255
        let blend = dstA * (255 - sa)
        let outa255 = sa * 255 + blend
        let coef1 = sa * 255 * 255 * (1 << precisionBits) / outa255
        let coef2 = 255 * (1 << precisionBits) - coef1
        let bias: UInt32 = 0x80 << precisionBits
        let tr = UInt32(r) * coef1 + 255 * coef2
        let tg = UInt32(g) * coef1 + 255 * coef2
        let tb = UInt32(b) * coef1 + 255 * coef2
        return (UInt8(truncatingIfNeeded: shiftForDiv255(tr + bias) >> precisionBits),
                UInt8(truncatingIfNeeded: shiftForDiv255(tg + bias) >> precisionBits),
                UInt8(truncatingIfNeeded: shiftForDiv255(tb + bias) >> precisionBits))
    }
}
