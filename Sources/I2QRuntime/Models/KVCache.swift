/// Keys and values of every layer for the positions processed so far.
public final class KVCache: @unchecked Sendable {
    public let capacity: Int
    public private(set) var count = 0
    let width: Int
    /// Per layer: [capacity, kvHeads × headDim]
    var keys: [UnsafeMutablePointer<Float>]
    var values: [UnsafeMutablePointer<Float>]

    init(layers: Int, capacity: Int, width: Int) {
        self.capacity = capacity
        self.width = width
        keys = (0..<layers).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: capacity * width) }
        values = (0..<layers).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: capacity * width) }
    }

    deinit {
        for p in keys { p.deallocate() }
        for p in values { p.deallocate() }
    }

    func advance(_ n: Int) { count += n }

    /// Forgets everything (the buffers are reused).
    public func reset() { count = 0 }
}
