"""The peer for Benchmarks/perplexity_smollm2.sh: transformers' perplexity on CPU, i2q's protocol.

Usage: python Benchmarks/transformers_perplexity.py MODEL_DIR TEXT [--threads 2] [--ctx 512] [--dtype float32|bfloat16]
The text is tokenized once, cut into consecutive windows of ctx tokens (a partial last window is
dropped), each window runs from an empty cache and is scored on positions 1..ctx-1 (float32
cross-entropy of the logits); PPL = exp(mean NLL). Prints one JSON line: ppl, seconds (the windows'
forward + loss, after a warm-up), tokens/s.
"""
import argparse, json, math, time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ap = argparse.ArgumentParser()
ap.add_argument("model"); ap.add_argument("text")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--ctx", type=int, default=512)
ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
a = ap.parse_args()
torch.set_num_threads(a.threads)
tok = AutoTokenizer.from_pretrained(a.model)
model = AutoModelForCausalLM.from_pretrained(a.model, dtype=getattr(torch, a.dtype)).eval()
ids = tok(open(a.text).read(), return_tensors="pt").input_ids[0]
windows = ids.shape[0] // a.ctx
nll, scored = 0.0, 0
with torch.inference_mode():
    model(ids[None, :16])  # warm-up
    t = time.perf_counter()
    for w in range(windows):
        win = ids[w * a.ctx:(w + 1) * a.ctx][None]
        logits = model(win, use_cache=False).logits[0, :-1].float()
        nll += torch.nn.functional.cross_entropy(logits, win[0, 1:], reduction="sum").item()
        scored += a.ctx - 1
    dt = time.perf_counter() - t
print(json.dumps({"peer": f"transformers {__import__('transformers').__version__} torch {torch.__version__}", "dtype": a.dtype,
                  "threads": a.threads, "windows": windows, "ppl": math.exp(nll / scored), "seconds": dt,
                  "tok_s": windows * a.ctx / dt}))
