import CXXHash

/// XXH3-64 (seed 0), as computed by the reference xxHash library (libxxhash, `XXH3_64bits`).
public enum XXH3 {
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        XXH3_64bits(bytes.baseAddress, bytes.count)
    }

    public static func hash(_ bytes: [UInt8]) -> UInt64 {
        bytes.withUnsafeBytes { hash($0) }
    }

    /// 16 lowercase hex digits.
    public static func hex(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }

    /// Incremental hashing of a stream (gives the same value as `hash` of the concatenation).
    public final class Stream {
        private let state: OpaquePointer
        public init() {
            state = XXH3_createState()
            XXH3_64bits_reset(state)
        }
        deinit { XXH3_freeState(state) }
        public func update(_ bytes: UnsafeRawBufferPointer) {
            XXH3_64bits_update(state, bytes.baseAddress, bytes.count)
        }
        public func digest() -> UInt64 { XXH3_64bits_digest(state) }
    }
}
