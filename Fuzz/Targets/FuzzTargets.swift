import Foundation
import I2QCore
import I2QEval
import I2QFormats
import I2QImage
import I2QTokenizer

/// One reader under fuzz: seed files, where a mutated input is written, and what reading it means.
///
/// `read` gets the mutated bytes and a private scratch directory; it writes them under the reader's
/// file name (or maps them in memory under that name) and does what a verb would do with them: parse,
/// then touch every tensor's bytes / decode every pixel / tokenize a text. Any thrown error is a pass
/// if its message names the input (`dir` appears in it); a trap, a signal, a hang or a huge
/// allocation is a failure (the driver and the test see those).
public struct FuzzTarget: Sendable {
    public enum Kind: Sendable { case binary, json }
    public let name: String
    public let kind: Kind
    public let seeds: [[UInt8]]
    /// A format-aware mutation used for half of the inputs (reaching past checksums and length
    /// prefixes), or nil.
    public let structured: (@Sendable (_ bytes: [UInt8], _ rng: inout FuzzRandom) -> [UInt8])?
    public let read: @Sendable (_ bytes: [UInt8], _ dir: String) throws -> Void

    public init(name: String, kind: Kind, seeds: [[UInt8]],
                structured: (@Sendable ([UInt8], inout FuzzRandom) -> [UInt8])? = nil,
                read: @escaping @Sendable ([UInt8], String) throws -> Void) {
        self.name = name; self.kind = kind; self.seeds = seeds; self.structured = structured; self.read = read
    }
}

