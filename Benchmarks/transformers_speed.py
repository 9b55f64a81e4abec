"""The peer for Benchmarks/decoder_smollm2.sh: transformers on CPU, float32, same thread count.

Usage: python Benchmarks/transformers_speed.py MODEL_DIR PROMPT_FILE [--threads 2] [--ctx 512] [--new 64]
Prints one JSON line: prefill tokens/s (one forward over ctx tokens, median of 3) and greedy
decode tokens/s (KV cache, `max_new_tokens` with EOS ignored), as `generate` runs it.
"""
import argparse, json, statistics, time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ap = argparse.ArgumentParser()
ap.add_argument("model"); ap.add_argument("prompt")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--ctx", type=int, default=512)
ap.add_argument("--new", type=int, default=64)
a = ap.parse_args()
torch.set_num_threads(a.threads)
tok = AutoTokenizer.from_pretrained(a.model)
model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
ids = tok(open(a.prompt).read(), return_tensors="pt").input_ids[:, : a.ctx]
assert ids.shape[1] == a.ctx, f"prompt has only {ids.shape[1]} tokens"
with torch.inference_mode():
    model(ids[:, :16])  # warm-up
    pre = []
    for _ in range(3):
        t = time.perf_counter(); model(ids, use_cache=False, logits_to_keep=1); pre.append(time.perf_counter() - t)
    p = ids[:, :32]
    t = time.perf_counter()
    out = model.generate(p, max_new_tokens=a.new, min_new_tokens=a.new, do_sample=False)
    dt = time.perf_counter() - t
# generate's time includes the 32-token prefill; subtract it as measured separately.
with torch.inference_mode():
    t = time.perf_counter(); model(p, use_cache=False, logits_to_keep=1); p32 = time.perf_counter() - t
print(json.dumps({"peer": f"transformers {__import__('transformers').__version__} torch {torch.__version__}",
                  "threads": a.threads, "ctx": a.ctx, "prefill_tok_s": a.ctx / statistics.median(pre),
                  "decode_tok_s": (out.shape[1] - p.shape[1]) / max(dt - p32, 1e-9)}))
