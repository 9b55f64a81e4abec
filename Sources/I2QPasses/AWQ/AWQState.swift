import Foundation
import I2QCore
import I2QFormats
import I2QQuant
import I2QRuntime

/// The on-disk state of an AWQ or GPTQ run, `OUTPUT.awq-state/` (GPTQ: `OUTPUT.gptq-state/`, the same
/// layout without norms or scales; its hidden-NNNN.f32 is the quantized layer's output):
/// - `run.json`: the fingerprint (source identity, settings, calibration file and size); `--resume`
///   refuses a state whose fingerprint differs;
/// - `batch.json`: the calibration batch's sequence lengths;
/// - `layer-NNNN/model.safetensors`: layer N's results — each quantized linear as `NAME.qweight`
///   (U8 [out, in/2], i2q packing), `NAME.scales` (F16), `NAME.zeros` (U8); the changed norms (and
///   v_proj bias) as F32 under their own names; the chosen scales as `awq.GROUP.scales` (F32);
/// - `hidden-NNNN.f32`: the full-precision output of layer N on the batch ([tokens, hidden] f32),
///   the input of layer N+1 (only the newest is kept).
/// Each piece is written under a temporary name and renamed when complete, so a killed run leaves
/// either a finished layer or none.
final class AWQState {
    let dir: String
    let fingerprint: String
    /// "awq" or "gptq": the method (log prefix).
    let label: String
    private var open: (layer: Int, file: SafetensorsFile)?

    init(output: String, source: any ModelSource, options o: AffineQuantizeOptions) throws {
        dir = AffineQuantizePass.stateDirectory(output, method: o.method)
        label = o.method.rawValue
        let cal = o.calibration!
        var fp: [(String, JSONValue)] = [("source", source.identity)] + AffineQuantizePass.record(o)
        fp.append(("calibration_path", .string(cal.path)))
        fp.append(("calibration_bytes", .int(FileSystem.isDirectory(cal.path) ? -1 : (FileSystem.fileSize(cal.path) ?? -1))))
        if o.method == .awq { fp.append(("awq", .string("\(o.awq.clipGrid)/\(o.awq.maxShrink)/\(o.awq.clipTokens)/\(o.awq.searchTokens)"))) }
        fingerprint = JSONWriter.string(.object(fp), indent: 2) + "\n"
        let runFile = dir + "/run.json"
        if FileSystem.exists(dir) && !o.resume && !o.restart {
            // Never throw finished work away unasked; a state without a finished layer (a run that
            // failed or was stopped before its first layer) holds nothing worth keeping.
            let finished = try FileSystem.listDirectory(dir).filter { $0.hasPrefix("layer-") }.count  // unreadable: an error, never a silent discard
            if finished > 0 { throw AffineQuantizeError.stateExists(path: dir, layers: finished) }
        }
        if FileSystem.exists(dir) && o.resume {
            let stored = String(decoding: try FileSystem.readFile(runFile), as: UTF8.self)
            guard stored == fingerprint else { throw AffineQuantizeError.stateMismatch(path: dir, differing: Self.differing(stored, fingerprint)) }
        } else {
            FileSystem.removeTree(dir)
            try FileSystem.makeDirectory(dir)
            try Self.atomicWrite(runFile, Array(fingerprint.utf8))
        }
    }

