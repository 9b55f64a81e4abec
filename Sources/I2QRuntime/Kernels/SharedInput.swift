/// The parts of one ProjectionGroup (q/k/v, gate/up) multiply the same x one after another on one
/// thread. Inside `sharing`, the first product's converted copy of x (rounded to bf16 for `BF16Gemm`,
/// quantized to int8 for `Int8Gemm`) is kept and reused by the next products of the same x.
final class SharedInput<Value>: @unchecked Sendable {
    private var active = false
    private var entry: (x: UnsafePointer<Float>, count: Int, value: Value)?
    private let free: (Value) -> Void

    init(free: @escaping (Value) -> Void) { self.free = free }

    /// The converted x (`count` floats): the shared copy, or a new one from `make` — kept for the next
    /// parts inside `sharing`, else `owned` (the caller frees it with `release`).
    func value(for x: UnsafePointer<Float>, count: Int, make: () -> Value) -> (value: Value, owned: Bool) {
        if let e = entry, e.x == x, e.count == count { return (e.value, false) }
        let v = make()
        if active, entry == nil { entry = (x, count, v); return (v, false) }
        return (v, true)
    }

    func release(_ v: (value: Value, owned: Bool)) { if v.owned { free(v.value) } }

    /// Runs `body` with sharing on (when `enabled` and not already on), freeing the shared copy after.
    func sharing<T>(_ enabled: Bool, _ body: () throws -> T) rethrows -> T {
        guard enabled, !active else { return try body() }
        active = true
        defer {
            if let e = entry { free(e.value) }
            entry = nil
            active = false
        }
        return try body()
    }
}

/// The inputs a ProjectionGroup's parts share: bf16-rounded (--bf16-activations) and int8 (--int8-activations).
func sharingConvertedInputs<T>(_ body: () throws -> T) rethrows -> T {
    try Int8Gemm.input.sharing(Int8Gemm.enabled) { try BF16Gemm.input.sharing(BF16Gemm.enabled, body) }
}
