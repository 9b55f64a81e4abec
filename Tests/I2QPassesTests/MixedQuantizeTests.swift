import Foundation
import XCTest
import I2QCore
import I2QTestSupport
@testable import I2QFormats
@testable import I2QPasses
@testable import I2QQuant

/// `quantize --target-bpw` (MixedQuantizePass, issue 22) on tiny-mistral (hidden 32, intermediate 64:
/// block-32 types and int4g32 fit, K-quants do not). The written tensors are checked against the
/// uniform passes whose bytes are llama.cpp's (GGMLQuantizePass, GGMLQuantizePassTests) and
/// AutoAWQ's RTN codec (AffineQuantizePass); the bit counts against ggml's block sizes.
final class MixedQuantizeTests: XCTestCase {
    var dir = ""
    let settings: OutputSettings = { var s = OutputSettings(); s.showProgress = false; return s }()
    let calibration = fixturesDir + "/imatrix/calibration.txt"
    let candidates = "int4g32,q4_0,q5_0,q8_0,bf16"

    override func setUpWithError() throws { dir = try makeTempDir("mixed") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }  // deliberate: cleanup only

    func options(_ target: Double?) throws -> MixedQuantizeOptions {
        var o = MixedQuantizeOptions()
        o.targetBPW = target
        o.candidates = try MixedCandidate.parseList(candidates)
        var cal = ImatrixSettings(calibration: calibration)
        cal.ctx = 16
        cal.chunks = 8
        o.calibration = cal
        o.probeTokens = 16
        return o
    }

    /// Bits per row of the candidates at SmolLM2's widths, from ggml's block sizes (ggml.c type
    /// traits: Q8_0 34 B / 32, Q4_K 144 B / 256, Q5_K 176 B / 256, Q6_K 210 B / 256) and the
    /// affine_int4 layout (codes + f16 scale + u8 zero per group).
    func testCandidateBitsAndFit() throws {
        let c = try MixedCandidate.parseList(MixedCandidate.defaultList)
        XCTAssertEqual(c.map(\.name), ["int4g128", "int4g64", "q4_k", "q5_k", "q6_k", "q8_0", "bf16"])
        let bpw = { (n: String, cols: Int) -> Double in Double(MixedCandidate(name: n)!.bytes(rows: 3, cols: cols) * 8) / Double(3 * cols) }
        XCTAssertEqual(bpw("int4g64", 576), 4.375)
        XCTAssertEqual(bpw("int4g128", 1536), 4.1875)
        XCTAssertEqual(bpw("q8_0", 576), 8.5)
        XCTAssertEqual(bpw("q4_k", 1536), 4.5)
        XCTAssertEqual(bpw("q5_k", 1536), 5.5)
        XCTAssertEqual(bpw("q6_k", 1536), 6.5625)
        XCTAssertEqual(bpw("bf16", 576), 16)
        XCTAssertFalse(MixedCandidate(name: "q4_k")!.fits(columns: 576))
        XCTAssertFalse(MixedCandidate(name: "int4g128")!.fits(columns: 576))
        XCTAssertTrue(MixedCandidate(name: "int4g64")!.fits(columns: 576))
        assertThrowsMentioning(["\"iq4_nl\"", "int4g128", "q6_k"]) { _ = try MixedCandidate.parseList("q4_k,iq4_nl") }
        // Below 4 bits (Q2_K 84 B / 256, Q3_K 110 B / 256): in allNames, not in the default list;
        // llama.cpp's fallback for both where 256 does not divide the row is Q4_0.
        XCTAssertEqual(bpw("q2_k", 1536), 2.625)
        XCTAssertEqual(bpw("q3_k", 1536), 3.4375)
        XCTAssertTrue(MixedCandidate.allNames.contains("q2_k") && MixedCandidate.allNames.contains("q3_k"))
        XCTAssertFalse(c.contains(MixedCandidate(name: "q3_k")!))
        XCTAssertEqual(MixedCandidate(name: "q2_k")!.resolved(columns: 576)?.name, "q4_0")
        XCTAssertEqual(MixedCandidate(name: "q3_k")!.resolved(columns: 576)?.name, "q4_0")
        // Rows that a K-quant's 256-block does not divide: llama.cpp's tensor_type_fallback
        // (llama-quant.cpp: Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0), as llama-quantize's q4_k_m stores
        // SmolLM2's 576-wide tensors.
        XCTAssertEqual(MixedCandidate(name: "q4_k")!.resolved(columns: 576)?.name, "q5_0")
        XCTAssertEqual(MixedCandidate(name: "q5_k")!.resolved(columns: 576)?.name, "q5_1")
        XCTAssertEqual(MixedCandidate(name: "q6_k")!.resolved(columns: 576)?.name, "q8_0")
        XCTAssertEqual(MixedCandidate(name: "q4_k")!.resolved(columns: 1536)?.name, "q4_k")
        XCTAssertNil(MixedCandidate(name: "int4g128")!.resolved(columns: 576))
        XCTAssertNil(MixedCandidate(name: "q4_k")!.resolved(columns: 48))
        XCTAssertEqual(MixedCandidate.options(c, columns: 576).map(\.name), ["int4g64", "q5_0", "q5_1", "q8_0", "bf16"])
    }

