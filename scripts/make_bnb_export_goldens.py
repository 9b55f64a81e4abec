#!/usr/bin/env python3
"""Goldens for `i2q export --to hf-bnb` (run by hand, NOT in CI; CPU only).

Pinned: torch 2.15.0, transformers 5.24.0, bitsandbytes 0.50.2, safetensors 0.8.0.

    /work/venv/bin/python scripts/make_bnb_export_goldens.py [--out Tests/Fixtures/bnb-export]

What transformers + bitsandbytes write for a 4-bit model, and what they compute with it:

  (Logits use bitsandbytes' generic dequantization; see bnb_generic_dequantize for why not the
  native CPU kernel.)

  tiny-idefics2-nf4/   Tests/Fixtures/tiny-idefics2-v4 loaded with
                       BitsAndBytesConfig(load_in_4bit, nf4, double quant, compute float32),
                       dtype float32, device_map cpu; `save_pretrained` output (model.safetensors,
                       config.json) and logits.safetensors: the logits of that quantized model on
                       the inputs of Tests/Fixtures/golden/tiny-idefics2.safetensors
                       (input_ids, attention_mask, pixel_values, pixel_attention_mask).
  tiny-llama-fp4/      Tests/Fixtures/tiny-llama with fp4, NO double quant, compute float32;
                       save_pretrained output and logits for tiny-llama/golden.safetensors' ids.

The Swift tests quantize the same source with `i2q quantize`, export with `--to hf-bnb`, and compare
every tensor byte for byte and config.json's quantization_config with these files, then compare the
i2q runtime's logits on the .i2q with the logits here.
"""
import argparse
import json
import os
import shutil
import sys
import types

import torch
import transformers
import bitsandbytes
import safetensors
from safetensors.torch import load_file, save_file
from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, BitsAndBytesConfig

PINS = {"torch": "2.15.0", "transformers": "5.24.0", "bitsandbytes": "0.50.2", "safetensors": "0.8.0"}


def check_versions():
    got = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
           "bitsandbytes": bitsandbytes.__version__, "safetensors": safetensors.__version__}
    bad = {k: (got[k], v) for k, v in PINS.items() if got[k] != v}
    if bad:
        sys.exit(f"version mismatch (got, pinned): {bad}")


def bnb_generic_dequantize(weight, qs):
    """bitsandbytes' reference dequantization (backends/default/ops.py `_dequantize_4bit_compute`,
    blocks over the flattened tensor — what the CUDA kernel computes), with double-quantized absmax
    restored as `functional.dequantize_4bit` does (dequantize_blockwise(absmax, state2) + offset).

    Why not bnb's CPU kernel: bitsandbytes 0.50.2's native CPU dequantize
    (`cdequantize_blockwise_cpu_*`) indexes absmax per row as row * (in // blocksize) + col // blocksize,
    which is wrong when `in` is not a multiple of the block size (here in = 32 < 64: every element
    gets absmax[0]). Real checkpoints (in = 576, 4096, 14336, 1152...) are multiples of 64, where both
    agree; the tiny fixtures are not, so the generic definition is the reference."""
    absmax = qs.absmax
    if qs.nested:
        absmax = bitsandbytes.functional.dequantize_blockwise(qs.absmax, qs.state2) + qs.offset
    A = weight.reshape(-1)
    if A.dtype != torch.uint8:
        A = A.view(torch.uint8)
    return _dequantize_4bit_compute(A, absmax.float(), qs.code, qs.blocksize, qs.shape, qs.dtype)


def plain_cpu_path(model):
    """Every Linear4bit computes F.linear(x, bnb_generic_dequantize(W)) in the compute dtype (float32)
    — bnb's matmul_4bit on CPU is dequantize + matmul too, only with the native kernel above."""
    n = 0

    def forward(self, x):
        w = bnb_generic_dequantize(self.weight.data, self.weight.quant_state).to(self.compute_dtype)
        bias = None if self.bias is None else self.bias.to(self.compute_dtype)
        return torch.nn.functional.linear(x.to(self.compute_dtype), w, bias).to(x.dtype)

    for mod in model.modules():
        if isinstance(mod, bitsandbytes.nn.Linear4bit):
            mod.forward = types.MethodType(forward, mod)
            n += 1
    assert n > 0
    return model


def save(model, out, name, logits, info):
    d = os.path.join(out, name)
    tmp = d + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    os.makedirs(tmp, exist_ok=True)
    keep = {"model.safetensors", "config.json"}
    for f in os.listdir(tmp):
        if f not in keep:
            os.remove(os.path.join(tmp, f))
    save_file({"logits": logits.contiguous()}, os.path.join(tmp, "logits.safetensors"),
              metadata={"info": json.dumps(info, sort_keys=True)})
    shutil.rmtree(d, ignore_errors=True)
    os.rename(tmp, d)
    print(f"wrote {d}: {sorted(os.listdir(d))}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="Tests/Fixtures/bnb-export")
    ap.add_argument("--fixtures", default="Tests/Fixtures")
    a = ap.parse_args()
    check_versions()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    os.makedirs(a.out, exist_ok=True)
    versions = {k: v for k, v in PINS.items()}

    # 1. tiny Idefics2, NF4 + double quant.
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=torch.float32)
    m = AutoModelForImageTextToText.from_pretrained(os.path.join(a.fixtures, "tiny-idefics2-v4"), quantization_config=q,
                                                    dtype=torch.float32, device_map="cpu").eval()
    plain_cpu_path(m)
    g = load_file(os.path.join(a.fixtures, "golden", "tiny-idefics2.safetensors"))
    inputs = {k: g[k] for k in ("input_ids", "attention_mask", "pixel_values", "pixel_attention_mask")}
    with torch.inference_mode():
        logits = m(**inputs).logits.float()
    save(m, a.out, "tiny-idefics2-nf4", logits,
         {**versions, "source": "tiny-idefics2-v4", "quantization": "nf4, blocksize 64, double quant, compute float32",
          "inputs": "golden/tiny-idefics2.safetensors"})

    # 2. tiny Llama, FP4 without double quant.
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="fp4", bnb_4bit_use_double_quant=False,
                           bnb_4bit_compute_dtype=torch.float32)
    m = AutoModelForCausalLM.from_pretrained(os.path.join(a.fixtures, "tiny-llama"), quantization_config=q,
                                             dtype=torch.float32, device_map="cpu").eval()
    plain_cpu_path(m)
    g = load_file(os.path.join(a.fixtures, "tiny-llama", "golden.safetensors"))
    ids = g["input_ids"] if "input_ids" in g else g["ids"]
    if ids.dim() == 1:
        ids = ids[None]
    with torch.inference_mode():
        logits = m(ids.long()).logits.float()
    save(m, a.out, "tiny-llama-fp4", logits,
         {**versions, "source": "tiny-llama", "quantization": "fp4, blocksize 64, no double quant, compute float32",
          "inputs": "tiny-llama/golden.safetensors input ids"})


if __name__ == "__main__":
    main()
