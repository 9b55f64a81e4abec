#!/usr/bin/env python3
"""Generate the affine int4 (AWQ-style) golden fixtures under Tests/Fixtures/int4.

Run by hand (NOT in CI), from the repository root, with the pinned venv:

    /work/venv/bin/python scripts/make_int4_fixtures.py [--out Tests/Fixtures/int4]

Pinned: torch 2.15.0, numpy 2.4.6, safetensors 0.8.0. CPU, one thread, fixed seeds: a rerun
writes byte-identical files.

The reference is AutoAWQ 0.2.9 `AwqQuantizer.pseudo_quantize_tensor` (awq/quantize/quantizer.py,
zero_point=True, w_bit=4), copied below line by line, with ONE documented change (the contract of
Sources/I2QQuant/AffineInt4.swift and of the .i2q `affine_int4` scheme): the scale is rounded to
float16 (the dtype AutoAWQ stores) before the zero point and the codes are computed, so that the
stored codes / scales / zeros reproduce w_hat exactly. The codes are the integers AutoAWQ's
WQLinear_GEMM.from_linear recovers as round((w_hat + zeros * scales) / scales); the script checks
that this recovery gives the same codes. Packing follows Formats/i2q-format.md (`qweight` U8
[out, in/2], byte k = q[2k] | q[2k+1] << 4), done here in numpy independently of the Swift code.

What it writes (Tests/Fixtures/int4/cases.safetensors; see README.md there), per case C and
group size G:
    C.w                 f32 [rows, cols]   the input
    C.gG.codes          u8  [rows, cols]   q (0..15)
    C.gG.packed         u8  [rows, cols/2] the .i2q qweight bytes
    C.gG.scales         f16 [rows, cols/G]
    C.gG.zeros          u8  [rows, cols/G]
    C.gG.w_hat          f32 [rows, cols]   the dequantized weight (pseudo_quantize_tensor's output)
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

TORCH_VERSION = "2.15.0"
NUMPY_VERSION = "2.4.6"
SAFETENSORS_VERSION = "0.8.0"

import safetensors  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

assert torch.__version__.startswith(TORCH_VERSION), f"torch {torch.__version__} != pinned {TORCH_VERSION}"
assert np.__version__ == NUMPY_VERSION, f"numpy {np.__version__} != pinned {NUMPY_VERSION}"
assert safetensors.__version__ == SAFETENSORS_VERSION, f"safetensors {safetensors.__version__} != {SAFETENSORS_VERSION}"

torch.set_num_threads(1)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pseudo_quantize_tensor(w: torch.Tensor, group_size: int, w_bit: int = 4):
    """AutoAWQ 0.2.9 pseudo_quantize_tensor (zero_point=True) + the f16 scale rounding (marked)."""
    org_w_shape = w.shape
    if group_size > 0:
        assert org_w_shape[-1] % group_size == 0
        w = w.reshape(-1, group_size)
    assert w.dim() == 2

    max_val = w.amax(dim=1, keepdim=True)
    min_val = w.amin(dim=1, keepdim=True)
    max_int = 2**w_bit - 1
    min_int = 0
    scales = (max_val - min_val).clamp(min=1e-5) / max_int
    scales = scales.half().float()  # <-- the one change: the stored (fp16) scale is used from here on
    zeros = (-torch.round(min_val / scales)).clamp_(min_int, max_int)
    q = torch.clamp(torch.round(w / scales) + zeros, min_int, max_int)  # (named here; same expression)
    w = (q - zeros) * scales
    zeros = zeros.view(org_w_shape[0], -1)

    scales = scales.view(org_w_shape[0], -1)
    w = w.reshape(org_w_shape)
    return w, scales, zeros, q.reshape(org_w_shape)


def cases():
    g = torch.Generator().manual_seed(2024)
    out = {}

    # Odd shapes of normal * 0.02 with a few outliers: 5 rows x 192 columns.
    w = torch.randn(5, 192, generator=g) * 0.02
    w[1, 7] = 0.9
    w[3, 100] = -0.7
    out["randn"] = (w, (32, 64, 192, 12))

    # Special groups, one per 64-wide group (12 groups in 2 rows x 384 columns).
    groups = []
    groups.append(torch.zeros(64))                              # all zeros
    groups.append(torch.full((64,), 0.37))                      # constant positive
    groups.append(torch.full((64,), -0.37))                     # constant negative
    b = torch.randn(64, generator=g) * 0.01
    b[13] = 3.0e4
    groups.append(b)                                            # one huge value (in f16 range)
    groups.append(-(torch.rand(64, generator=g) + 1e-3))        # negative only
    groups.append(torch.rand(64, generator=g) + 1e-3)           # positive only
    # ties: s = (3.125 - (-0.625)) / 15 = 0.25 exactly; w / s = k + 0.5 for many k; mn / s = -2.5
    b = torch.tensor([-0.625, 3.125] + [(k + 0.5) * 0.25 for k in range(-2, 12)] * 4 + [0.0] * 6)
    groups.append(b[:64])
    # ties at -z: mn / s = -1.5 (z = 2, half to even), s = 0.5 (range 7.5)
    b = torch.tensor([-0.75, 6.75] + [(k + 0.5) * 0.5 for k in range(-2, 13)] * 4 + [0.25] * 2)
    groups.append(b[:64])
    groups.append(torch.linspace(-1, 1, 64) * 1e-7)             # range < 1e-5: clamped scale, f16 subnormal
    groups.append(torch.linspace(-1, 1, 64) * 3e-4)             # f16-subnormal scale, above the clamp
    b = torch.full((64,), -0.0)
    b[5] = 1e-30
    groups.append(b)                                            # -0.0 with one tiny positive
    groups.append(torch.linspace(-3, 3, 64))                    # dense grid, mn < 0 < mx
    out["special"] = (torch.cat(groups).reshape(2, 384), (64, 32))

    # A group whose range overflows f16 after / 15 (w_hat NaN in torch), next to a normal group.
    w = torch.cat([torch.linspace(-1, 1, 32) * 1.0e6, torch.randn(32, generator=g)]).reshape(1, 64)
    out["overflow"] = (w, (32,))

    # Tiny matrix with odd rows and a group size that is not a multiple of 8.
    w = torch.randn(3, 20, generator=g)
    out["small"] = (w, (4, 10, 20))
    return out


def pack_rows(codes: np.ndarray) -> np.ndarray:
    """.i2q affine_int4: byte k = q[2k] | q[2k+1] << 4 along each row."""
    c = codes.astype(np.uint8)
    return (c[:, 0::2] | (c[:, 1::2] << 4)).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "Tests/Fixtures/int4"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    tensors = {}
    index = {}
    for name, (w, sizes) in cases().items():
        w = w.float().contiguous()
        tensors[f"{name}.w"] = w
        index[name] = {"shape": list(w.shape), "group_sizes": list(sizes)}
        for G in sizes:
            w_hat, scales, zeros, q = pseudo_quantize_tensor(w.clone(), G)
            # AutoAWQ's WQLinear_GEMM.from_linear recovers the codes from w_hat; check it agrees.
            sz = zeros * scales
            idx = torch.arange(w.shape[1])
            rec = torch.round((w_hat + sz[:, idx // G]) / scales[:, idx // G])
            sel = torch.isfinite(scales[:, idx // G])
            assert torch.equal(rec[sel], q[sel]), f"{name} g{G}: code recovery differs"
            # Non-finite scale: the formula's codes are round(w / inf) + 0 = 0 (w finite); zeros 0.
            q = torch.where(sel, q, torch.zeros_like(q))
            zeros = torch.where(torch.isfinite(scales), zeros, torch.zeros_like(zeros))
            codes = q.to(torch.uint8)
            p = f"{name}.g{G}"
            tensors[f"{p}.codes"] = codes.contiguous()
            tensors[f"{p}.packed"] = torch.from_numpy(pack_rows(codes.numpy())).contiguous()
            tensors[f"{p}.scales"] = scales.half().contiguous()
            tensors[f"{p}.zeros"] = zeros.to(torch.uint8).contiguous()
            tensors[f"{p}.w_hat"] = w_hat.contiguous()
    save_file(tensors, os.path.join(args.out, "cases.safetensors"))
    with open(os.path.join(args.out, "cases.json"), "w") as f:
        json.dump({"torch": torch.__version__, "numpy": np.__version__, "cases": index}, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {len(tensors)} tensors to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
