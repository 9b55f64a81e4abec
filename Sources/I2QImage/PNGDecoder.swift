import CPNG
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// PNG decoding that gives exactly the pixels Pillow gives.
///
/// Pillow does not use libpng: `PngImagePlugin` parses the chunks itself and inflates/unfilters with
/// zlib, then unpacks samples with its own rules (libImaging/Unpack.c) and converts modes with
/// libImaging/Convert.c. PNG is lossless, so libpng's raw samples (no transformations requested,
/// only Adam7 de-interlacing) are the same numbers; what must match Pillow is the mapping to 8-bit
/// RGB(A), reproduced here rule by rule:
///
/// | IHDR (depth, colour type) | Pillow mode (rawmode) | to RGB(A) |
/// |---|---|---|
/// | 1, gray | `1` | 0 → 0, 1 → 255 |
/// | 2/4, gray | `L` (`L;2`, `L;4`) | v·0x55, v·0x11 |
/// | 16, gray | `I;16` | min(v, 255) (Convert.c `I16_RGB`: clipped, not scaled) |
/// | 16, RGB | `RGB` (`RGB;16B`) | high byte of each sample |
/// | 1–8, palette | `P` | palette lookup; entries past PLTE are black |
/// | 8/16, gray+alpha | `LA` / `RGBA` (`LA;16B`) | (L, L, L, A), high bytes for 16-bit |
/// | 16, RGBA | `RGBA` (`RGBA;16B`) | high bytes |
///
/// Transparency: an alpha band, or a tRNS chunk before the first IDAT, makes the image RGBA. For
/// gray/RGB, a pixel whose *converted 8-bit* value equals the tRNS value's low byte gets alpha 0
/// (Convert.c `rgbT2a` masks each tRNS sample with 0xff; for 1-bit images Pillow maps the value to
/// 0/255 first). For palettes, tRNS gives the alpha of the first entries, the rest stay 255.
///
/// Errors follow Pillow (checked against it on thousands of damaged files): every chunk before the
/// first IDAT must have a correct CRC (checked here; Pillow does not check IDAT CRCs, so libpng is
/// told to ignore CRCs); ancillary chunks other than tRNS are ignored; the image data must hold
/// every row — but once it has (Pillow stops inflating then), a damaged or missing rest of the
/// zlib stream, IDAT CRC or IEND is accepted (see `repairedTruncatedStream`). Gamma, colour
/// profiles and background chunks are ignored (Pillow applies none of them when converting).
enum PNGDecoder {
    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// What the chunk scan (Pillow's `PngImageFile._open`) learned before the first IDAT.
    struct Header {
        var width = 0
        var height = 0
        var bitDepth = 0
        var colorType = 0
        var interlaced = false
        var palette: [UInt8]?
        var transparency: [UInt8]?
        /// Offset of the first IDAT chunk.
        var firstIDAT = 0
    }

    static func decode(_ bytes: UnsafeRawBufferPointer, path: String) throws -> DecodedImage {
        let header = try scanChunks(bytes, path: path)
        if PILMath.exceedsPixelLimit(header.width, header.height) {
            throw ImageError.tooLarge(path: path, width: header.width, height: header.height)
        }
        let raw: RawSamples
        if let repaired = try repairedTruncatedStream(bytes, firstIDAT: header.firstIDAT, path: path) {
            raw = try repaired.bytes.withUnsafeBytes { try decodeSamples($0, path: path) }
            // The rows were complete before libpng reached the cut IDAT chunk: Pillow then skips
            // that chunk's data after decoding and fails on the short read.
            if let cut = repaired.cutChunk, raw.bytesRead <= cut {
                throw ImageError.truncated(path: path, detail: "the file ends inside chunk IDAT at byte \(cut)")
            }
        } else {
            raw = try decodeSamples(bytes, path: path)
        }
        guard raw.width == header.width, raw.height == header.height,
              raw.bitDepth == header.bitDepth, raw.colorType == header.colorType else {
            throw ImageError.corrupt(path: path, detail: "inconsistent IHDR")
        }
        return try convert(raw, header: header, path: path)
    }

