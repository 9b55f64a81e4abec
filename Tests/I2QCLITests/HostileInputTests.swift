import Foundation
import XCTest
import I2QCore
import I2QTestSupport

/// Issue 17: each class of hostile input and fault, pinned with its own crafted input, through the
/// binary users run. Every case must end with exit status 1 and a message naming the file (and the
/// field or tensor) — never a signal, never a partial output, never damage passed on.
final class HostileInputTests: CLITestCase {
    override var tempPrefix: String { "hostile" }
    let vqa = fixturesDir + "/easy-vqa-idefics2"

    /// A model directory of symlinks to `src`'s files with `replacing` files written instead.
    func linkedCopy(of src: String, replacing: [String: [UInt8]]) throws -> String {
        let d = dir + "/model-\(UUID().uuidString.prefix(8))"
        try FileSystem.makeDirectory(d)
        for n in try FileSystem.listDirectory(src) where replacing[n] == nil { symlink(src + "/" + n, d + "/" + n) }
        for (n, b) in replacing { try write(b, to: d + "/" + n) }
        return d
    }

    func json(_ path: String, editing edit: (inout [String: Any]) -> Void) throws -> [UInt8] {
        var o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        edit(&o)
        return [UInt8](try JSONSerialization.data(withJSONObject: o))
    }

