import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QFormats

/// One crafted bad file per validation rule of the reference reader (huggingface/safetensors
/// `read_metadata` / `validate`); each error must name the file and (where there is one) the tensor.
final class SafetensorsValidationTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try makeTempDir("val") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// A good file: a [2,2] F32 (16 bytes) then a [3] I8 (3 bytes).
    let goodHeader = #"{"__metadata__":{"format":"pt"},"a.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b.bias":{"dtype":"I8","shape":[3],"data_offsets":[16,19]}}"#
    let goodData: [UInt8] = Array(0..<19)

    func open(_ bytes: [UInt8], name: String = "m.safetensors") throws -> SafetensorsFile {
        let p = dir + "/" + name
        try write(bytes, to: p)
        return try SafetensorsFile(path: p)
    }

    func testGoodFileReads() throws {
        let f = try open(rawSafetensors(header: goodHeader, data: goodData))
        XCTAssertEqual(f.tensors.map(\.name), ["a.weight", "b.bias"])
        XCTAssertEqual(f.info("a.weight")?.shape, [2, 2])
        XCTAssertEqual(f.info("b.bias")?.dtype, .i8)
        XCTAssertEqual(f.metadata.first?.1, "pt")
        let bytes = f.withData(f.info("b.bias")!) { Array($0) }
        XCTAssertEqual(bytes, [16, 17, 18])
    }

    func testTruncatedData() {
        assertThrowsMentioning(["m.safetensors", "truncated"]) {
            _ = try open(rawSafetensors(header: goodHeader, data: Array(goodData.prefix(10))))
        }
    }

    func testTruncatedBeforeHeaderLength() {
        assertThrowsMentioning(["m.safetensors", "truncated"]) { _ = try open([1, 2, 3]) }
    }

    func testHeaderPastEnd() {
        let full = rawSafetensors(header: goodHeader, data: goodData)
        assertThrowsMentioning(["m.safetensors", "truncated"]) { _ = try open(Array(full.prefix(40))) }
    }

    func testHeaderTooLarge() {
        var n = UInt64(100_000_001).littleEndian
        var bytes: [UInt8] = []
        withUnsafeBytes(of: &n) { bytes.append(contentsOf: $0) }
        bytes += Array("{}".utf8)
        assertThrowsMentioning(["m.safetensors", "100 MB"]) { _ = try open(bytes) }
    }

    func testHeaderNotJSON() {
        assertThrowsMentioning(["m.safetensors", "JSON"]) {
            _ = try open(rawSafetensors(header: #"{"a": {"dtype": "F32",, }"#, data: []))
        }
    }

    func testHeaderMustStartWithBrace() {
        assertThrowsMentioning(["m.safetensors", "'{'"]) { _ = try open(rawSafetensors(header: "[1,2]", data: [])) }
    }

    func testOverlappingOffsets() {
        let h = #"{"a.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b.bias":{"dtype":"I8","shape":[3],"data_offsets":[12,15]}}"#
        assertThrowsMentioning(["m.safetensors", "b.bias", "overlaps"]) { _ = try open(rawSafetensors(header: h, data: Array(repeating: 0, count: 16))) }
    }

    func testGapBetweenTensors() {
        let h = #"{"a.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b.bias":{"dtype":"I8","shape":[3],"data_offsets":[20,23]}}"#
        assertThrowsMentioning(["m.safetensors", "b.bias", "gap"]) { _ = try open(rawSafetensors(header: h, data: Array(repeating: 0, count: 23))) }
    }

    func testGapAtStart() {
        let h = #"{"a.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[4,20]}}"#
        assertThrowsMentioning(["m.safetensors", "a.weight", "gap"]) { _ = try open(rawSafetensors(header: h, data: Array(repeating: 0, count: 20))) }
    }

    func testSizeMismatch() {
        let h = #"{"a.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}}"#
        assertThrowsMentioning(["m.safetensors", "a.weight", "24 bytes", "16 bytes"]) { _ = try open(rawSafetensors(header: h, data: Array(repeating: 0, count: 16))) }
    }

    func testShapeOverflow() {
        let h = #"{"a.weight":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}}"#
        assertThrowsMentioning(["m.safetensors", "a.weight"]) { _ = try open(rawSafetensors(header: h, data: Array(repeating: 0, count: 16))) }
    }

    func testTrailingBytes() {
        assertThrowsMentioning(["m.safetensors", "trailing"]) { _ = try open(rawSafetensors(header: goodHeader, data: goodData + [0, 0])) }
    }

    func testDuplicateTensorName() {
        let h = #"{"a.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"a.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[16,32]}}"#
        assertThrowsMentioning(["m.safetensors", "a.weight", "twice"]) { _ = try open(rawSafetensors(header: h, data: Array(repeating: 0, count: 32))) }
    }

    func testUnknownDType() {
        let h = #"{"a.weight":{"dtype":"F12","shape":[2,2],"data_offsets":[0,16]}}"#
        assertThrowsMentioning(["m.safetensors", "a.weight", "F12"]) { _ = try open(rawSafetensors(header: h, data: Array(repeating: 0, count: 16))) }
    }

    func testNegativeShape() {
        let h = #"{"a.weight":{"dtype":"F32","shape":[-1,4],"data_offsets":[0,16]}}"#
        assertThrowsMentioning(["m.safetensors", "a.weight", "shape"]) { _ = try open(rawSafetensors(header: h, data: Array(repeating: 0, count: 16))) }
    }

    func testEndBeforeBegin() {
        let h = #"{"a.weight":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#
        assertThrowsMentioning(["m.safetensors", "\"b\""]) { _ = try open(rawSafetensors(header: h, data: Array(repeating: 0, count: 8))) }
    }

    func testNotUTF8() {
        var bytes = rawSafetensors(header: goodHeader, data: goodData)
        bytes[12] = 0xFF
        assertThrowsMentioning(["m.safetensors", "UTF-8"]) { _ = try open(bytes) }
    }

    // MARK: - shard index

    func makeShards() throws {
        let h1 = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        let h2 = #"{"b":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#
        try write(rawSafetensors(header: h1, data: Array(repeating: 0, count: 8)), to: dir + "/model-00001-of-00002.safetensors")
        try write(rawSafetensors(header: h2, data: Array(repeating: 0, count: 4)), to: dir + "/model-00002-of-00002.safetensors")
    }

    func writeIndex(_ s: String) throws { try write(Array(s.utf8), to: dir + "/model.safetensors.index.json") }

    func testGoodIndex() throws {
        try makeShards()
        try writeIndex(#"{"metadata":{"total_size":12},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#)
        let c = try SafetensorsCheckpoint(path: dir)
        XCTAssertEqual(c.tensors.map(\.name), ["a", "b"])
        XCTAssertEqual(c.totalBytes, 12)
        XCTAssertTrue(c.problems.isEmpty)
    }

    func testIndexPointingNowhere() throws {
        try makeShards()
        try writeIndex(#"{"metadata":{"total_size":12},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00003-of-00003.safetensors"}}"#)
        assertThrowsMentioning(["model.safetensors.index.json", "model-00003-of-00003.safetensors", "\"b\"", "does not exist"]) {
            _ = try SafetensorsCheckpoint(path: dir)
        }
    }

    func testIndexPointingAtWrongShard() throws {
        try makeShards()
        try writeIndex(#"{"metadata":{"total_size":12},"weight_map":{"a":"model-00002-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#)
        // Only shard 2 is listed, so "a" is looked for in it and is not there.
        assertThrowsMentioning(["model.safetensors.index.json", "\"a\"", "model-00002-of-00002.safetensors"]) {
            _ = try SafetensorsCheckpoint(path: dir)
        }
    }

    func testIndexMissingTensorOfShard() throws {
        try makeShards()
        try writeIndex(#"{"metadata":{"total_size":8},"weight_map":{"a":"model-00001-of-00002.safetensors"}}"#)
        let c = try SafetensorsCheckpoint(path: dir)  // shard 2 is not listed at all: not opened
        XCTAssertEqual(c.tensors.map(\.name), ["a"])
        try writeIndex(#"{"metadata":{"total_size":12},"weight_map":{"a":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}}"#)
        assertThrowsMentioning(["\"c\"", "does not hold"]) { _ = try SafetensorsCheckpoint(path: dir) }
    }

    func testIndexDuplicateEntry() throws {
        try makeShards()
        try writeIndex(#"{"weight_map":{"a":"model-00001-of-00002.safetensors","a":"model-00002-of-00002.safetensors"}}"#)
        assertThrowsMentioning(["model.safetensors.index.json", "\"a\"", "twice"]) { _ = try SafetensorsCheckpoint(path: dir) }
    }

    func testTensorInTwoShards() throws {
        let h = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        try write(rawSafetensors(header: h, data: Array(repeating: 0, count: 8)), to: dir + "/x.safetensors")
        try write(rawSafetensors(header: h, data: Array(repeating: 0, count: 8)), to: dir + "/y.safetensors")
        assertThrowsMentioning(["\"a\"", "x.safetensors", "y.safetensors"]) { _ = try SafetensorsCheckpoint(path: dir) }
    }

    func testStaleTotalSizeIsAProblemNotAnError() throws {
        try makeShards()
        try writeIndex(#"{"metadata":{"total_size":999},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#)
        let c = try SafetensorsCheckpoint(path: dir)
        XCTAssertEqual(c.problems.count, 1)
        XCTAssertTrue(c.problems[0].contains("999"))
    }

    func testEmptyDirectory() {
        assertThrowsMentioning([dir, "no model.safetensors"]) { _ = try SafetensorsCheckpoint(path: dir) }
    }
}