    // MARK: - Chunk scan (Pillow's header parsing)

    static func scanChunks(_ b: UnsafeRawBufferPointer, path: String) throws -> Header {
        func u32(_ o: Int) -> Int {
            Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3])
        }
        guard b.count >= 8, (0..<8).allSatisfy({ b[$0] == signature[$0] }) else {
            throw ImageError.unsupportedFormat(path: path, detail: "not a PNG file")
        }
        var h = Header()
        var sawIHDR = false
        var pos = 8
        while true {
            guard pos + 8 <= b.count else {
                throw ImageError.truncated(path: path, detail: "the file ends before the image data (at byte \(pos))")
            }
            let length = u32(pos)
            let type = (0..<4).map { b[pos + 4 + $0] }
            let name = String(decoding: type, as: UTF8.self)
            // Pillow: chunk types must be 4 word characters; the PNG spec (and libpng): 4 letters.
            guard type.allSatisfy({ ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) }) else {
                throw ImageError.corrupt(path: path, detail: "invalid chunk type \(type.map { String($0, radix: 16) }) at byte \(pos)")
            }
            if name == "IDAT" { h.firstIDAT = pos; break }
            guard length <= 0x7fff_ffff else {
                throw ImageError.corrupt(path: path, detail: "chunk \(name) claims \(length) bytes")
            }
            guard pos + 12 + length <= b.count else {
                throw ImageError.truncated(path: path, detail: "chunk \(name) at byte \(pos) needs \(length + 12) bytes, \(b.count - pos) remain")
            }
            let data = UnsafeRawBufferPointer(rebasing: b[(pos + 8)..<(pos + 8 + length)])
            let stored = UInt32(u32(pos + 8 + length))
            var crc = CRC32.update(0xffff_ffff, UnsafeRawBufferPointer(rebasing: b[(pos + 4)..<(pos + 8)]))
            crc = CRC32.update(crc, data) ^ 0xffff_ffff
            if crc != stored {
                throw ImageError.corrupt(path: path, detail: "bad CRC in chunk \(name) at byte \(pos)")
            }
            switch name {
            case "IHDR":
                guard length >= 13 else { throw ImageError.corrupt(path: path, detail: "IHDR chunk too short") }
                h.width = u32(pos + 8)
                h.height = u32(pos + 12)
                h.bitDepth = Int(data[8])
                h.colorType = Int(data[9])
                h.interlaced = data[12] != 0
                sawIHDR = true
            case "PLTE":
                h.palette = Array(data)
            case "tRNS":
                h.transparency = Array(data)
            case "IEND":
                throw ImageError.corrupt(path: path, detail: "IEND before any image data")
            default:
                break
            }
            pos += 12 + length
        }
        guard sawIHDR else { throw ImageError.corrupt(path: path, detail: "no IHDR chunk") }
        let supported: Set<[Int]> = [[1, 0], [2, 0], [4, 0], [8, 0], [16, 0], [8, 2], [16, 2], [1, 3], [2, 3], [4, 3],
                                     [8, 3], [8, 4], [16, 4], [8, 6], [16, 6]]
        guard supported.contains([h.bitDepth, h.colorType]) else {
            throw ImageError.corrupt(path: path, detail: "invalid bit depth \(h.bitDepth) for colour type \(h.colorType)")
        }
        guard h.width > 0, h.height > 0 else {
            throw ImageError.corrupt(path: path, detail: "image size \(h.width)x\(h.height)")
        }
        return h
    }

    /// A file that ends after its first IDAT chunk starts but before IEND (or anything that is not
    /// a chunk).
    ///
    /// Pillow reads image data until the decoder has every row and only then looks at what
    /// follows: a file cut inside the last IDAT's CRC, a later chunk header or IEND decodes; one
    /// cut inside the data of a later non-IDAT chunk fails (its chunk handler reads past the end);
    /// one cut inside IDAT data decodes only if the rows complete within that chunk (a later cut
    /// chunk fails like any other). libpng instead needs every
    /// CRC and the chunk after the image data, so such a file is handed to libpng as the present
    /// IDAT data (length fixed up, CRCs are not checked) followed by a synthetic IEND; libpng then
    /// fails exactly when the image data really is incomplete.
    /// - Returns: nil when the file is complete (has IEND).
    static func repairedTruncatedStream(_ b: UnsafeRawBufferPointer, firstIDAT: Int, path: String) throws
        -> (bytes: [UInt8], cutChunk: Int?)? {
        func u32(_ o: Int) -> Int {
            Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3])
        }
        var pos = firstIDAT
        var keep = firstIDAT + 8  // end of the IDAT data kept
        var patch: (at: Int, length: Int)?
        scan: while true {
            guard pos + 8 <= b.count else { break scan }
            let length = u32(pos)
            let typeBytes = (0..<4).map { b[pos + 4 + $0] }
            // Pillow stops at anything that is not a chunk type (4 word characters) after the image
            // data, as at IEND.
            let isWord: (UInt8) -> Bool = { ($0 >= 48 && $0 <= 57) || ($0 >= 65 && $0 <= 90) || ($0 >= 97 && $0 <= 122) || $0 == 95 }
            let type = String(decoding: typeBytes, as: UTF8.self)
            if type == "IEND" || !typeBytes.allSatisfy(isWord) { return nil }
            if pos + 8 + length > b.count || length > 0x7fff_ffff {
                guard type == "IDAT" else {
                    throw ImageError.truncated(path: path, detail: "the file ends inside chunk \(type) at byte \(pos)")
                }
                keep = b.count
                patch = (pos, b.count - pos - 8)
                break scan
            }
            if type == "IDAT" { keep = pos + 8 + length }
            pos += 12 + length
        }
        var out = [UInt8](UnsafeRawBufferPointer(rebasing: b[0..<keep]))
        if let patch {
            for i in 0..<4 { out[patch.at + i] = UInt8(truncatingIfNeeded: patch.length >> (24 - 8 * i)) }
        }
        out += [0, 0, 0, 0]  // the IDAT CRC (not checked)
        out += [0, 0, 0, 0, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82]  // IEND
        return (out, patch?.at)
    }

    /// EXIF and XMP from the chunks Pillow reads (all complete chunks up to IEND, as
    /// `exif_transpose` loads the image first): eXIf, tEXt "exif" and "Raw profile type exif",
    /// uncompressed iTXt "XML:com.adobe.xmp" and "Raw profile type exif". Compressed text chunks
    /// (zTXt, compressed iTXt) are not inflated here.
    static func metadata(_ b: UnsafeRawBufferPointer) -> Orientation.Sources {
        func u32(_ o: Int) -> Int {
            Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3])
        }
        var sources = Orientation.Sources()
        var rawProfile: [UInt8]?
        var pos = 8
        while pos + 12 <= b.count {
            let length = u32(pos)
            guard length <= 0x7fff_ffff, pos + 12 + length <= b.count else { break }
            let type = String(decoding: (0..<4).map { b[pos + 4 + $0] }, as: UTF8.self)
            if type == "IEND" { break }
            let data = Array(b[(pos + 8)..<(pos + 8 + length)])
            switch type {
            case "eXIf":
                sources.exif = Array("Exif".utf8) + [0, 0] + data
            case "tEXt":
                let parts = data.split(separator: 0, maxSplits: 1, omittingEmptySubsequences: false)
                let key = String(decoding: parts[0], as: UTF8.self)
                let value = parts.count > 1 ? Array(parts[1]) : []
                if key == "exif" { sources.exif = value }
                if key == "Raw profile type exif" { rawProfile = value }
            case "iTXt":
                let parts = data.split(separator: 0, maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2, parts[1].count >= 2 else { break }
                let key = String(decoding: parts[0], as: UTF8.self)
                let rest = Array(parts[1])
                let compressed = rest[0] != 0
                let fields = rest[2...].split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false)
                guard !compressed, fields.count == 3 else { break }
                if key == "XML:com.adobe.xmp" { sources.xmp = Array(fields[2]) }
                if key == "Raw profile type exif" { rawProfile = Array(fields[2]) }
            default:
                break
            }
            pos += 12 + length
        }
        if sources.exif == nil, let raw = rawProfile {
            // Pillow: bytes.fromhex("".join(value.split("\n")[3:]))
            let lines = raw.split(separator: 10, omittingEmptySubsequences: false)
            let hex = lines.dropFirst(3).joined().filter { ![32, 9, 13, 11, 12].contains($0) }
            if hex.count % 2 == 0, let bytes = hexDecode(Array(hex)) {
                sources.exif = bytes
            } else {
                sources.invalidRawProfile = true
            }
        }
        return sources
    }

    private static func hexDecode(_ h: [UInt8]) -> [UInt8]? {
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: return c - 48
            case 65...70: return c - 55
            case 97...102: return c - 87
            default: return nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(h.count / 2)
        var i = 0
        while i + 1 < h.count {
            guard let a = nibble(h[i]), let b = nibble(h[i + 1]) else { return nil }
            out.append(a << 4 | b)
            i += 2
        }
        return out
    }

    // MARK: - libpng (raw samples)

    struct RawSamples {
        var width: Int
        var height: Int
        var bitDepth: Int
        var colorType: Int
        var rowBytes: Int
        var data: [UInt8]
        /// How far into the stream libpng read.
        var bytesRead: Int
    }

    /// Everything the worker thread touches: trivially typed, owned by the calling thread.
    struct Job {
        var input: UnsafePointer<UInt8>?
        var inputCount: Int
        var position: Int
        var readPastEnd: Bool
        var png: OpaquePointer?
        var info: OpaquePointer?
        var width: UInt32
        var height: UInt32
        var bitDepth: Int32
        var colorType: Int32
        var rowBytes: Int
        var pixels: UnsafeMutablePointer<UInt8>?
        var rows: UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?
        var tooLarge: Bool
        var interlaced: Bool
        /// Set while png_read_image runs.
        var readingRows: Bool
        /// A fatal error came after the last row had been stored (while libpng was finishing the
        /// zlib stream): Pillow stops inflating once it has every row, so the image counts.
        var rowsComplete: Bool
        var message: UnsafeMutablePointer<CChar>
    }

    static func decodeSamples(_ bytes: UnsafeRawBufferPointer, path: String) throws -> RawSamples {
        let message = MessageBuffer()
        defer { message.free() }
        let job = UnsafeMutablePointer<Job>.allocate(capacity: 1)
        job.initialize(to: Job(input: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), inputCount: bytes.count,
                               position: 0, readPastEnd: false, png: nil, info: nil, width: 0, height: 0,
                               bitDepth: 0, colorType: 0, rowBytes: 0, pixels: nil, rows: nil, tooLarge: false,
                               interlaced: false, readingRows: false, rowsComplete: false, message: message.pointer))
        defer {
            if job.pointee.png != nil {
                var png: OpaquePointer? = job.pointee.png
                var info: OpaquePointer? = job.pointee.info
                png_destroy_read_struct(&png, &info, nil)
            }
            free(job.pointee.pixels)
            free(job.pointee.rows)
            job.deinitialize(count: 1)
            job.deallocate()
        }
        guard let ok = GuardedDecode.run(pngWorker, context: UnsafeMutableRawPointer(job)) else {
            throw ImageError.resources(path: path, detail: "cannot start a decoding thread")
        }
        let j = job.pointee
        if !ok && !j.rowsComplete {
            if j.readPastEnd {
                throw ImageError.truncated(path: path, detail: "the file ends inside the image data")
            }
            let text = message.text
            if text.contains("Not enough image data") || text.contains("Read Error") {
                throw ImageError.truncated(path: path, detail: "libpng: \(text)")
            }
            throw ImageError.corrupt(path: path, detail: "libpng: \(text.isEmpty ? "decoding failed" : text)")
        }
        if j.tooLarge {
            throw ImageError.tooLarge(path: path, width: Int(j.width), height: Int(j.height))
        }
        guard let pixels = j.pixels else {
            throw ImageError.resources(path: path, detail: "libpng: \(message.text)")
        }
        let total = Int(j.height) * j.rowBytes
        return RawSamples(width: Int(j.width), height: Int(j.height), bitDepth: Int(j.bitDepth),
                          colorType: Int(j.colorType), rowBytes: j.rowBytes,
                          data: Array(UnsafeBufferPointer(start: pixels, count: total)), bytesRead: j.position)
    }

    /// The worker body: plain libpng calls; any fatal error ends the thread through `pngError`.
    private static let pngWorker: @convention(c) (UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? = { raw in
        let job = raw!.assumingMemoryBound(to: Job.self)
        guard let png = png_create_read_struct(png_get_libpng_ver(nil), raw, pngError, pngWarning) else {
            GuardedDecode.store("cannot create the libpng reader", into: job.pointee.message, capacity: MessageBuffer.capacity)
            return nil
        }
        job.pointee.png = png
        guard let info = png_create_info_struct(png) else {
            GuardedDecode.store("cannot create the libpng info struct", into: job.pointee.message, capacity: MessageBuffer.capacity)
            return nil
        }
        job.pointee.info = info
        png_set_read_fn(png, raw, pngRead)
        // CRCs of the chunks before IDAT were checked by the chunk scan (as Pillow does); Pillow
        // does not check IDAT CRCs.
        png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE)
        // Ignore every ancillary chunk (Pillow's conversion uses none but tRNS, read by the scan).
        png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, nil, -1)
        png_set_benign_errors(png, 1)
        png_set_user_limits(png, 0x7fff_ffff, 0x7fff_ffff)
        png_read_info(png, info)
        let width = png_get_image_width(png, info)
        let height = png_get_image_height(png, info)
        job.pointee.width = width
        job.pointee.height = height
        job.pointee.bitDepth = Int32(png_get_bit_depth(png, info))
        job.pointee.colorType = Int32(png_get_color_type(png, info))
        if PILMath.exceedsPixelLimit(Int(width), Int(height)) {
            job.pointee.tooLarge = true
            return GuardedDecode.completed
        }
        job.pointee.interlaced = png_get_interlace_type(png, info) != PNG_INTERLACE_NONE
        _ = png_set_interlace_handling(png)
        png_read_update_info(png, info)
        let rowBytes = Int(png_get_rowbytes(png, info))
        job.pointee.rowBytes = rowBytes
        guard let pixels = malloc(max(1, rowBytes * Int(height)))?.assumingMemoryBound(to: UInt8.self),
              let rows = malloc(MemoryLayout<UnsafeMutablePointer<UInt8>?>.stride * Int(height))?
                .assumingMemoryBound(to: UnsafeMutablePointer<UInt8>?.self) else {
            GuardedDecode.store("out of memory", into: job.pointee.message, capacity: MessageBuffer.capacity)
            return nil
        }
        job.pointee.pixels = pixels
        job.pointee.rows = rows
        for y in 0..<Int(height) { rows[y] = pixels + y * rowBytes }
        job.pointee.readingRows = true
        png_read_image(png, rows)
        job.pointee.readingRows = false
        return GuardedDecode.completed
    }

    private static let pngError: @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> Void = { png, msg in
        if let raw = png_get_error_ptr(png) {
            let job = raw.assumingMemoryBound(to: Job.self)
            GuardedDecode.store(msg, into: job.pointee.message, capacity: MessageBuffer.capacity)
            if job.pointee.readingRows {
                // png_read_finish_row has moved past the last row (of the last pass): libpng is
                // only looking for the end of the zlib stream.
                job.pointee.rowsComplete = job.pointee.interlaced
                    ? png_get_current_pass_number(png) >= 7
                    : png_get_current_row_number(png) >= job.pointee.height
            }
        }
        GuardedDecode.abandon()
    }

    private static let pngWarning: @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> Void = { _, _ in }

    private static let pngRead: @convention(c) (OpaquePointer?, UnsafeMutablePointer<UInt8>?, Int) -> Void = { png, out, length in
        let job = png_get_io_ptr(png)!.assumingMemoryBound(to: Job.self)
        let pos = job.pointee.position
        guard length <= job.pointee.inputCount - pos, let input = job.pointee.input, let out else {
            job.pointee.readPastEnd = true
            png_error(png, "Read Error: the file ends early")
        }
        memcpy(out, input + pos, length)
        job.pointee.position = pos + length
    }

    // MARK: - Pillow's unpacking and conversion

    static func convert(_ raw: RawSamples, header: Header, path: String) throws -> DecodedImage {
        let w = raw.width, h = raw.height, depth = raw.bitDepth
        let trns = header.transparency
        var kind: String
        var channels: Int
        var out: [UInt8]
        // The colour key an RGB conversion keeps (see DecodedImage.keyColorAfterConvert).
        var keyAfterConvert: [UInt8]?
        switch raw.colorType {
        case 0:
            kind = "gray"
            // Pillow: transparency = i16(tRNS) (1-bit: 255 if nonzero else 0); needs 2 bytes.
            var key: Int?
            if let t = trns {
                guard t.count >= 2 else { throw ImageError.corrupt(path: path, detail: "truncated tRNS chunk") }
                let v = Int(t[0]) << 8 | Int(t[1])
                key = depth == 1 ? (v != 0 ? 255 : 0) : v & 0xff
                switch depth {
                case 1, 16:
                    // modes 1 and I;16: convert("RGB") keeps the integer; as an RGB key it means (t, 0, 0)
                    keyAfterConvert = [UInt8(depth == 1 ? (v != 0 ? 255 : 0) : v & 0xff), 0, 0]
                default:
                    // mode L: Pillow translates t through a 1-pixel L image (clipped to 255)
                    let c = UInt8(min(v, 255))
                    keyAfterConvert = [c, c, c]
                }
            }
            channels = key == nil ? 3 : 4
            out = [UInt8](repeating: 0, count: w * h * channels)
            raw.data.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    for y in 0..<h {
                        let row = src.baseAddress! + y * raw.rowBytes
                        for x in 0..<w {
                            let v: UInt8
                            switch depth {
                            case 1: v = (row[x >> 3] >> (7 - UInt8(x & 7))) & 1 != 0 ? 255 : 0
                            case 2: v = ((row[x >> 2] >> (6 - 2 * UInt8(x & 3))) & 3) * 0x55
                            case 4: v = ((row[x >> 1] >> (4 - 4 * UInt8(x & 1))) & 15) * 0x11
                            case 8: v = row[x]
                            default: v = row[2 * x] != 0 ? 255 : row[2 * x + 1] // I16_RGB: clip to 255
                            }
                            let o = (y * w + x) * channels
                            dst[o] = v; dst[o + 1] = v; dst[o + 2] = v
                            if let key { dst[o + 3] = Int(v) == key ? 0 : 255 }
                        }
                    }
                }
            }
        case 2:
            kind = "RGB"
            var key: (Int, Int, Int)?
            if let t = trns {
                guard t.count >= 6 else { throw ImageError.corrupt(path: path, detail: "truncated tRNS chunk") }
                key = (Int(t[1]), Int(t[3]), Int(t[5]))  // low bytes of the three 16-bit values
                keyAfterConvert = [t[1], t[3], t[5]]
            }
            channels = key == nil ? 3 : 4
            out = [UInt8](repeating: 0, count: w * h * channels)
            let step = depth == 16 ? 2 : 1
            raw.data.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    for y in 0..<h {
                        let row = src.baseAddress! + y * raw.rowBytes
                        for x in 0..<w {
                            let r = row[(3 * x) * step], g = row[(3 * x + 1) * step], b = row[(3 * x + 2) * step]
                            let o = (y * w + x) * channels
                            dst[o] = r; dst[o + 1] = g; dst[o + 2] = b
                            if let key {
                                dst[o + 3] = (Int(r), Int(g), Int(b)) == key ? 0 : 255
                            }
                        }
                    }
                }
            }
        case 3:
            kind = "palette"
            guard let plte = header.palette else {
                throw ImageError.corrupt(path: path, detail: "palette image without a PLTE chunk")
            }
            guard plte.count <= 768 else {
                throw ImageError.corrupt(path: path, detail: "PLTE chunk with more than 256 entries")
            }
            if let t = trns, t.count > 256 {
                throw ImageError.corrupt(path: path, detail: "tRNS chunk with more than 256 entries")
            }
            // Pillow's palette: 256 entries initialised to (0, 0, 0, 255); PLTE fills the first ones,
            // tRNS gives the alpha of the first entries.
            var table = [UInt8](repeating: 0, count: 256 * 4)
            for i in 0..<256 { table[i * 4 + 3] = 255 }
            for i in 0..<min(256, plte.count / 3) {
                table[i * 4] = plte[i * 3]; table[i * 4 + 1] = plte[i * 3 + 1]; table[i * 4 + 2] = plte[i * 3 + 2]
            }
            if let t = trns {
                for i in 0..<t.count { table[i * 4 + 3] = t[i] }
                // Pillow's "simple" tRNS (one 0 entry, the rest 255) becomes an integer
                // transparency, which convert("RGB") turns into that entry's colour; any other
                // tRNS is dropped by convert("RGB").
                let zeros = t.indices.filter { t[$0] == 0 }
                if zeros.count == 1, t.allSatisfy({ $0 == 0 || $0 == 255 }) {
                    let i = zeros[0]
                    keyAfterConvert = [table[i * 4], table[i * 4 + 1], table[i * 4 + 2]]
                }
            }
            channels = trns == nil ? 3 : 4
            out = [UInt8](repeating: 0, count: w * h * channels)
            raw.data.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    for y in 0..<h {
                        let row = src.baseAddress! + y * raw.rowBytes
                        for x in 0..<w {
                            let index: Int
                            switch depth {
                            case 1: index = Int((row[x >> 3] >> (7 - UInt8(x & 7))) & 1)
                            case 2: index = Int((row[x >> 2] >> (6 - 2 * UInt8(x & 3))) & 3)
                            case 4: index = Int((row[x >> 1] >> (4 - 4 * UInt8(x & 1))) & 15)
                            default: index = Int(row[x])
                            }
                            let o = (y * w + x) * channels
                            for c in 0..<channels { dst[o + c] = table[index * 4 + c] }
                        }
                    }
                }
            }
        case 4:
            kind = "gray+alpha"
            channels = 4
            out = [UInt8](repeating: 0, count: w * h * 4)
            let step = depth == 16 ? 2 : 1
            raw.data.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    for y in 0..<h {
                        let row = src.baseAddress! + y * raw.rowBytes
                        for x in 0..<w {
                            let l = row[2 * x * step], a = row[(2 * x + 1) * step]
                            let o = (y * w + x) * 4
                            dst[o] = l; dst[o + 1] = l; dst[o + 2] = l; dst[o + 3] = a
                        }
                    }
                }
            }
        default:
            kind = "RGBA"
            channels = 4
            out = [UInt8](repeating: 0, count: w * h * 4)
            let step = depth == 16 ? 2 : 1
            raw.data.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    for y in 0..<h {
                        let row = src.baseAddress! + y * raw.rowBytes
                        for i in 0..<(w * 4) { dst[y * w * 4 + i] = row[i * step] }
                    }
                }
            }
        }
        var format = "PNG \(depth)-bit \(kind)"
        if trns != nil, raw.colorType != 4, raw.colorType != 6 { format += " with tRNS" }
        if header.interlaced { format += ", interlaced" }
        return DecodedImage(width: w, height: h, channels: channels, pixels: out, format: format,
                            keyColorAfterConvert: keyAfterConvert)
    }
}

/// CRC-32 (ISO 3309, as PNG uses it), table driven.
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xedb8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// Continues a running CRC (start with 0xffffffff, finish by xor-ing 0xffffffff).
    static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c = crc
        table.withUnsafeBufferPointer { t in
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xff)] ^ (c >> 8) }
        }
        return c
    }
}
