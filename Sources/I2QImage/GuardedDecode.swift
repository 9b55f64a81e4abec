#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs C decoding code whose fatal-error callbacks must not return.
///
/// libpng (`png_error` → the error function) and libjpeg (`error_exit`) report a fatal error by
/// calling a callback that is required never to return; C programs `longjmp` out of it. Swift cannot
/// call `setjmp`, and a `longjmp` across Swift frames is undefined behaviour. Instead the whole
/// decode runs on a short-lived worker thread, and a fatal-error callback records its message and
/// ends that thread with `pthread_exit` — the thread's stack (libpng/libjpeg C frames and the
/// `@convention(c)` entry function, which holds no Swift references) is simply abandoned, and glibc's
/// forced unwinding runs no Swift code. The caller, blocked in `pthread_join`, then frees the
/// library's state with its normal destroy function (the documented recovery after an error) and
/// throws an `ImageError`.
///
/// Rules for the worker body and callbacks: no Swift arrays, strings or class references may be
/// live on the worker thread when a library call can fail (they would leak); all state lives in a
/// manually allocated, trivially-typed job struct the caller owns.
enum GuardedDecode {
    /// The value a worker body returns when it completed normally.
    static var completed: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: 0x1)! }

    /// Runs `body(context)` on a new thread and waits for it.
    /// - Returns: true when `body` returned normally, false when it ended through `abandon()`.
    static func run(_ body: @escaping @convention(c) (UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer?,
                    context: UnsafeMutableRawPointer) -> Bool? {
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        // libpng and libjpeg need little stack; 8 MiB matches the usual default explicitly.
        pthread_attr_setstacksize(&attr, 8 << 20)
        #if canImport(Glibc)
        var tid = pthread_t()
        #else
        var tid: pthread_t?
        #endif
        guard pthread_create(&tid, &attr, body, context) == 0 else { return nil }
        var result: UnsafeMutableRawPointer?
        #if canImport(Glibc)
        pthread_join(tid, &result)
        #else
        pthread_join(tid!, &result)
        #endif
        return result == completed
    }

    /// Ends the current worker thread. Only for fatal-error callbacks running inside `run`'s body.
    static func abandon() -> Never {
        pthread_exit(nil)
    }

    /// Copies a C string into a fixed caller-owned buffer (no Swift allocation on the worker).
    static func store(_ message: UnsafePointer<CChar>?, into buffer: UnsafeMutablePointer<CChar>, capacity: Int) {
        guard let message else { buffer[0] = 0; return }
        var i = 0
        while i < capacity - 1, message[i] != 0 {
            buffer[i] = message[i]
            i += 1
        }
        buffer[i] = 0
    }
}

/// A fixed-size message buffer owned by the calling thread.
struct MessageBuffer {
    static let capacity = 512
    let pointer: UnsafeMutablePointer<CChar>

    init() {
        pointer = .allocate(capacity: Self.capacity)
        pointer.initialize(repeating: 0, count: Self.capacity)
    }

    func free() { pointer.deallocate() }

    var text: String { String(cString: pointer) }
}
