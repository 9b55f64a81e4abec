"""bitsandbytes' CPU NF4 quantization on named tensors of a safetensors checkpoint (the peer of
`i2q-bench nf4`): each tensor is loaded and widened to float32 first (not timed), then
`bitsandbytes.functional.quantize_4bit(x, blocksize=64, quant_type="nf4", compress_statistics=True)`
is timed, best of 3, with THREADS torch threads (default 2, the machine's cores).

Usage: python Benchmarks/bnb_quantize_speed.py MODEL_DIR NAME... [--threads 2]
(torch 2.15.0, bitsandbytes 0.50.2, safetensors 0.8.0)
"""
import argparse, json, os, time
import torch, bitsandbytes
from bitsandbytes.functional import quantize_4bit
from safetensors import safe_open

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("names", nargs="+")
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
index = json.load(open(os.path.join(a.model, "model.safetensors.index.json")))["weight_map"] \
    if os.path.exists(os.path.join(a.model, "model.safetensors.index.json")) else None
total_n, total_s = 0, 0.0
for name in a.names:
    shard = index[name] if index else "model.safetensors"
    with safe_open(os.path.join(a.model, shard), "pt") as f:
        x = f.get_tensor(name).float().contiguous()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        packed, state = quantize_4bit(x, blocksize=64, quant_type="nf4", compress_statistics=True)
        best = min(best, time.perf_counter() - t0)
    total_n += x.numel(); total_s += best
    print(f"{name} {list(x.shape)}: {best*1000:.1f} ms, {x.numel()/best/1e6:.0f} M elements/s")
print(f"nf4 quantize_4bit (bitsandbytes {bitsandbytes.__version__}, {a.threads} threads): {total_n} elements in {total_s:.3f} s = {total_n/total_s/1e6:.0f} M elements/s")
