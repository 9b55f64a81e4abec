import I2QCore
import I2QQuant

/// Why an importance-matrix file could not be read or written. Messages name the file.
public enum ImatrixError: I2QError, Equatable {
    case malformed(file: String, detail: String)
    case write(file: String, detail: String)

    public var description: String {
        switch self {
        case let .malformed(f, d):
            return "\(f): not a usable importance-matrix file: \(d). Give a file written by llama-imatrix or `i2q imatrix` (GGUF, or the legacy .dat format)"
        case let .write(f, d): return "\(f): cannot write the importance matrix: \(d)"
        }
    }
}

/// The two file formats of llama.cpp's `llama-imatrix` (tools/imatrix/imatrix.cpp).
public enum ImatrixFormat: String, Sendable, CaseIterable {
    /// GGUF (llama-imatrix's default since llama.cpp PR #9400): `general.type = "imatrix"`,
    /// `imatrix.datasets` (string array), `imatrix.chunk_count` / `imatrix.chunk_size` (u32); per
    /// weight, in name order, `NAME.in_sum2` (F32, ne = [columns, matrices]: Σx² per input column)
    /// then `NAME.counts` (F32, ne = [1, matrices]: rows fed to each matrix).
    case gguf
    /// The legacy binary `.dat` (`--output-format dat`), little-endian: int32 entry count; per entry
    /// (name order) int32 name length, the name, int32 ncall, int32 nval, nval float32 =
    /// (Σx² / rows) · ncall with ncall = ⌈rows / chunk_size⌉; then int32 chunk count, int32 length +
    /// the dataset name.
    case dat
}

/// An importance matrix: per linear weight (GGUF tensor name, e.g. `blk.0.attn_q.weight`), the sum
/// of squared activations of each input column over every row the weight saw, and the row count.
///
/// `values(for:)` is what llama-quantize hands to the quantizer (tools/quantize/quantize.cpp,
/// `load_imatrix`): GGUF files `in_sum2 / counts` per matrix (a matrix with count 0 gets 1s);
/// legacy files the stored values / ncall (ncall 0: the stored values). Float32 division, as there.
public struct ImportanceMatrix: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        /// [matrices, columns] f32 (matrices = 1 for a dense weight). GGUF: Σx² per column;
        /// legacy: the stored (Σx² / rows) · ncall.
        public var sums: [Float]
        /// [matrices] f32. GGUF: rows per matrix; legacy: [ncall].
        public var counts: [Float]
        public init(sums: [Float], counts: [Float]) { self.sums = sums; self.counts = counts }
    }

    public var entries: [String: Entry]
    public var datasets: [String]
    /// Chunks the matrix was computed over and the tokens per chunk (the `-c` of llama-imatrix).
    public var chunkCount: Int
    public var chunkSize: Int
    /// Read from a legacy `.dat` (sums are mean · ncall, counts [ncall]).
    public var isLegacy: Bool

    public init(entries: [String: Entry], datasets: [String], chunkCount: Int, chunkSize: Int, isLegacy: Bool = false) {
        self.entries = entries; self.datasets = datasets; self.chunkCount = chunkCount; self.chunkSize = chunkSize; self.isLegacy = isLegacy
    }

    /// The mean squared activation per input column ([matrices · columns]), as llama-quantize computes it.
    public func values(for ggufTensorName: String) -> [Float]? {
        guard let e = entries[ggufTensorName], !e.counts.isEmpty else { return nil }
        if isLegacy {
            let ncall = Int(e.counts[0])
            return ncall > 0 ? e.sums.map { $0 / Float(ncall) } : e.sums
        }
        let cols = e.sums.count / e.counts.count
        var out = [Float](repeating: 1, count: e.sums.count)
        for (j, c) in e.counts.enumerated() where c > 0 {
            for i in (j * cols)..<((j + 1) * cols) { out[i] = e.sums[i] / c }
        }
        return out
    }

    /// The legacy format's ncall of an entry: ⌈max count / chunk size⌉ (imatrix.cpp `save_imatrix_legacy`).
    func ncall(_ e: Entry) -> Int32 {
        if isLegacy { return Int32(e.counts.first ?? 0) }
        let cs = Int64(max(chunkSize, 1))
        return Int32((Int64(e.counts.max() ?? 0) + cs - 1) / cs)
    }
}

