import Foundation
import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QFormats
@testable import I2QPasses

/// `export --to gguf` against llama.cpp's own converter: Tests/Fixtures/gguf-export/
/// tiny-mistral.q8_0.reference.gguf is `convert_hf_to_gguf.py Tests/Fixtures/tiny-mistral --outtype q8_0`
/// (scripts/fixtures/make_gguf_export_fixtures.py); i2q's export must hold the same tensors byte for byte and
/// the same metadata (except the documented differences), and read back through i2q's GGUF reader
/// (names mapped back, q/k un-permuted as transformers does) to the source within the type's step.
/// `path` is `reference` byte for byte; when not, says where they differ: metadata keys, order and
/// values, tensor names, order, types, shapes and data.
func assertSameGGUF(_ path: String, reference: String, _ label: String, file: StaticString = #filePath, line: UInt = #line) throws {
    let same = try FileSystem.readFile(path) == FileSystem.readFile(reference)
    XCTAssertTrue(same, "\(label): the file differs from convert_hf_to_gguf.py's \(FileSystem.basename(reference))", file: file, line: line)
    if same { return }
    let ref = try GGUFFile(path: reference), g = try GGUFFile(path: path)
    XCTAssertEqual(g.metadata.map(\.key), ref.metadata.map(\.key), "\(label): metadata keys and order", file: file, line: line)
    for (k, v) in ref.metadata where g.value(k) != v {
        XCTFail("\(label) \(k): \(String(describing: g.value(k)).prefix(200)) vs reference \(String(describing: v).prefix(200))", file: file, line: line)
    }
    XCTAssertEqual(g.tensors.map(\.name), ref.tensors.map(\.name), "\(label): tensor names and order", file: file, line: line)
    for t in ref.tensors {
        guard let mine = g.tensor(t.name) else { XCTFail("\(label): missing \(t.name)", file: file, line: line); continue }
        XCTAssertEqual(mine.type, t.type, "\(label) \(t.name)", file: file, line: line)
        XCTAssertEqual(mine.dims, t.dims, "\(label) \(t.name)", file: file, line: line)
        XCTAssertTrue(g.file.copyBytes(mine.offset, mine.byteCount) == ref.file.copyBytes(t.offset, t.byteCount),
                      "\(label) \(t.name) (\(t.type.name)): bytes differ", file: file, line: line)
    }
}

final class GGUFExportTests: XCTestCase {
    let mistral = fixturesDir + "/tiny-mistral"
    let refDir = fixturesDir + "/gguf-export"

    func export(_ model: String, _ type: GGUFExportType?, _ name: String) throws -> (GGUFExportReport, String) {
        let dir = try makeTempDir("gguf-export")
        let out = dir + "/" + name
        var s = OutputSettings()
        s.showProgress = false
        let r = try GGUFExportPass(source: try openModel(model), output: out, type: type, settings: s).run()
        return (r, out)
    }

    /// Keys whose values differ from the reference by design (see GGUFExportPass's doc comment).
    /// (general.name "Tiny Mistral" and size_label "1.0M" are derived as gguf-py derives them: GGUFGeneralMetadata.)
    let expectedDifferences: Set<String> = [
        "tokenizer.ggml.scores",  // merge-rank scores instead of -1000 everywhere
    ]

