#!/usr/bin/env python3
"""scripts/lib/awq_gemm.py's float32 AWQ dequantization (the reference weights of
`fullsize_golden.py --int4-awq`) against gptqmodel 7.7's own, on real tensors of an
`i2q export --to hf-awq` directory.

Run by hand (NOT in CI), with the gptqmodel venv (see scripts/checks/check_awq_export.py):

    /work/venv-awq/bin/python scripts/checks/awq_dequant_check.py AWQ_DIR [TENSOR_PREFIX ...]

Default prefixes: the first decoder layer's q_proj and the last one's down_proj (two shapes:
[4096, 4096] and [4096, 14336] for idefics2-8b). For each layer it prints max|Δ| between

  - ours (float32) and gptqmodel's `dequantize_gemm` (gptqmodel/quantization/awq/utils/packing_utils.py,
    what `AwqTorchLinear._dequantize_weight_for_inference` calls) given float32 scales: the same
    unpack/reorder/(q - z)·s in float32 -- expected 0;
  - ours rounded to fp16 and gptqmodel's `dequantize_gemm` with the export's fp16 scales (what
    AwqTorchLinear multiplies by on CPU: it computes in fp16 for float32 input): expected 0;
  - ours and gptqmodel's fp16 result (the fp16 rounding of the product itself; not 0).

Exits 1 unless the two expected-0 differences are 0.

Pinned: torch 2.15.0, gptqmodel 7.7.0.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import awq_gemm  # noqa: E402
from i2qscripts import pin  # noqa: E402

import torch  # noqa: E402

pin("torch", torch.__version__, "2.15.0", prefix=True)
import importlib.metadata as md  # noqa: E402

pin("gptqmodel", md.version("gptqmodel"), "7.7.0")
from gptqmodel.quantization.awq.utils.packing_utils import dequantize_gemm  # noqa: E402
from safetensors import safe_open  # noqa: E402

DEFAULT = ["model.text_model.layers.0.self_attn.q_proj", "model.text_model.layers.31.mlp.down_proj"]


def tensors(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            return json.load(f)["weight_map"]
    with safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
        return {k: "model.safetensors" for k in f.keys()}


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    prefixes = sys.argv[2:] or DEFAULT
    with open(os.path.join(d, "config.json")) as f:
        qc = json.load(f)["quantization_config"]
    assert qc["quant_method"] == "awq" and qc["version"] == "gemm" and qc["bits"] == 4, qc
    g = qc["group_size"]
    where = tensors(d)
    ok = True
    for p in prefixes:
        get = {}
        for part in ("qweight", "qzeros", "scales"):
            name = f"{p}.{part}"
            if name not in where:
                sys.exit(f"{d}: tensor {name!r} is not in the export")
            with safe_open(os.path.join(d, where[name]), "pt") as f:
                get[part] = f.get_tensor(name)
        qw, qz, s = get["qweight"], get["qzeros"], get["scales"]
        assert qw.dtype == torch.int32 and qz.dtype == torch.int32 and s.dtype == torch.float16, (qw.dtype, qz.dtype, s.dtype)
        ours = awq_gemm.dequantize(qw, qz, s, g)  # [out, in] f32
        theirs32 = dequantize_gemm(qw, qz, s.to(torch.float32), 4, g).t()  # [in, out] -> [out, in]
        theirs16 = dequantize_gemm(qw, qz, s, 4, g).t()
        assert theirs32.dtype == torch.float32 and theirs16.dtype == torch.float16
        d32 = float((ours - theirs32).abs().max())
        d16 = float((ours.to(torch.float16).to(torch.float32) - theirs16.to(torch.float32)).abs().max())
        dr = float((ours - theirs16.to(torch.float32)).abs().max())
        print(f"{p}: weight {list(ours.shape)}, group {g}, |w| max {float(ours.abs().max()):.4g}; "
              f"max|Δ| vs gptqmodel dequantize_gemm: float32 scales {d32:.3g}, "
              f"fp16 (ours rounded to fp16) {d16:.3g}; ours vs gptqmodel's fp16 product {dr:.3g}", flush=True)
        ok = ok and d32 == 0 and d16 == 0
    print("OK: equal to gptqmodel 7.7's dequantize_gemm" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
