// Small C kernels for the decode GEMVs (x86 intrinsics Swift cannot import directly), with runtime
// CPU dispatch and portable scalar fallbacks. See Sources/CI2QKernels/*.c for the reference each
// kernel matches and its tolerance; docs/numerics.md for the table.
#ifndef CI2QKERNELS_H
#define CI2QKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Which implementation a kernel call uses.
enum {
    I2Q_IMPL_AUTO = 0,    ///< the fastest this CPU supports
    I2Q_IMPL_SCALAR = 1,  ///< portable C, same arithmetic (bit-identical results)
    I2Q_IMPL_VNNI = 2,    ///< AVX-512 F/BW/VL/VNNI (`vpdpbusd`)
    I2Q_IMPL_AVX2 = 3,    ///< AVX2 + FMA + F16C (`vpmaddubsw` + `vpmaddwd`)
};

/// The implementation a call with `impl` runs on this CPU: I2Q_IMPL_AUTO → the fastest supported;
/// a specific one → itself when the CPU supports it, else -1 (the call would run the scalar code).
int i2q_q4a_impl(int impl);
/// 1 when the CPU supports AVX2, FMA and F16C.
int i2q_cpu_has_avx2(void);

/// 1 when the CPU (and OS) support AVX-512 F/BW/VL/VNNI (the int8 GEMV kernel).
int i2q_cpu_has_avx512vnni(void);
/// 1 when the CPU supports AVX-512 BF16 (vdpbf16ps).
int i2q_cpu_has_avx512bf16(void);

// MARK: int8 activations (llama.cpp's Q8_1 idea: blocks of 32, a float scale each)

/// Bytes of the quantized activation buffer for k inputs (k % 32 == 0): 256 bytes per 128
/// inputs (rounded up). The buffer must be 64-byte aligned.
size_t i2q_q8_bytes(int64_t k);

/// Quantizes x[k] (k % 32 == 0) to int8 in blocks of 32: d = max|x| / 127, q = round(x / d)
/// (nearest, ties to even), stored in the lane order the affine int4 kernel reads (see the .c file).
/// A block holding a non-finite value gets d = NaN (its products become NaN, like the float path).
void i2q_q8_quantize(const float *x, int64_t k, void *out);

/// Dequantized activations of a buffer from i2q_q8_quantize: x̂[k] = d_b · q (for tests).
void i2q_q8_dequantize(const void *xq, int64_t k, float *out);

// MARK: affine int4 × int8 GEMV (decode, m = 1)

/// y[r] (+)= Σ_c (q[r,c] − z[r,g]) · s[r,g] · x̂[c] for rows r in [r0, r1) of an affine int4
/// weight [rows, cols]: packed [rows, cols/2] (first element in the LOW nibble), scales f16 bits
/// [rows, cols/unit], zeros u8 [rows, cols/unit] or NULL (zero point 8). Requires cols % 32 == 0,
/// unit % 32 == 0, cols % unit == 0. xq: i2q_q8_quantize(x, cols). y is indexed by the row (y[r]).
void i2q_q4a_gemv(const uint8_t *packed, const uint16_t *scales, const uint8_t *zeros,
                  int64_t cols, int64_t unit, int64_t r0, int64_t r1,
                  const void *xq, float *y, int accumulate, int impl);
// (impl: I2Q_IMPL_*; one the CPU lacks runs the scalar code — check with i2q_q4a_impl first.)

// MARK: 4-bit table (NF4 / FP4) × int8 GEMV (decode, m = 1)

/// The absmax of a bitsandbytes 4-bit tensor: float32 [blocks] (`f32`), or double-quantized
/// (`codes` u8 [blocks], `nested` f32 [ceil(blocks/256)], `offset`, `dynamic` the 256-entry map):
/// absmax[b] = dynamic[codes[b]] · nested[b / 256] + offset (float32, no FMA).
typedef struct {
    const float *f32;
    const uint8_t *codes;
    const float *nested;
    const float *dynamic;
    float offset;
} i2q_absmax;

