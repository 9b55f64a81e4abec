import CJPEG
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// JPEG decoding with libjpeg(-turbo), set up exactly as Pillow's `JpegDecode.c` sets it up:
/// library defaults (`JDCT_ISLOW` integer IDCT, fancy upsampling, block smoothing), output colour
/// space `JCS_GRAYSCALE` / `JCS_RGB` / `JCS_CMYK` for 1 / 3 / 4 components, colour conversion by
/// libjpeg. CMYK follows Pillow: the samples are inverted ("CMYK;I", Adobe polarity assumed) and
/// converted with Pillow's `cmyk2rgb`. EXIF orientation is not applied (`Image.open` does not).
///
/// Errors follow Pillow: a fatal libjpeg error is an error; libjpeg warnings (corrupt entropy data
/// and the like) are not — the image decodes as Pillow's does. The file ending before the last
/// scanline has been produced is "truncated" (Pillow: "image file is truncated"); a missing EOI
/// after the last scanline is accepted, as Pillow accepts it.
enum JPEGDecoder {
    struct Job {
        var input: UnsafePointer<UInt8>?
        var inputCount: Int
        var eoi: UnsafeMutablePointer<UInt8>
        var cinfo: UnsafeMutablePointer<jpeg_decompress_struct>
        var err: UnsafeMutablePointer<jpeg_error_mgr>
        var src: UnsafeMutablePointer<jpeg_source_mgr>
        var created: Bool
        /// 1 header, 2 start_decompress, 3 scanlines, 4 finish_decompress.
        var phase: Int32
        var starvedInPhase: Int32
        var starvedAtRow: Int
        var rowsRead: Int
        var width: Int
        var height: Int
        var components: Int
        var colorSpace: UInt32
        var progressive: Bool
        var sampling: (Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32)
        var unsupportedComponents: Bool
        var tooLarge: Bool
        var pixels: UnsafeMutablePointer<UInt8>?
        var message: UnsafeMutablePointer<CChar>
    }

