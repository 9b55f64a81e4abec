#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CI2QFault

/// A whole file mapped read-only into memory. Views into it are zero-copy.
///
/// Pages that a streaming pass has finished with can be dropped from this process's resident set
/// with `release(_:)` (madvise DONTNEED), so reading a 30 GB model does not grow RSS by 30 GB.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let count: Int
    private let base: UnsafeRawPointer?
    private let owned: Bool
    /// Kept open for `read(_:_:into:)` (streaming passes read with pread instead of faulting pages in).
    private let fd: Int32

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { throw IOError.notFound(path: path) }
            throw IOError.open(path: path, errno: errno)
        }
        var st = stat()
        if fstat(fd, &st) != 0 { let e = errno; close(fd); throw IOError.open(path: path, errno: e) }
        if (st.st_mode & S_IFMT) == S_IFDIR { close(fd); throw IOError.open(path: path, errno: EISDIR) }
        self.fd = fd
        count = Int(st.st_size)
        owned = false
        if count == 0 {
            base = nil
            return
        }
        let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        if p == MAP_FAILED || p == nil { let e = errno; close(fd); throw IOError.mmap(path: path, errno: e) }
        base = UnsafeRawPointer(p!)
        i2q_fault_register(p, count, path)  // a SIGBUS inside names this file (InputFault)
        // Re-checked after mapping: a file that shrank in between is refused here, not faulted on.
        var after = stat()
        if fstat(fd, &after) == 0 && Int(after.st_size) < count {
            throw IOError.shrank(path: path, expected: count)  // deinit unmaps and closes
        }
    }

    /// An in-memory "file" holding a copy of `bytes` (tests and fuzzing: no disk round trip).
    public init(copying bytes: [UInt8], name: String) {
        path = name
        count = bytes.count
        owned = true
        fd = -1
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 4096)
        bytes.withUnsafeBytes { if let b = $0.baseAddress { p.copyMemory(from: b, byteCount: bytes.count) } }
        base = UnsafeRawPointer(p)
    }

    deinit {
        if fd >= 0 { close(fd) }
        guard let base else { return }
        if owned { UnsafeMutableRawPointer(mutating: base).deallocate() } else {
            i2q_fault_unregister(base)
            munmap(UnsafeMutableRawPointer(mutating: base), count)
        }
    }

    /// Calls `body` with the bytes `[offset, offset+length)`. The range must have been validated by
    /// the caller against `count`; this re-checks and traps only on a programming error.
    @inlinable
    public func withBytes<R>(_ offset: Int, _ length: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        precondition(offset >= 0 && length >= 0 && offset <= count && length <= count - offset, "mapped range out of bounds")
        return try body(rawBuffer(offset, length))
    }

    @usableFromInline
    func rawBuffer(_ offset: Int, _ length: Int) -> UnsafeRawBufferPointer {
        guard let base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + offset, count: length)
    }

    /// Copies `[offset, offset+length)` into `dst` with pread: for streaming a file once, this avoids
    /// faulting every page of the mapping in (the cost that dominates a memory-mapped copy).
    public func read(_ offset: Int, _ length: Int, into dst: UnsafeMutableRawPointer) throws {
        precondition(offset >= 0 && length >= 0 && offset <= count && length <= count - offset, "read out of bounds")
        if fd < 0 {
            withBytes(offset, length) { if let b = $0.baseAddress { dst.copyMemory(from: b, byteCount: length) } }
            return
        }
        var done = 0
        while done < length {
            let n = pread(fd, dst + done, length - done, off_t(offset + done))
            if n < 0 { if errno == EINTR { continue }; throw IOError.read(path: path, errno: errno) }
            if n == 0 { throw IOError.shrank(path: path, expected: count) }
            done += n
        }
    }

    /// Copies bytes out (for headers and small metadata).
    public func copyBytes(_ offset: Int, _ length: Int) -> [UInt8] {
        withBytes(offset, length) { Array($0) }
    }

    /// Tells the kernel this process no longer needs the pages of `[offset, offset+length)`
    /// (they stay in the page cache; they stop counting towards RSS).
    public func release(_ offset: Int, _ length: Int) {
        guard let base, length > 0, !owned else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (offset / page) * page
        let end = min(count, offset + length)
        let alignedEnd = end == count ? end : (end / page) * page
        guard alignedEnd > start else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), alignedEnd - start, MADV_DONTNEED)
    }

    /// Hints that `[offset, offset+length)` will be read sequentially soon.
    public func willNeed(_ offset: Int, _ length: Int) {
        guard let base, length > 0, !owned else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (offset / page) * page
        let end = min(count, offset + length)
        guard end > start else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_WILLNEED)
    }
}

/// Turns SIGBUS on a mapped input (the file shrank or its storage failed mid-read) into a clear
/// error: the message names the file, `cleanup` removes partial outputs, the exit status is 1.
/// (pread paths report the same as an `IOError.read`.)
public enum InputFault {
    public static func install(cleanup: (@convention(c) () -> Void)?) {
        i2q_fault_install(cleanup)
    }
}
