import Foundation
import XCTest
import I2QCore
import I2QFormats

/// Tests/Fixtures, found relative to this source file.
public let fixturesDir: String = {
    var url = URL(fileURLWithPath: #filePath)
    url.deleteLastPathComponent()
    url.deleteLastPathComponent()
    return url.appendingPathComponent("Fixtures").path
}()

/// A fresh temporary directory per test.
public func makeTempDir(_ label: String = "t") throws -> String {
    let p = NSTemporaryDirectory() + "i2q-test-\(label)-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
    return p
}

/// Builds raw safetensors bytes from a literal header JSON and a data section, byte by byte, so
/// tests can produce every kind of malformed file.
public func rawSafetensors(header: String, data: [UInt8], pad: Bool = true) -> [UInt8] {
    var h = Array(header.utf8)
    if pad { while h.count % 8 != 0 { h.append(0x20) } }
    var out: [UInt8] = []
    var n = UInt64(h.count).littleEndian
    withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
    return out + h + data
}

public func write(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Asserts that `body` throws an I2QError whose message contains every string in `mentions`.
public func assertThrowsMentioning(_ mentions: [String], file: StaticString = #filePath, line: UInt = #line,
                            _ body: () throws -> Void) {
    do {
        try body()
        XCTFail("expected an error mentioning \(mentions)", file: file, line: line)
    } catch let e as I2QError {
        for m in mentions {
            XCTAssertTrue(e.description.contains(m), "error \"\(e.description)\" does not mention \"\(m)\"", file: file, line: line)
        }
    } catch {
        XCTFail("unexpected non-I2Q error \(error)", file: file, line: line)
    }
}

/// The raw bytes of every tensor of a safetensors file/directory, by name.
public func tensorBytes(_ path: String) throws -> [String: (dtype: DType, shape: [Int], bytes: [UInt8])] {
    let c = try SafetensorsCheckpoint(path: path)
    var out: [String: (dtype: DType, shape: [Int], bytes: [UInt8])] = [:]
    for t in c.tensors { out[t.name] = (t.info.dtype, t.info.shape, t.shard.withData(t.info) { Array($0) }) }
    return out
}

/// A tiny deterministic PRNG for mutation tests (SplitMix64, Steele et al. 2014).
public struct SplitMix64 {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