extension ImportanceMatrix {
    /// Reads a GGUF imatrix (first bytes "GGUF") or a legacy `.dat` file.
    public static func read(path: String) throws -> ImportanceMatrix {
        let bytes = try FileSystem.readFile(path)  // small: a few floats per input column
        if bytes.starts(with: GGUFFile.magic) { return try readGGUF(path: path) }
        return try readLegacy(path: path, bytes: bytes)
    }

    static func readGGUF(path: String) throws -> ImportanceMatrix {
        let f = try GGUFFile(path: path)
        func bad(_ d: String) -> ImatrixError { .malformed(file: path, detail: d) }
        if let t = f.value("general.type"), t.stringValue != "imatrix" {
            throw bad("general.type is \(t.stringValue.map { "\"\($0)\"" } ?? "not a string"), not \"imatrix\" (is this a model?)")
        }
        // llama-quantize refuses a GGUF imatrix without this metadata ("missing imatrix metadata").
        guard let cc = f.value("imatrix.chunk_count")?.intValue, let cs = f.value("imatrix.chunk_size")?.intValue,
              let ds = f.value("imatrix.datasets")?.arrayValue else {
            throw bad("imatrix.chunk_count, imatrix.chunk_size or imatrix.datasets is missing (llama-quantize refuses such a file)")
        }
        func floats(_ t: GGUFTensorInfo) throws -> [Float] {
            guard t.type == .f32 else { throw bad("tensor \(t.name) is \(t.type.name), not F32") }
            var out = [Float](repeating: 0, count: t.elementCount)
            try out.withUnsafeMutableBufferPointer { try f.dequantize(t, first: 0, count: t.elementCount, into: $0.baseAddress!) }
            guard out.allSatisfy(\.isFinite) else { throw bad("tensor \(t.name) holds a non-finite value") }
            return out
        }
        var entries: [String: Entry] = [:]
        for t in f.tensors where t.name.hasSuffix(".in_sum2") {
            let name = String(t.name.dropLast(".in_sum2".count))
            guard let c = f.tensor(name + ".counts") else { throw bad("\(t.name) has no \(name).counts") }
            guard t.dims.count <= 2, c.dims.count <= 2, c.dims[0] == 1, (c.dims.count > 1 ? c.dims[1] : 1) == (t.dims.count > 1 ? t.dims[1] : 1) else {
                throw bad("\(t.name) (ne \(t.dims)) and \(c.name) (ne \(c.dims)) do not match: in_sum2 is [columns, matrices], counts [1, matrices]")
            }
            let counts = try floats(c)
            guard counts.allSatisfy({ $0 >= 0 }) else { throw bad("\(c.name) holds a negative count") }
            entries[name] = Entry(sums: try floats(t), counts: counts)
        }
        if let orphan = f.tensors.first(where: { $0.name.hasSuffix(".counts") && entries[String($0.name.dropLast(".counts".count))] == nil }) {
            throw bad("\(orphan.name) has no matching .in_sum2 tensor")
        }
        guard !entries.isEmpty else { throw bad("it holds no NAME.in_sum2 + NAME.counts tensors") }
        return ImportanceMatrix(entries: entries, datasets: ds.compactMap(\.stringValue), chunkCount: cc, chunkSize: cs)
    }

    static func readLegacy(path: String, bytes b: [UInt8]) throws -> ImportanceMatrix {
        var pos = 0
        func i32(_ what: String) throws -> Int {
            guard b.count - pos >= 4 else {
                throw ImatrixError.malformed(file: path, detail: "\(what) at byte \(pos) runs past the end of the \(b.count)-byte file (truncated, or not an imatrix)")
            }
            defer { pos += 4 }
            return Int(Int32(littleEndian: b.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: pos, as: Int32.self) }))
        }
        func bad(_ d: String) -> ImatrixError { .malformed(file: path, detail: d) }
        let n = try i32("the entry count")
        guard n >= 1, n <= b.count / 16 else { throw bad("the entry count \(n) is impossible for a legacy imatrix of \(b.count) bytes") }
        var entries: [String: Entry] = [:]
        for i in 0..<n {
            let len = try i32("the name length of entry \(i + 1)")
            guard len >= 1, len <= b.count - pos else { throw bad("entry \(i + 1): name length \(len) at byte \(pos - 4) is impossible") }
            guard let name = String(validating: b[pos..<(pos + len)], as: UTF8.self) else { throw bad("entry \(i + 1): the name is not UTF-8") }
            pos += len
            let ncall = try i32("ncall of \(name)"), nval = try i32("the value count of \(name)")
            guard nval >= 1, nval <= (b.count - pos) / 4 else { throw bad("\(name): its \(nval) values run past the end of the file (\(b.count - pos) bytes left: truncated?)") }
            guard entries[name] == nil else { throw bad("\(name) appears twice") }
            let vals = b.withUnsafeBytes { r in (0..<nval).map { Float(bitPattern: UInt32(littleEndian: r.loadUnaligned(fromByteOffset: pos + 4 * $0, as: UInt32.self))) } }
            guard vals.allSatisfy(\.isFinite) else { throw bad("\(name) holds a non-finite value") }
            pos += 4 * nval
            entries[name] = Entry(sums: vals, counts: [Float(ncall)])
        }
        // Optional trailer (newer llama-imatrix versions write it): chunk count, dataset name.
        var chunks = 0, datasets: [String] = []
        if pos < b.count {
            chunks = try i32("the chunk count")
            let len = try i32("the dataset name length")
            guard len >= 0, len <= b.count - pos else { throw bad("dataset name length \(len) runs past the end of the file") }
            datasets = [String(decoding: b[pos..<(pos + len)], as: UTF8.self)]
            pos += len
            guard pos == b.count else { throw bad("\(b.count - pos) unexpected bytes after the dataset name") }
        }
        return ImportanceMatrix(entries: entries, datasets: datasets, chunkCount: chunks, chunkSize: 0, isLegacy: true)
    }
}