    func testTinyMistralQ8_0MatchesConvertHfToGguf() throws {
        let (r, out) = try export(mistral, .q8_0, "m.gguf")
        let ref = try GGUFFile(path: refDir + "/tiny-mistral.q8_0.reference.gguf")
        let g = try GGUFFile(path: out)
        // Tensors: same set, types, shapes and bytes.
        XCTAssertEqual(Set(g.tensors.map(\.name)), Set(ref.tensors.map(\.name)))
        for t in ref.tensors {
            guard let mine = g.tensor(t.name) else { XCTFail("missing \(t.name)"); continue }
            XCTAssertEqual(mine.type, t.type, t.name)
            XCTAssertEqual(mine.dims, t.dims, t.name)
            XCTAssertTrue(g.file.copyBytes(mine.offset, mine.byteCount) == ref.file.copyBytes(t.offset, t.byteCount),
                          "\(t.name) (\(t.type.name)): bytes differ from convert_hf_to_gguf.py's")
        }
        // Metadata: the reference's keys in its order, same types and values, but the documented differences.
        XCTAssertEqual(g.metadata.map(\.key), ref.metadata.map(\.key))
        XCTAssertEqual(g.tensors.map(\.name), ref.tensors.map(\.name), "tensor order")
        for (k, v) in ref.metadata {
            guard let mine = g.value(k) else { XCTFail("missing key \(k)"); continue }
            XCTAssertEqual(mine.type, v.type, k)
            if case let .array(t, a) = v, case let .array(mt, ma) = mine {
                XCTAssertEqual(mt, t, k)
                XCTAssertEqual(ma.count, a.count, k)
            }
            if !expectedDifferences.contains(k) { XCTAssertTrue(mine == v, "\(k): \(String(describing: mine).prefix(200)) vs reference \(String(describing: v).prefix(200))") }
        }
        let extra = Set(g.metadata.map(\.key)).subtracting(ref.metadata.map(\.key))
        XCTAssertEqual(extra, [], "keys the reference does not write")
        XCTAssertTrue(r.notes.contains { $0.contains("sliding_window 8") }, "the dropped sliding window is reported")
    }

    func testTypesPerOuttypeMatchReference() throws {
        let data = try FileSystem.readFile(refDir + "/tiny-mistral.reference-types.json")
        let ref = try JSONParser.parse(data, source: "reference-types.json")
        for type in [GGUFExportType.f16, .bf16, .q8_0] {
            let (_, out) = try export(mistral, type, "m.\(type.rawValue).gguf")
            let g = try GGUFFile(path: out)
            guard let want = ref[type.rawValue]?.objectEntries else { XCTFail("no reference for \(type)"); continue }
            XCTAssertEqual(want.count, g.tensors.count)
            for (name, ty) in want { XCTAssertEqual(g.tensor(name)?.type.name, ty.stringValue, "\(type.rawValue) \(name)") }
            XCTAssertEqual(g.value("general.file_type"), .uint32(UInt32(ref[type.rawValue + ".file_type"]?.intValue ?? -1)), type.rawValue)
        }
    }

    /// Read back with i2q's GGUF reader (HF names, q/k un-permuted as transformers does): f16/bf16 equal
    /// the source cast with torch's rounding; Q8_0 within d/2 and Q4_0 within |d| of every source value.
    func testReadBackEqualsSource() throws {
        let src = try openModel(mistral)
        for type in [GGUFExportType.f32, .f16, .bf16, .q8_0, .q4_0] {  // the others: GGUFKQuantExportTests (bytes equal llama-quantize's)
            let (r, out) = try export(mistral, type, "m.\(type.rawValue).gguf")
            let back = try GGUFModel(path: out)
            XCTAssertEqual(back.tensors.count, r.tensors.count, type.rawValue)
            for p in r.tensors {
                guard let a = src.tensor(p.source), let b = back.tensor(p.source) else { XCTFail("\(p.source) missing"); continue }
                XCTAssertEqual(b.shape, a.shape, p.source)
                var x = [Float](repeating: 0, count: a.elementCount), y = x
                let raw = UnsafeMutableRawPointer.allocate(byteCount: a.byteCount, alignment: 16)
                defer { raw.deallocate() }
                try a.read(elements: 0, count: a.elementCount, into: raw)
                FloatConversion.widenToF32(from: a.dtype, count: a.elementCount, src: raw, dst: &x)
                try y.withUnsafeMutableBytes { try b.read(elements: 0, count: b.elementCount, into: $0.baseAddress!) }
                switch p.type {
                case .f32:
                    XCTAssertEqual(x, y, p.source)
                case .f16, .bf16:
                    let dt: DType = p.type == .f16 ? .f16 : .bf16
                    var c = [UInt16](repeating: 0, count: x.count)
                    _ = try FloatConversion.convert(from: .f32, to: dt, count: x.count, src: x, dst: &c)
                    var cx = [Float](repeating: 0, count: x.count)
                    FloatConversion.widenToF32(from: dt, count: x.count, src: c, dst: &cx)
                    XCTAssertEqual(cx.map(\.bitPattern), y.map(\.bitPattern), "\(type.rawValue) \(p.source)")
                case .q8_0, .q4_0:
                    let cols = a.shape.last!
                    for blk in 0..<(x.count / 32) {
                        let amax = x[blk * 32..<blk * 32 + 32].map(abs).max()!
                        // half a step (Q8_0) or a whole step (Q4_0's clipped top code), plus the f16
                        // rounding of d (half an f16 ulp: 2^-11 relative, 2^-25 for subnormals) times
                        // the largest code (127 or 8)
                        let step = p.type == .q8_0 ? amax / 127 : amax / 8
                        let dErr = max(step / 2048, 0x1p-25)
                        let bound = (p.type == .q8_0 ? step * 0.5 + 127 * dErr : step + 8 * dErr) * 1.001
                        for i in blk * 32..<blk * 32 + 32 where abs(x[i] - y[i]) > bound {
                            XCTFail("\(type.rawValue) \(p.source) row \(i / cols) col \(i % cols): \(y[i]) vs \(x[i])")
                            break
                        }
                    }
                default:
                    XCTFail("unexpected type \(p.type.name)")
                }
            }
        }
    }

