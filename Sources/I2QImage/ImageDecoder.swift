import I2QCore

/// Reads PNG and JPEG files into exactly the pixels Pillow 13 gives for `PIL.Image.open(path)`
/// (see `PNGDecoder`, `JPEGDecoder`), then into the RGB image transformers hands to the Idefics2
/// image processor (`RGBConversion`). Checked against Pillow on ~9,500 files (Pillow's own test
/// images, the Rust documentation's, Adwaita icons, 300 JPEG encodings, 3,800 damaged files).
///
/// Every failure is an `ImageError` (or `IOError` for an unreadable file) naming the file; a
/// damaged or truncated file never crashes the process.
public enum ImageDecoder {
    /// Decodes the file as Pillow would, before the RGB conversion: RGBA when the image has
    /// transparency, RGB otherwise.
    public static func decode(path: String) throws -> DecodedImage {
        let file = try MappedFile(path: path)
        return try file.withBytes(0, file.count) { try decode(bytes: $0, name: path) }
    }

    /// Decodes in-memory file contents; `name` is used in error messages.
    public static func decode(bytes: UnsafeRawBufferPointer, name: String) throws -> DecodedImage {
        if bytes.count >= 8, (0..<8).allSatisfy({ bytes[$0] == PNGDecoder.signature[$0] }) {
            let image = try PNGDecoder.decode(bytes, path: name)
            let (orientation, invalid) = PNGDecoder.metadata(bytes).resolve()
            return image.with(orientation: orientation, invalidEXIF: invalid)
        }
        // Pillow's JPEG plugin accepts files starting with FF D8 FF.
        if bytes.count >= 3, bytes[0] == 0xFF, bytes[1] == 0xD8, bytes[2] == 0xFF {
            let image = try JPEGDecoder.decode(bytes, path: name)
            let (orientation, invalid) = JPEGDecoder.metadata(bytes).resolve()
            return image.with(orientation: orientation, invalidEXIF: invalid)
        }
        if bytes.isEmpty { throw ImageError.unsupportedFormat(path: name, detail: "the file is empty") }
        throw ImageError.unsupportedFormat(path: name, detail: "not a PNG or JPEG file (\(sniff(bytes)))")
    }

    public static func decode(bytes: [UInt8], name: String) throws -> DecodedImage {
        try bytes.withUnsafeBytes { try decode(bytes: $0, name: name) }
    }

    /// Decodes and converts to the RGB image the Idefics2 image processor works on when called
    /// through `Idefics2Processor` (`RGBConversion.idefics2Processor`: EXIF orientation applied,
    /// alpha bands dropped, tRNS colour keys composited onto white) — the reference for `i2q run`.
    public static func decodeRGB(path: String) throws -> RGBImage {
        try decodeRGB(path: path, conversion: .idefics2Processor)
    }

    /// Decodes and converts as `conversion` says (`.convertToRGB`: the image processor called
    /// directly on `Image.open(path)`).
    public static func decodeRGB(path: String, conversion: RGBConversion) throws -> RGBImage {
        let image = try decode(path: path)
        if conversion != .convertToRGB && image.invalidEXIF { throw ImageError.invalidEXIF(path: path) }
        return image.toRGB(conversion)
    }

    private static func sniff(_ b: UnsafeRawBufferPointer) -> String {
        func starts(_ s: [UInt8]) -> Bool { b.count >= s.count && zip(b, s).allSatisfy { $0 == $1 } }
        if starts(Array("GIF8".utf8)) { return "it looks like a GIF" }
        if starts(Array("RIFF".utf8)), b.count >= 12, Array(b[8..<12]) == Array("WEBP".utf8) { return "it looks like a WebP" }
        if starts(Array("BM".utf8)) { return "it looks like a BMP" }
        if starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A]) { return "it looks like a TIFF" }
        if starts(Array("%PDF".utf8)) { return "it looks like a PDF" }
        if starts([0x89, 0x50, 0x4E, 0x47]) { return "damaged PNG signature" }
        if starts([0xFF, 0xD8]) { return "damaged JPEG start" }
        let head = b.prefix(4).map { String(format2: $0) }.joined(separator: " ")
        return "it starts with \(head)"
    }
}

private extension String {
    init(format2 v: UInt8) {
        let digits = Array("0123456789abcdef")
        self = String([digits[Int(v >> 4)], digits[Int(v & 15)]])
    }
}
