#!/usr/bin/env python3
"""Reference values for the `i2q quantize --rtn` and `i2q export --to hf-awq` tests (Tests/Fixtures/awq).

Run by hand (NOT in CI), from the repository root, with the pinned venv:

    /work/venv/bin/python scripts/awq_make_fixtures.py [--out Tests/Fixtures/awq]

Pinned: torch 2.15.0, numpy 2.4.6, safetensors 0.8.0. Deterministic: a rerun writes identical bytes.

Input: Tests/Fixtures/tiny-llama/model.safetensors (2 layers, hidden 32, intermediate 64).
For every decoder linear X (model.layers.N.{self_attn.{q,k,v,o},mlp.{gate,up,down}}_proj) and group
size G = 16 it writes, computed from the float32 weight:

  X.codes    u8  [out, in]      q of AutoAWQ 0.2.9 pseudo_quantize_tensor (zero_point, 4 bit) with the
  X.scales   f16 [out, in/G]    fp16-rounded scale (the stored form; see scripts/make_int4_fixtures.py,
  X.zeros    u8  [out, in/G]    whose `pseudo_quantize_tensor` is imported here unchanged)
  X.packed   u8  [out, in/2]    the .i2q `affine_int4` qweight bytes (Formats/i2q-format.md)
  X.awq_qweight  i32 [in, out/8]    AutoAWQ's GEMM layout, packed by the loop of
  X.awq_qzeros   i32 [in/G, out/8]  awq/modules/linear/gemm.py `WQLinear_GEMM.from_linear`
  X.awq_scales   f16 [in/G, out]    (intweight = round((W_hat + zeros*scales) / scales), transposed;
                                    word |= q[:, 8c + order_map[i]] << 4i, order_map = [0,2,4,6,1,3,5,7])

The from_linear packing is re-typed below from AutoAWQ's source (it is not importable here: the
autoawq package needs CUDA kernels and an older transformers).
"""

import argparse
import importlib.util
import os

import numpy as np
import torch

TORCH_VERSION = "2.15.0"
NUMPY_VERSION = "2.4.6"
SAFETENSORS_VERSION = "0.8.0"

import safetensors  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

assert torch.__version__.startswith(TORCH_VERSION), f"torch {torch.__version__} != pinned {TORCH_VERSION}"
assert np.__version__ == NUMPY_VERSION, f"numpy {np.__version__} != pinned {NUMPY_VERSION}"
assert safetensors.__version__ == SAFETENSORS_VERSION, f"safetensors {safetensors.__version__} != {SAFETENSORS_VERSION}"
torch.set_num_threads(1)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("int4", os.path.join(REPO, "scripts/make_int4_fixtures.py"))
int4 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(int4)

G = 16


def from_linear_pack(w_hat: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, group_size: int):
    """AutoAWQ 0.2.9 WQLinear_GEMM.from_linear (w_bit 4), CPU. w_hat [out, in] (the pseudo-quantized
    weight), scales/zeros [out, in/G] as pseudo_quantize_tensor returns them; from_linear is called
    with scales.t() and zeros.t() ([in/G, out]) by AwqQuantizer._apply_quant."""
    scales = scales.t().contiguous()
    zeros = zeros.t().contiguous()
    in_features = w_hat.shape[1]
    scale_zeros = zeros * scales
    awq_scales = scales.clone().half()
    pack_num = 32 // 4
    intweight = []
    for idx in range(in_features):
        intweight.append(torch.round((w_hat[:, idx] + scale_zeros[idx // group_size]) / awq_scales[idx // group_size]).to(torch.int)[:, None])
    intweight = torch.cat(intweight, dim=1)
    intweight = intweight.t().contiguous().to(dtype=torch.int32)
    # AutoAWQ writes `intweight.shape[1] // 32 * w_bit` columns, which equals out/8 when out is a
    # multiple of 32 and truncates otherwise (tiny k/v_proj here have 8 outputs); out // 8 is the
    # width WQLinear_GEMM.__init__ allocates and every real checkpoint has.
    qweight = torch.zeros((intweight.shape[0], intweight.shape[1] // pack_num), dtype=torch.int32)
    order_map = [0, 2, 4, 6, 1, 3, 5, 7]
    for col in range(intweight.shape[1] // pack_num):
        for i in range(pack_num):
            qweight[:, col] |= intweight[:, col * pack_num + order_map[i]] << (i * 4)
    zeros = zeros.to(dtype=torch.int32)
    qzeros = torch.zeros((zeros.shape[0], zeros.shape[1] // pack_num), dtype=torch.int32)
    for col in range(zeros.shape[1] // pack_num):
        for i in range(pack_num):
            qzeros[:, col] |= zeros[:, col * pack_num + order_map[i]] << (i * 4)
    return qweight, qzeros, awq_scales, intweight


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "Tests/Fixtures/awq"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    sd = load_file(os.path.join(REPO, "Tests/Fixtures/tiny-llama/model.safetensors"))
    out = {}
    names = sorted(k for k in sd if ".layers." in k and k.endswith("_proj.weight"))
    assert len(names) == 14, names
    for name in names:
        w = sd[name].float().contiguous()
        w_hat, scales, zeros, q = int4.pseudo_quantize_tensor(w.clone(), G)
        x = name[: -len(".weight")]
        codes = q.to(torch.uint8).numpy()
        out[x + ".codes"] = torch.from_numpy(codes.copy())
        out[x + ".scales"] = scales.half().contiguous()
        out[x + ".zeros"] = zeros.to(torch.uint8).contiguous()
        out[x + ".packed"] = torch.from_numpy(int4.pack_rows(codes))
        qweight, qzeros, awq_scales, intweight = from_linear_pack(w_hat, scales, zeros, G)
        assert torch.equal(intweight.t(), q.to(torch.int32)), f"{name}: from_linear does not recover the codes"
        out[x + ".awq_qweight"] = qweight
        out[x + ".awq_qzeros"] = qzeros
        out[x + ".awq_scales"] = awq_scales.contiguous()
    save_file(out, os.path.join(args.out, "tiny-llama-g16.safetensors"), metadata={"group_size": str(G)})
    print(f"wrote {len(out)} tensors for {len(names)} linears to {args.out}/tiny-llama-g16.safetensors")


if __name__ == "__main__":
    main()
