/// EXIF orientation as Pillow reads it (`Image.getexif()` then `ImageOps.exif_transpose`), and the
/// eight transpositions.
///
/// Sources, in Pillow's order: the EXIF data (JPEG: the first APP1 "Exif" segment, later ones
/// appended; PNG: an eXIf chunk or a tEXt chunk named "exif", else the hex dump in a "Raw profile
/// type exif" text chunk), IFD0 tag 0x0112; if that has no orientation, the first
/// `tiff:Orientation="N"` / `tiff:Orientation>N` in the XMP packet (JPEG APP1 XMP, PNG iTXt
/// "XML:com.adobe.xmp"). Compressed PNG text chunks (zTXt, compressed iTXt) are not read.
enum Orientation {
    /// The orientation value (1 = as stored) from an EXIF TIFF structure (after "Exif\0\0").
    /// Returns nil when there is no usable orientation tag. Lenient like Pillow's IFD reader: a
    /// damaged directory yields what was read before the damage.
    static func fromTIFF(_ d: ArraySlice<UInt8>) -> Int? {
        let b = Array(d)
        guard b.count >= 8 else { return nil }
        let little: Bool
        switch (b[0], b[1], b[2], b[3]) {
        case (0x49, 0x49, 0x2A, 0x00), (0x49, 0x49, 0x00, 0x2A): little = true
        case (0x4D, 0x4D, 0x00, 0x2A), (0x4D, 0x4D, 0x2A, 0x00): little = false
        default: return nil  // BigTIFF or not TIFF (Pillow raises for the latter; see ImageDecoder)
        }
        func u16(_ o: Int) -> Int? {
            guard o >= 0, o + 2 <= b.count else { return nil }
            return little ? Int(b[o]) | Int(b[o + 1]) << 8 : Int(b[o]) << 8 | Int(b[o + 1])
        }
        func u32(_ o: Int) -> Int? {
            guard o >= 0, o + 4 <= b.count else { return nil }
            let v = little ? Int(b[o]) | Int(b[o + 1]) << 8 | Int(b[o + 2]) << 16 | Int(b[o + 3]) << 24
                : Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3])
            return v
        }
        guard let ifd = u32(4), let count = u16(ifd) else { return nil }
        for i in 0..<count {
            let e = ifd + 2 + 12 * i
            guard let tag = u16(e), let type = u16(e + 2), let n = u32(e + 4) else { return nil }
            guard tag == 0x0112 else { continue }
            // The first entry for the tag counts (Pillow skips repeats). One value only.
            guard n == 1 else { return nil }
            switch type {
            case 1: return Int(b[e + 8])                                  // BYTE
            case 6: return Int(Int8(bitPattern: b[e + 8]))                // SBYTE
            case 3: return u16(e + 8)                                     // SHORT
            case 8: return u16(e + 8).map { Int(Int16(truncatingIfNeeded: $0)) }  // SSHORT
            case 4: return u32(e + 8)                                     // LONG
            case 9: return u32(e + 8).map { Int(Int32(truncatingIfNeeded: $0)) }  // SLONG
            case 5, 10:                                                   // (S)RATIONAL at an offset
                guard let off = u32(e + 8), let num = u32(off), let den = u32(off + 4), den != 0,
                      num % den == 0 else { return nil }
                return type == 5 ? num / den : Int(Int32(truncatingIfNeeded: num)) / Int(Int32(truncatingIfNeeded: den))
            default: return nil
            }
        }
        return nil
    }

    /// Whether Pillow would reject this EXIF block (its TIFF header is not one Pillow accepts):
    /// `exif_transpose` raises then.
    static func isInvalidTIFFHeader(_ d: ArraySlice<UInt8>) -> Bool {
        let h = Array(d.prefix(4))
        let accepted: [[UInt8]] = [[0x4D, 0x4D, 0x00, 0x2A], [0x49, 0x49, 0x2A, 0x00], [0x4D, 0x4D, 0x2A, 0x00],
                                   [0x49, 0x49, 0x00, 0x2A], [0x4D, 0x4D, 0x00, 0x2B], [0x49, 0x49, 0x2B, 0x00]]
        return !accepted.contains(h) || d.count < 8
    }

    /// Pillow's XMP fallback: the first match of `tiff:Orientation(="|>)([0-9])`.
    static func fromXMP(_ x: [UInt8]) -> Int? {
        let key = Array("tiff:Orientation".utf8)
        guard x.count > key.count else { return nil }
        var i = 0
        while i + key.count < x.count {
            if x[i] == key[0], Array(x[i..<(i + key.count)]) == key {
                var j = i + key.count
                if j + 1 < x.count, x[j] == UInt8(ascii: "="), x[j + 1] == UInt8(ascii: "\"") {
                    j += 2
                } else if j < x.count, x[j] == UInt8(ascii: ">") {
                    j += 1
                } else {
                    i += 1
                    continue
                }
                if j < x.count, x[j] >= 48, x[j] <= 57 { return Int(x[j] - 48) }
            }
            i += 1
        }
        return nil
    }

    /// The metadata found while parsing a file, as Pillow's `info` would hold it.
    struct Sources {
        /// `info["exif"]`: EXIF bytes, possibly starting with "Exif\0\0" (stripped here as Pillow does).
        var exif: [UInt8]?
        /// `info["xmp"]`: the XMP packet.
        var xmp: [UInt8]?
        /// A "Raw profile type exif" text chunk that is not valid hex (Pillow raises).
        var invalidRawProfile = false
        /// A JPEG without a JFIF resolution: Pillow's JPEG plugin then reads the EXIF while opening
        /// (`_read_dpi_from_exif`) and swallows a bad header — `exif_transpose` later sees an
        /// empty EXIF (and skips the XMP fallback) instead of raising.
        var swallowsBadEXIF = false

        /// (orientation, whether Pillow's `exif_transpose` raises on this metadata)
        func resolve() -> (Int, Bool) {
            var invalid = invalidRawProfile
            if var e = exif {
                // Pillow 13: re.sub(b"^(Exif\x00\x00){1,2}", b"", data)
                let prefix: [UInt8] = [0x45, 0x78, 0x69, 0x66, 0, 0]
                for _ in 0..<2 where e.count >= 6 && Array(e[0..<6]) == prefix { e.removeFirst(6) }
                if !e.isEmpty {
                    if isInvalidTIFFHeader(e[...]) {
                        if swallowsBadEXIF { return (1, invalid) }
                        invalid = true
                    } else if let o = fromTIFF(e[...]) {
                        return (o, invalid)
                    }
                }
            }
            if let x = xmp, let o = fromXMP(x) { return (o, invalid) }
            return (1, invalid)
        }
    }

    /// Pillow's `Image.transpose` for the method `exif_transpose` picks for `orientation`
    /// (2…8; anything else leaves the image as it is). Works on interleaved 8-bit pixels.
    static func apply(_ orientation: Int, width w: Int, height h: Int, channels c: Int, pixels: [UInt8])
        -> (width: Int, height: Int, pixels: [UInt8]) {
        guard (2...8).contains(orientation) else { return (w, h, pixels) }
        let swaps = orientation >= 5
        let ow = swaps ? h : w, oh = swaps ? w : h
        var out = [UInt8](repeating: 0, count: pixels.count)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<oh {
                    for x in 0..<ow {
                        let sx: Int, sy: Int
                        switch orientation {
                        case 2: (sx, sy) = (w - 1 - x, y)          // FLIP_LEFT_RIGHT
                        case 3: (sx, sy) = (w - 1 - x, h - 1 - y)  // ROTATE_180
                        case 4: (sx, sy) = (x, h - 1 - y)          // FLIP_TOP_BOTTOM
                        case 5: (sx, sy) = (y, x)                  // TRANSPOSE
                        case 6: (sx, sy) = (y, h - 1 - x)          // ROTATE_270 (clockwise)
                        case 7: (sx, sy) = (w - 1 - y, h - 1 - x)  // TRANSVERSE
                        default: (sx, sy) = (w - 1 - y, x)         // 8: ROTATE_90 (counter-clockwise)
                        }
                        let s = (sy * w + sx) * c, o = (y * ow + x) * c
                        for k in 0..<c { dst[o + k] = src[s + k] }
                    }
                }
            }
        }
        return (ow, oh, out)
    }
}
