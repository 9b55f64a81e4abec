import XCTest
import I2QCore
import I2QTestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Issue 17, "files changing under a read": an input that shrinks after it was opened gives a clear
/// error naming it — from pread (`IOError.shrank`) or, for bytes read through the mapping, from the
/// SIGBUS handler (message, cleanup, exit status 1 instead of a signal death).
final class InputFaultTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws { dir = try makeTempDir("fault") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testPreadOfAFileThatShrankNamesIt() throws {
        let path = dir + "/input.safetensors"
        try write([UInt8](repeating: 1, count: 1 << 20), to: path)
        let m = try MappedFile(path: path)
        XCTAssertEqual(truncate(path, 4096), 0)
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { buf.deallocate() }
        assertThrowsMentioning([path, "shrank while it was being read", "1048576 bytes"]) {
            try m.read(0, 1 << 20, into: buf)
        }
    }

    /// The mapped path: in a child process (the fault ends it), with a cleanup that removes a
    /// partial output as the CLI's does.
    func testSIGBUSOnAShrunkMappingExitsOneNamingTheFile() throws {
        let path = dir + "/input.i2q", partial = dir + "/.out.i2q.i2q-partial-1"
        try write([UInt8](repeating: 1, count: 1 << 20), to: path)
        try write([1, 2, 3], to: partial)
        let m = try MappedFile(path: path)
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        FaultTestCleanup.path = partial
        let pid = fork()
        if pid == 0 {
            dup2(fds[1], 2)
            InputFault.install { unlink(FaultTestCleanup.path) }
            _ = truncate(path, 0)
            let v = m.withBytes(512 << 10, 1) { $0[0] }  // past the end now: SIGBUS
            _exit(v == 1 ? 42 : 43)  // not reached
        }
        close(fds[1])
        var err = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fds[0], &chunk, 4096)
            if n <= 0 { break }
            err += chunk[0..<n]
        }
        close(fds[0])
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        let exited = status & 0x7f == 0, code = (status >> 8) & 0xff
        let message = String(decoding: err, as: UTF8.self)
        XCTAssertTrue(exited, "the child died of signal \(status & 0x7f): \(message)")
        XCTAssertEqual(code, 1, message)
        XCTAssertTrue(message.contains(path) && message.contains("shrank"), message)
        XCTAssertFalse(FileSystem.exists(partial), "the cleanup did not run")
    }
}

/// Where the fork test's cleanup finds its path (a C callback captures nothing).
enum FaultTestCleanup {
    nonisolated(unsafe) static var path = ""
}
