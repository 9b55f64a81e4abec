// i2q-bench limits: the machine's own ceilings, measured the way the runtime uses the hardware, so
// Benchmarks/README.md can state prefill GFLOP/s as a share of sgemm's and decode GB/s as a share of
// the memory read bandwidth.
//   sgemm: OpenBLAS (the library the runtime links), C[m, n] = A[m, k] · B[n, k]ᵀ in float32, the
//          shapes of prefill (m = 512 tokens; k = 576 and 4096), all threads; best of 5.
//   bgemm: i2q's bf16 × bf16 → f32 GEMM (bgemm.c, vdpbf16ps; --bf16-activations/--bf16-attention), the same
//          shapes, columns split over all threads as the runtime splits them; only on CPUs with AVX-512 BF16.
//   igemm: i2q's int8 × int8 → f32 GEMM (igemm.c; --int8-activations), the prefill shapes and SigLIP's.
//   read:  Σ over a 1 GiB float32 buffer (16-lane SIMD, far larger than the caches), 1 thread and
//          all threads (the worker pool's split); best of 5.
import CBLAS
import CI2QKernels
import Dispatch
import Foundation
import I2QRuntime

func runLimitsBench() {
    func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
    let threads = ProcessInfo.processInfo.activeProcessorCount
    print("machine: \(threads) threads; \(KernelInfo.summary)")
    for (m, n, k) in [(512, 1536, 576), (512, 4096, 4096)] {
        let a = [Float](repeating: 0.5, count: m * k), b = [Float](repeating: 0.25, count: n * k)
        var c = [Float](repeating: 0, count: m * n)
        var best = Double.infinity
        for _ in 0..<5 {
            let t0 = now()
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(k), 0, &c, Int32(n))
            best = min(best, now() - t0)
        }
        print(String(format: "sgemm m=%d n=%d k=%d: %.1f GFLOP/s", m, n, k, 2.0 * Double(m * n * k) / best / 1e9))
    }
    // bgemm: the bf16 product of --bf16-activations, panels packed per call and from a weight repacked
    // once (RepackedWeight: later prefills); only where the kernel runs (AVX-512 BF16, no I2Q_CPU cap).
    for (m, n, k) in [(512, 1536, 576), (512, 4096, 4096)] {
        let a = [UInt16](repeating: 0x3f00, count: m * k), b = [UInt16](repeating: 0x3e80, count: n * k)  // 0.5, 0.25
        let c = UnsafeMutablePointer<Float>.allocate(capacity: m * n)  // [m, n]
        let repacked = UnsafeMutableRawPointer.allocate(byteCount: i2q_bgemm_repack_bytes(Int64(k), Int64(n)), alignment: 64)
        defer { c.deallocate(); repacked.deallocate() }
        let panels = (n + 31) / 32
        guard b.withUnsafeBufferPointer({ i2q_bgemm_repack($0.baseAddress!, Int64(k), Int64(n), Int64(k), 0, Int64(panels), repacked) }) == 1 else {
            print("bgemm (bf16): not on this CPU path (needs AVX-512 BF16; --bf16-activations multiplies widened operands with sgemm)")
            break
        }
        for kept in [false, true] {
            var best = Double.infinity
            for _ in 0..<5 {
                let box = UnsafeSendableBench((a, b, c, UnsafeRawPointer(repacked)))
                let t0 = now()
                DispatchQueue.concurrentPerform(iterations: threads) { i in
                    let (a, b, cp, rp) = box.p
                    let n0 = panels * i / threads * 32, n1 = min(n, panels * (i + 1) / threads * 32)
                    guard n0 < n1 else { return }
                    if kept {
                        _ = i2q_bgemm_repacked(a, Int64(k), rp, cp, Int64(n), Int64(m), Int64(k), Int64(n), Int64(n0), Int64(n1), 0, 1)
                        return
                    }
                    let pack = UnsafeMutableRawPointer.allocate(byteCount: i2q_bgemm_pack_bytes(Int64(k), Int64(n1 - n0)), alignment: 64)
                    defer { pack.deallocate() }
                    _ = i2q_bgemm(a, Int64(k), b, Int64(k), cp, Int64(n), Int64(m), Int64(k), Int64(n0), Int64(n1), 0, 1, pack)
                }
                best = min(best, now() - t0)
            }
            print(String(format: "bgemm (bf16%@) m=%d n=%d k=%d: %.1f GFLOP/s", kept ? ", repacked" : "", m, n, k,
                         2.0 * Double(m * n * k) / best / 1e9))
        }
    }
    // igemm: the int8 product of --int8-activations (igemm.c; weights quantized inside each call, as the
    // runtime does), the prefill shapes and SigLIP's (m = 2730 patches, k = n = 1152), columns split
    // over all threads; the path this CPU runs (AVX-512 VNNI vpdpbusd, AVX2 vpmaddubsw, or scalar).
    for (m, n, k) in [(512, 1536, 576), (512, 4096, 4096), (2730, 1152, 1152)] {
        let x = [Float](repeating: 0.5, count: m * k), w = [UInt16](repeating: 0x3e80, count: n * k)  // bf16 0.25
        let ld = (k + 3) & ~3
        var codes = [Int8](repeating: 0, count: m * ld), scales = [Float](repeating: 0, count: m), sums = [Int32](repeating: 0, count: m)
        i2q_i8_quantize_rows(x, Int64(k), Int64(m), Int64(k), &codes, Int64(ld), &scales, &sums, Int32(I2Q_IMPL_AUTO))
        let c = UnsafeMutablePointer<Float>.allocate(capacity: m * n)  // [m, n]
        defer { c.deallocate() }
        let panels = (n + 31) / 32
        var best = Double.infinity
        for _ in 0..<5 {
            let box = UnsafeSendableBench((codes, scales, sums, w, c))
            let t0 = now()
            DispatchQueue.concurrentPerform(iterations: threads) { i in
                let (codes, scales, sums, w, cp) = box.p
                let n0 = panels * i / threads * 32, n1 = min(n, panels * (i + 1) / threads * 32)
                guard n0 < n1 else { return }
                let pack = UnsafeMutableRawPointer.allocate(byteCount: i2q_igemm_pack_bytes(Int64(k), Int64(n1 - n0)), alignment: 64)
                defer { pack.deallocate() }
                i2q_igemm(codes, Int64(ld), scales, sums, w, Int32(I2Q_W_BF16), Int64(k), cp, Int64(n), Int64(m), Int64(k),
                          Int64(n0), Int64(n1), 0, pack, Int32(I2Q_IMPL_AUTO))
            }
            best = min(best, now() - t0)
        }
        print(String(format: "igemm (int8) m=%d n=%d k=%d: %.1f GOP/s", m, n, k, 2.0 * Double(m * n * k) / best / 1e9))
    }
    let count = 1 << 28  // 1 GiB of floats
    let buf = UnsafeMutablePointer<Float>.allocate(capacity: count)
    defer { buf.deallocate() }
    buf.initialize(repeating: 1, count: count)
    for t in Set([1, threads]).sorted() {
        var best = Double.infinity
        for _ in 0..<5 {
            let per = count / t
            let sums = UnsafeMutablePointer<Float>.allocate(capacity: t)
            let box = UnsafeSendableBench((buf, sums))
            let t0 = now()
            DispatchQueue.concurrentPerform(iterations: t) { i in
                let (buf, sums) = box.p
                let raw = UnsafeRawPointer(buf + i * per)
                var acc = SIMD16<Float>()
                for v in 0..<(per / 16) { acc += raw.loadUnaligned(fromByteOffset: v * 64, as: SIMD16<Float>.self) }
                sums[i] = acc.sum()
            }
            best = min(best, now() - t0)
            if sums[0] < 0 { print("") }  // keep the sums alive
            sums.deallocate()
        }
        print(String(format: "memory read, %d thread(s): %.1f GB/s", t, Double(count * 4) / best / 1e9))
    }
}

struct UnsafeSendableBench<P>: @unchecked Sendable { let p: P; init(_ p: P) { self.p = p } }
