import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QFormats
@testable import I2QQuant

/// Builds GGUF bytes field by field, so tests can write every kind of malformed file.
struct GGUFBytes {
    var version: UInt32 = 3
    var kv: [[UInt8]] = []
    var infos: [[UInt8]] = []
    var data: [UInt8] = []
    var tensorCount: UInt64? = nil
    var kvCount: UInt64? = nil
    var alignment = 32
    var magic: [UInt8] = Array("GGUF".utf8)

    static func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    static func str(_ s: String) -> [UInt8] { u64(UInt64(s.utf8.count)) + Array(s.utf8) }

    mutating func add(_ key: String, type: UInt32, _ payload: [UInt8]) { kv.append(Self.str(key) + Self.u32(type) + payload) }
    mutating func addU32(_ key: String, _ v: UInt32) { add(key, type: 4, Self.u32(v)) }
    mutating func addF32(_ key: String, _ v: Float) { add(key, type: 6, Self.u32(v.bitPattern)) }
    mutating func addString(_ key: String, _ v: String) { add(key, type: 8, Self.str(v)) }

    /// A tensor info; `offset` defaults to the running padded total and data is appended (zeros).
    mutating func tensor(_ name: String, dims: [UInt64], type: GGMLType, offset: UInt64? = nil, rawType: UInt32? = nil, addData: Bool = true) {
        let off = offset ?? UInt64(data.count)
        infos.append(Self.str(name) + Self.u32(UInt32(dims.count)) + dims.flatMap(Self.u64) + Self.u32(rawType ?? type.rawValue) + Self.u64(off))
        if addData {
            let bytes = Int(dims.reduce(UInt64(1), *)) / type.blockSize * type.typeSize
            data += [UInt8](repeating: 0, count: bytes)
            while data.count % alignment != 0 { data.append(0) }
        }
    }

    var bytes: [UInt8] {
        var out = magic + Self.u32(version) + Self.u64(tensorCount ?? UInt64(infos.count)) + Self.u64(kvCount ?? UInt64(kv.count))
        for k in kv { out += k }
        for i in infos { out += i }
        while out.count % alignment != 0 { out.append(0) }
        return out + data
    }

    /// A complete one-layer llama (hidden 32, 2 heads, vocab 4): every tensor F32 unless overridden.
    static func tinyLlama(arch: String = "llama", name: String = "t", heads: Int = 2, types: [String: GGMLType] = [:],
                          skip: Set<String> = []) -> GGUFBytes {
        var b = GGUFBytes()
        b.addString("general.architecture", arch)
        b.addString("general.name", name)
        for (k, v) in [("block_count", 1), ("embedding_length", 32), ("feed_forward_length", 32), ("attention.head_count", heads),
                       ("attention.head_count_kv", heads), ("vocab_size", 4), ("context_length", 64)] {
            b.addU32("\(arch).\(k)", UInt32(v))
        }
        b.addF32("\(arch).rope.freq_base", 10000)
        let shapes: [(String, [UInt64])] = [
            ("token_embd.weight", [32, 4]), ("blk.0.attn_norm.weight", [32]), ("blk.0.attn_q.weight", [32, 32]),
            ("blk.0.attn_k.weight", [32, 32]), ("blk.0.attn_v.weight", [32, 32]), ("blk.0.attn_output.weight", [32, 32]),
            ("blk.0.ffn_norm.weight", [32]), ("blk.0.ffn_gate.weight", [32, 32]), ("blk.0.ffn_up.weight", [32, 32]),
            ("blk.0.ffn_down.weight", [32, 32]), ("output_norm.weight", [32]),
        ]
        for (n, d) in shapes where !skip.contains(n) { b.tensor(n, dims: d, type: types[n] ?? .f32) }
        return b
    }
}

