import CBLAS
import Foundation

/// What the runtime chose on this machine (printed by `i2q --version`, recorded in benchmark notes):
/// the 4-bit decode kernels picked at run time from the CPU's features (C `i2q_q4a_impl`), the
/// implementations the CPU could run, OpenBLAS's core, and the thread count.
public enum KernelInfo {
    public static var summary: String {
        let supported = QuantGemv.Int8.supported.map(\.description).joined(separator: ", ")
        let ggml = GGMLGemv.activations == .float32 ? "off (--ggml-f32-activations: float path)"
            : (GGMLGemv.fusedDecode ? "\(QuantGemv.Int8.best) fused block dots" : "off (I2Q_GGML_FUSED=0: dequantized rows)")
        let core = openblas_get_corename().map { String(cString: $0) } ?? "?"
        return """
            kernels: 4-bit decode (int4 × int8, nf4/fp4 × int8) \(QuantGemv.Int8.best)\(QuantGemv.exactDecode ? " (off: I2Q_EXACT_GEMV=1, float path)" : ""); \
            ggml-block decode (K-quants/Q4_0…Q8_0 × Q8, llama.cpp's rounding) \(ggml); \
            this CPU supports \(supported); sgemm OpenBLAS (\(core), one thread per slab on i2q's pool); \
            bf16 prefill GEMM (--bf16-activations, --bf16-attention) \(BF16Gemm.native ? "avx512-bf16 (vdpbf16ps)" : "sgemm of widened bf16"); \
            int8 prefill GEMM (--int8-activations) \(Int8Gemm.best == .vnni ? "avx512-vnni (vpdpbusd)" : Int8Gemm.best == .avx2 ? "avx2 (vpmaddubsw)" : "scalar"); \(Gemv.threads) threads
            """
    }
}
