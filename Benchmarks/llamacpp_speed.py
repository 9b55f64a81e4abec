"""The llama.cpp peer for Benchmarks/decode_4bit.sh: llama-cpp-python 0.3.36 on a GGUF (SmolLM2 Q4_1).

Usage: python Benchmarks/llamacpp_speed.py MODEL.gguf PROMPT_FILE [--threads 2] [--ctx 512] [--new 64]
Prints one JSON line: prefill tokens/s (one eval of ctx tokens on a fresh cache, best of 3) and
greedy decode tokens/s (new tokens one at a time after a 32-token prompt, argmax of the logits).
"""
import argparse, json, time

import llama_cpp
import numpy as np

assert llama_cpp.__version__ == "0.3.36", llama_cpp.__version__
ap = argparse.ArgumentParser()
ap.add_argument("model"); ap.add_argument("prompt")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--ctx", type=int, default=512)
ap.add_argument("--new", type=int, default=64)
a = ap.parse_args()
llm = llama_cpp.Llama(model_path=a.model, n_ctx=a.ctx + a.new + 8, n_batch=a.ctx, n_ubatch=a.ctx,
                      n_threads=a.threads, n_threads_batch=a.threads, verbose=False)
ids = llm.tokenize(open(a.prompt).read().encode(), add_bos=False)[: a.ctx]
assert len(ids) == a.ctx, f"prompt has only {len(ids)} tokens"
llm.reset(); llm.eval(ids[:16])  # warm-up
pre = []
for _ in range(3):
    llm.reset()
    t = time.perf_counter(); llm.eval(ids); pre.append(time.perf_counter() - t)
dec = []
for _ in range(3):
    llm.reset(); llm.eval(ids[:32])
    t = time.perf_counter()
    for _ in range(a.new):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        llm.eval([nxt])
    dec.append(time.perf_counter() - t)
print(json.dumps({"peer": "llama.cpp %s (%s)" % (llama_cpp.__version__, a.model.rsplit("/", 1)[-1]),
                  "prefill_tok_s": a.ctx / min(pre), "decode_tok_s": a.new / min(dec)}))
