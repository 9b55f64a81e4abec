"""AutoAWQ GEMM-layout int4 weights (what `i2q export --to hf-awq` writes) unpacked and dequantized in
float32 -- the reference weight of `scripts/checks/fullsize_golden.py --int4-awq` (needs torch only).

Layout (AutoAWQ `WQLinear_GEMM`, version "gemm"): for an nn.Linear of [out, in],
  qweight int32 [in, out/8]  -- word w of row i holds output columns 8w..8w+7, column 8w + ORDER[j]
                                in bits 4j..4j+3, ORDER = [0, 2, 4, 6, 1, 3, 5, 7];
  qzeros  int32 [in/g, out/8] -- the zero points, packed the same way;
  scales  f16   [in/g, out].
The weight is W[o, i] = (q[i, o] - z[i // g, o]) * s[i // g, o].

`dequantize` computes that product in float32: q - z is an integer in [-15, 15] and s an fp16 value
(11 significant bits), so the float32 product is exact -- the value i2q's prefill multiplies by
(Sources/I2QRuntime/Kernels/QuantGemv.swift, `PackedFourBit.dequantize`: `(Float(q) - z) * Float(s)`).
gptqmodel 7.7's `dequantize_gemm` (gptqmodel/quantization/awq/utils/packing_utils.py) computes the
same product in the scales' dtype; scripts/checks/awq_dequant_check.py shows on real tensors of an
export that it equals this function exactly with float32 scales, and this function rounded to fp16
with the fp16 scales AwqTorchLinear uses.
"""

import torch

ORDER = [0, 2, 4, 6, 1, 3, 5, 7]  # packed slot j holds column ORDER[j] of each group of 8
# the bit offset of column c (0..7) inside its word: 4 * (slot of c)
SHIFTS = [4 * ORDER.index(c) for c in range(8)]  # [0, 16, 4, 20, 8, 24, 12, 28]


def unpack(packed):
    """int32 [r, n/8] -> int32 [r, n] codes 0..15 in column order."""
    sh = torch.tensor(SHIFTS, dtype=torch.int32)
    q = (packed.to(torch.int32).unsqueeze(-1) >> sh) & 15  # [r, n/8, 8]
    return q.reshape(packed.shape[0], packed.shape[1] * 8)


def dequantize(qweight, qzeros, scales, group_size):
    """The nn.Linear weight [out, in] float32 of one AWQ GEMM layer."""
    rows, out = qweight.shape[0], qweight.shape[1] * 8
    groups = rows // group_size
    if rows % group_size or tuple(scales.shape) != (groups, out) or tuple(qzeros.shape) != (groups, out // 8):
        raise ValueError(f"AWQ GEMM shapes do not fit group size {group_size}: qweight {tuple(qweight.shape)}, "
                         f"qzeros {tuple(qzeros.shape)}, scales {tuple(scales.shape)}")
    q = unpack(qweight)  # [in, out]
    z = unpack(qzeros).repeat_interleave(group_size, dim=0)  # [in, out]
    s = scales.to(torch.float32).repeat_interleave(group_size, dim=0)  # [in, out]
    return ((q - z).to(torch.float32) * s).t().contiguous()  # [out, in]