/// y[r] (+)= Σ_c (t[q[r,c]] / 127) · absmax · x̂[c] for rows r in [r0, r1) of a bitsandbytes 4-bit
/// weight [rows, cols] (packed: the flattened tensor, FIRST element in the HIGH nibble; absmax blocks
/// of bs flattened elements). table: int8 [16], t[q] = round(127 · code[q]). Requires cols % 32 == 0
/// and bs % 32 == 0. xq: i2q_q8_quantize(x, cols). impl: as i2q_q4a_gemv.
void i2q_table4_gemv(const uint8_t *packed, int64_t cols, int64_t bs, const i2q_absmax *absmax, const int8_t *table,
                     int64_t r0, int64_t r1, const void *xq, float *y, int accumulate, int impl);

// MARK: float weights × float32 GEMV (decode, m = 1)

/// Weight element types of i2q_gemv.
enum { I2Q_W_F32 = 0, I2Q_W_BF16 = 1, I2Q_W_F16 = 2 };

/// y[r] (+)= Σ_c W[r,c] · x[c] for rows r in [r0, r1) of W [rows, k] stored as f32, bf16 or f16
/// (I2Q_W_*; widened exactly). Fixed summation order, bit-identical in every implementation (see
/// gemv16.c). impl: as i2q_q4a_gemv (I2Q_IMPL_VNNI selects the AVX-512 F code).
void i2q_gemv(const void *w, int dtype, const float *x, float *y, int64_t k, int64_t r0, int64_t r1,
              int accumulate, int impl);
/// The same with rows `ldw` elements apart (row r starts at w + r·ldw; k ≤ ldw): e.g. one kv head's
/// keys inside a [positions, kvHeads·headDim] cache, all scores of a head in one call.
void i2q_gemv_ld(const void *w, int dtype, int64_t ldw, const float *x, float *y, int64_t k, int64_t r0, int64_t r1,
                 int accumulate, int impl);

/// out[c] = Σ_{j<n} p[j] · v[j·ldv + c] for c < d (decode attention's probability-weighted values),
/// summed in order j as out + p·v (no FMA): bit-identical on every path (gemv16.c).
void i2q_weighted_sum(const float *p, const float *v, int64_t ldv, int64_t n, int64_t d, float *out, int impl);

// MARK: half-precision conversions (half.c)

/// IEEE round-to-nearest-even conversions, F16C when the CPU has it, else portable C (bit-identical,
/// NaNs included). impl: I2Q_IMPL_AUTO, or I2Q_IMPL_SCALAR to force the portable code (tests).
void i2q_f32_to_f16(const float *s, uint16_t *d, int64_t n, int impl);
void i2q_bf16_to_f16(const uint16_t *s, uint16_t *d, int64_t n, int impl);
void i2q_f16_to_f32(const uint16_t *s, float *d, int64_t n, int impl);

// MARK: int8 GEMM (prefill with --int8-activations; igemm.c)

/// Rows of x [m, k] (ldx apart) quantized to int8 per row (d = max|x|/127, codes rint(x/d) in
/// [-127, 127], zero-padded to a multiple of 4 bytes): q [m, ldq ≥ k rounded up to 4], d [m], sum [m]
/// (Σ of each row's codes). Bit-identical on every path. impl: as i2q_q4a_gemv.
void i2q_i8_quantize_rows(const float *x, int64_t ldx, int64_t m, int64_t k, int8_t *q, int64_t ldq,
                          float *d, int32_t *sum, int impl);

/// Bytes of the `pack` scratch of an i2q_igemm call over n columns with inner size k.
size_t i2q_igemm_pack_bytes(int64_t k, int64_t n);