    /// The optimizer never exceeds the budget; on a small instance it finds the optimum that
    /// exhaustive search finds; a budget below every assignment is refused.
    func testOptimizerRespectsBudget() throws {
        typealias O = BitAllocation.Option
        var rng = SplitMix64(seed: 7)
        for trial in 0..<200 {
            let items = (0..<4).map { _ in (0..<3).map { k -> O in
                O(bits: 10 * (k + 1) + Int(rng.next() % 7), cost: Double(100 >> k) + Double(rng.next() % 10))
            } }
            let minBits = items.reduce(0) { $0 + $1.map(\.bits).min()! }
            let budget = minBits + Int(rng.next() % 60)
            let choice = try BitAllocation.solve(items, budgetBits: budget)
            let bits = zip(items, choice).reduce(0) { $0 + $1.0[$1.1].bits }
            XCTAssertLessThanOrEqual(bits, budget, "trial \(trial)")
        }
        // Exhaustively checked optimum: budget 60 allows one upgrade of 20 bits; the second tensor's
        // gains most (cost 90 → 10), the first's only 50 → 40.
        let items = [[O(bits: 20, cost: 50), O(bits: 40, cost: 40)], [O(bits: 20, cost: 90), O(bits: 40, cost: 10)]]
        XCTAssertEqual(try BitAllocation.solve(items, budgetBits: 60), [0, 1])
        XCTAssertEqual(try BitAllocation.solve(items, budgetBits: 80), [1, 1])
        XCTAssertThrowsError(try BitAllocation.solve(items, budgetBits: 39)) { e in
            XCTAssertEqual(e as? BitAllocationError, .infeasible(minimumBits: 40))
        }
    }

    /// A measured run: the achieved bpw is within the target, the stored bytes of every tensor are
    /// the candidate's count, inspect reports the same schemes and bpw, the recipe is written and
    /// read back equal, and applying it (same importance) gives the same file, byte for byte.
    func testMeasuredRunRecipeRoundTripAndInspect() throws {
        let src = try openModel(fixturesDir + "/tiny-mistral")
        let a = dir + "/a.i2q"
        _ = try MixedQuantizePass.run(source: src, output: a, options: try options(5.0), settings: settings)
        XCTAssertFalse(FileSystem.exists(a + ".bpw-state"), "state removed after success")
        let recipePath = dir + "/a.recipe.json"
        let recipe = try MixedRecipe.read(path: recipePath)
        XCTAssertEqual(recipe.targetBPW, 5.0)
        XCTAssertLessThanOrEqual(recipe.achievedBPW, 5.0)
        XCTAssertGreaterThan(recipe.achievedBPW, 4.5, "the budget is used")
        XCTAssertEqual(Set(recipe.tensors.map(\.scheme)).count > 1, true, "mixed: \(recipe.tensors.map(\.scheme))")
        XCTAssertEqual(try MixedRecipe.read(path: recipePath), recipe)
        // The plot of where the bits went: one bar per tensor, titled with each bar's scheme.
        let svg = String(decoding: try FileSystem.readFile(dir + "/a.recipe.svg"), as: UTF8.self)
        XCTAssertTrue(svg.hasPrefix("<?xml") && svg.hasSuffix("</svg>\n"))
        XCTAssertEqual(svg.components(separatedBy: "<rect class=\"bar\"").count - 1, recipe.tensors.count)
        for t in recipe.tensors { XCTAssertTrue(svg.contains("\(t.name): \(t.scheme),"), t.name) }

        let f = try I2QFile(path: a)
        let summary = SchemeSummary(f)
        for t in recipe.tensors {
            let e = try XCTUnwrap(f.entries.first { $0.name == t.name })
            let stored = summary.tensors.first { $0.name == t.name }!.bytes
            XCTAssertEqual(stored, MixedCandidate(name: t.scheme)!.bytes(rows: e.shape[0], cols: e.shape[1]), t.name)
        }
        let info = ModelInspection(f)
        let mixed = try XCTUnwrap(info.mixed)
        XCTAssertEqual(mixed.target, 5.0)
        XCTAssertEqual(mixed.achieved, recipe.achievedBPW, accuracy: 1e-9)
        XCTAssertEqual(mixed.tensors.map(\.scheme), recipe.tensors.map(\.scheme))
        XCTAssertTrue(info.text.contains("mixed precision: \(formatFixed(recipe.achievedBPW, 3)) bits/weight over \(recipe.tensors.count) tensors (target 5.000)"), info.text)

        // Applying the recipe (importance collected again on the same data) twice.
        for name in ["b", "c"] {
            var o = try options(nil)
            o.recipe = recipe
            _ = try MixedQuantizePass.run(source: src, output: dir + "/\(name).i2q", options: o, settings: settings)
            XCTAssertTrue(try FileSystem.readFile(a) == FileSystem.readFile(dir + "/\(name).i2q"), "\(name): recipe output differs")
        }
        // Re-optimizing the stored costs for another budget needs no measurement.
        var r = MixedQuantizeOptions()
        r.recipe = recipe
        r.targetBPW = 8.0
        _ = try MixedQuantizePass.run(source: src, output: dir + "/d.i2q", options: r, settings: settings)
        let d = try MixedRecipe.read(path: dir + "/d.recipe.json")
        XCTAssertLessThanOrEqual(d.achievedBPW, 8.0)
        XCTAssertGreaterThan(d.achievedBPW, recipe.achievedBPW)
    }

