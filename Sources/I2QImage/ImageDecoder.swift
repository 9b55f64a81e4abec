import I2QCore

/// Reads PNG and JPEG files into exactly the pixels Pillow gives for `PIL.Image.open(path)`
/// followed by transformers' `convert_to_rgb` (see `PNGDecoder`, `JPEGDecoder`).
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
            return try PNGDecoder.decode(bytes, path: name)
        }
        // Pillow's JPEG plugin accepts files starting with FF D8 FF.
        if bytes.count >= 3, bytes[0] == 0xFF, bytes[1] == 0xD8, bytes[2] == 0xFF {
            return try JPEGDecoder.decode(bytes, path: name)
        }
        if bytes.isEmpty { throw ImageError.unsupportedFormat(path: name, detail: "the file is empty") }
        throw ImageError.unsupportedFormat(path: name, detail: "not a PNG or JPEG file (\(sniff(bytes)))")
    }

    public static func decode(bytes: [UInt8], name: String) throws -> DecodedImage {
        try bytes.withUnsafeBytes { try decode(bytes: $0, name: name) }
    }

    /// Decodes and converts to RGB as transformers' `convert_to_rgb` does (alpha composited onto
    /// white with Pillow's `alpha_composite`).
    public static func decodeRGB(path: String) throws -> RGBImage {
        try decode(path: path).toRGB()
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