    func assertCleanError(_ r: (code: Int32, out: String, err: String), _ mentions: [String],
                          file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.code, 1, "exit status (a signal death is ≥ 128): \(r.err)", file: file, line: line)
        for m in mentions { XCTAssertTrue(r.err.contains(m), "stderr lacks \"\(m)\": \(r.err)", file: file, line: line) }
    }

    let prompt = "User:<image>what is the red shape?<end_of_utterance>\nAssistant:"
    var image: String { fixturesDir + "/images/gray2_trns_50x40.png" }

    // MARK: values never range-checked

    func testProcessorConfigValuesOutOfRangeAreRefusedNamingTheFile() throws {
        let cases: [(String, (inout [String: Any]) -> Void, String)] = [
            ("image_seq_len -1", { $0["image_seq_len"] = -1 }, "image_seq_len -1"),
            ("image_seq_len 2^32", { $0["image_seq_len"] = 4_294_967_296 }, "image_seq_len 4294967296"),
            ("image_seq_len ≠ latents", { $0["image_seq_len"] = 17 }, "resampler_n_latents"),
            ("edge 10^9", { o in
                var ip = o["image_processor"] as! [String: Any]
                ip["size"] = ["longest_edge": 1_000_000_000, "shortest_edge": 64]
                o["image_processor"] = ip
            }, "longest_edge 1000000000"),
            ("zero std", { o in
                var ip = o["image_processor"] as! [String: Any]
                ip["image_std"] = [0.5, 0, 0.5]
                o["image_processor"] = ip
            }, "image_std"),
        ]
        for (label, edit, mention) in cases {
            let m = try linkedCopy(of: vqa, replacing: ["processor_config.json": try json(vqa + "/processor_config.json", editing: edit)])
            let r = try run(["run", m, "--image", image, "--prompt", prompt, "--max-new-tokens", "2"])
            assertCleanError(r, ["processor_config.json", mention])
            XCTAssertFalse(r.err.isEmpty, label)
        }
    }

    func testModelConfigSizesOutOfRangeAreRefusedNamingTheFieldAndFile() throws {
        let llama = fixturesDir + "/tiny-llama"
        let cases: [((inout [String: Any]) -> Void, String)] = [
            ({ $0["num_hidden_layers"] = 1_000_000_000 }, "num_hidden_layers 1000000000"),
            ({ $0["hidden_size"] = -1 }, "hidden_size -1"),
            ({ $0["num_key_value_heads"] = 3 }, "num_key_value_heads"),
            ({ $0["max_position_embeddings"] = 0 }, "max_position_embeddings 0"),
            ({ $0["vocab_size"] = Int(Int32.max) }, "vocab_size 2147483647"),
        ]
        for (edit, mention) in cases {
            let m = try linkedCopy(of: llama, replacing: ["config.json": try json(llama + "/config.json", editing: edit)])
            assertCleanError(try run(["inspect", m]), [m + "/config.json", mention])
        }
        // Idefics2's nested configs name their key path.
        let bad = try linkedCopy(of: vqa, replacing: ["config.json": try json(vqa + "/config.json") { o in
            var v = o["vision_config"] as! [String: Any]
            v["patch_size"] = 0
            o["vision_config"] = v
        }])
        assertCleanError(try run(["inspect", bad]), ["config.json", "vision_config.patch_size 0"])
    }

    /// A PNG whose IHDR declares 4294967295×4294967295 (valid CRC): the pixel count overflows Int64.
    func testPNGHeaderDeclaringAnOverflowingSizeIsRefused() throws {
        for (w, h) in [(UInt32.max, UInt32.max), (UInt32(0x7fff_ffff), UInt32(3)), (UInt32(70000), UInt32(70000))] {
            let path = dir + "/huge-\(w)x\(h).png"
            try write(crafted(width: w, height: h), to: path)
            let r = try run(["run", vqa, "--image", path, "--prompt", prompt, "--max-new-tokens", "2"])
            assertCleanError(r, [path, "pixels"])
        }
    }

    func crafted(width: UInt32, height: UInt32) -> [UInt8] {
        func be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)] }
        func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
            let body = Array(type.utf8) + data
            return be(UInt32(data.count)) + body + be(crc32(body))
        }
        let ihdr = be(width) + be(height) + [8, 2, 0, 0, 0]
        // One IDAT with a valid empty zlib stream; decoding must stop at the header check.
        return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", ihdr)
            + chunk("IDAT", [0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]) + chunk("IEND", [])
    }

    /// CRC-32 of PNG (ISO 3309, as zlib's crc32), the reference the PNG spec names.
    func crc32(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        }
        return c ^ 0xFFFF_FFFF
    }

    // MARK: sequence length

    func testContextsBeyondTheModelOrTheMemoryBudgetAreRefusedBeforeAllocating() throws {
        // max_position_embeddings of the trained model is 4096.
        let text = dir + "/long.txt"
        try write(Array(String(repeating: "what is the red shape? ", count: 6000).utf8), to: text)
        assertCleanError(try run(["perplexity", vqa, "--text", text, "--ctx", "100000"]), ["100000", "max_position_embeddings"])
        let longPrompt = String(repeating: "is there a blue circle? ", count: 5000)  // 120 KB
        assertCleanError(try run(["run", vqa, "--prompt", longPrompt, "--max-new-tokens", "2"]), ["at most 4096", "max_position_embeddings"])
        // Within the positions but over a (deliberately small) memory budget: the error says what it needs.
        let r = try run(["run", vqa, "--prompt", String(repeating: "is there a blue circle? ", count: 300), "--max-new-tokens", "2"],
                           env: ["I2Q_MEMORY_BUDGET": "1MB"])
        assertCleanError(r, ["KV cache needs", "I2Q_MEMORY_BUDGET"])
    }

    /// Numbers from flags: refused before any arithmetic (Int.max + 1 used to trap), with the range.
    func testFlagsOutOfRangeAreRefusedWithTheirRange() throws {
        let big = "9223372036854775807"
        let cases: [[String]] = [
            ["run", vqa, "--prompt", "hi", "--max-new-tokens", big],
            ["run", vqa, "--image", image, "--prompt", prompt, "--longest-edge", "1000000000"],
            ["perplexity", vqa, "--text", fixturesDir + "/docvqa-mini/README.md", "--ctx", big],
            ["perplexity", vqa, "--text", fixturesDir + "/docvqa-mini/README.md", "--repack-mb", big],
            ["run", vqa, "--prompt", "hi", "--repack-mb=-1"],
            ["verify", vqa, "--reference", vqa, "--docvqa", fixturesDir + "/docvqa-mini", "--max-new-tokens", big],
            ["quantize", vqa, "--awq", "--calibration", fixturesDir + "/docvqa-mini", "--samples", big, "-o", dir + "/x.i2q"],
            ["quantize", vqa, "--awq", "--calibration", fixturesDir + "/docvqa-mini", "--seq-len", big, "-o", dir + "/x.i2q"],
        ]
        for c in cases {
            let r = try run(c)
            XCTAssertTrue(r.code > 0 && r.code < 128, "\(c): status \(r.code)")
            XCTAssertTrue(r.err.contains("must be in"), "\(c): \(r.err)")
        }
        // Within the flag limits but over the memory budget: AWQ says what its batch needs.
        let r = try run(["quantize", vqa, "--awq", "--group-size", "64", "--calibration", fixturesDir + "/docvqa-mini",
                            "--samples", "100000", "--seq-len", "4096", "-o", dir + "/x.i2q", "--no-progress"], env: ["I2Q_MEMORY_BUDGET": "8GB"])
        assertCleanError(r, ["AWQ calibration", "needs", "I2Q_MEMORY_BUDGET"])
        XCTAssertFalse(FileSystem.exists(dir + "/x.i2q"))
    }

    // MARK: corruption passes through

    func testEveryVerbRefusesAnI2QWithADamagedTensor() throws {
        let good = dir + "/good.i2q", bad = dir + "/bad.i2q"
        XCTAssertEqual(try run(["cast", vqa, "--dtype", "bf16", "-o", good, "--no-progress"]).code, 0)
        var b = try FileSystem.readFile(good)
        let dataOffset = Int(b[32..<40].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.1) << (8 * UInt64($1.0)) })
        b[dataOffset + 1000] ^= 0x40  // one bit of the first tensor's data
        try write(b, to: bad)
        let verbs: [[String]] = [
            ["cast", bad, "--dtype", "f16", "-o", dir + "/o1.i2q", "--no-progress"],
            ["quantize", bad, "--nf4", "-o", dir + "/o2.i2q", "--no-progress"],
            ["fuse", bad, "-o", dir + "/o3.i2q", "--no-progress"],
            ["export", bad, "--to", "hf", "-o", dir + "/o4", "--no-progress"],
            ["run", bad, "--image", image, "--prompt", prompt, "--max-new-tokens", "2"],
        ]
        for v in verbs {
            let r = try run(v)
            assertCleanError(r, [bad, "fails its checksum"])
        }
        for n in ["o1.i2q", "o2.i2q", "o3.i2q", "o4"] { XCTAssertFalse(FileSystem.exists(dir + "/" + n), n) }
        // inspect: the damage is a listed problem, and the exit status agrees.
        let i = try run(["inspect", bad, "--brief", "--verify-checksums"])
        XCTAssertEqual(i.code, 1)
        XCTAssertTrue(i.out.contains("fails its checksum"), i.out)
        XCTAssertFalse(i.out.contains("problems: none"), i.out)
        let j = try run(["inspect", bad, "--json", "--verify-checksums"])
        XCTAssertEqual(j.code, 1)
        XCTAssertTrue(j.out.contains("fails its checksum"), j.out)
        // run names the damaged tensor; --no-verify trusts the bytes and runs.
        let r = try run(["run", bad, "--image", image, "--prompt", prompt, "--max-new-tokens", "2"])
        XCTAssertTrue(r.err.contains("tensor \"") && r.err.contains("fails its checksum"), r.err)
        let nv = try run(["run", bad, "--no-verify", "--image", image, "--prompt", prompt, "--max-new-tokens", "2"])
        XCTAssertEqual(nv.code, 0, nv.err)
    }

    // MARK: leftovers and races

    func testStalePartialsAndLockOfADeadWriterAreRemovedByTheNextRun() throws {
        let out = dir + "/out.i2q", hf = dir + "/out-hf"
        // What kill -9 leaves: partial outputs of dead PIDs (a file, a directory) and the lock file.
        try write(Array(repeating: 7, count: 4096), to: dir + "/.out.i2q.i2q-partial-999999")
        try write(Array("999999\n".utf8), to: dir + "/.out.i2q.i2q-lock")
        try FileSystem.makeDirectory(dir + "/.out-hf.i2q-partial-999998")
        try write([1, 2, 3], to: dir + "/.out-hf.i2q-partial-999998/model.safetensors")
        try write([1], to: dir + "/.out.i2q.i2q-partial-999997.old")
        try write(Array("keep".utf8), to: dir + "/.other-hidden-file")
        XCTAssertEqual(try run(["cast", fixturesDir + "/tiny-llama", "--dtype", "bf16", "-o", out, "--no-progress"]).code, 0)
        XCTAssertEqual(try run(["cast", fixturesDir + "/tiny-llama", "--dtype", "bf16", "--format", "safetensors", "-o", hf, "--no-progress"]).code, 0)
        XCTAssertEqual(try FileSystem.listDirectory(dir), [".other-hidden-file", "out-hf", "out.i2q"])
    }

    func testAWriterHoldingTheLockMakesASecondOneRefuse() throws {
        let out = dir + "/out.i2q"
        let fd = open(dir + "/.out.i2q.i2q-lock", O_RDWR | O_CREAT, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        _ = Array("\(getpid())\n".utf8).withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        XCTAssertEqual(flock(fd, LOCK_EX | LOCK_NB), 0)
        let r = try run(["cast", fixturesDir + "/tiny-llama", "--dtype", "bf16", "-o", out, "--no-progress"])
        assertCleanError(r, ["another i2q process (PID \(getpid())) is writing", out])
        XCTAssertFalse(FileSystem.exists(out))
        close(fd)
        XCTAssertEqual(try run(["cast", fixturesDir + "/tiny-llama", "--dtype", "bf16", "-o", out, "--no-progress"]).code, 0)
    }

    /// Two writers of one output without --overwrite, started together: exactly one succeeds
    /// (whatever the timing: the loser is either busy or finds the output there).
    func testTwoConcurrentWritersExactlyOneSucceeds() throws {
        for verb in [["cast", vqa, "--dtype", "bf16"], ["quantize", vqa, "--nf4"]] {
            let out = dir + "/\(verb[0]).i2q"
            let ps = (0..<2).map { _ -> (Process, Pipe) in
                let p = Process(), e = Pipe()
                p.executableURL = binary
                p.arguments = verb + ["-o", out, "--no-progress"]
                p.standardError = e; p.standardOutput = FileHandle.nullDevice
                return (p, e)
            }
            for (p, _) in ps { try p.run() }
            var codes: [Int32] = [], errs: [String] = []
            for (p, e) in ps {
                errs.append(String(decoding: e.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
                p.waitUntilExit()
                codes.append(p.terminationStatus)
            }
            XCTAssertEqual(codes.sorted(), [0, 1], "\(verb[0]): \(errs)")
            let loser = errs[codes.firstIndex(of: 1) ?? 0]
            XCTAssertTrue(loser.contains("is writing") || loser.contains("already exists"), loser)
            XCTAssertEqual(try FileSystem.listDirectory(dir).filter { $0.hasPrefix(".") }, [], "leftovers")
        }
    }

    // MARK: quadratic work

    /// 20,000 zero-size tensors next to a real model: cast keeps every one (the duplicate check is a
    /// set now; the time is in the note, not asserted here).
    func testCastKeepsTwentyThousandZeroSizeTensors() throws {
        let src = try FileSystem.readFile(fixturesDir + "/tiny-llama/model.safetensors")
        let n = Int(src[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.1) << (8 * UInt64($1.0)) })
        var header = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(src[8..<(8 + n)])) as? [String: Any])
        for i in 0..<20000 { header["extra.\(i)"] = ["dtype": "F32", "shape": [0], "data_offsets": [0, 0]] }
        var h = [UInt8](try JSONSerialization.data(withJSONObject: header))
        while h.count % 8 != 0 { h.append(0x20) }
        let m = try linkedCopy(of: fixturesDir + "/tiny-llama", replacing: [
            "model.safetensors": (0..<8).map { UInt8(truncatingIfNeeded: h.count >> (8 * $0)) } + h + Array(src[(8 + n)...]),
        ])
        let out = dir + "/many.i2q"
        XCTAssertEqual(try run(["cast", m, "--dtype", "bf16", "-o", out, "--no-progress"]).code, 0)
        let j = try run(["inspect", out, "--json"])
        XCTAssertEqual(j.code, 0)
        XCTAssertEqual(j.out.components(separatedBy: "\"extra.").count - 1, 20000)
    }

    // MARK: messages

    func testASymlinkLoopIsNotCalledMissing() throws {
        let loop = dir + "/loop"
        symlink(loop, loop)
        let r = try run(["inspect", loop])
        assertCleanError(r, [loop, "symbolic links"])
        XCTAssertFalse(r.err.contains("does not exist"), r.err)
    }
}