    func testQ4_0KeepsTiedEmbeddingQ8_0() throws {
        let (r, out) = try export(mistral, .q4_0, "m.gguf")
        let g = try GGUFFile(path: out)
        XCTAssertEqual(g.tensor("token_embd.weight")?.type, .q8_0)  // tiny-mistral ties the output
        XCTAssertNil(g.tensor("output.weight"))
        XCTAssertEqual(g.tensor("blk.0.attn_q.weight")?.type, .q4_0)
        XCTAssertEqual(g.tensor("blk.1.ffn_down.weight")?.type, .q4_0)
        XCTAssertEqual(g.tensor("blk.0.attn_norm.weight")?.type, .f32)
        XCTAssertEqual(g.value("general.file_type"), .uint32(2))
        XCTAssertTrue(r.notes.contains { $0.contains("Q8_0") })
    }

    /// Idefics2: only the text decoder (model.text_model.*), untied lm_head → output.
    func testIdefics2TextDecoder() throws {
        let model = fixturesDir + "/tiny-idefics2-v5"
        let (r, out) = try export(model, .f16, "i.gguf")
        let g = try GGUFFile(path: out)
        XCTAssertEqual(g.value("general.architecture")?.stringValue, "llama")
        XCTAssertEqual(g.tensors.count, 1 + 2 * 9 + 1 + 1)
        XCTAssertNotNil(g.tensor("output.weight"))
        XCTAssertEqual(g.tensor("token_embd.weight")?.shape, [32003, 32])
        XCTAssertTrue(r.tensors.allSatisfy { $0.source.hasPrefix("model.text_model.") || $0.source == "lm_head.weight" })
        XCTAssertEqual(g.value("tokenizer.ggml.model")?.stringValue, "llama")
        XCTAssertEqual(g.value("tokenizer.ggml.tokens")?.arrayValue?.count, 32003)
        XCTAssertEqual(g.value("llama.attention.head_count_kv"), .uint32(2))
        // The output runs as a model through i2q's reader with the same lm_head.
        let back = try GGUFModel(path: out)
        XCTAssertEqual(back.tensor("lm_head.weight")?.shape, [32003, 32])
    }

    /// Idefics3 / SmolVLM: the text decoder is convert_hf_to_gguf.py's text model of the same checkpoint
    /// (tiny-X.reference.gguf: the converter on the checkpoint with text_config.architectures set, as the
    /// hub's SmolVLM checkpoints carry it; scripts/fixtures/make_idefics3_gguf_fixtures.py) byte for byte:
    /// llama3 RoPE scaling as the `rope_freqs.weight` factors (tiny-idefics3), tensors in the converter's
    /// order, general.name / size_label, the vocabulary with add_sep_token.
    func testIdefics3TextMatchesConvertHfToGguf() throws {
        for m in ["tiny-idefics3", "tiny-smolvlm"] {
            let (r, out) = try export(fixturesDir + "/" + m, nil, "text.gguf")
            XCTAssertEqual(r.type, .f16, m)
            try assertSameGGUF(out, reference: refDir + "/\(m).reference.gguf", m)
        }
        let g = try GGUFFile(path: refDir + "/tiny-idefics3.reference.gguf")
        XCTAssertEqual(g.tensors.first?.name, "rope_freqs.weight")
        XCTAssertNil(try GGUFFile(path: refDir + "/tiny-smolvlm.reference.gguf").tensor("rope_freqs.weight"))
    }