public enum FuzzTargets {
    /// The readers of issue 17: safetensors, index, .i2q, GGUF, configs, tokenizer.json, PNG, JPEG,
    /// DocVQA JSON. `fixtures`: Tests/Fixtures.
    public static func all(fixtures: String) throws -> [FuzzTarget] {
        let f = fixtures.hasPrefix("/") ? fixtures : FileManager.default.currentDirectoryPath + "/" + fixtures
        func file(_ p: String) throws -> [UInt8] { try FileSystem.readFile(f + "/" + p) }
        @Sendable func write(_ dir: String, _ name: String, _ b: [UInt8]) throws -> String {
            let p = dir + "/" + name
            try FileSystem.writeFile(p, b)
            return p
        }
        return [
            FuzzTarget(name: "safetensors", kind: .binary,
                       seeds: [try file("tiny-llama/model.safetensors"), try file("cast/special.safetensors"),
                               try file("gguf/tiny-tied.expected.safetensors")], structured: FuzzMutator.safetensorsHeader) { b, dir in
                let st = try SafetensorsFile(file: MappedFile(copying: b, name: dir + "/model.safetensors"))
                var sum: UInt64 = 0
                for t in st.tensors { st.withData(t) { d in for x in d { sum &+= UInt64(x) } } }
                _ = sum
            },
            FuzzTarget(name: "index", kind: .json,
                       seeds: [try file("tiny-idefics2-v4/model.safetensors.index.json")]) { b, dir in
                // The tiny Idefics2's six shards next to a mutated index.
                for i in 1...6 {
                    let n = "model-0000\(i)-of-00006.safetensors"
                    if !FileSystem.exists(dir + "/" + n) { try FileSystem.copyFile(f + "/tiny-idefics2-v4/" + n, dir + "/" + n) }
                }
                _ = try write(dir, "model.safetensors.index.json", b)
                let c = try SafetensorsCheckpoint(path: dir)
                _ = c.tensors.count
            },
            FuzzTarget(name: "i2q", kind: .binary,
                       seeds: try ["f32.i2q", "bf16.i2q", "nf4.i2q", "int4.i2q", "int4-fused.i2q"].map { try file("fuzz/" + $0) },
                       structured: FuzzMutator.i2qResealed) { b, dir in
                let m = try I2QFile(file: MappedFile(copying: b, name: dir + "/model.i2q"))
                for e in m.entries { try m.ensureVerified(e) }
                for t in m.tensors { try t.withData { _ in } }
                _ = try m.auxiliaryFiles()
            },
            FuzzTarget(name: "gguf", kind: .binary,
                       seeds: try ["tiny-nokv.gguf", "tiny-tied.gguf", "types.gguf"].map { try file("gguf/" + $0) }) { b, dir in
                let g = try GGUFModel(file: GGUFFile(file: MappedFile(copying: b, name: dir + "/model.gguf")))
                let buf = UnsafeMutableRawPointer.allocate(byteCount: 64 * 4, alignment: 64)
                defer { buf.deallocate() }
                for t in g.tensors { try t.read(elements: 0, count: min(64, t.elementCount), into: buf) }
                _ = try g.auxiliaryFiles()
            },
            FuzzTarget(name: "configs", kind: .json,
                       seeds: [try file("tiny-idefics2-v4/config.json"), try file("tiny-llama/config.json"),
                               try file("easy-vqa-idefics2/config.json"), try file("tiny-idefics2-v4/processor_config.json"),
                               try file("tiny-idefics2-v4/preprocessor_config.json"), try file("tiny-llama/generation_config.json")]) { b, dir in
                // The same bytes as each config file a model directory holds; an error that does not
                // name the file wins (it is what the check looks for).
                var first: Error?
                func attempt(_ body: () throws -> Void) {
                    do { try body() } catch { if first == nil || !"\(error)".contains(dir) { first = error } }
                }
                attempt { _ = try ModelRegistry.decode(Data(b), path: dir + "/config.json") }
                attempt { _ = try ProcessorConfig.load(source: dir) { $0 == "processor_config.json" ? b : nil } }
                attempt { _ = try ProcessorConfig.load(source: dir) { $0 == "preprocessor_config.json" ? b : nil } }
                attempt { _ = try GenerationConfig.decode(b, path: dir + "/generation_config.json") }
                if let first { throw first }
            },
            FuzzTarget(name: "tokenizer", kind: .json,
                       seeds: [try file("fuzz/tokenizer-bytelevel.json"), try file("fuzz/tokenizer-sentencepiece.json")]) { b, dir in
                let t = try Tokenizer(tokenizerJSON: b, tokenizerConfigJSON: nil, source: dir)
                let ids = t.encode("Hello world! what is the red shape?  \n\t naïve 日本 <image>")
                _ = t.decode(ids)
            },
            FuzzTarget(name: "png", kind: .binary,
                       seeds: try ["gray2_trns_50x40.png", "gray_alpha_200x150_interlaced.png", "gray16_300x200.png"].map { try file("images/" + $0) }) { b, dir in
                _ = try ImageDecoder.decode(bytes: b, name: dir + "/image.png")
            },
            FuzzTarget(name: "jpeg", kind: .binary,
                       seeds: try ["photo_xmp8_120x90.jpg", "photo_exif6_160x120.jpg"].map { try file("images/" + $0) }) { b, dir in
                _ = try ImageDecoder.decode(bytes: b, name: dir + "/image.jpg")
            },
            FuzzTarget(name: "docvqa", kind: .json, seeds: [try file("docvqa-mini/val_v1.0.json")]) { b, dir in
                if !FileSystem.exists(dir + "/documents") { symlink(f + "/docvqa-mini/documents", dir + "/documents") }
                _ = try write(dir, "val_v1.0.json", b)
                let s = try DocVQASet.load(directory: dir)
                _ = s.items.count
            },
        ]
    }
}

/// What a run of one target saw.
public struct FuzzStats: Sendable {
    public var inputs = 0
    public var accepted = 0
    public var errors = 0
    /// Errors whose message does not name the input; first few kept with their message.
    public var unnamed = 0
    public var unnamedExamples: [String] = []
    public var slowestSeconds = 0.0
    public var seconds = 0.0
    public init() {}
}

/// SplitMix64: deterministic, seeded.
public struct FuzzRandom {
    var state: UInt64
    public init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    public mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }
}