/// C[m, n0:n1] (+)= (Σ_k a·wq) · dw · dx: a the quantized rows of i2q_i8_quantize_rows (lda, dx, sum),
/// W [n, k] (ldw elements per row; wtype I2Q_W_*) quantized per row inside (dw = max|w|/127) —
/// igemm.c states the formula; every path (AVX-512 VNNI, AVX2, scalar) gives identical bits.
/// pack: 64-byte-aligned scratch of i2q_igemm_pack_bytes(k, n1 − n0) bytes. impl: as i2q_q4a_gemv.
void i2q_igemm(const int8_t *a, int64_t lda, const float *dx, const int32_t *sum, const void *w, int wtype, int64_t ldw,
               float *c, int64_t ldc, int64_t m, int64_t k, int64_t n0, int64_t n1, int accumulate, void *pack, int impl);

// MARK: bf16 GEMM (prefill with bf16 weights; bgemm.c)

/// d[i] = s[i] rounded to bf16 as torch's CPU `.to(torch.bfloat16)`: nearest, ties to even; every
/// NaN becomes 0xFFFF. Bit-identical on every path. impl: as i2q_q4a_gemv.
void i2q_f32_to_bf16(const float *s, uint16_t *d, int64_t n, int impl);

/// Bytes of the `pack` scratch of an i2q_bgemm call over n columns with inner size k.
size_t i2q_bgemm_pack_bytes(int64_t k, int64_t n);

/// C[m, n0:n1] (+)= A[m, k] · W[n0:n1, k]ᵀ with A and W bf16 (row-major, lda / ldw elements per row)
/// and C float32 (ldc): exact products, float32 sums (`vdpbf16ps`). Returns 1 when it ran, 0 when this
/// CPU (or the I2Q_CPU cap) has no AVX-512 BF16 — then the caller multiplies the widened operands.
/// alpha: C = (A·Wᵀ)·alpha — the float32 sum, then one multiplication (the scores of attention: q·kᵀ then
/// × scale, as torch); only with accumulate = 0 unless alpha = 1.
/// pack: 64-byte-aligned scratch of i2q_bgemm_pack_bytes(k, n1 − n0) bytes.
int i2q_bgemm(const uint16_t *a, int64_t lda, const uint16_t *w, int64_t ldw, float *c, int64_t ldc,
              int64_t m, int64_t k, int64_t n0, int64_t n1, int accumulate, float alpha, void *pack);

/// Bytes of a whole [n, k] weight repacked for i2q_bgemm_repacked.
size_t i2q_bgemm_repack_bytes(int64_t k, int64_t n);

/// Packs panels [p0, p1) (32 columns each) of the bf16 weight W[n, k] into `out` (64-byte aligned,
/// i2q_bgemm_repack_bytes(k, n) bytes for the whole weight): the panels i2q_bgemm packs per call, laid
/// out once for every k block, as llama.cpp repacks weights at load. Disjoint [p0, p1) may run on
/// different threads. Returns 0 (nothing written) where i2q_bgemm returns 0.
int i2q_bgemm_repack(const uint16_t *w, int64_t ldw, int64_t n, int64_t k, int64_t p0, int64_t p1, void *out);

/// i2q_bgemm from a repacked weight (all n columns; n0, n1 multiples of 32 or n): the same tiles and
/// order of additions, so bit-identical results. Returns 0 where i2q_bgemm returns 0.
int i2q_bgemm_repacked(const uint16_t *a, int64_t lda, const void *packed, float *c, int64_t ldc,
                       int64_t m, int64_t k, int64_t n, int64_t n0, int64_t n1, int accumulate, float alpha);

// MARK: softmax (softmax.c)

/// row[j] = exp(row[j] − max) / Σ for j in [lo, hi), max and Σ over that range; row[j] = 0 outside it
/// (n: the row length). −inf entries give 0. Bit-identical on every path; see softmax.c for the
/// exp's accuracy. impl: as i2q_q4a_gemv.
void i2q_softmax(float *row, int64_t n, int64_t lo, int64_t hi, int impl);
/// Σ_j exp(x[j] − max) in double (the softmax's exp, each term widened), max written to *max_out:
/// log-softmax of logits (perplexity). Bit-identical on every path. impl: as i2q_q4a_gemv.
double i2q_sumexp(const float *x, int64_t n, float *max_out, int impl);
/// o[i] = silu(g[i]) · u[i] (transformers' act_fn(gate)·up), float32; bit-identical on every path.
void i2q_silu_mul(const float *g, const float *u, float *o, int64_t n, int impl);
/// x[i] = gelu_pytorch_tanh(x[i]) in place; bit-identical on every path (softmax.c for the tolerance).
void i2q_gelu_tanh(float *x, int64_t n, int impl);
/// y[i] = exp(x[i]) with the softmax's exp (scalar code; for tests).
void i2q_exp(const float *x, float *y, int64_t n);