    /// The KLD probe rescales each tensor's costs by one factor: the ratios between a tensor's
    /// candidates are the weight-error proxy's, the levels between tensors change.
    func testProbeScalesEachTensorByOneFactor() throws {
        let src = try openModel(fixturesDir + "/tiny-mistral")
        var proxy = try options(6.0)
        proxy.probeTokens = 0
        _ = try MixedQuantizePass.run(source: src, output: dir + "/p.i2q", options: proxy, settings: settings)
        _ = try MixedQuantizePass.run(source: src, output: dir + "/k.i2q", options: try options(6.0), settings: settings)
        let p = try MixedRecipe.read(path: dir + "/p.recipe.json"), k = try MixedRecipe.read(path: dir + "/k.recipe.json")
        var factors: [Double] = []
        for (a, b) in zip(p.tensors, k.tensors) {
            XCTAssertEqual(a.name, b.name)
            let f = b.options[0].cost / a.options[0].cost
            factors.append(f)
            for (x, y) in zip(a.options, b.options) { XCTAssertEqual(y.cost, x.cost * f, accuracy: 1e-9 * max(1, y.cost), "\(a.name) \(x.name)") }
        }
        XCTAssertGreaterThan(Set(factors.map { ($0 * 1e6).rounded() }).count, 1, "one factor for every tensor: the probe changed nothing between tensors")
    }

    /// A measurement stopped after some tensors (as a kill would leave it) continues with --resume and
    /// writes the same bytes as an uninterrupted run; without --resume the state is not discarded.
    func testResumeGivesTheSameBytes() throws {
        let src = try openModel(fixturesDir + "/tiny-mistral")
        let a = dir + "/a.i2q", b = dir + "/b.i2q"
        _ = try MixedQuantizePass.run(source: src, output: a, options: try options(5.0), settings: settings)
        var o = try options(5.0)
        o.stopAfterTensors = 4
        assertThrowsMentioning(["stopped after measuring 4 tensor(s)", "--resume"]) {
            _ = try MixedQuantizePass.run(source: src, output: b, options: o, settings: settings)
        }
        XCTAssertFalse(FileSystem.exists(b))
        XCTAssertTrue(FileSystem.exists(b + ".bpw-state/importance.gguf"))
        XCTAssertTrue(FileSystem.exists(b + ".bpw-state/cost-0003.json"))
        XCTAssertFalse(FileSystem.exists(b + ".bpw-state/cost-0004.json"))
        o.stopAfterTensors = nil
        assertThrowsMentioning(["b.i2q.bpw-state", "--resume", "--restart"]) {
            _ = try MixedQuantizePass.run(source: src, output: b, options: o, settings: settings)
        }
        o.resume = true
        _ = try MixedQuantizePass.run(source: src, output: b, options: o, settings: settings)
        XCTAssertTrue(try FileSystem.readFile(a) == FileSystem.readFile(b), "resumed output differs")
        XCTAssertTrue(try FileSystem.readFile(dir + "/a.recipe.json") == FileSystem.readFile(dir + "/b.recipe.json"), "resumed recipe differs")
        // Other candidates do not resume this state.
        o.stopAfterTensors = 1
        o.resume = false
        _ = try? MixedQuantizePass.run(source: src, output: dir + "/c.i2q", options: o, settings: settings)  // deliberate: stops as asked
        var other = try options(5.0)
        other.candidates = try MixedCandidate.parseList("int4g32,bf16")
        other.resume = true
        assertThrowsMentioning(["c.i2q.bpw-state", "other settings", "differing: candidates", "--restart"]) {
            _ = try MixedQuantizePass.run(source: src, output: dir + "/c.i2q", options: other, settings: settings)
        }
    }

