import XCTest
import I2QCore
import I2QFuzzTargets
import I2QTestSupport

/// The short fuzz run of CI (issue 17): every reader on mutated inputs, in process. A crash ends the
/// suite (that is the failure this guards against); each test also requires every error to name the
/// file it came from. The long run by hand is `scripts/fuzz.sh` (Fuzz/Driver).
final class FuzzTests: XCTestCase {
    static let perTarget = Int(ProcessInfo.processInfo.environment["I2Q_FUZZ_COUNT"] ?? "") ?? 600

    func run(_ name: String) throws {
        let targets = try FuzzTargets.all(fixtures: fixturesDir)
        let t = try XCTUnwrap(targets.first { $0.name == name })
        let scratch = NSTemporaryDirectory() + "i2q-fuzz-test-\(getpid())-\(name)"
        try FileSystem.makeDirectory(scratch)
        defer { FileSystem.removeTree(scratch) }
        let s = FuzzRunner.run(t, count: Self.perTarget, seed: 17, scratch: scratch)
        print("fuzz \(name): \(s.inputs) inputs, \(s.accepted) accepted, \(s.errors) errors, slowest \(formatFixed(s.slowestSeconds, 3)) s")
        XCTAssertEqual(s.inputs, Self.perTarget)
        XCTAssertEqual(s.unnamed, 0, "errors not naming the file: \(s.unnamedExamples)")
        // The mutations must reach past the first check: most inputs are rejected, some are not.
        XCTAssertGreaterThan(s.errors, 0, "no mutated \(name) input was rejected: the mutator does nothing")
    }

    func testSafetensors() throws { try run("safetensors") }
    func testIndex() throws { try run("index") }
    func testI2Q() throws { try run("i2q") }
    func testGGUF() throws { try run("gguf") }
    func testConfigs() throws { try run("configs") }
    func testTokenizer() throws { try run("tokenizer") }
    func testPNG() throws { try run("png") }
    func testJPEG() throws { try run("jpeg") }
    func testDocVQA() throws { try run("docvqa") }
}