    func testErrors() throws {
        let dir = try makeTempDir("gguf-export-err")
        var s = OutputSettings()
        s.showProgress = false
        // tiny-llama has no tokenizer: llama.cpp could not load the result.
        assertThrowsMentioning(["tokenizer.json", "llama.cpp needs the vocabulary"]) {
            _ = try GGUFExportPass(source: try openModel(fixturesDir + "/tiny-llama"), output: dir + "/x.gguf", settings: s)
        }
        // An existing output is kept unless --overwrite.
        try FileSystem.writeFile(dir + "/exists.gguf", [1, 2, 3])
        XCTAssertThrowsError(try GGUFExportPass(source: try openModel(mistral), output: dir + "/exists.gguf", settings: s))
        XCTAssertEqual(try FileSystem.readFile(dir + "/exists.gguf"), [1, 2, 3])
        XCTAssertEqual(try FileSystem.listDirectory(dir).filter { $0.contains("partial") }, [])
    }

    /// SmolLM2 (gpt2 BPE vocabulary): metadata like the GGUF it was converted from (tokenizer.ggml.*),
    /// the tied embedding stays the only embedding tensor.
    func testSmolLM2Metadata() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let path = ProcessInfo.processInfo.environment["I2Q_SMOLLM2"] ?? root + "/.cache/smollm2/SmolLM2-135M-Instruct-f32"
        guard FileSystem.exists(path) else {
            return XCTFail("SmolLM2 is not at \(path): run `bash scripts/get_smollm2.sh` (scripts/test.sh does) or set I2Q_SMOLLM2")
        }
        let (_, out) = try export(path, .q8_0, "s.gguf")
        let g = try GGUFFile(path: out)
        XCTAssertEqual(g.tensors.count, 1 + 30 * 9 + 1)
        XCTAssertNil(g.tensor("output.weight"))
        let expect: [(String, GGUFValue)] = [
            ("llama.block_count", .uint32(30)), ("llama.context_length", .uint32(8192)), ("llama.embedding_length", .uint32(576)),
            ("llama.feed_forward_length", .uint32(1536)), ("llama.attention.head_count", .uint32(9)),
            ("llama.attention.head_count_kv", .uint32(3)), ("llama.rope.freq_base", .float32(100000)),
            ("llama.attention.layer_norm_rms_epsilon", .float32(Float(1e-5))), ("llama.vocab_size", .uint32(49152)),
            ("llama.rope.dimension_count", .uint32(64)), ("general.file_type", .uint32(7)),
            ("tokenizer.ggml.model", .text("gpt2")), ("tokenizer.ggml.pre", .text("gpt-2")),
            ("tokenizer.ggml.bos_token_id", .uint32(1)), ("tokenizer.ggml.eos_token_id", .uint32(2)),
            ("tokenizer.ggml.unknown_token_id", .uint32(0)), ("tokenizer.ggml.padding_token_id", .uint32(2)),
            ("tokenizer.ggml.add_bos_token", .bool(false)),
        ]
        for (k, v) in expect { XCTAssertEqual(g.value(k), v, k) }
        XCTAssertEqual(g.value("tokenizer.ggml.tokens")?.arrayValue?.count, 49152)
        XCTAssertEqual(g.value("tokenizer.ggml.merges")?.arrayValue?.count, 48900)
        XCTAssertEqual(g.value("tokenizer.ggml.merges")?.arrayValue?.first?.stringValue, "Ġ t")
        XCTAssertEqual(g.value("tokenizer.ggml.token_type")?.arrayValue?.prefix(3), [.int32(3), .int32(3), .int32(3)])
        XCTAssertNotNil(g.value("tokenizer.chat_template"))
    }
}