    /// The fingerprint keys whose values differ between two run.json texts (for the mismatch message).
    static func differing(_ a: String, _ b: String) -> [String] {
        // Deliberately quiet: this only details the mismatch message; an unparsable stored run.json
        // still fails the resume (the texts differ), just without the list.
        guard let x = try? JSONParser.parse(Array(a.utf8), source: "run.json").objectEntries,
              let y = try? JSONParser.parse(Array(b.utf8), source: "run.json").objectEntries else { return [] }
        let ya = Dictionary(y.map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
        let keys = Set(x.map(\.0)).union(ya.keys)
        let xa = Dictionary(x.map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
        return keys.filter { xa[$0] != ya[$0] }.sorted()
    }

    static func atomicWrite(_ path: String, _ bytes: [UInt8]) throws {
        try FileSystem.writeFile(path + ".tmp", bytes)
        try FileSystem.rename(path + ".tmp", path)
    }

    static func pad4(_ i: Int) -> String { let s = String(i); return String(repeating: "0", count: max(0, 4 - s.count)) + s }
    func layerDir(_ i: Int) -> String { dir + "/layer-" + Self.pad4(i) }
    func hiddenFile(_ i: Int) -> String { dir + "/hidden-" + Self.pad4(i) + ".f32" }

    /// Removes the state when no layer has finished (a run that failed during calibration or its
    /// first layer): there is nothing for --resume to continue.
    func removeIfNoLayerFinished() {
        // Deliberately quiet: an unreadable state is kept, never removed on a guess.
        guard let names = try? FileSystem.listDirectory(dir), !names.contains(where: { $0.hasPrefix("layer-") }) else { return }
        FileSystem.removeTree(dir)
    }

    /// The last layer whose results and output activations are both on disk (−1: none).
    func lastFinished(layers: Int) -> Int {
        var i = -1
        while i + 1 < layers && FileSystem.exists(layerDir(i + 1) + "/" + SafetensorsCheckpoint.singleName) { i += 1 }
        while i >= 0 && !FileSystem.exists(hiddenFile(i)) { i -= 1 }
        return i
    }

    func run(source: any ModelSource, selected: Set<String>, options o: AffineQuantizeOptions) throws {
        InterruptHint.set("\(label.uppercased()): finished layers are kept in \(dir); run the same command with --resume to continue from there\n")
        defer { InterruptHint.set(nil) }
        let c = source.config.textConfig
        let prefix = AffineQuantizePass.textPrefix(source)
        let layers = c.numHiddenLayers
        var last = o.resume ? lastFinished(layers: layers) : -1
        if last == layers - 1 { o.log("\(label): all \(layers) layers already done (state \(dir))"); return }
        let batch: CalibrationBatch
        var hidden: [Float]  // [tokens, hidden]: the input of the next layer
        if last >= 0 {
            guard let lengths = try JSONParser.parse(try FileSystem.readFile(dir + "/batch.json"), source: dir + "/batch.json")["lengths"]?.arrayValue?.compactMap(\.intValue) else {
                throw AffineQuantizeError.stateMismatch(path: dir, differing: [])
            }
            batch = CalibrationBatch(lengths: lengths)
            let m = try MappedFile(path: hiddenFile(last))
            guard m.count == batch.tokens * c.hiddenSize * 4 else { throw AffineQuantizeError.stateMismatch(path: dir, differing: []) }
            hidden = [Float](repeating: 0, count: batch.tokens * c.hiddenSize)
            try hidden.withUnsafeMutableBytes { try m.read(0, m.count, into: $0.baseAddress!) }
            o.log("\(label): resuming after layer \(last + 1)/\(layers) (state \(dir))")
        } else {
            last = -1
            let t0 = ProgressBar.now()
            let inputs = try CalibrationData.load(source: source, options: o.calibration!, log: o.log)
            batch = inputs.batch
            hidden = inputs.hidden
            try Self.atomicWrite(dir + "/batch.json", Array(JSONWriter.string(.object([("lengths", .array(batch.lengths.map { .int($0) }))])).utf8))
            o.log("\(label): calibration: \(inputs.summary) in \(formatFixed(ProgressBar.now() - t0, 1))s")
        }
        let fwd = DecoderLayerForward(config: c, batch: batch)
        let start = ProgressBar.now()
        var done = 0
        for li in (last + 1)..<layers {
            let t0 = ProgressBar.now()
            let names = DecoderLayerWeights.Names(prefix: prefix, layer: li)
            let w = try DecoderLayerWeights.load(source: source, config: c, prefix: prefix, layer: li)
            let quantized = Set(AWQ.linearNames.filter { selected.contains(name(names, $0)) })
            let detail: String
            if o.method == .gptq {
                var st = o.gptq
                st.groupSize = o.groupSize!
                let r = try GPTQLayer.run(w, input: hidden, forward: fwd, quantized: quantized, settings: st, names: names)
                try writeLayer(li, names: names, int4: r.tensors.mapValues { ($0.codes, $0.scales, $0.zeros) })
                hidden = r.output
                let losses = AWQ.linearNames.compactMap { s in r.tensors[s].map { "\(s) \(String(format: "%.3g", $0.loss))" } }.joined(separator: ", ")
                detail = "loss \(losses)"
            } else {
                let (out, feats) = fwd.layer(hidden, w, capture: true)
                var f = feats
                var st = o.awq
                st.groupSize = o.groupSize!
                st.bits = o.bits
                st.quantized = quantized
                let r = AWQ.layer(w, features: &f!, forward: fwd, settings: st, groups: source.config.architecture.awqScaleGroups)
                f = nil  // release the captured activations before writing
                try writeLayer(li, names: names, result: r, quantized: st.quantized, config: c, groupSize: o.groupSize!, bits: o.bits)
                hidden = out
                let ratios = r.scales.map { "\($0.group) r=\(formatFixed($0.ratio, 2))" }.joined(separator: ", ")
                detail = "search \(formatFixed(r.searchSeconds, 1))s, clip \(formatFixed(r.clipSeconds, 1))s; \(ratios)"
            }
            let hf = hiddenFile(li)
            let file = try OutputFile(creating: hf + ".tmp")
            try hidden.withUnsafeBytes { try file.write($0) }
            try file.close()
            try FileSystem.rename(hf + ".tmp", hf)
            if li > 0 { FileSystem.removeTree(hiddenFile(li - 1)) }
            done += 1
            let el = ProgressBar.now() - start
            let eta = el / Double(done) * Double(layers - 1 - li)
            o.log("\(label): layer \(li + 1)/\(layers) in \(formatFixed(ProgressBar.now() - t0, 1))s (\(detail)); ETA \(formatSeconds(eta))")
            if let stop = o.stopAfterLayers, done >= stop, li < layers - 1 { throw AffineQuantizeError.stopped(layers: done, state: dir) }
        }
    }

    func name(_ n: DecoderLayerWeights.Names, _ short: String) -> String {
        ["gate", "up", "down"].contains(short) ? n.mlp(short) : n.attn(short)
    }

    func writeLayer(_ li: Int, names n: DecoderLayerWeights.Names, result r: AWQLayerResult, quantized: Set<String>,
                    config c: TextConfig, groupSize gs: Int, bits: Int = 4) throws {
        let w = r.weights
        var items: [(PlannedTensor, [UInt8])] = []
        func bytes<T>(_ a: [T]) -> [UInt8] { a.withUnsafeBytes { Array($0) } }
        for short in AWQ.linearNames where quantized.contains(short) {
            let values: [Float]
            switch short {
            case "q": values = w.q
            case "k": values = w.k
            case "v": values = w.v
            case "o": values = w.o
            case "gate": values = w.gate
            case "up": values = w.up
            default: values = w.down
            }
            let cols = ["o"].contains(short) ? c.numAttentionHeads * c.headDim : (short == "down" ? c.intermediateSize : c.hiddenSize)
            let rows = values.count / cols, groups = cols / gs
            var codes = [UInt8](repeating: 0, count: rows * cols)    // [rows, cols]
            var packed = [UInt8](repeating: 0, count: rows * cols * bits / 8)  // [rows, cols·bits/8]
            var scales = [Float16](repeating: 0, count: rows * groups)  // [rows, groups]
            var zeros = [UInt8](repeating: 0, count: rows * groups)     // [rows, groups]
            values.withUnsafeBufferPointer { vp in codes.withUnsafeMutableBufferPointer { cp in
            scales.withUnsafeMutableBufferPointer { sp in zeros.withUnsafeMutableBufferPointer { zp in
                AffineInt4.quantizeRows(vp.baseAddress!, rows: rows, cols: cols, groupSize: gs, bits: bits, codes: cp.baseAddress!,
                                        scales: sp.baseAddress!, zeros: zp.baseAddress!)
            } } } }
            codes.withUnsafeBufferPointer { cp in packed.withUnsafeMutableBufferPointer { AffineInt4.pack(cp.baseAddress!, count: rows * cols, bits: bits, into: $0.baseAddress!) } }
            let nm = name(n, short)
            items.append((PlannedTensor(name: nm + ".qweight", dtype: .u8, shape: [rows, cols * bits / 8]), packed))
            items.append((PlannedTensor(name: nm + ".scales", dtype: .f16, shape: [rows, groups]), bytes(scales)))
            items.append((PlannedTensor(name: nm + ".zeros", dtype: .u8, shape: [rows, groups]), zeros))
        }
        try writeLayer(li, items: items, result: r, names: n)
    }

    /// GPTQ's layer: the quantized linears' stored components (codes [rows, cols] unpacked).
    func writeLayer(_ li: Int, names n: DecoderLayerWeights.Names, int4: [String: (codes: [UInt8], scales: [Float16], zeros: [UInt8])]) throws {
        var items: [(PlannedTensor, [UInt8])] = []
        for short in AWQ.linearNames {
            guard let t = int4[short] else { continue }
            var packed = [UInt8](repeating: 0, count: t.codes.count / 2)
            t.codes.withUnsafeBufferPointer { cp in packed.withUnsafeMutableBufferPointer { AffineInt4.pack(cp.baseAddress!, count: t.codes.count, into: $0.baseAddress!) } }
            let nm = name(n, short)
            items.append((PlannedTensor(name: nm + ".qweight", dtype: .u8, shape: [packed.count]), packed))
            items.append((PlannedTensor(name: nm + ".scales", dtype: .f16, shape: [t.scales.count]), t.scales.withUnsafeBytes { Array($0) }))
            items.append((PlannedTensor(name: nm + ".zeros", dtype: .u8, shape: [t.zeros.count]), t.zeros))
        }
        try writeLayer(li, items: items, result: nil, names: n)
    }

    func writeLayer(_ li: Int, items base: [(PlannedTensor, [UInt8])], result r: AWQLayerResult?, names n: DecoderLayerWeights.Names) throws {
        var items = base
        func bytes<T>(_ a: [T]) -> [UInt8] { a.withUnsafeBytes { Array($0) } }
        if let r {  // AWQ: the changed norms / v bias and the chosen scales
            let w = r.weights
            let groups = Set(r.scales.map(\.group))
            if groups.contains("qkv") { items.append((PlannedTensor(name: n.inputNorm, dtype: .f32, shape: [w.inputNorm.count]), bytes(w.inputNorm))) }
            if groups.contains("gateup") { items.append((PlannedTensor(name: n.postNorm, dtype: .f32, shape: [w.postNorm.count]), bytes(w.postNorm))) }
            if groups.contains("vo"), let b = w.vBias { items.append((PlannedTensor(name: n.attnBias("v"), dtype: .f32, shape: [b.count]), bytes(b))) }
            for s in r.scales {
                items.append((PlannedTensor(name: "awq.\(s.group).scales", dtype: .f32, shape: [s.scales.count]), bytes(s.scales)))
            }
        }
        let tmp = layerDir(li) + ".tmp"
        FileSystem.removeTree(tmp)
        try FileSystem.makeDirectory(tmp)
        let sw = try SafetensorsWriter(directory: tmp, tensors: items.map(\.0), maxShardSize: Int.max)
        for (p, b) in items { try b.withUnsafeBytes { try sw.write(p.name, $0) } }
        try sw.finish()
        FileSystem.removeTree(layerDir(li))
        try FileSystem.rename(tmp, layerDir(li))
    }

    /// The state's value for tensor `name`, if AWQ replaced it.
    func replacement(_ name: String) throws -> AffineQuantizePass.Replacement? {
        let marker = ".layers."
        guard let r = name.range(of: marker) else { return nil }
        let rest = name[r.upperBound...]
        guard let dot = rest.firstIndex(of: "."), let li = Int(rest[..<dot]) else { return nil }
        if open?.layer != li {
            let p = layerDir(li) + "/" + SafetensorsCheckpoint.singleName
            guard FileSystem.exists(p) else { return nil }
            open = (li, try SafetensorsFile(path: p))
        }
        let f = open!.file
        if let q = f.info(name + ".qweight"), let s = f.info(name + ".scales"), let z = f.info(name + ".zeros") {
            let packed = f.withData(q) { Array($0) }
            let scales = f.withData(s) { Array($0.bindMemory(to: Float16.self)) }
            let zeros = f.withData(z) { Array($0) }
            return .int4(packed: packed, scales: scales, zeros: zeros)
        }
        if let p = f.info(name) {
            return .plain(f.withData(p) { b in (0..<(b.count / 4)).map { b.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } })
        }
        return nil
    }

    func remove() { FileSystem.removeTree(dir) }
}
