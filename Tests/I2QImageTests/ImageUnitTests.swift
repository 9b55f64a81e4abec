import Foundation
import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QImage

final class ImageUnitTests: XCTestCase {
    // MARK: resize rule and splitting

    func testResizeOutputSizeRule() {
        typealias P = Idefics2ImageProcessor
        // (height, width) -> (height, width), longest 980 / shortest 378
        let cases: [((Int, Int), (Int, Int))] = [
            ((927, 1629), (557, 980)),   // landscape, wider than 980: H = int(980 / (1629/927))
            ((1754, 1240), (980, 692)),  // portrait A4: W = int(980 * 1240/1754)
            ((13, 20), (378, 378)),      // tiny: both edges raised to 378 (aspect not kept)
            ((300, 1400), (378, 980)),   // int(980 / (1400/300)) = 210 -> 378
            ((1501, 201), (980, 378)),
            ((980, 980), (980, 980)),    // square at the limit: unchanged
            ((1000, 1000), (980, 980)),  // square above: the W >= H branch
            ((600, 500), (600, 500)),    // within the limits: unchanged
        ]
        for ((h, w), (eh, ew)) in cases {
            let r = P.resizeOutputSize(height: h, width: w, longestEdge: 980, shortestEdge: 378)
            XCTAssertEqual([r.height, r.width], [eh, ew], "\(h)x\(w)")
        }
    }

    func testSplitCropsUseIntegerHalves() throws {
        let w = 7, h = 5
        let pixels = (0..<(w * h * 3)).map { UInt8($0 % 256) }
        let image = RGBImage(width: w, height: h, pixels: pixels)
        let parts = try Idefics2ImageProcessor.split(image)
        XCTAssertEqual(parts.map { [$0.height, $0.width] }, [[2, 3], [2, 4], [3, 3], [3, 4], [5, 7]])
        // crop 4 starts at row 2, column 3
        XCTAssertEqual(Array(parts[3].pixels[0..<3]), Array(pixels[((2 * w) + 3) * 3..<((2 * w) + 3) * 3 + 3]))
        XCTAssertThrowsError(try Idefics2ImageProcessor.split(RGBImage(width: 1, height: 9, pixels: [UInt8](repeating: 0, count: 27))))
    }

    func testPassOrder() {
        XCTAssertFalse(PILResize.horizontalPassFirst(inWidth: 201, inHeight: 1501, outWidth: 378, outHeight: 980))
        XCTAssertTrue(PILResize.horizontalPassFirst(inWidth: 1240, inHeight: 1754, outWidth: 692, outHeight: 980))
        XCTAssertTrue(PILResize.horizontalPassFirst(inWidth: 20, inHeight: 13, outWidth: 378, outHeight: 378))
    }