    /// Tensors assigned int4g32 hold the bytes of `quantize --rtn --group-size 32`; tensors assigned
    /// q4_0 / q8_0 the bytes of `quantize --type q4_0` (llama-quantize's, with the same importance).
    func testTensorsEqualTheUniformPasses() throws {
        let src = try openModel(fixturesDir + "/tiny-mistral")
        let planned = try MixedQuantizePass.plan(src)
        var cal = ImatrixSettings(calibration: calibration)
        cal.ctx = 16; cal.chunks = 8
        let importance = try ImatrixPass.compute(source: src, settings: cal).0
        func mixed(_ scheme: (String) -> String, _ name: String) throws -> I2QFile {
            var o = MixedQuantizeOptions()
            o.recipe = MixedRecipe(targetBPW: nil, candidates: ["int4g32", "q4_0", "q8_0"], tensors: planned.map {
                .init(name: $0.tensor.name, scheme: scheme($0.gguf), parameters: $0.parameters, options: [])
            })
            o.importance = importance
            _ = try MixedQuantizePass.run(source: src, output: dir + "/\(name).i2q", options: o, settings: settings)
            return try I2QFile(path: dir + "/\(name).i2q")
        }
        func bytes(_ f: I2QFile, _ e: I2QTensorEntry) -> [[UInt8]] {
            e.components.map { c in f.file.withBytes(f.header.dataOffset + c.offset, c.size) { Array($0) } }
        }
        var rtn = AffineQuantizeOptions()
        rtn.groupSize = 32
        _ = try AffineQuantizePass.run(source: src, output: dir + "/rtn.i2q", options: rtn, settings: settings)
        let r = try I2QFile(path: dir + "/rtn.i2q"), m = try mixed({ _ in "int4g32" }, "int4")
        var compared = 0
        for e in r.entries where e.scheme == AffineInt4Layout.scheme {
            let me = try XCTUnwrap(m.entries.first { $0.name == e.name })
            XCTAssertEqual(me.scheme, e.scheme); XCTAssertEqual(me.params.map(\.0), e.params.map(\.0))
            XCTAssertTrue(bytes(m, me) == bytes(r, e), e.name)
            compared += 1
        }
        XCTAssertEqual(compared, 14)

        var g = GGMLQuantizeOptions(fileType: .q4_0)
        g.importance = importance
        _ = try GGMLQuantizePass.run(source: src, output: dir + "/q4_0.i2q", options: g, settings: settings)
        let q = try I2QFile(path: dir + "/q4_0.i2q")
        let types = try Dictionary(uniqueKeysWithValues: q.entries.filter { $0.scheme == GGMLBlockLayout.scheme }.map { ($0.name, try GGMLBlockLayout($0).type) })
        let byGGUF = Dictionary(uniqueKeysWithValues: planned.map { ($0.gguf, $0.tensor.name) })
        let m2 = try mixed({ types[byGGUF[$0]!].map { $0.name.lowercased() } ?? "q8_0" }, "ggml")
        XCTAssertEqual(Set(types.values), [.q4_0, .q8_0], "q4_0 recipe on tiny-mistral: Q4_0 linears, Q8_0 (fallback) embedding")
        compared = 0
        for e in q.entries where e.scheme == GGMLBlockLayout.scheme {
            let me = try XCTUnwrap(m2.entries.first { $0.name == e.name })
            XCTAssertEqual(try GGMLBlockLayout(me).type, types[e.name])
            XCTAssertTrue(bytes(m2, me) == bytes(q, e), e.name)
            compared += 1
        }
        XCTAssertEqual(compared, 15)
    }