/// One crafted bad file per rule of the reader (the CVE classes of GGUF parsers: huge counts,
/// overflowing sizes, misaligned or overlapping offsets, wrong metadata types); every error names
/// the file and the key or tensor. Plus a mutation test: no byte flip or truncation may crash.
final class GGUFValidationTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try makeTempDir("gguf") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    @discardableResult
    func open(_ b: GGUFBytes, name: String = "m.gguf") throws -> GGUFFile { try open(b.bytes, name: name) }
    @discardableResult
    func open(_ bytes: [UInt8], name: String = "m.gguf") throws -> GGUFFile {
        try GGUFFile(file: MappedFile(copying: bytes, name: name))
    }

    func good() -> GGUFBytes {
        var b = GGUFBytes()
        b.addString("general.architecture", "llama")
        b.tensor("a", dims: [4], type: .f32)
        b.tensor("b", dims: [32, 2], type: .q8_0)
        return b
    }

    func testGoodFile() throws {
        let g = try open(good())
        XCTAssertEqual(g.tensors.map(\.name), ["a", "b"])
        XCTAssertEqual(g.tensors[1].shape, [2, 32])
        XCTAssertEqual(g.tensors[1].byteCount, 68)
        XCTAssertEqual(g.tensors[1].relativeOffset, 32)
    }

    func testMagicVersionAndTruncation() {
        var b = good(); b.magic = Array("GGML".utf8)
        assertThrowsMentioning(["m.gguf", "not a GGUF"]) { try open(b) }
        b = good(); b.version = 1
        assertThrowsMentioning(["m.gguf", "version 1"]) { try open(b) }
        b = good(); b.version = 4
        assertThrowsMentioning(["m.gguf", "version 4"]) { try open(b) }
        b = good(); b.version = 0x0300_0000
        assertThrowsMentioning(["m.gguf", "big-endian"]) { try open(b) }
        assertThrowsMentioning(["m.gguf", "truncated"]) { try open(Array("GGUF".utf8) + [3, 0]) }
        assertThrowsMentioning(["m.gguf", "truncated"]) { try open(Array(good().bytes.prefix(30))) }
        assertThrowsMentioning(["m.gguf", "not a GGUF"]) { try open([]) }
    }

    func testHugeCounts() {
        var b = good(); b.kvCount = 1 << 63
        assertThrowsMentioning(["m.gguf", "metadata entries", "more than"]) { try open(b) }
        b = good(); b.tensorCount = UInt64.max
        assertThrowsMentioning(["m.gguf", "tensors, more than"]) { try open(b) }
        // A string length past the end of the file.
        b = GGUFBytes(); b.kv = [GGUFBytes.u64(UInt64.max) + Array("k".utf8) + GGUFBytes.u32(4) + GGUFBytes.u32(0)]
        assertThrowsMentioning(["m.gguf", "a metadata key", "runs past the end"]) { try open(b) }
        b = GGUFBytes(); b.add("s", type: 8, GGUFBytes.u64(1 << 62) + Array("abc".utf8))
        assertThrowsMentioning(["m.gguf", "key \"s\"", "runs past the end"]) { try open(b) }
        // An array count no file of this size can hold.
        b = GGUFBytes(); b.add("arr", type: 9, GGUFBytes.u32(4) + GGUFBytes.u64(1 << 62) + GGUFBytes.u32(1))
        assertThrowsMentioning(["m.gguf", "\"arr\"", "cannot fit"]) { try open(b) }
        b = GGUFBytes(); b.add("arr", type: 9, GGUFBytes.u32(8) + GGUFBytes.u64(UInt64.max / 8 + 1))
        assertThrowsMentioning(["m.gguf", "\"arr\"", "cannot fit"]) { try open(b) }
    }

    func testMetadataTypes() {
        var b = GGUFBytes(); b.add("x", type: 13, [0])
        assertThrowsMentioning(["m.gguf", "\"x\"", "unknown value type 13"]) { try open(b) }
        b = GGUFBytes(); b.add("x", type: 9, GGUFBytes.u32(9) + GGUFBytes.u64(1) + GGUFBytes.u32(4) + GGUFBytes.u64(0))
        assertThrowsMentioning(["m.gguf", "\"x\"", "nested arrays"]) { try open(b) }
        b = GGUFBytes(); b.add("x", type: 9, GGUFBytes.u32(77) + GGUFBytes.u64(0))
        assertThrowsMentioning(["m.gguf", "\"x\"", "unknown value type 77"]) { try open(b) }
        b = GGUFBytes(); b.addU32("dup", 1); b.addU32("dup", 2)
        assertThrowsMentioning(["m.gguf", "\"dup\"", "twice"]) { try open(b) }
        b = GGUFBytes(); b.kv = [GGUFBytes.u64(2) + [0xC3, 0x28] + GGUFBytes.u32(4) + GGUFBytes.u32(0)]
        assertThrowsMentioning(["m.gguf", "UTF-8"]) { try open(b) }
        b = good(); b.addString("general.alignment", "32")
        assertThrowsMentioning(["m.gguf", "general.alignment", "UINT32", "STRING"]) { try open(b) }
        b = good(); b.add("general.alignment", type: 10, GGUFBytes.u64(32))
        assertThrowsMentioning(["m.gguf", "general.alignment", "UINT32"]) { try open(b) }
        for a: UInt32 in [0, 48] {
            b = good(); b.addU32("general.alignment", a)
            assertThrowsMentioning(["m.gguf", "general.alignment", "power of two"]) { try open(b) }
        }
    }

    func testEmptyArrayAndBool() throws {
        var b = GGUFBytes()
        b.add("e", type: 9, GGUFBytes.u32(8) + GGUFBytes.u64(0))
        b.add("t", type: 7, [1])
        let g = try open(b)
        XCTAssertEqual(g.value("e"), .array(.string, []))
        XCTAssertEqual(g.value("t"), .bool(true))
    }

    func testAlignmentFromMetadata() throws {
        var b = GGUFBytes(); b.alignment = 128
        b.addU32("general.alignment", 128)
        b.tensor("a", dims: [3], type: .f32)
        b.tensor("b", dims: [5], type: .f16)
        let g = try open(b)
        XCTAssertEqual(g.alignment, 128)
        XCTAssertEqual(g.dataOffset % 128, 0)
        XCTAssertEqual(g.tensors[1].relativeOffset, 128)
    }

    func testTensorInfos() {
        var b = good(); b.tensor(String(repeating: "n", count: 64), dims: [4], type: .f32)
        assertThrowsMentioning(["m.gguf", "nnnn", "at most 63"]) { try open(b) }
        b = good(); b.tensor("a", dims: [4], type: .f32)
        assertThrowsMentioning(["m.gguf", "tensor \"a\"", "twice"]) { try open(b) }
        b = good(); b.tensor("c", dims: [1, 1, 1, 1, 1], type: .f32)
        assertThrowsMentioning(["m.gguf", "tensor \"c\"", "5 dimensions"]) { try open(b) }
        b = good(); b.tensor("c", dims: [1 << 62, 1 << 62], type: .f32, addData: false)
        assertThrowsMentioning(["m.gguf", "tensor \"c\"", "overflows"]) { try open(b) }
        b = good(); b.tensor("c", dims: [1 << 63], type: .f32, addData: false)
        assertThrowsMentioning(["m.gguf", "tensor \"c\"", "negative"]) { try open(b) }
        b = good(); b.tensor("c", dims: [1 << 62], type: .f32, addData: false)  // 2^62 elements × 4 bytes
        assertThrowsMentioning(["m.gguf", "tensor \"c\"", "overflows"]) { try open(b) }
        b = good(); b.tensor("c", dims: [4], type: .f32, rawType: 99)
        assertThrowsMentioning(["m.gguf", "tensor \"c\"", "unknown ggml type 99"]) { try open(b) }
        b = good(); b.tensor("c", dims: [33], type: .q4_0, addData: false)
        assertThrowsMentioning(["m.gguf", "tensor \"c\"", "not a multiple of the Q4_0 block size 32"]) { try open(b) }
    }

    func testOffsets() {
        var b = good(); b.tensor("c", dims: [4], type: .f32, offset: 100)
        assertThrowsMentioning(["m.gguf", "tensor \"c\"", "not a multiple of the alignment 32"]) { try open(b) }
        b = good(); b.tensor("c", dims: [4], type: .f32, offset: 128)  // gap: expected 128? no: 32 + 96 = 128 is right
        XCTAssertNoThrow(try open(b))
        b = good(); b.tensor("c", dims: [4], type: .f32, offset: 160)
        assertThrowsMentioning(["m.gguf", "tensor \"c\"", "differs from 128"]) { try open(b) }
        b = good(); b.tensor("c", dims: [4], type: .f32, offset: 32)  // overlaps "b"
        assertThrowsMentioning(["m.gguf", "tensor \"c\"", "differs from 128"]) { try open(b) }
        b = good(); b.tensor("c", dims: [64], type: .f32, addData: false)
        assertThrowsMentioning(["m.gguf", "tensor \"c\"", "runs past the end"]) { try open(b) }
        b = good(); b.tensor("c", dims: [1 << 40], type: .q4_0, addData: false)
        assertThrowsMentioning(["m.gguf", "tensor \"c\"", "runs past the end"]) { try open(b) }
    }

    // MARK: model level

    func model(_ b: GGUFBytes) throws -> GGUFModel { try GGUFModel(file: open(b)) }

    func testModelErrors() throws {
        XCTAssertNoThrow(try model(.tinyLlama()))
        assertThrowsMentioning(["m.gguf", "\"gpt2\" is not supported"]) { _ = try model(.tinyLlama(arch: "gpt2")) }
        var b = GGUFBytes(); b.tensor("a", dims: [4], type: .f32)
        assertThrowsMentioning(["m.gguf", "general.architecture"]) { _ = try model(b) }
        assertThrowsMentioning(["m.gguf", "model.layers.0.mlp.up_proj.weight", "blk.0.ffn_up.weight"]) {
            _ = try model(.tinyLlama(skip: ["blk.0.ffn_up.weight"]))
        }
        assertThrowsMentioning(["m.gguf", "blk.0.attn_v.weight", "IQ4_NL", "cannot dequantize"]) {
            _ = try model(.tinyLlama(types: ["blk.0.attn_v.weight": .iq4_nl]))
        }
        // 32 q rows cannot be 3 heads × 2 rotary halves.
        assertThrowsMentioning(["m.gguf", "blk.0.attn_q.weight", "3 heads"]) { _ = try model(.tinyLlama(heads: 3)) }
    }

    /// llama.cpp runs a llama-architecture file named "mistral" as a llama; so does i2q
    /// (transformers 5.24 tries a MistralConfig and fails on it).
    func testMistralNamedFileIsALlama() throws {
        let m = try model(.tinyLlama(name: "mistral"))
        XCTAssertEqual(m.config.modelType, "llama")
        XCTAssertNil(m.config.textConfig.slidingWindow)
    }

    /// Flipping bytes of the header or truncating the file never crashes: the reader either opens
    /// the file or throws an I2QError. Tensors of files that open are read in full.
    func testMutationsNeverCrash() throws {
        for name in ["tiny-tied", "tiny-llama"] {
            let original = try FileSystem.readFile(fixturesDir + "/gguf/\(name).gguf")
            let header = try open(original).dataOffset
            var rng = SplitMix64(seed: 42)
            var opened = 0, rejected = 0
            func attempt(_ bytes: [UInt8]) {
                do {
                    let m = try GGUFModel(file: try open(bytes))
                    for t in m.tensors {
                        var buf = [Float](repeating: 0, count: t.elementCount)
                        try buf.withUnsafeMutableBytes { try t.read(elements: 0, count: t.elementCount, into: $0.baseAddress!) }
                    }
                    opened += 1
                } catch is I2QError {
                    rejected += 1
                } catch {
                    XCTFail("\(name): non-I2Q error \(error)")
                }
            }
            for _ in 0..<2000 {
                var b = original
                for _ in 0..<(1 + Int(rng.next() % 3)) {
                    let i = Int(rng.next() % UInt64(header))
                    switch rng.next() % 3 {
                    case 0: b[i] ^= UInt8(1 << (rng.next() % 8))
                    case 1: b[i] = UInt8(truncatingIfNeeded: rng.next())
                    default: b[i] = [0x00, 0xFF, 0x7F, 0x80][Int(rng.next() % 4)]
                    }
                }
                attempt(b)
            }
            for n in stride(from: 0, to: original.count, by: max(1, original.count / 400)) { attempt(Array(original.prefix(n))) }
            print("gguf reader mutations (\(name).gguf): \(opened + rejected) inputs, \(rejected) rejected with an error, \(opened) opened and read, 0 crashes")
            XCTAssertGreaterThan(rejected, 100, name)
            XCTAssertGreaterThan(opened, 10, name)
        }
    }
}