    static func decode(_ bytes: UnsafeRawBufferPointer, path: String) throws -> DecodedImage {
        let message = MessageBuffer()
        defer { message.free() }
        let cinfo = UnsafeMutablePointer<jpeg_decompress_struct>.allocate(capacity: 1)
        let err = UnsafeMutablePointer<jpeg_error_mgr>.allocate(capacity: 1)
        let src = UnsafeMutablePointer<jpeg_source_mgr>.allocate(capacity: 1)
        let eoi = UnsafeMutablePointer<UInt8>.allocate(capacity: 2)
        memset(cinfo, 0, MemoryLayout<jpeg_decompress_struct>.size)
        memset(err, 0, MemoryLayout<jpeg_error_mgr>.size)
        memset(src, 0, MemoryLayout<jpeg_source_mgr>.size)
        eoi[0] = 0xFF
        eoi[1] = 0xD9 // JPEG_EOI
        let job = UnsafeMutablePointer<Job>.allocate(capacity: 1)
        job.initialize(to: Job(input: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), inputCount: bytes.count,
                               eoi: eoi, cinfo: cinfo, err: err, src: src, created: false, phase: 0,
                               starvedInPhase: 0, starvedAtRow: 0, rowsRead: 0, width: 0, height: 0, components: 0, colorSpace: 0,
                               progressive: false, sampling: (0, 0, 0, 0, 0, 0, 0, 0),
                               unsupportedComponents: false, tooLarge: false, pixels: nil, message: message.pointer))
        defer {
            if job.pointee.created { jpeg_destroy_decompress(cinfo) }
            free(job.pointee.pixels)
            job.deinitialize(count: 1)
            job.deallocate()
            cinfo.deallocate()
            err.deallocate()
            src.deallocate()
            eoi.deallocate()
        }
        guard let ok = GuardedDecode.run(jpegWorker, context: UnsafeMutableRawPointer(job)) else {
            throw ImageError.resources(path: path, detail: "cannot start a decoding thread")
        }
        let j = job.pointee
        if (1...3).contains(j.starvedInPhase) {
            let detail: String
            switch j.starvedInPhase {
            case 1: detail = "the file ends inside the JPEG header"
            case 2: detail = "the file ends before the last scan"
            default: detail = "the data ends while decoding row \(j.starvedAtRow + 1) of \(j.height)"
            }
            throw ImageError.truncated(path: path, detail: detail)
        }
        if !ok {
            let text = message.text
            if text.hasPrefix("Not a JPEG file") {
                throw ImageError.unsupportedFormat(path: path, detail: "libjpeg: \(text)")
            }
            if text.hasPrefix("Unsupported") || text.hasPrefix("Requested features") {
                throw ImageError.unsupported(path: path, detail: "libjpeg: \(text)")
            }
            throw ImageError.corrupt(path: path, detail: "libjpeg: \(text.isEmpty ? "decoding failed" : text)")
        }
        if j.unsupportedComponents {
            throw ImageError.unsupported(path: path, detail: "JPEG with \(j.components) components (Pillow handles 1, 3 or 4)")
        }
        if j.tooLarge { throw ImageError.tooLarge(path: path, width: j.width, height: j.height) }
        guard let pixels = j.pixels else {
            throw ImageError.resources(path: path, detail: "libjpeg: \(message.text)")
        }
        let n = j.width * j.height
        var out = [UInt8](repeating: 0, count: n * 3)
        out.withUnsafeMutableBufferPointer { dst in
            switch j.components {
            case 1:
                for i in 0..<n { let v = pixels[i]; dst[3 * i] = v; dst[3 * i + 1] = v; dst[3 * i + 2] = v }
            case 3:
                for i in 0..<(3 * n) { dst[i] = pixels[i] }
            default:
                // Pillow: rawmode "CMYK;I" (inverted samples), then Convert.c cmyk2rgb.
                for i in 0..<n {
                    let c = 255 - Int(pixels[4 * i]), m = 255 - Int(pixels[4 * i + 1])
                    let y = 255 - Int(pixels[4 * i + 2]), k = 255 - Int(pixels[4 * i + 3])
                    let nk = 255 - k
                    dst[3 * i] = clip8(nk - PILMath.mulDiv255(c, nk))
                    dst[3 * i + 1] = clip8(nk - PILMath.mulDiv255(m, nk))
                    dst[3 * i + 2] = clip8(nk - PILMath.mulDiv255(y, nk))
                }
            }
        }
        return DecodedImage(width: j.width, height: j.height, channels: 3, pixels: out, format: describe(j))
    }

    /// The APP1 EXIF and XMP segments before the first scan, as Pillow's JPEG plugin collects them
    /// (EXIF: the first segment, later ones' data appended; XMP: the last segment).
    static func metadata(_ b: UnsafeRawBufferPointer) -> Orientation.Sources {
        var sources = Orientation.Sources()
        let exifID: [UInt8] = Array("Exif".utf8) + [0, 0]
        let xmpID: [UInt8] = Array("http://ns.adobe.com/xap/1.0/".utf8) + [0]
        var dpi = false
        var pos = 2
        while pos + 4 <= b.count {
            guard b[pos] == 0xFF else { break }
            let marker = b[pos + 1]
            if marker == 0xFF { pos += 1; continue }  // fill byte
            if marker == 0xD8 || marker == 0x01 || (0xD0...0xD7).contains(marker) { pos += 2; continue }
            if marker == 0xDA || marker == 0xD9 { break }
            let length = Int(b[pos + 2]) << 8 | Int(b[pos + 3])
            guard length >= 2, pos + 2 + length <= b.count else { break }
            if marker == 0xE0 {
                // JFIF with units 1 (inch) or 2 (cm) gives Pillow a "dpi" entry
                let segment = Array(b[(pos + 4)..<(pos + 2 + length)])
                if segment.starts(with: Array("JFIF".utf8)), segment.count >= 12, segment[7] == 1 || segment[7] == 2 {
                    dpi = true
                }
            }
            if marker == 0xE1 {
                let segment = Array(b[(pos + 4)..<(pos + 2 + length)])
                if segment.starts(with: exifID) {
                    if sources.exif == nil { sources.exif = segment } else { sources.exif! += segment.dropFirst(6) }
                } else if segment.starts(with: xmpID) {
                    sources.xmp = Array(segment.dropFirst(xmpID.count))
                }
            }
            pos += 2 + length
        }
        sources.swallowsBadEXIF = !dpi
        return sources
    }

    @inline(__always)
    private static func clip8(_ v: Int) -> UInt8 { v <= 0 ? 0 : v < 256 ? UInt8(v) : 255 }

    private static func describe(_ j: Job) -> String {
        let space: String
        switch j.colorSpace {
        case JCS_GRAYSCALE.rawValue: space = "grayscale"
        case JCS_YCbCr.rawValue: space = "YCbCr"
        case JCS_RGB.rawValue: space = "RGB"
        case JCS_CMYK.rawValue: space = "CMYK"
        case JCS_YCCK.rawValue: space = "YCCK"
        default: space = "\(j.components)-component"
        }
        var s = "JPEG \(space)"
        if j.components == 3 {
            let f = [j.sampling.0, j.sampling.1, j.sampling.2, j.sampling.3, j.sampling.4, j.sampling.5]
            let subsampling: String
            if f[2] == 1, f[3] == 1, f[4] == 1, f[5] == 1 {
                switch (f[0], f[1]) {
                case (1, 1): subsampling = "4:4:4"
                case (2, 1): subsampling = "4:2:2"
                case (2, 2): subsampling = "4:2:0"
                case (1, 2): subsampling = "4:4:0"
                case (4, 1): subsampling = "4:1:1"
                default: subsampling = "sampling \(f[0])x\(f[1])"
                }
            } else {
                subsampling = "sampling \(f[0])x\(f[1]),\(f[2])x\(f[3]),\(f[4])x\(f[5])"
            }
            s += " \(subsampling)"
        }
        if j.progressive { s += ", progressive" }
        return s
    }

    private static let jpegWorker: @convention(c) (UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? = { raw in
        let job = raw!.assumingMemoryBound(to: Job.self)
        let cinfo = job.pointee.cinfo
        let err = job.pointee.err
        let src = job.pointee.src
        job.pointee.phase = 1
        _ = jpeg_std_error(err)
        err.pointee.error_exit = jpegErrorExit
        err.pointee.output_message = jpegOutputMessage
        cinfo.pointee.err = err
        cinfo.pointee.client_data = raw // kept by jpeg_CreateDecompress
        jpeg_CreateDecompress(cinfo, JPEG_LIB_VERSION, MemoryLayout<jpeg_decompress_struct>.size)
        job.pointee.created = true

        src.pointee.next_input_byte = job.pointee.input
        src.pointee.bytes_in_buffer = job.pointee.inputCount
        src.pointee.init_source = jpegNoOp
        src.pointee.fill_input_buffer = jpegFill
        src.pointee.skip_input_data = jpegSkip
        src.pointee.resync_to_restart = jpeg_resync_to_restart
        src.pointee.term_source = jpegNoOp
        cinfo.pointee.src = src

        // Pillow: read headers until an image body (skipping tables-only datastreams).
        var status = jpeg_read_header(cinfo, 0)
        var guardCount = 0
        while status == JPEG_HEADER_TABLES_ONLY, guardCount < 64 {
            status = jpeg_read_header(cinfo, 0)
            guardCount += 1
        }
        if status != JPEG_HEADER_OK {
            GuardedDecode.store("no image in the JPEG datastream", into: job.pointee.message, capacity: MessageBuffer.capacity)
            return nil
        }
        let components = Int(cinfo.pointee.num_components)
        job.pointee.width = Int(cinfo.pointee.image_width)
        job.pointee.height = Int(cinfo.pointee.image_height)
        job.pointee.components = components
        job.pointee.colorSpace = cinfo.pointee.jpeg_color_space.rawValue
        job.pointee.progressive = cinfo.pointee.progressive_mode != 0
        if let info = cinfo.pointee.comp_info {
            let c = min(components, 4)
            var values: (Int32, Int32, Int32, Int32, Int32, Int32, Int32, Int32) = (0, 0, 0, 0, 0, 0, 0, 0)
            withUnsafeMutableBytes(of: &values) { buf in
                let p = buf.baseAddress!.assumingMemoryBound(to: Int32.self)
                for i in 0..<c {
                    p[2 * i] = info[i].h_samp_factor
                    p[2 * i + 1] = info[i].v_samp_factor
                }
            }
            job.pointee.sampling = values
        }
        guard components == 1 || components == 3 || components == 4 else {
            job.pointee.unsupportedComponents = true
            return GuardedDecode.completed
        }
        if PILMath.exceedsPixelLimit(Int(job.pointee.width), Int(job.pointee.height)) {
            job.pointee.tooLarge = true
            return GuardedDecode.completed
        }
        cinfo.pointee.out_color_space = components == 1 ? JCS_GRAYSCALE : components == 3 ? JCS_RGB : JCS_CMYK

        job.pointee.phase = 2
        _ = jpeg_start_decompress(cinfo)
        let width = Int(cinfo.pointee.output_width)
        let height = Int(cinfo.pointee.output_height)
        let outComponents = Int(cinfo.pointee.output_components)
        guard width == job.pointee.width, height == job.pointee.height, outComponents == components,
              let pixels = malloc(max(1, width * height * outComponents))?.assumingMemoryBound(to: UInt8.self) else {
            GuardedDecode.store("unexpected output geometry or out of memory", into: job.pointee.message,
                                capacity: MessageBuffer.capacity)
            return nil
        }
        job.pointee.pixels = pixels

        job.pointee.phase = 3
        while Int(cinfo.pointee.output_scanline) < height {
            var row: UnsafeMutablePointer<UInt8>? = pixels + Int(cinfo.pointee.output_scanline) * width * outComponents
            let n = jpeg_read_scanlines(cinfo, &row, 1)
            if n == 0 { break }
            job.pointee.rowsRead += Int(n)
        }
        job.pointee.phase = 4
        _ = jpeg_finish_decompress(cinfo)
        return GuardedDecode.completed
    }

    private static let jpegErrorExit: @convention(c) (j_common_ptr?) -> Void = { cinfo in
        if let cinfo, let raw = cinfo.pointee.client_data {
            let job = raw.assumingMemoryBound(to: Job.self)
            cinfo.pointee.err.pointee.format_message(cinfo, job.pointee.message)
        }
        GuardedDecode.abandon()
    }

    private static let jpegOutputMessage: @convention(c) (j_common_ptr?) -> Void = { _ in }

    private static let jpegNoOp: @convention(c) (j_decompress_ptr?) -> Void = { _ in }

    /// The data is exhausted: note when (Pillow would need more data here), then let libjpeg
    /// finish with a fake EOI marker as its own memory source does.
    private static let jpegFill: @convention(c) (j_decompress_ptr?) -> boolean = { cinfo in
        let job = cinfo!.pointee.client_data!.assumingMemoryBound(to: Job.self)
        if job.pointee.starvedInPhase == 0 {
            job.pointee.starvedInPhase = job.pointee.phase
            job.pointee.starvedAtRow = job.pointee.rowsRead
        }
        cinfo!.pointee.src.pointee.next_input_byte = UnsafePointer(job.pointee.eoi)
        cinfo!.pointee.src.pointee.bytes_in_buffer = 2
        return 1
    }

    private static let jpegSkip: @convention(c) (j_decompress_ptr?, Int) -> Void = { cinfo, count in
        guard count > 0, let src = cinfo?.pointee.src else { return }
        if count > src.pointee.bytes_in_buffer {
            _ = jpegFill(cinfo)
        } else {
            src.pointee.next_input_byte += count
            src.pointee.bytes_in_buffer -= count
        }
    }
}