    /// GGUF export writes each ggml tensor in its stored type; a mixed file with int4 tensors is
    /// refused naming the tensor and the candidates GGUF holds; hf-awq refuses ggml entries.
    func testExports() throws {
        let src = try openModel(fixturesDir + "/tiny-mistral")
        try FileManager.default.createDirectory(atPath: dir + "/g", withIntermediateDirectories: true)
        var o = try options(6.0)
        o.candidates = try MixedCandidate.parseList("q4_0,q5_0,q8_0,bf16")
        let ggml = dir + "/g/tiny-mistral.i2q"
        _ = try MixedQuantizePass.run(source: src, output: ggml, options: o, settings: settings)
        let recipe = try MixedRecipe.read(path: dir + "/g/tiny-mistral.recipe.json")
        _ = try GGUFExportPass(source: try openModel(ggml), output: dir + "/g.gguf", settings: settings).run()
        let gguf = try GGUFFile(path: dir + "/g.gguf")
        let arch = src.config.architecture
        for t in recipe.tensors {
            let name = ImatrixNames.name(checkpoint: t.name, architecture: arch)
            let info = try XCTUnwrap(gguf.tensors.first { $0.name == name }, name)
            XCTAssertEqual(info.type.name.lowercased(), t.scheme, name)
        }
        assertThrowsMentioning(["is ggml", "hf-awq holds only affine int4"]) {
            _ = try AWQExportPass.run(source: try openModel(ggml), output: dir + "/awq", settings: settings)
        }

        o.candidates = try MixedCandidate.parseList("int4g32,q8_0,bf16")
        let mixed = dir + "/int4.i2q"
        _ = try MixedQuantizePass.run(source: src, output: mixed, options: o, settings: settings)
        assertThrowsMentioning(["affine int4", "int4g32", "no GGUF block type", "--candidates q4_0,q4_1"]) {
            _ = try GGUFExportPass(source: try openModel(mixed), output: dir + "/int4.gguf", settings: settings).run()
        }
        XCTAssertFalse(FileSystem.exists(dir + "/int4.gguf"))
    }

    func testErrors() throws {
        let src = try openModel(fixturesDir + "/tiny-mistral")
        assertThrowsMentioning(["--target-bpw 2.000", "below the smallest", "4.500 bits/weight", "q4_0"]) {
            _ = try MixedQuantizePass.run(source: src, output: dir + "/x.i2q", options: try options(2.0), settings: settings)
        }
        var o = try options(5.0)
        o.candidates = try MixedCandidate.parseList("int4g64,int4g128")
        assertThrowsMentioning(["model.embed_tokens.weight", "rows of 32", "fits none", "int4g64, int4g128", "add bf16"]) {
            _ = try MixedQuantizePass.run(source: src, output: dir + "/x.i2q", options: o, settings: settings)
        }
        var none = MixedQuantizeOptions()
        none.targetBPW = 5
        assertThrowsMentioning(["--calibration", "--imatrix"]) {
            _ = try MixedQuantizePass.run(source: src, output: dir + "/x.i2q", options: none, settings: settings)
        }
        XCTAssertFalse(FileSystem.exists(dir + "/x.i2q"))
        XCTAssertFalse(FileSystem.exists(dir + "/x.i2q.bpw-state"))
        XCTAssertFalse(FileSystem.exists(dir + "/x.recipe.json"))
        XCTAssertFalse(FileSystem.exists(dir + "/x.recipe.svg"))

        // A recipe made for tiny-mistral does not apply to tiny-llama.
        _ = try MixedQuantizePass.run(source: src, output: dir + "/m.i2q", options: try options(5.0), settings: settings)
        var r = MixedQuantizeOptions()
        r.recipe = try MixedRecipe.read(path: dir + "/m.recipe.json")
        assertThrowsMentioning(["--recipe", "another model"]) {
            _ = try MixedQuantizePass.run(source: try openModel(fixturesDir + "/tiny-llama"), output: dir + "/l.i2q", options: r, settings: settings)
        }
        // A broken recipe names the file and what is wrong.
        try write(Array("{\"i2q_recipe\": 1, \"candidates\": [\"q4_0\"], \"tensors\": [{\"name\": \"a\", \"scheme\": \"q9_9\", \"parameters\": 4}]}".utf8), to: dir + "/bad.json")
        assertThrowsMentioning(["bad.json", "\"a\"", "q9_9"]) { _ = try MixedRecipe.read(path: dir + "/bad.json") }
        // An existing recipe file is not replaced without --overwrite, and the .i2q is not written.
        assertThrowsMentioning(["m.recipe.json"]) {
            _ = try MixedQuantizePass.run(source: src, output: dir + "/m2.i2q", options: { var x = r; x.recipeOutput = dir + "/m.recipe.json"; return x }(), settings: settings)
        }
        XCTAssertFalse(FileSystem.exists(dir + "/m2.i2q"))
    }
}
