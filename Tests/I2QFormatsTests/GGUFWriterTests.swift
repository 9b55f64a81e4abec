import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QFormats

/// The GGUF writer: files it writes are read back by i2q's hardened reader (which enforces
/// llama.cpp's layout rules) with every key, value, tensor info and byte intact, and calls out of
/// order are errors, not traps. (Reading the writer's output with the `gguf` Python package and
/// llama.cpp is scripts/checks/check_gguf_export.py's job.)
final class GGUFWriterTests: XCTestCase {
    let values: [(String, GGUFValue)] = [
        ("general.architecture", .text("llama")),
        ("t.u8", .uint8(200)), ("t.i8", .int8(-100)), ("t.u16", .uint16(60000)), ("t.i16", .int16(-30000)),
        ("t.u32", .uint32(4_000_000_000)), ("t.i32", .int32(-2_000_000_000)), ("t.u64", .uint64(1 << 40)),
        ("t.i64", .int64(-(1 << 40))), ("t.f32", .float32(1e-5)), ("t.f64", .float64(-2.5e300)), ("t.bool", .bool(true)),
        ("t.str", .text("héllo ▁ world")), ("t.empty", .text("")),
        ("t.arr.i32", .array(.int32, [.int32(1), .int32(-2), .int32(3)])),
        ("t.arr.str", .strings([Array("a".utf8), [], Array("Ġt".utf8)])),
        ("t.arr.empty", .array(.float32, [])),
    ]

    func write(_ path: String, alignment: Int = 32, tensors: [(GGUFTensorDecl, [UInt8])]) throws -> GGUFWriter {
        let w = try GGUFWriter(path: path, alignment: alignment)
        for (k, v) in values { try w.add(k, v) }
        for (t, _) in tensors { try w.declare(t) }
        try w.writeHeader()
        for (t, bytes) in tensors {
            try w.beginTensor(t.name)
            // In uneven pieces, to exercise streaming.
            var i = 0
            while i < bytes.count {
                let n = min(7 + i % 13, bytes.count - i)
                try w.append(Array(bytes[i..<i + n]))
                i += n
            }
            try w.endTensor()
        }
        try w.finish()
        return w
    }

    func sample() -> [(GGUFTensorDecl, [UInt8])] {
        var rng = SplitMix64(seed: 7)
        func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }
        let decls = [
            GGUFTensorDecl(name: "token_embd.weight", shape: [5, 64], type: .q8_0),
            GGUFTensorDecl(name: "blk.0.attn_norm.weight", shape: [64], type: .f32),
            GGUFTensorDecl(name: "blk.0.ffn_up.weight", shape: [3, 32], type: .q4_0),
            GGUFTensorDecl(name: "odd", shape: [3], type: .f16),  // 6 bytes: padding follows
            GGUFTensorDecl(name: "t3", shape: [2, 3, 4], type: .bf16),
            GGUFTensorDecl(name: "empty", shape: [0, 32], type: .f32),
        ]
        return decls.map { ($0, bytes($0.byteCount)) }
    }

    func testRoundTripThroughReader() throws {
        let dir = try makeTempDir("gguf-writer")
        for alignment in [32, 64, 4096] {
            let path = dir + "/a\(alignment).gguf"
            let ts = sample()
            let w = try write(path, alignment: alignment, tensors: ts)
            XCTAssertEqual(FileSystem.fileSize(path), w.plannedSize, "plannedSize is the file size")
            let g = try GGUFFile(path: path)
            XCTAssertEqual(g.version, 3)
            XCTAssertEqual(g.alignment, alignment)
            var expected = values
            if alignment != 32 { expected.insert(("general.alignment", .uint32(UInt32(alignment))), at: 0) }
            XCTAssertEqual(g.metadata.map(\.key), expected.map(\.0))
            for (k, v) in expected { XCTAssertEqual(g.value(k), v, k) }
            XCTAssertEqual(g.tensors.map(\.name), ts.map(\.0.name))
            XCTAssertEqual(g.dataOffset % alignment, 0)
            for (info, (decl, bytes)) in zip(g.tensors, ts) {
                XCTAssertEqual(info.shape, decl.shape, decl.name)
                XCTAssertEqual(info.type, decl.type, decl.name)
                XCTAssertEqual(info.byteCount, bytes.count, decl.name)
                XCTAssertEqual(g.file.copyBytes(info.offset, info.byteCount), bytes, decl.name)
            }
        }
    }

    func testDeclarationErrors() throws {
        let dir = try makeTempDir("gguf-writer-errors")
        let w = try GGUFWriter(path: dir + "/x.gguf")
        try w.add("a", .uint32(1))
        assertThrowsMentioning(["\"a\"", "twice"]) { try w.add("a", .uint32(2)) }
        assertThrowsMentioning(["nested"]) { try w.add("n", .array(.array, [])) }
        assertThrowsMentioning(["INT32"]) { try w.add("m", .array(.int32, [.int32(1), .uint8(2)])) }
        try w.declare(GGUFTensorDecl(name: "w", shape: [2, 32], type: .q8_0))
        assertThrowsMentioning(["\"w\"", "twice"]) { try w.declare(GGUFTensorDecl(name: "w", shape: [32], type: .f32)) }
        assertThrowsMentioning(["block size 32"]) { try w.declare(GGUFTensorDecl(name: "r", shape: [2, 33], type: .q4_0)) }
        assertThrowsMentioning(["GGML_MAX_NAME"]) { try w.declare(GGUFTensorDecl(name: String(repeating: "x", count: 64), shape: [1], type: .f32)) }
        assertThrowsMentioning(["1–4"]) { try w.declare(GGUFTensorDecl(name: "d5", shape: [1, 1, 1, 1, 1], type: .f32)) }
        try w.writeHeader()
        assertThrowsMentioning(["after the header"]) { try w.add("late", .bool(true)) }
    }

    func testDataErrors() throws {
        let dir = try makeTempDir("gguf-writer-data")
        func fresh() throws -> GGUFWriter {
            let w = try GGUFWriter(path: dir + "/x.gguf")
            try w.declare(GGUFTensorDecl(name: "a", shape: [8], type: .f32))
            try w.declare(GGUFTensorDecl(name: "b", shape: [4], type: .f16))
            try w.writeHeader()
            return w
        }
        var w = try fresh()
        assertThrowsMentioning(["next declared tensor is \"a\""]) { try w.beginTensor("b") }
        w = try fresh()
        try w.beginTensor("a")
        assertThrowsMentioning(["\"a\"", "more data than its 32 bytes"]) { try w.append([UInt8](repeating: 0, count: 33)) }
        w = try fresh()
        try w.beginTensor("a")
        try w.append([UInt8](repeating: 0, count: 16))
        assertThrowsMentioning(["\"a\"", "16 of its 32 bytes"]) { try w.endTensor() }
        w = try fresh()
        try w.beginTensor("a")
        try w.append([UInt8](repeating: 0, count: 32))
        try w.endTensor()
        assertThrowsMentioning(["finish before every declared tensor"]) { try w.finish() }
        assertThrowsMentioning(["out of order"]) { try w.append([1]) }  // failed writers stay failed
    }
}