extension ImportanceMatrix {
    /// The legacy `.dat` bytes (layout in `ImatrixFormat.dat`; entries in name order, as llama-imatrix).
    public func legacyBytes() -> [UInt8] {
        var b: [UInt8] = []
        func i32(_ v: Int32) { withUnsafeBytes(of: v.littleEndian) { b += $0 } }
        let names = entries.keys.sorted()
        i32(Int32(names.count))
        for name in names {
            let e = entries[name]!, nc = ncall(e)
            i32(Int32(name.utf8.count)); b += Array(name.utf8)
            i32(nc); i32(Int32(e.sums.count))
            let cols = e.sums.count / max(e.counts.count, 1)
            for (i, s) in e.sums.enumerated() {
                // imatrix.cpp: (value / count) · ncall in float32; a matrix with count 0 stores 1.
                let v: Float
                if isLegacy { v = s } else {
                    let c = e.counts[i / cols]
                    v = c == 0 ? Float(nc) : (s / c) * Float(nc)
                }
                withUnsafeBytes(of: v.bitPattern.littleEndian) { b += $0 }
            }
        }
        i32(Int32(chunkCount))
        let ds = Array((datasets.last ?? "").utf8)
        i32(Int32(ds.count)); b += ds
        return b
    }

    /// Writes the matrix to `path` (created; the caller stages it) in `format`.
    public func write(to path: String, format: ImatrixFormat) throws {
        if format == .dat {
            let out = try OutputFile(creating: path)
            try out.write(legacyBytes())
            try out.close()
            return
        }
        guard !isLegacy else { throw ImatrixError.write(file: path, detail: "a matrix read from a legacy .dat has no row counts; write it as .dat") }
        let w = try GGUFWriter(path: path)
        try w.add("general.type", .text("imatrix"))
        try w.add("imatrix.datasets", .strings(datasets.map { Array($0.utf8) }))
        try w.add("imatrix.chunk_count", .uint32(UInt32(chunkCount)))
        try w.add("imatrix.chunk_size", .uint32(UInt32(chunkSize)))
        let names = entries.keys.sorted()
        for name in names {
            let e = entries[name]!, nmat = e.counts.count
            guard nmat > 0, e.sums.count % nmat == 0 else { throw ImatrixError.write(file: path, detail: "\(name): \(e.sums.count) sums for \(nmat) matrices") }
            try w.declare(GGUFTensorDecl(name: name + ".in_sum2", shape: [nmat, e.sums.count / nmat], type: .f32))
            try w.declare(GGUFTensorDecl(name: name + ".counts", shape: [nmat, 1], type: .f32))
        }
        try w.writeHeader()
        for name in names {
            let e = entries[name]!
            for (suffix, data) in [(".in_sum2", e.sums), (".counts", e.counts)] {
                try w.beginTensor(name + suffix)
                try data.withUnsafeBytes { try w.append($0) }
                try w.endTensor()
            }
        }
        try w.finish()
    }
}

/// `--imatrix FILE` of quantize and export: the quantizers ask for a tensor's vector by GGUF name.
extension ImportanceMatrix: ImportanceSource {}