    func testResizeToSameSizeIsIdentityAndConstantImagesStayConstant() {
        let img = RGBImage(width: 3, height: 2, pixels: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18])
        XCTAssertEqual(PILResize.bilinear(img, width: 3, height: 2), img)
        let flat = RGBImage(width: 37, height: 23, pixels: [UInt8](repeating: 200, count: 37 * 23 * 3))
        for (w, h) in [(5, 5), (100, 9), (37, 61), (1, 1)] {
            let r = PILResize.bilinear(flat, width: w, height: h)
            XCTAssertTrue(r.pixels.allSatisfy { $0 == 200 }, "\(w)x\(h)")
        }
    }

    func testBilinearCoefficientsSumToOne() {
        for (inSize, outSize) in [(1629, 980), (20, 378), (1754, 56), (7, 3)] {
            let c = PILResize.coefficients(inSize: inSize, in0: 0, in1: Float(inSize), outSize: outSize)
            for xx in 0..<outSize {
                let n = c.bounds[2 * xx + 1]
                let sum = (0..<n).reduce(0) { $0 + Int(c.weights[xx * c.ksize + $1]) }
                XCTAssertLessThanOrEqual(abs(sum - (1 << 22)), n, "\(inSize)->\(outSize) at \(xx)")
            }
        }
    }

    // MARK: the processor

    func testProcessorSettingsAndErrors() throws {
        var s = Idefics2ImageSettings()
        s.shortestEdge = 0
        XCTAssertThrowsError(try Idefics2ImageProcessor(settings: s))
        s = Idefics2ImageSettings()
        s.imageMean = [0.5]
        XCTAssertThrowsError(try Idefics2ImageProcessor(settings: s))
        XCTAssertThrowsError(try Idefics2ImageProcessor().process([]))
        XCTAssertThrowsError(try Idefics2ImageProcessor().process([[]]))
    }

    func testPaddingMaskAndEmptySlots() throws {
        let a = RGBImage(width: 4, height: 2, pixels: [UInt8](repeating: 255, count: 24))
        let b = RGBImage(width: 2, height: 3, pixels: [UInt8](repeating: 0, count: 18))
        var s = Idefics2ImageSettings()
        s.doResize = false
        let out = try Idefics2ImageProcessor(settings: s).process([[a, b], [b]])
        XCTAssertEqual(out.pixelValuesShape, [2, 2, 3, 3, 4])
        XCTAssertEqual(out.imagesPerSample, [2, 1])
        let plane = 12
        // sample 0 image 0: 2x4 of +1.0, row 2 padded
        XCTAssertEqual(Array(out.pixelAttentionMask[0..<plane]), [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
        XCTAssertEqual(out.pixelValues[0], 1.0)
        XCTAssertEqual(out.pixelValues[8], 0.0)
        // sample 0 image 1: 3x2 of -1.0
        XCTAssertEqual(Array(out.pixelAttentionMask[plane..<(2 * plane)]), [1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0])
        XCTAssertEqual(out.pixelValues[3 * plane], -1.0)
        // sample 1 slot 1 is empty: all zero
        XCTAssertTrue(out.pixelAttentionMask[(3 * plane)...].allSatisfy { $0 == 0 })
        XCTAssertTrue(out.pixelValues[(9 * plane)...].allSatisfy { $0 == 0 })
    }

    func testNoPaddingNeedsARectangularBatch() throws {
        var s = Idefics2ImageSettings()
        s.doPad = false
        s.doResize = false
        let a = RGBImage(width: 4, height: 2, pixels: [UInt8](repeating: 9, count: 24))
        let b = RGBImage(width: 2, height: 3, pixels: [UInt8](repeating: 9, count: 18))
        XCTAssertThrowsError(try Idefics2ImageProcessor(settings: s).process([[a, b]]))
        let out = try Idefics2ImageProcessor(settings: s).process([[a], [a]])
        XCTAssertTrue(out.pixelAttentionMask.allSatisfy { $0 == 1 })
    }

    func testValueTableArithmetic() throws {
        let t = try Idefics2ImageProcessor().valueTable()
        XCTAssertEqual(t[0][0], -1)
        XCTAssertEqual(t[0][255], 1)
        // float64 rescale then float32: 128/255 = 0.50196..., (x - 0.5) / 0.5 in float32
        XCTAssertEqual(t[1][128], (Float(128.0 / 255.0) - 0.5) / 0.5)
        var s = Idefics2ImageSettings()
        s.doNormalize = false
        XCTAssertEqual(try Idefics2ImageProcessor(settings: s).valueTable()[2][51], Float(51.0 * (1.0 / 255.0)))
        s.doRescale = false
        XCTAssertEqual(try Idefics2ImageProcessor(settings: s).valueTable()[2][51], 51)
    }

    func testAlphaCompositeOverWhite() {
        XCTAssertTrue(PILMath.alphaCompositeOverWhite(10, 20, 30, 0) == (255, 255, 255))
        XCTAssertTrue(PILMath.alphaCompositeOverWhite(10, 20, 30, 255) == (10, 20, 30))
        // half transparent black on white: Pillow gives 128
        XCTAssertTrue(PILMath.alphaCompositeOverWhite(0, 0, 0, 127) == (128, 128, 128))
    }

    // MARK: decoder errors

    func testUnreadableFilesNameTheFile() throws {
        let dir = try makeTempDir("img-errors")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        assertThrowsMentioning([dir + "/missing.png"]) { _ = try ImageDecoder.decode(path: dir + "/missing.png") }
        try write([], to: dir + "/empty.png")
        assertThrowsMentioning([dir + "/empty.png", "empty"]) { _ = try ImageDecoder.decode(path: dir + "/empty.png") }
        try write(Array("GIF89a\u{1}\u{0}\u{1}\u{0}".utf8), to: dir + "/a.gif")
        assertThrowsMentioning([dir + "/a.gif", "GIF", "PNG and JPEG"]) { _ = try ImageDecoder.decode(path: dir + "/a.gif") }
        try write(Array("hello".utf8), to: dir + "/text.jpg")
        assertThrowsMentioning([dir + "/text.jpg", "not a PNG or JPEG"]) { _ = try ImageDecoder.decode(path: dir + "/text.jpg") }
        let png = [UInt8](try Data(contentsOf: URL(fileURLWithPath: fixturesDir + "/images/tiny_20x13.png")))
        try write(Array(png.prefix(png.count - 30)), to: dir + "/cut.png")
        assertThrowsMentioning([dir + "/cut.png", "truncated"]) { _ = try ImageDecoder.decode(path: dir + "/cut.png") }
        var badCRC = png
        badCRC[29] ^= 1  // IHDR CRC
        try write(badCRC, to: dir + "/crc.png")
        assertThrowsMentioning([dir + "/crc.png", "CRC", "IHDR"]) { _ = try ImageDecoder.decode(path: dir + "/crc.png") }
        let jpg = [UInt8](try Data(contentsOf: URL(fileURLWithPath: fixturesDir + "/images/real_verify_444.jpg")))
        try write(Array(jpg.prefix(jpg.count / 2)), to: dir + "/cut.jpg")
        assertThrowsMentioning([dir + "/cut.jpg", "truncated", "row"]) { _ = try ImageDecoder.decode(path: dir + "/cut.jpg") }
        assertThrowsMentioning([dir]) { _ = try ImageDecoder.decode(path: dir) }
    }

    func testDecompressionBombLimit() throws {
        // a valid IHDR for 20000 x 20000 (400 M pixels > 2 x 89,478,485): refused before decoding
        let ihdr: [UInt8] = [0, 0, 0x4E, 0x20, 0, 0, 0x4E, 0x20, 8, 2, 0, 0, 0]
        var chunk: [UInt8] = [0, 0, 0, 13] + Array("IHDR".utf8) + ihdr
        let crc = chunk[4...].withUnsafeBytes { CRC32.update(0xffff_ffff, $0) } ^ 0xffff_ffff
        chunk += [UInt8(crc >> 24), UInt8((crc >> 16) & 255), UInt8((crc >> 8) & 255), UInt8(crc & 255)]
        let idat: [UInt8] = [0, 0, 0, 0] + Array("IDAT".utf8) + [0x35, 0xAF, 0x06, 0x1E]
        let file = PNGDecoder.signature + chunk + idat
        XCTAssertThrowsError(try ImageDecoder.decode(bytes: file, name: "bomb.png")) { e in
            XCTAssertTrue("\(e)".contains("bomb.png") && "\(e)".contains("decompression-bomb"), "\(e)")
        }
    }

    /// The decoders run libpng/libjpeg on worker threads; decoding from many threads at once must
    /// give the same pixels.
    func testConcurrentDecoding() throws {
        let names = ["real_verify_444.jpg", "real_rustc_image3_trns.png", "doc_a4_310x438_palette4_interlaced.png",
                     "real_f3_progressive_422.jpg"]
        let reference = try names.map { try ImageDecoder.decode(path: fixturesDir + "/images/" + $0) }
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var ok = [Bool](repeating: false, count: 32)
            func set(_ i: Int, _ v: Bool) { lock.lock(); ok[i] = v; lock.unlock() }
        }
        let results = Results()
        DispatchQueue.concurrentPerform(iterations: 32) { i in
            let k = i % names.count
            var bytes = [UInt8](try! Data(contentsOf: URL(fileURLWithPath: fixturesDir + "/images/" + names[k])))
            if i % 3 == 0 { bytes = Array(bytes.prefix(bytes.count / 3)) }  // some fail, concurrently
            let decoded = try? ImageDecoder.decode(bytes: bytes, name: names[k])
            results.set(i, i % 3 == 0 ? decoded == nil : decoded == reference[k])
        }
        XCTAssertTrue(results.ok.allSatisfy { $0 })
    }
}
