import Dispatch
import I2QCore

/// Runs a `TensorSink`'s calls, in submission order, on a background thread, with a fixed pool of
/// output buffers: the producer fills a buffer (`acquire`), hands it over (`submitBuffer`), and
/// blocks only when every buffer is still waiting to be written. The first error stops the
/// pipeline and is rethrown to the producer.
final class PipelinedWriter: @unchecked Sendable {
    private let sink: TensorSink
    private let queue = DispatchQueue(label: "i2q.writer")
    private let free: DispatchSemaphore
    private let lock = Lock()
    private var pool: [UnsafeMutableRawPointer]
    private var all: [UnsafeMutableRawPointer]
    private var failure: Error?

    init(sink: TensorSink, buffers: Int, bufferSize: Int) {
        self.sink = sink
        all = (0..<buffers).map { _ in UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 4096) }
        pool = all
        free = DispatchSemaphore(value: buffers)
    }

    deinit {
        queue.sync {}  // nothing may still use the buffers
        // A producer that failed between `acquire` and `submitBuffer` (an input that shrank mid-read)
        // still holds buffers: give their slots back, since libdispatch traps when a semaphore is
        // destroyed below its initial value.
        for _ in 0..<(all.count - pool.count) { free.signal() }
        for b in all { b.deallocate() }
    }

    private func checkFailure() throws {
        if let e = lock.withLock({ failure }) { throw e }
    }

    /// A free buffer (waits while all are in flight).
    func acquire() throws -> UnsafeMutableRawPointer {
        try checkFailure()
        free.wait()
        try checkFailure()
        return lock.withLock { pool.removeLast() }
    }

    /// Hands values that are only ever touched by one side at a time across the thread boundary.
    private struct Handoff<T>: @unchecked Sendable { let value: T }

    private func run(_ body: @escaping (TensorSink) throws -> Void) {
        let job = Handoff(value: body)
        queue.async { [self] in
            guard lock.withLock({ failure == nil }) else { return }
            do { try job.value(sink) } catch { lock.withLock { if failure == nil { failure = error } } }
        }
    }

    func submit(_ body: @escaping (TensorSink) throws -> Void) { run(body) }

    /// Appends `count` bytes of `buffer` to the sink, then returns the buffer to the pool.
    func submitBuffer(_ buffer: UnsafeMutableRawPointer, count: Int) {
        let b = Handoff(value: buffer)
        queue.async { [self] in
            if lock.withLock({ failure == nil }) {
                do { try sink.append(UnsafeRawBufferPointer(start: b.value, count: count)) } catch { lock.withLock { if failure == nil { failure = error } } }
            }
            lock.withLock { pool.append(b.value) }
            free.signal()
        }
    }

    /// Waits for every submitted call; rethrows the first error.
    func drain() throws {
        queue.sync {}
        try checkFailure()
    }

    /// Waits for in-flight work after a producer-side error.
    func abandon() {
        queue.sync {}
    }
}
