import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QFormats

/// The spec's test vectors (Formats/vectors), written by an independent Python implementation of
/// Formats/i2q-format.md (scripts/fixtures/make_format_vectors.py). Good files must decode to exactly their
/// `.expected.json`; every file in `bad/` must be rejected with an error.
final class FormatVectorTests: XCTestCase {
    let vectors = fixturesDir + "/../../Formats/vectors"

    func testGoodVectorsDecodeAsExpected() throws {
        let names = try FileSystem.listDirectory(vectors).filter { $0.hasSuffix(".i2q") }
        XCTAssertGreaterThanOrEqual(names.count, 3)
        for n in names {
            let f = try I2QFile(path: vectors + "/" + n)
            let exp = try JSONParser.parse(FileSystem.readFile(vectors + "/" + n.replacingOccurrences(of: ".i2q", with: ".expected.json")), source: n)
            let h = try XCTUnwrap(exp["header"])
            XCTAssertEqual(h["file_size"]?.intValue, f.header.fileSize, n)
            XCTAssertEqual(h["alignment"]?.intValue, f.header.alignment, n)
            XCTAssertEqual(h["flags"]?.intValue, Int(f.header.flags), n)
            XCTAssertEqual(h["data_offset"]?.intValue, f.header.dataOffset, n)
            XCTAssertEqual(h["data_size"]?.intValue, f.header.dataSize, n)
            XCTAssertEqual(h["metadata_offset"]?.intValue, f.header.metadataOffset, n)
            XCTAssertEqual(h["metadata_size"]?.intValue, f.header.metadataSize, n)
            XCTAssertEqual(h["metadata_raw_size"]?.intValue, f.header.metadataRawSize, n)
            XCTAssertEqual(h["directory_offset"]?.intValue, f.header.directoryOffset, n)
            XCTAssertEqual(h["directory_size"]?.intValue, f.header.directorySize, n)
            XCTAssertEqual(h["tensor_count"]?.intValue, f.header.tensorCount, n)
            XCTAssertEqual(h["metadata_xxh3"]?.stringValue, XXH3.hex(f.header.metadataChecksum), n)
            XCTAssertEqual(h["header_xxh3"]?.stringValue, XXH3.hex(f.header.headerChecksum), n)

            let entries = try XCTUnwrap(exp["entries"]?.arrayValue)
            XCTAssertEqual(entries.count, f.entries.count, n)
            for (e, got) in zip(entries, f.entries) {
                XCTAssertEqual(e["name"]?.stringValue, got.name)
                XCTAssertEqual(e["scheme"]?.stringValue, got.scheme)
                XCTAssertEqual(e["dtype"]?.stringValue, got.dtype.rawValue)
                XCTAssertEqual(e["shape"]?.arrayValue?.compactMap(\.intValue), got.shape)
                let params = e["params"]?.arrayValue ?? []
                XCTAssertEqual(params.count, got.params.count, got.name)
                for (p, (k, v)) in zip(params, got.params) {
                    let a = p.arrayValue ?? []
                    XCTAssertEqual(a.first?.stringValue, k)
                    switch v {
                    case let .int(i): XCTAssertEqual(a[2].intValue.map(Int64.init), i)
                    case let .float(d): XCTAssertEqual(a[2].doubleValue, d)
                    case let .string(s): XCTAssertEqual(a[2].stringValue, s)
                    }
                }
                let parts = e["parts"]?.arrayValue ?? []
                XCTAssertEqual(parts.count, got.parts.count, got.name)
                let comps = try XCTUnwrap(e["components"]?.arrayValue)
                XCTAssertEqual(comps.count, got.components.count, got.name)
                for (c, gc) in zip(comps, got.components) {
                    XCTAssertEqual(c["role"]?.stringValue, gc.role)
                    XCTAssertEqual(c["dtype"]?.stringValue, gc.dtype.rawValue)
                    XCTAssertEqual(c["shape"]?.arrayValue?.compactMap(\.intValue), gc.shape)
                    XCTAssertEqual(c["offset"]?.intValue, gc.offset)
                    XCTAssertEqual(c["size"]?.intValue, gc.size)
                    XCTAssertEqual(c["xxh3"]?.stringValue, XXH3.hex(gc.checksum))
                    let hex = f.file.withBytes(f.header.dataOffset + gc.offset, gc.size) { $0.map { String(format: "%02x", $0) }.joined() }
                    XCTAssertEqual(c["hex"]?.stringValue, hex, "\(n) \(got.name) \(gc.role)")
                }
            }
            let files = try XCTUnwrap(exp["metadata"]?["files"]?.objectEntries)
            XCTAssertEqual(files.map(\.0).sorted(), f.metadata.files.map(\.name).sorted(), n)
            for (name, v) in files where v["encoding"]?.stringValue == "utf8" {
                XCTAssertEqual(v["data"]?.stringValue.map { Array($0.utf8) }, f.metadata.file(name), "\(n): \(name)")
            }
            XCTAssertTrue(f.verifyAll().isEmpty, n)
        }
    }

    func testBadVectorsAreRejected() throws {
        let bad = vectors + "/bad"
        let names = try FileSystem.listDirectory(bad).filter { $0.hasSuffix(".i2q") }
        XCTAssertGreaterThanOrEqual(names.count, 30)
        for n in names {
            let why = (try? String(decoding: FileSystem.readFile(bad + "/" + n.replacingOccurrences(of: ".i2q", with: ".why")), as: UTF8.self)) ?? ""
            XCTAssertThrowsError(try I2QFile(path: bad + "/" + n), "\(n) must be rejected: \(why)") { e in
                XCTAssertTrue(e is I2QError, "\(n): \(e)")
                XCTAssertTrue("\(e)".contains(n) || "\(e)".contains("metadata"), "\(n): error does not name the file: \(e)")
            }
        }
    }
}