/// Mutation fuzzing of the GGUF reader (as I2QFileTests.testMutationFuzz does for .i2q): random byte
/// flips in the header and data, extreme u64/u32 values in counts, lengths, dims, types and offsets,
/// truncation and extension of real GGUF files. Every input must either open — and then dequantize
/// every tensor and build (or cleanly refuse) the llama model — or be rejected with an I2QError;
/// a crash fails the whole test run.
extension GGUFValidationTests {
    func testMutationFuzz() throws {
        let seeds = try ["types.gguf", "tiny-tied.gguf"].map { try FileSystem.readFile(fixturesDir + "/gguf/" + $0) }
        let headerEnds = try seeds.map { try GGUFFile(file: MappedFile(copying: $0, name: "seed")).dataOffset }
        var rng = SplitMix64(seed: 0x6617_F022)
        var opened = 0, rejected = 0, models = 0
        let iterations = 20_000
        var out = [Float](repeating: 0, count: 1 << 16)
        for it in 0..<iterations {
            var b = seeds[it % seeds.count]
            let header = headerEnds[it % seeds.count]
            let kind = rng.next() % 6
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                switch kind {
                case 0:  // a random byte anywhere (mostly data)
                    b[Int(rng.next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: rng.next())
                case 1, 2:  // a byte in the header (keys, types, lengths, tensor infos)
                    b[Int(rng.next() % UInt64(header))] = UInt8(truncatingIfNeeded: rng.next())
                case 3:  // a u64 in the header set to an extreme value (counts, lengths, dims, offsets)
                    let at = 8 + Int(rng.next() % UInt64(header - 16))
                    let v: UInt64 = [0, 1, UInt64.max, UInt64(b.count), UInt64(1) << 63, UInt64(Int64.max), rng.next()][Int(rng.next() % 7)]
                    for k in 0..<8 { b[at + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
                case 4:  // truncate or extend
                    if rng.next() % 2 == 0 { b.removeLast(Int(rng.next() % UInt64(b.count))) } else { b += [UInt8](repeating: 0, count: Int(rng.next() % 100)) }
                default:  // a u32 in the header (value types, dim counts, ggml types) set to an extreme value
                    let at = 4 + Int(rng.next() % UInt64(header - 8))
                    let v: UInt32 = [0, 1, 9, 12, 13, 0xFFFF, UInt32.max, UInt32(truncatingIfNeeded: rng.next())][Int(rng.next() % 8)]
                    for k in 0..<4 { b[at + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(k))) }
                }
            }
            do {
                let g = try GGUFFile(file: MappedFile(copying: b, name: "fuzz.gguf"))
                for t in g.tensors where t.type.isDequantizable {
                    var first = 0
                    while first < t.elementCount {  // [≤ 65536] f32 per step
                        let n = min(out.count, t.elementCount - first)
                        try out.withUnsafeMutableBufferPointer { try g.dequantize(t, first: first, count: n, into: $0.baseAddress!) }
                        first += n
                    }
                }
                opened += 1
                if let m = try? GGUFModel(file: g) {
                    models += 1
                    for t in m.tensors.prefix(3) { _ = try t.withData { $0.count } }
                }
            } catch is I2QError {
                rejected += 1
            }
        }
        XCTAssertEqual(opened + rejected, iterations)
        XCTAssertGreaterThan(rejected, iterations / 4)
        XCTAssertGreaterThan(opened, iterations / 20)
        print("gguf reader fuzz: \(iterations) mutated inputs, \(rejected) rejected with an error, \(opened) opened (\(models) as llama models), 0 crashes")
    }
}
