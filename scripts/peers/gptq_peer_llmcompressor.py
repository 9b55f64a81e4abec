#!/usr/bin/env python3
"""Peer of `i2q quantize --gptq`: llm-compressor's GPTQModifier on CPU, same calibration and windows.

Run by hand (NOT in CI), in its own venv (llmcompressor pins its own torch):

    python3 -m venv /work/venv-llmc --system-site-packages
    /work/venv-llmc/bin/pip install llmcompressor==0.14.0.1
    /work/venv-llmc/bin/python scripts/peers/gptq_peer_llmcompressor.py MODEL_DIR \
        --calibration /usr/share/common-licenses/GPL-3 --text /usr/share/common-licenses/LGPL-2.1 \
        [--group-size 64] [--seq-len 512] [--samples 128] [--ctx 512] [--actorder static] [--save DIR]

Pinned: llmcompressor 0.14.0.1 (and the torch/transformers it installs; printed at start).
CPU only: llmcompressor pins calibration activations with `Tensor.pin_memory`, which needs a CUDA
driver, so it is patched to return the tensor itself (see ../shared/reference/environment.md).

Calibration is the one `i2q quantize --awq --calibration FILE` builds (Sources/I2QPasses/
AWQCalibration.swift): the file tokenized once (BOS as the tokenizer adds it), cut into consecutive
blocks of --seq-len tokens (last partial block dropped); with more blocks than --samples the script
refuses (i2q then picks a seeded subset; use --samples ≥ blocks for a like-for-like run).
Scheme: int4 asymmetric (zero point), groups of --group-size along the input dim, every Linear of
the decoder, lm_head ignored — the i2q affine int4 scheme; GPTQModifier defaults otherwise
(block_size 128, dampening_frac 0.01, actorder None unless --actorder). --save DIR writes the
compressed-tensors checkpoint llm-compressor produces (save_compressed=True): the reference for
`i2q export --to compressed-tensors`'s config. Perplexity: the definition of
`i2q perplexity` (windows of --ctx tokens, positions 1..ctx-1 scored, exp of the mean NLL).
"""

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from i2qscripts import pin  # noqa: E402

import torch  # noqa: E402

torch.Tensor.pin_memory = lambda self, *a, **k: self  # CPU: no CUDA driver to pin with

import llmcompressor  # noqa: E402
import transformers  # noqa: E402
from datasets import Dataset  # noqa: E402
from llmcompressor import oneshot  # noqa: E402
from llmcompressor.modifiers.gptq import GPTQModifier  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

LLMCOMPRESSOR_VERSION = "0.14.0.1"
pin("llmcompressor", llmcompressor.__version__, LLMCOMPRESSOR_VERSION, prefix=True)


def perplexity(model, ids, ctx):
    windows = len(ids) // ctx
    nll, n = 0.0, 0
    with torch.no_grad():
        for w in range(windows):
            x = ids[w * ctx:(w + 1) * ctx][None]
            logits = model(x).logits[0].double()
            logp = torch.log_softmax(logits[:-1], dim=-1)
            nll -= logp.gather(1, x[0, 1:, None]).sum().item()
            n += ctx - 1
    return math.exp(nll / n), windows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--calibration", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--actorder", default=None)
    ap.add_argument("--save", default=None)
    a = ap.parse_args()
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, llmcompressor {llmcompressor.__version__}")
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, device_map="cpu")
    cal = tok(open(a.calibration, encoding="utf-8").read(), return_tensors="pt").input_ids[0]
    blocks = [cal[i * a.seq_len:(i + 1) * a.seq_len] for i in range(len(cal) // a.seq_len)]
    assert len(blocks) <= a.samples, f"{len(blocks)} blocks > --samples {a.samples}: i2q would pick a seeded subset"
    ds = Dataset.from_dict({"input_ids": [b.tolist() for b in blocks], "attention_mask": [[1] * len(b) for b in blocks]})
    recipe = GPTQModifier(
        ignore=["lm_head"], actorder=a.actorder,
        config_groups={"group_0": {"targets": ["Linear"], "weights": {
            "num_bits": 4, "type": "int", "symmetric": False, "strategy": "group", "group_size": a.group_size}}},
    )
    t0 = time.time()
    oneshot(model=model, dataset=ds, recipe=recipe, max_seq_length=a.seq_len, num_calibration_samples=len(blocks))
    seconds = time.time() - t0
    ids = tok(open(a.text, encoding="utf-8").read(), return_tensors="pt").input_ids[0]
    ppl, windows = perplexity(model, ids, a.ctx)
    if a.save:
        model.save_pretrained(a.save, save_compressed=True)
        tok.save_pretrained(a.save)
    print(json.dumps({"peer": "llmcompressor GPTQModifier", "ppl": ppl, "windows": windows, "ctx": a.ctx, "tokens": int(len(ids)),
                      "calibration_blocks": len(blocks), "group_size": a.group_size, "actorder": a.actorder, "gptq_seconds": seconds}))


if __name__ == "__main__":
    main()