// MARK: ggml block dequantization (ggml_dequant.c)

/// `blocks` blocks of ggml type `type` (enum ggml_type: Q4_0 = 2 … Q6_K = 14) at `src` → float32, bit-
/// identical to gguf-py's `quants.dequantize` (and to GGMLDequant). Returns 0 for a type it does not do.
int i2q_ggml_dequantize(int type, const void *src, int64_t blocks, float *dst);

// MARK: llama.cpp's activation rounding for ggml-block weights (ggml_act.c)

/// The ggml type llama.cpp's CPU backend quantizes activations to for a weight of `weight_type`
/// (vec_dot_type: Q8_0 = 8, Q8_1 = 9, Q8_K = 15), or -1 for a type without one here.
int i2q_ggml_vec_dot_type(int weight_type);
/// x[k] → k/32 Q8_0 or Q8_1 blocks or k/256 Q8_K blocks (type 8, 9, 15) at dst, byte-identical to
/// libggml-cpu's `quantize_row_q8_0/q8_1/q8_K` on x86 (AVX2 code for Q8_0/Q8_1).
void i2q_ggml_quantize_q8(int type, const float *x, int64_t k, void *dst);
/// out[m, k] = x[m, k] quantized per row as llama.cpp does for weight type `weight_type` and
/// dequantized (d·q, d the block's stored scale). out may equal x. Returns 0 (nothing written) when
/// the type has no vec_dot_type here or k is not a multiple of its block.
int i2q_ggml_round_activations(int weight_type, const float *x, int64_t m, int64_t k, float *out);

/// For Q4_1/Q5_1 weights (other types: no-op): y[i·ldy + r] += Σ_b min_{r,b} · (s_{i,b} − f16(d_{i,b})·Σq),
/// the part of llama.cpp's min term m·s (s = f16(d·Σq) of the Q8_1 block) that the rounded values
/// d·q do not carry; with it, rounded activations × dequantized weight = ggml's vec_dot up to order.
void i2q_ggml_q8_1_min_term(int weight_type, const void *blocks, int64_t rows, int64_t row_bytes, int64_t k,
                            const float *x, int64_t m, float *y, int64_t ldy);

// MARK: ggml-block × Q8 GEMV (decode; ggml_dot.c)

/// 1 when i2q_ggml_gemv handles weights of this ggml type (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K).
int i2q_ggml_dot_supported(int weight_type);
/// y[r] (+)= llama.cpp's vec_dot of weight row r (blocks at w + r·row_bytes, k elements) with the
/// activation blocks xq (i2q_ggml_quantize_q8 of x for i2q_ggml_vec_dot_type(weight_type)), rows
/// [r0, r1). Returns 0 (nothing written) for an unsupported type. impl: as i2q_q4a_gemv (a path the
/// CPU lacks runs the scalar code); every path gives the same bits.
int i2q_ggml_gemv(int weight_type, const void *w, int64_t row_bytes, int64_t k, const void *xq,
                  int64_t r0, int64_t r1, float *y, int accumulate, int impl);

// MARK: worker pool

typedef void (*i2q_task_fn)(void *ctx, int64_t part);

/// Runs fn(ctx, p) for p in [0, parts) on the calling thread and `workers` persistent pool threads
/// (created by the first call; later calls reuse them), returning when all parts are done. Workers
/// spin ~50 µs after a task, then sleep. A call made while the pool is busy (nested, or from
/// another thread) runs all parts on the calling thread.
void i2q_pool_run(int64_t parts, int workers, i2q_task_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif

#endif
