"""Peer for Benchmarks/vision_idefics2.sh: transformers' Idefics2 vision tower (SigLIP, real
idefics2-8b shape: 27 layers, hidden 1152, 16 heads, patch 14), float32, random weights, on one
image of W×H pixels (all real), same thread count. Prints one JSON line with seconds and patches/s
(median of 2 runs after a warm-up on a small image).

Usage: python Benchmarks/transformers_vision.py [--width 980] [--height 557] [--threads 2]
"""
import argparse, json, statistics, time
import torch
from transformers.models.idefics2.configuration_idefics2 import Idefics2VisionConfig
from transformers.models.idefics2.modeling_idefics2 import Idefics2VisionTransformer

ap = argparse.ArgumentParser()
ap.add_argument("--width", type=int, default=980); ap.add_argument("--height", type=int, default=557)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
cfg = Idefics2VisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                           image_size=980, patch_size=14)
cfg._attn_implementation = "sdpa"
model = Idefics2VisionTransformer(cfg).eval()
ph, pw = a.height // 14, a.width // 14
with torch.inference_mode():
    model(torch.randn(1, 3, 56, 56), torch.ones(1, 4, 4, dtype=torch.bool))
    times = []
    for _ in range(2):
        x = torch.randn(1, 3, ph * 14, pw * 14)
        t = time.perf_counter(); model(x, torch.ones(1, ph, pw, dtype=torch.bool)); times.append(time.perf_counter() - t)
s = statistics.median(times)
print(json.dumps({"peer": f"transformers {__import__('transformers').__version__} torch {torch.__version__}",
                  "threads": a.threads, "patches": ph * pw, "seconds": s, "patches_per_s": ph * pw / s}))
