import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QFormats

/// The i2q file format (Formats/i2q-format.md): writer ↔ reader round trip, checksum detection,
/// corrupt headers and directories, and a deterministic mutation fuzz of the reader.
final class I2QFileTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try makeTempDir("i2q") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    static let config = Array(#"{"model_type": "llama", "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1, "intermediate_size": 16, "vocab_size": 4}"#.utf8)

    /// Writes a small file with plain tensors of several dtypes, a quantized-style entry with params
    /// and a fused entry with parts.
    func writeSample(_ path: String, alignment: Int = 64, compress: Bool = true) throws -> [String: [UInt8]] {
        let w = try I2QWriter(path: path, alignment: alignment)
        var data: [String: [UInt8]] = [:]
        let a: [Float] = [1, -2, 0.5, 3, .infinity, -0.0]
        try a.withUnsafeBytes { try w.writePlain(name: "a.weight", dtype: .f32, shape: [2, 3], $0) }
        data["a.weight"] = a.withUnsafeBytes { Array($0) }
        let b: [Int64] = [7, -1, 1 << 40]
        try b.withUnsafeBytes { try w.writePlain(name: "b.ids", dtype: .i64, shape: [3], $0) }
        data["b.ids"] = b.withUnsafeBytes { Array($0) }
        try w.beginTensor(name: "q.weight", scheme: I2QSpec.Scheme.nf4, dtype: .bf16, shape: [4, 8],
                          params: [("blocksize", .int(64)), ("nested_offset", .float(0.125)), ("note", .string("é"))])
        let packed = (0..<16).map { UInt8($0 * 17 & 0xFF) }
        try w.beginComponent(role: "packed", dtype: .u8, shape: [16])
        try packed.withUnsafeBytes { try w.append($0) }
        try w.endComponent()
        let absmax: [Float] = [0.75]
        try w.beginComponent(role: "absmax", dtype: .f32, shape: [1])
        try absmax.withUnsafeBytes { try w.append($0) }
        try w.endComponent()
        try w.endTensor()
        data["q.weight/packed"] = packed
        let qkv = (0..<12).map { Float($0) }
        try w.beginTensor(name: "qkv.weight", dtype: .f32, shape: [6, 2],
                          parts: [I2QPart(name: "q", start: 0, length: 2), I2QPart(name: "k", start: 2, length: 2), I2QPart(name: "v", start: 4, length: 2)])
        try w.beginComponent(role: "data", dtype: .f32, shape: [6, 2])
        try qkv.withUnsafeBytes { try w.append($0) }
        try w.endComponent()
        try w.endTensor()
        let meta = I2QMetadata(files: [("config.json", Self.config), ("tokenizer.model", [0xFF, 0x00, 0x80, 0x41])],
                               provenance: Provenance(source: .object([("kind", .string("test"))]),
                                                      passes: [PassRecord(name: "cast", params: [("dtype", .string("F16"))])]))
        try w.finish(metadata: meta, compressMetadata: compress)
        return data
    }

    func testRoundTrip() throws {
        for compress in [true, false] {
            let p = dir + "/s\(compress).i2q"
            let data = try writeSample(p, compress: compress)
            let f = try I2QFile(path: p)
            XCTAssertEqual(f.entries.map(\.name), ["a.weight", "b.ids", "q.weight", "qkv.weight"])
            XCTAssertEqual(f.tensors.map(\.name), ["a.weight", "b.ids", "qkv.weight"])
            XCTAssertEqual(f.quantizedTensorNames, ["q.weight"])
            XCTAssertEqual(try f.tensor("a.weight")?.withData { Array($0) }, data["a.weight"])
            XCTAssertEqual(try f.tensor("b.ids")?.withData { Array($0) }, data["b.ids"])
            let q = f.entries[2]
            XCTAssertEqual(q.scheme, "nf4")
            XCTAssertEqual(q.params.count, 3)
            XCTAssertEqual(q.params[1].1, .float(0.125))
            XCTAssertEqual(q.params[2].1, .string("é"))
            let packed = q.component("packed")!
            XCTAssertEqual(f.file.withBytes(f.header.dataOffset + packed.offset, packed.size) { Array($0) }, data["q.weight/packed"])
            XCTAssertEqual(f.entries[3].parts.map(\.name), ["q", "k", "v"])
            for e in f.entries { for c in e.components { XCTAssertEqual((f.header.dataOffset + c.offset) % 64, 0) } }
            XCTAssertEqual(f.metadata.file("tokenizer.model"), [0xFF, 0x00, 0x80, 0x41])
            XCTAssertEqual(f.provenance?.passes.map(\.name), ["cast"])
            XCTAssertEqual(f.config.modelType, "llama")
            XCTAssertTrue(f.verifyAll().isEmpty)
            XCTAssertEqual(f.header.flags, compress ? 1 : 0)
        }
    }

    /// Flipping any single byte of tensor data must make verification fail, naming that tensor.
    func testEveryDataByteFlipIsDetectedAndNamed() throws {
        let p = dir + "/flip.i2q"
        _ = try writeSample(p)
        let good = try FileSystem.readFile(p)
        let f = try I2QFile(path: p)
        var positions = 0
        for e in f.entries {
            for c in e.components {
                for k in 0..<c.size {
                    var bad = good
                    bad[f.header.dataOffset + c.offset + k] ^= 0x01 << UInt8(k % 8)
                    let g = try I2QFile(file: MappedFile(copying: bad, name: "flip.i2q"))
                    let errs = g.verifyAll()
                    XCTAssertEqual(errs.count, 1)
                    XCTAssertTrue(errs.first?.description.contains("\"\(e.name)\"") ?? false, "byte \(k) of \(e.name)")
                    positions += 1
                }
            }
        }
        XCTAssertGreaterThan(positions, 100)
    }

    /// Any single-byte change outside tensor data is a clear error when the file is opened
    /// (padding bytes excepted: they are not covered, and not read).
    func testHeaderDirectoryAndMetadataFlipsAreErrors() throws {
        let p = dir + "/h.i2q"
        _ = try writeSample(p)
        let good = try FileSystem.readFile(p)
        let h = try I2QFile(path: p).header
        var checked = 0
        let covered = Array(0..<I2QSpec.headerSize) + Array(h.metadataOffset..<(h.metadataOffset + h.metadataSize))
            + Array(h.directoryOffset..<(h.directoryOffset + h.directorySize))
        for pos in covered {
            var bad = good
            bad[pos] ^= 0x5A
            XCTAssertThrowsError(try I2QFile(file: MappedFile(copying: bad, name: "h.i2q")), "byte \(pos)") { e in
                XCTAssertTrue(e is I2QError, "byte \(pos): \(e)")
                XCTAssertTrue("\(e)".contains("h.i2q") || "\(e)".contains("metadata"), "byte \(pos): \(e)")
            }
            checked += 1
        }
        XCTAssertEqual(checked, covered.count)
    }

    func testTruncationsAreErrors() throws {
        let p = dir + "/t.i2q"
        _ = try writeSample(p)
        let good = try FileSystem.readFile(p)
        for n in [0, 7, 8, 127, 128, 200, good.count / 2, good.count - 1] {
            XCTAssertThrowsError(try I2QFile(file: MappedFile(copying: Array(good.prefix(n)), name: "t.i2q"))) { e in
                XCTAssertTrue(e is I2QError)
            }
        }
        XCTAssertThrowsError(try I2QFile(file: MappedFile(copying: good + [0], name: "t.i2q"))) { e in
            XCTAssertTrue("\(e)".contains("trailing"))
        }
    }

    func testNewerMajorVersionIsRefusedByName() throws {
        let p = dir + "/v.i2q"
        _ = try writeSample(p)
        var b = try FileSystem.readFile(p)
        b[8] = 2
        XCTAssertThrowsError(try I2QFile(file: MappedFile(copying: b, name: "v.i2q"))) { e in
            XCTAssertTrue("\(e)".contains("version 2.0"), "\(e)")
        }
    }

    /// Deterministic mutation fuzzing: ≥ 100,000 mutated files, none may crash the reader. Half of
    /// the mutations re-seal the header checksum so the directory and metadata parsers are reached.
    func testMutationFuzz() throws {
        var seeds: [[UInt8]] = []
        for (i, compress) in [true, false].enumerated() {
            let p = dir + "/seed\(i).i2q"
            _ = try writeSample(p, compress: compress)
            seeds.append(try FileSystem.readFile(p))
        }
        var rng = SplitMix64(seed: 0x1215_5EED)
        var opened = 0, rejected = 0
        let iterations = 100_000
        for it in 0..<iterations {
            var b = seeds[it % seeds.count]
            let h = try I2QFile.readHeader(MappedFile(copying: b, name: "seed"))
            let kind = rng.next() % 6
            let mutations = 1 + Int(rng.next() % 4)
            for _ in 0..<mutations {
                switch kind {
                case 0:  // random byte anywhere
                    b[Int(rng.next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: rng.next())
                case 1, 2:  // a byte in the directory
                    b[h.directoryOffset + Int(rng.next() % UInt64(h.directorySize))] = UInt8(truncatingIfNeeded: rng.next())
                case 3:  // a header u64 field set to an extreme value
                    let field = 16 + 8 * Int(rng.next() % 13)
                    let v: UInt64 = [0, 1, UInt64.max, UInt64(b.count), UInt64(1) << 63, rng.next()][Int(rng.next() % 6)]
                    for k in 0..<8 { b[field + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
                case 4:  // truncate or extend
                    if rng.next() % 2 == 0 { b.removeLast(Int(rng.next() % UInt64(b.count))) } else { b += [UInt8](repeating: 0, count: Int(rng.next() % 100)) }
                default:  // a u32 in the directory (counts, lengths) set to an extreme value
                    let at = h.directoryOffset + Int(rng.next() % UInt64(max(h.directorySize - 4, 1)))
                    let v: UInt32 = [0, 1, 0xFFFF, 0x10000, UInt32.max, UInt32(truncatingIfNeeded: rng.next())][Int(rng.next() % 6)]
                    if at + 4 <= b.count { for k in 0..<4 { b[at + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(k))) } }
                }
            }
            if kind != 0 && kind != 4 { Self.reseal(&b) }
            do {
                let f = try I2QFile(file: MappedFile(copying: b, name: "fuzz.i2q"))
                _ = f.verifyAll()
                for t in f.tensors { _ = try t.withData { $0.count } }
                opened += 1
            } catch is I2QError {
                rejected += 1
            }
        }
        XCTAssertEqual(opened + rejected, iterations)
        XCTAssertGreaterThan(rejected, iterations / 4)
        print("i2q reader fuzz: \(iterations) mutated inputs, \(rejected) rejected with an error, \(opened) opened, 0 crashes")
    }

    /// Recomputes header_xxh3 (if the directory range is still inside the file).
    static func reseal(_ b: inout [UInt8]) {
        guard b.count >= 128 else { return }
        func u64(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[o + $1]) << (8 * UInt64($1)) } }
        let off = u64(72), size = u64(80)
        guard off <= UInt64(b.count), size <= UInt64(b.count) - off else { return }
        let sum = XXH3.hash(Array(b[0..<120]) + Array(b[Int(off)..<Int(off + size)]))
        for k in 0..<8 { b[120 + k] = UInt8(truncatingIfNeeded: sum >> (8 * UInt64(k))) }
    }
}