/// Mutations in the manner of libFuzzer's MutationDispatcher (bit flip, interesting bytes and
/// integers, erase/insert/copy ranges, truncation, cross-over with another seed) plus JSON-aware
/// ones for text formats (a number replaced by an extreme one, a string by a long one, a value
/// dropped, nesting added).
public enum FuzzMutator {
    static let interesting8: [UInt8] = [0, 1, 0x7f, 0x80, 0xff, 0x10, 0x20, 0x40]
    static let interesting64: [UInt64] = [0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff,
                                          0x1_0000_0000, 0x7fff_ffff_ffff_ffff, 0x8000_0000_0000_0000, UInt64.max,
                                          UInt64.max - 1, 4096, 1 << 20, 1 << 30, 1 << 40]
    static let interestingNumbers = ["-1", "0", "1", "-0", "2147483647", "2147483648", "4294967295", "4294967296",
                                     "9223372036854775807", "9223372036854775808", "-9223372036854775808", "1e308",
                                     "1e309", "-1e309", "1e-320", "3.5", "65536", "100000", "1000000000", "NaN", "1.0e18"]

    public static func mutate(_ input: [UInt8], seeds: [[UInt8]], kind: FuzzTarget.Kind, rng: inout FuzzRandom) -> [UInt8] {
        var b = input
        let rounds = 1 + rng.below(4)
        for _ in 0..<rounds {
            if kind == .json && rng.below(3) > 0 { b = mutateJSON(b, rng: &rng) } else { b = mutateBytes(b, seeds: seeds, rng: &rng) }
        }
        if b.count > 4 << 20 { b = Array(b.prefix(4 << 20)) }
        return b
    }

