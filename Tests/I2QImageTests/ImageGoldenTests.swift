import Foundation
import XCTest
import I2QCore
import I2QFormats
import I2QTestSupport
@testable import I2QImage

/// Goldens from scripts/fixtures/make_image_goldens.py (Pillow 13.0.0, transformers 5.24.0's
/// Idefics2ImageProcessorPil): decoded pixels, the processor's float32 outputs and Pillow's verdict
/// on damaged files.
final class ImageGoldenTests: XCTestCase {
    static let dir = fixturesDir + "/images"

    nonisolated(unsafe) static let golden: [String: Any] = {
        let data = try! Data(contentsOf: URL(fileURLWithPath: dir + "/images.json"))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    static var images: [String: [String: Any]] { golden["images"] as! [String: [String: Any]] }

    static let arrays: SafetensorsFile = try! SafetensorsFile(path: dir + "/processor.safetensors")

    static func u8(_ name: String) -> (shape: [Int], values: [UInt8])? {
        guard let info = arrays.info(name) else { return nil }
        XCTAssertEqual(info.dtype, .u8)
        return (info.shape, arrays.withData(info) { Array($0.bindMemory(to: UInt8.self)) })
    }

    static func settings(_ c: [String: Any]) -> Idefics2ImageSettings {
        var s = Idefics2ImageSettings()
        s.longestEdge = c["longest_edge"] as! Int
        s.shortestEdge = c["shortest_edge"] as! Int
        s.doImageSplitting = c["do_image_splitting"] as! Bool
        return s
    }

    // MARK: decoding

    func testDecodedPixelsMatchPillow() throws {
        XCTAssertGreaterThanOrEqual(Self.images.count, 15)
        for (name, g) in Self.images.sorted(by: { $0.key < $1.key }) {
            let path = Self.dir + "/" + name
            let decoded = try ImageDecoder.decode(path: path)
            XCTAssertEqual(decoded.width, g["width"] as? Int, name)
            XCTAssertEqual(decoded.height, g["height"] as? Int, name)
            XCTAssertEqual(decoded.channels, g["decoded_channels"] as? Int, "\(name): RGBA iff Pillow sees transparency")
            XCTAssertEqual(decoded.hasAlpha, g["has_alpha"] as? Bool, name)
            XCTAssertEqual(hash(decoded.pixels), g["xxh3_decoded"] as? String,
                           "\(name) (\(decoded.format)): decoded pixels differ from Pillow's")
            let rgb = decoded.toRGB(.convertToRGB)
            XCTAssertEqual(hash(rgb.pixels), g["xxh3_rgb"] as? String,
                           "\(name) (\(decoded.format)): convert_to_rgb output differs")
            XCTAssertEqual(try ImageDecoder.decodeRGB(path: path, conversion: .convertToRGB), rgb)
            let loaded = decoded.toRGB(.loadImage)
            XCTAssertEqual([loaded.width, loaded.height], [g["load_image_width"] as! Int, g["load_image_height"] as! Int], name)
            XCTAssertEqual(hash(loaded.pixels), g["xxh3_load_image"] as? String,
                           "\(name) (\(decoded.format), orientation \(decoded.orientation)): load_image output differs")
            XCTAssertEqual(try ImageDecoder.decodeRGB(path: path, conversion: .loadImage), loaded)
            XCTAssertEqual(hash(decoded.toRGB(.idefics2Processor).pixels), g["xxh3_idefics2_processor_input"] as? String,
                           "\(name): load_image + convert_to_rgb (Idefics2Processor's path) differs")
            XCTAssertEqual(try ImageDecoder.decodeRGB(path: path), decoded.toRGB(.idefics2Processor))
        }
    }

    func testFormatDescriptions() throws {
        let expect = [
            "real_verify_444.jpg": "JPEG YCbCr 4:4:4",
            "real_f3_progressive_422.jpg": "JPEG YCbCr 4:2:2, progressive",
            "doc_a4_1240x1754_420.jpg": "JPEG YCbCr 4:2:0",
            "doc_a4_827x1169_progressive_444.jpg": "JPEG YCbCr 4:4:4, progressive",
            "gray_240x180.jpg": "JPEG grayscale",
            "cmyk_160x120.jpg": "JPEG CMYK",
            "doc_a4_310x438_palette4_interlaced.png": "PNG 4-bit palette, interlaced",
            "wide_1400x300_palette_trns.png": "PNG 8-bit palette with tRNS",
            "gray16_300x200.png": "PNG 16-bit gray",
            "rgba16_64x48.png": "PNG 16-bit RGBA",
            "real_rustc_image3_trns.png": "PNG 8-bit RGB with tRNS",
            "gray_alpha_200x150_interlaced.png": "PNG 8-bit gray+alpha, interlaced",
            "photo_exif6_160x120.jpg": "JPEG YCbCr 4:2:0",
        ]
        for (name, format) in expect {
            XCTAssertEqual(try ImageDecoder.decode(path: Self.dir + "/" + name).format, format, name)
        }
        let orientations = ["photo_exif6_160x120.jpg": 6, "photo_xmp8_120x90.jpg": 8, "rgba_exif3_64x40.png": 3,
                            "real_verify_444.jpg": 1]
        for (name, o) in orientations {
            XCTAssertEqual(try ImageDecoder.decode(path: Self.dir + "/" + name).orientation, o, name)
        }
    }

    // MARK: the processor

    func testValueTableMatchesTransformers() throws {
        let table = Self.golden["value_table"] as! [[Double]]
        let mine = try Idefics2ImageProcessor().valueTable()
        for c in 0..<3 {
            for v in 0..<256 {
                XCTAssertEqual(mine[c][v].bitPattern, Float(table[c][v]).bitPattern, "channel \(c) value \(v)")
            }
        }
    }

    /// Checks one processor run against a golden case; returns max |Δ| where full arrays exist
    /// (nil when only hashes are stored: equal hashes mean Δ = 0).
    @discardableResult
    func check(_ out: ProcessedImages, _ g: [String: Any], resized: (shape: [Int], values: [UInt8])?, label: String) -> Float? {
        XCTAssertEqual(out.pixelValuesShape, g["pixel_values_shape"] as? [Int], label)
        XCTAssertEqual(out.pixelAttentionMaskShape, g["pixel_attention_mask_shape"] as? [Int], label)
        let slots = g["slots"] as! [[[String: Any]]]
        for (b, sample) in slots.enumerated() {
            for (n, slot) in sample.enumerated() {
                let h = slot["height"] as! Int, w = slot["width"] as! Int
                if h == 0 { XCTAssertGreaterThanOrEqual(n, out.imagesPerSample[b], label); continue }
                XCTAssertEqual(out.imageSizes[b][n].height, h, "\(label) slot \(b),\(n)")
                XCTAssertEqual(out.imageSizes[b][n].width, w, "\(label) slot \(b),\(n)")
            }
        }
        XCTAssertEqual(hash(out.pixelAttentionMask), g["xxh3_pixel_attention_mask_u8"] as? String, "\(label): mask")
        let sameValues = hash(out.pixelValues) == g["xxh3_pixel_values_f32"] as? String
        XCTAssertTrue(sameValues, "\(label): pixel_values differ from transformers'")
        XCTAssertEqual(out.pixelValues.min()!, Float(g["min"] as! Double), label)  // JSONSerialization parses doubles inexactly; float32 values survive
        XCTAssertEqual(out.pixelValues.max()!, Float(g["max"] as! Double), label)
        guard let resized else { return sameValues ? 0 : nil }
        // The golden uint8 image mapped through transformers' value table = its pixel_values.
        let table = (Self.golden["value_table"] as! [[Double]]).map { $0.map { Float($0) } }
        XCTAssertEqual(resized.values.count, out.pixelValues.count, label)
        let plane = out.height * out.width
        var maxDiff: Float = 0
        let mask = out.pixelAttentionMask
        for i in 0..<min(resized.values.count, out.pixelValues.count) {
            let slot = i / (3 * plane), c = (i / plane) % 3, p = i % plane
            let expected: Float = mask[slot * plane + p] != 0 ? table[c][Int(resized.values[i])] : 0
            maxDiff = max(maxDiff, abs(expected - out.pixelValues[i]))
        }
        XCTAssertEqual(maxDiff, 0, "\(label): max |Δ| against transformers")
        return maxDiff
    }

    func testProcessorMatchesTransformersPerImage() throws {
        var report: [String: Float] = [:]
        for (name, g) in Self.images.sorted(by: { $0.key < $1.key }) {
            let cases = g["cases"] as! [String: [String: Any]]
            for caseName in ["a", "b", "c", "d", "e"] {
                guard let c = cases[caseName] else { continue }
                // a-d: the image processor called on Image.open(path) (convert_to_rgb); e: on
                // load_image(path), as Idefics2Processor does
                let rgb = try ImageDecoder.decodeRGB(path: Self.dir + "/" + name,
                                                     conversion: caseName == "e" ? .idefics2Processor : .convertToRGB)
                let processor = try Idefics2ImageProcessor(settings: Self.settings(c))
                let out = try processor.process([[rgb]])
                // per-slot uint8 hashes pinpoint a resize difference
                let resized = try processor.resizedImages([rgb])
                for (n, img) in resized.enumerated() {
                    let slot = (c["slots"] as! [[[String: Any]]])[0][n]
                    XCTAssertEqual(hash(chw(img)), slot["xxh3_resized_u8_chw"] as? String,
                                   "\(name) case \(caseName) image \(n): resized uint8 differs from Pillow's")
                }
                let arrays = Self.u8("\(name)/\(caseName)/resized")
                if let d = check(out, c, resized: arrays, label: "\(name) case \(caseName)") {
                    report[caseName] = max(report[caseName] ?? 0, d)
                }
            }
        }
        print("max |Δ| pixel_values per case (all images):", report.sorted { $0.key < $1.key })
    }

    func testBatchesMatchTransformers() throws {
        let batches = Self.golden["batches"] as! [String: [String: Any]]
        for (name, g) in batches.sorted(by: { $0.key < $1.key }) {
            let files = g["images"] as! [[String]]
            let images = try files.map { try $0.map { try ImageDecoder.decodeRGB(path: Self.dir + "/" + $0, conversion: .convertToRGB) } }
            let out = try Idefics2ImageProcessor(settings: Self.settings(g)).process(images)
            XCTAssertEqual(out.imagesPerSample, files.map { $0.count * ((g["do_image_splitting"] as! Bool) ? 5 : 1) })
            let d = check(out, g, resized: Self.u8("\(name)/resized"), label: name)
            if let m = Self.u8("\(name)/pixel_attention_mask") { XCTAssertEqual(m.values, out.pixelAttentionMask, name) }
            print("\(name): shape \(out.pixelValuesShape), max |Δ| \(d.map { "\($0)" } ?? "n/a")")
        }
    }

    private func chw(_ img: RGBImage) -> [UInt8] {
        let plane = img.width * img.height
        return [UInt8](unsafeUninitializedCapacity: img.pixels.count) { out, count in
            img.pixels.withUnsafeBufferPointer { src in
                for c in 0..<3 {
                    var i = c
                    for p in 0..<plane { out[c * plane + p] = src[i]; i += 3 }
                }
            }
            count = img.pixels.count
        }
    }

    // MARK: damaged files

    func testDamagedFilesFailLikePillow() throws {
        let tmp = try makeTempDir("img-corrupt")
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        let cases = Self.golden["corruptions"] as! [[String: Any]]
        XCTAssertGreaterThan(cases.count, 30)
        var agreeError = 0, agreeOK = 0, stricter = 0
        for (i, c) in cases.enumerated() {
            let source = c["source"] as! String
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.dir + "/" + source)))
            switch c["op"] as! String {
            case "truncate": bytes = Array(bytes.prefix(c["length"] as! Int))
            case "splice": bytes = Array(bytes.prefix(c["keep"] as! Int)) + hexBytes(c["append_hex"] as! String)
            default: bytes[c["offset"] as! Int] ^= UInt8(c["mask"] as! Int)
            }
            let path = tmp + "/case\(i)-\(source)"
            try write(bytes, to: path)
            let label = "\(source) \(c["op"]!) \(c["length"] ?? c["offset"] ?? c["keep"]!)"
            do {
                let rgb = try ImageDecoder.decodeRGB(path: path, conversion: .convertToRGB)
                XCTAssertEqual(c["pil"] as? String, "ok", "\(label): Pillow rejects it (\(c["error"] ?? "")) but it decoded")
                XCTAssertEqual(hash(rgb.pixels), c["xxh3_rgb"] as? String, "\(label): decoded differently from Pillow")
                agreeOK += 1
            } catch let e as I2QError {
                XCTAssertTrue(e.description.contains(path), "\(label): error does not name the file: \(e)")
                if c["pil"] as? String == "ok" {
                    stricter += 1
                    print("\(label): Pillow decodes it, i2q refuses: \(e)")
                } else {
                    agreeError += 1
                }
            }
        }
        print("damaged files: \(agreeError) rejected by both, \(agreeOK) decoded identically by both, \(stricter) rejected only here")
        XCTAssertEqual(stricter, 0)
    }

    /// Random truncations and byte flips of every fixture image: decoding returns or throws an
    /// I2QError naming the file, never crashes.
    func testRandomDamageNeverCrashes() throws {
        var rng = SplitMix64(seed: 0x1D3F_1C52)
        var thrown = 0, decoded = 0
        for name in Self.images.keys.sorted() {
            let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.dir + "/" + name)))
            for trial in 0..<12 {
                var bytes = original
                if trial % 3 == 0 {
                    bytes = Array(bytes.prefix(Int(rng.next() % UInt64(bytes.count))))
                } else {
                    for _ in 0..<(1 + trial % 4) {
                        // bias towards the headers, where damage reaches the most code
                        let limit = trial % 2 == 0 ? min(bytes.count, 400) : bytes.count
                        bytes[Int(rng.next() % UInt64(limit))] ^= UInt8(1 + rng.next() % 255)
                    }
                }
                let label = "fuzz/\(name)#\(trial)"
                do {
                    let img = try ImageDecoder.decode(bytes: bytes, name: label)
                    XCTAssertEqual(img.pixels.count, img.width * img.height * img.channels)
                    decoded += 1
                } catch let e as I2QError {
                    XCTAssertTrue(e.description.contains(label), "\(e)")
                    thrown += 1
                }
            }
        }
        print("random damage: \(thrown) errors, \(decoded) decoded")
    }

}

/// XXH3-64 of the bytes as the golden script writes it (xxhash.xxh3_64_hexdigest).
func hash(_ bytes: [UInt8]) -> String { XXH3.hex(XXH3.hash(bytes)) }
func hash(_ floats: [Float]) -> String { floats.withUnsafeBytes { XXH3.hex(XXH3.hash($0)) } }  // little-endian host

func hexBytes(_ s: String) -> [UInt8] {
    let c = Array(s.utf8)
    return stride(from: 0, to: c.count, by: 2).map { UInt8(String(decoding: c[$0..<($0 + 2)], as: UTF8.self), radix: 16)! }
}

