import Foundation
import XCTest
import I2QTestSupport

/// Base of the CLI tests: runs the built `i2q` binary (next to the test bundle) as users do and
/// returns its exit code, stdout and stderr; each test gets a fresh temporary directory `dir`.
class CLITestCase: XCTestCase {
    var dir = ""
    /// Prefix of the temporary directory's name (which test made it).
    var tempPrefix: String { "cli" }
    override func setUpWithError() throws { dir = try makeTempDir(tempPrefix) }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// The i2q binary next to the test bundle.
    var binary: URL {
        var u = Bundle(for: CLITestCase.self).bundleURL
        while u.pathExtension == "xctest" || u.lastPathComponent.hasSuffix(".xctest") { u.deleteLastPathComponent() }
        return u.appendingPathComponent("i2q")
    }

    /// `env`: variables added to this process's environment for the run; `unset`: variables removed
    /// from it; `cwd`: the working directory (default: this process's).
    func run(_ args: [String], env: [String: String] = [:], unset: [String] = [], cwd: String? = nil) throws -> (code: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = binary
        p.arguments = args
        if !env.isEmpty || !unset.isEmpty {
            var e = ProcessInfo.processInfo.environment
            for k in unset { e[k] = nil }
            p.environment = e.merging(env) { $1 }
        }
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let o = Pipe(), e = Pipe()
        p.standardOutput = o
        p.standardError = e
        try p.run()
        let od = o.fileHandleForReading.readDataToEndOfFile(), ed = e.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: od, as: UTF8.self), String(decoding: ed, as: UTF8.self))
    }
}