    static func mutateBytes(_ input: [UInt8], seeds: [[UInt8]], rng: inout FuzzRandom) -> [UInt8] {
        var b = input
        if b.isEmpty { return [UInt8(truncatingIfNeeded: rng.next())] }
        // Headers are where the sizes live: half of the positions fall in the first 512 bytes.
        func pos() -> Int { rng.below(2) == 0 ? rng.below(min(b.count, 512)) : rng.below(b.count) }
        switch rng.below(10) {
        case 0: let i = pos(); b[i] ^= UInt8(1 << rng.below(8))
        case 1: b[pos()] = interesting8[rng.below(interesting8.count)]
        case 2:
            let width = [2, 4, 8][rng.below(3)], i = pos()
            var v = interesting64[rng.below(interesting64.count)]
            if rng.below(4) == 0 { v = UInt64(b.count) &+ UInt64(bitPattern: Int64(rng.below(17) - 8)) }
            for k in 0..<width where i + k < b.count { b[i + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
        case 3: let i = pos(), n = min(b.count - i, 1 + rng.below(64)); b.removeSubrange(i..<(i + n))
        case 4:
            let i = pos(), n = 1 + rng.below(64)
            b.insert(contentsOf: (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: i)
        case 5:
            let from = rng.below(b.count), n = min(b.count - from, 1 + rng.below(256)), to = pos()
            let chunk = Array(b[from..<(from + n)])
            b.insert(contentsOf: chunk, at: to)
        case 6: b = Array(b.prefix(rng.below(b.count)))
        case 7:
            let other = seeds[rng.below(seeds.count)]
            if !other.isEmpty {
                let cut = rng.below(min(b.count, other.count))
                b = Array(b.prefix(cut)) + Array(other.suffix(from: min(cut, other.count)))
            }
        case 8: let i = pos(); b[i] = UInt8(truncatingIfNeeded: rng.next())
        default:
            let i = pos(), n = min(b.count - i, 1 + rng.below(16))
            for k in i..<(i + n) { b[k] = 0xff }
        }
        return b
    }

    static func mutateJSON(_ input: [UInt8], rng: inout FuzzRandom) -> [UInt8] {
        var b = input
        guard !b.isEmpty else { return Array("{}".utf8) }
        switch rng.below(6) {
        case 0, 1:  // a number → an extreme one
            let starts = numberStarts(b)
            guard !starts.isEmpty else { return b }
            let s = starts[rng.below(starts.count)]
            var e = s
            while e < b.count, "-+.eE0123456789".utf8.contains(b[e]) { e += 1 }
            b.replaceSubrange(s..<e, with: Array(interestingNumbers[rng.below(interestingNumbers.count)].utf8))
        case 2:  // a string → a long or odd one
            let quotes = b.indices.filter { b[$0] == UInt8(ascii: "\"") }
            guard quotes.count >= 2 else { return b }
            let q = rng.below(quotes.count - 1)
            let body: [UInt8]
            switch rng.below(4) {
            case 0: body = [UInt8](repeating: UInt8(ascii: "a"), count: 1 << (8 + rng.below(10)))
            case 1: body = Array("\\u0000\\ud800\\uDFFF".utf8)
            case 2: body = Array("../../../../etc/passwd".utf8)
            default: body = []
            }
            b.replaceSubrange((quotes[q] + 1)..<quotes[q + 1], with: body)
        case 3:  // drop a span between two structural characters
            let marks = b.indices.filter { [UInt8(ascii: ","), UInt8(ascii: ":"), UInt8(ascii: "{"), UInt8(ascii: "[")].contains(b[$0]) }
            guard marks.count >= 2 else { return b }
            let i = rng.below(marks.count - 1)
            b.removeSubrange((marks[i] + 1)..<marks[min(marks.count - 1, i + 1 + rng.below(3))])
        case 4:  // deep nesting
            let i = rng.below(b.count)
            let depth = 1 << rng.below(14)
            b.insert(contentsOf: [UInt8](repeating: UInt8(ascii: "["), count: depth), at: i)
        default:  // a value → another type
            let colons = b.indices.filter { b[$0] == UInt8(ascii: ":") }
            guard !colons.isEmpty else { return b }
            let c = colons[rng.below(colons.count)] + 1
            let repl = ["null", "true", "[]", "{}", "\"x\"", "-1", "[1,2,3]"][rng.below(7)]
            var e = c
            while e < b.count, b[e] != UInt8(ascii: ","), b[e] != UInt8(ascii: "}") { e += 1 }
            b.replaceSubrange(c..<e, with: Array(repl.utf8))
        }
        return b
    }

    /// safetensors: the JSON header mutated as JSON, its length prefix rewritten to match.
    @Sendable public static func safetensorsHeader(_ input: [UInt8], rng: inout FuzzRandom) -> [UInt8] {
        guard input.count >= 8 else { return input }
        let n = Int(input[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.1) << (8 * UInt64($1.0)) })
        guard n <= input.count - 8 else { return input }
        var header = Array(input[8..<(8 + n)])
        for _ in 0..<(1 + rng.below(3)) { header = mutateJSON(header, rng: &rng) }
        var out = le64(UInt64(header.count)) + header + Array(input[(8 + n)...])
        if rng.below(4) == 0 { out = mutateBytes(out, seeds: [input], rng: &rng) }
        return out
    }

    /// .i2q: the metadata (decompressed) mutated as JSON and stored uncompressed at the end, or the
    /// directory mutated as bytes; then every checksum the opener checks first is recomputed, so the
    /// mutation reaches the directory, metadata and config parsers instead of the checksum test.
    @Sendable public static func i2qResealed(_ input: [UInt8], rng: inout FuzzRandom) -> [UInt8] {
        guard input.count >= 128 else { return input }
        var b = input
        func u64(_ at: Int) -> Int { Int(truncatingIfNeeded: b[at..<(at + 8)].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.1) << (8 * UInt64($1.0)) }) }
        func put(_ at: Int, _ v: Int) { for (i, x) in le64(UInt64(bitPattern: Int64(v))).enumerated() { b[at + i] = x } }
        let (mOff, mSize, mRaw, dirOff, dirSize) = (u64(48), u64(56), u64(64), u64(72), u64(80))
        guard mOff >= 0, mSize >= 0, mOff <= b.count - mSize, dirOff >= 0, dirSize >= 0, dirOff <= b.count - dirSize else { return input }
        if rng.below(2) == 0 {
            var meta = Array(b[mOff..<(mOff + mSize)])
            if b[12] & 1 != 0 {
                guard let raw = try? meta.withUnsafeBytes({ try Zstd.decompress($0, expectedSize: mRaw) }) else { return input }
                meta = raw
            }
            for _ in 0..<(1 + rng.below(3)) { meta = mutateJSON(meta, rng: &rng) }
            b[12] &= ~1  // uncompressed
            put(48, b.count); put(56, meta.count); put(64, meta.count)
            b += meta
            put(16, b.count)
        } else {
            for _ in 0..<(1 + rng.below(4)) {
                guard dirSize > 0 else { break }
                let i = dirOff + rng.below(dirSize)
                switch rng.below(3) {
                case 0: b[i] ^= UInt8(1 << rng.below(8))
                case 1: b[i] = interesting8[rng.below(interesting8.count)]
                default:
                    let v = interesting64[rng.below(interesting64.count)]
                    for k in 0..<8 where i + k < dirOff + dirSize { b[i + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
                }
            }
        }
        let (m2, s2, d2, ds2) = (u64(48), u64(56), u64(72), u64(80))
        if m2 >= 0, s2 >= 0, m2 <= b.count - s2 { put(96, Int(bitPattern: UInt(XXH3.hash(Array(b[m2..<(m2 + s2)]))))) }
        if d2 >= 0, ds2 >= 0, d2 <= b.count - ds2 {
            let s = XXH3.Stream()
            b.withUnsafeBytes { s.update(UnsafeRawBufferPointer(rebasing: $0[0..<120])); s.update(UnsafeRawBufferPointer(rebasing: $0[d2..<(d2 + ds2)])) }
            put(120, Int(bitPattern: UInt(s.digest())))
        }
        return b
    }

    static func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }

    static func numberStarts(_ b: [UInt8]) -> [Int] {
        var out: [Int] = []
        var i = 0
        while i < b.count {
            let c = b[i]
            if (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "-") {
                let prev = i > 0 ? b[i - 1] : 0
                if prev == UInt8(ascii: ":") || prev == UInt8(ascii: " ") || prev == UInt8(ascii: "[") || prev == UInt8(ascii: ",") {
                    out.append(i)
                }
                while i < b.count, "-+.eE0123456789".utf8.contains(b[i]) { i += 1 }
            } else {
                i += 1
            }
        }
        return out
    }
}

/// Runs a target on `count` mutated inputs (input k from `seed` and k alone, so any input can be
/// replayed). `current` is told each input before it runs (the driver keeps it for crash reports).
public enum FuzzRunner {
    public static func input(_ t: FuzzTarget, seed: UInt64, index: Int) -> [UInt8] {
        var rng = FuzzRandom(seed: seed &* 1_000_003 &+ UInt64(index))
        let base = t.seeds[rng.below(t.seeds.count)]
        if let st = t.structured, rng.below(2) == 0 { return st(base, &rng) }
        return FuzzMutator.mutate(base, seeds: t.seeds, kind: t.kind, rng: &rng)
    }

    public static func run(_ t: FuzzTarget, count: Int, seed: UInt64, first: Int = 0, scratch: String,
                           current: ([UInt8], Int) -> Void = { _, _ in }) -> FuzzStats {
        var s = FuzzStats()
        let start = ProgressBar.now()
        for k in first..<(first + count) {
            let b = input(t, seed: seed, index: k)
            current(b, k)
            let t0 = ProgressBar.now()
            do {
                try t.read(b, scratch)
                s.accepted += 1
            } catch {
                s.errors += 1
                let message = "\(error)"
                if !message.contains(scratch) {
                    s.unnamed += 1
                    if s.unnamedExamples.count < 5 { s.unnamedExamples.append("input \(k): \(message)") }
                }
            }
            s.slowestSeconds = max(s.slowestSeconds, ProgressBar.now() - t0)
            s.inputs += 1
        }
        s.seconds = ProgressBar.now() - start
        return s
    }
}
