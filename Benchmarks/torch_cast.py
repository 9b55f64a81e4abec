#!/usr/bin/env python3
"""The peer of `i2q cast`: cast a sharded safetensors checkpoint the way a Python user would.

    torch_cast.py IN_DIR OUT_DIR --dtype f16|bf16|f32

For each shard: safetensors.torch.load_file, .to(dtype) for floating-point tensors (others kept),
save_file with metadata {"format": "pt"}. Then the index is rewritten (same weight_map, new
total_size) and the other small files (config.json, generation_config.json, tokenizer files, ...)
are copied, with config.json's torch_dtype updated. Nothing is tuned: this is the natural way.

Tested with torch 2.15.0 and safetensors 0.8.0 (/work/venv).
"""

import argparse
import json
import os
import shutil
import sys
import time

import torch
from safetensors.torch import load_file, save_file

DTYPES = {"f16": (torch.float16, "float16"), "bf16": (torch.bfloat16, "bfloat16"),
          "f32": (torch.float32, "float32")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("in_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f16")
    args = ap.parse_args()
    dtype, dtype_name = DTYPES[args.dtype]

    index_path = os.path.join(args.in_dir, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            index = json.load(f)
        shards = sorted(set(index["weight_map"].values()))
    else:
        index, shards = None, ["model.safetensors"]

    os.makedirs(args.out_dir, exist_ok=True)
    t0 = time.time()
    total = 0
    for name in shards:
        ts = time.time()
        tensors = load_file(os.path.join(args.in_dir, name))
        out = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tensors.items()}
        del tensors
        total += sum(v.numel() * v.element_size() for v in out.values())
        save_file(out, os.path.join(args.out_dir, name), metadata={"format": "pt"})
        del out
        print(f"  {name}: {time.time() - ts:.1f}s", flush=True)

    if index is not None:
        index["metadata"] = dict(index.get("metadata") or {}, total_size=total)
        with open(os.path.join(args.out_dir, "model.safetensors.index.json"), "w") as f:
            f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    for entry in sorted(os.listdir(args.in_dir)):
        src = os.path.join(args.in_dir, entry)
        if entry.endswith(".safetensors") or entry == "model.safetensors.index.json" or not os.path.isfile(src):
            continue
        if entry == "config.json":
            with open(src) as f:
                config = json.load(f)
            for key in ("torch_dtype", "dtype"):
                if key in config:
                    config[key] = dtype_name
            with open(os.path.join(args.out_dir, entry), "w") as f:
                f.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
        else:
            shutil.copy2(src, os.path.join(args.out_dir, entry))
    print(f"cast {len(shards)} shard(s), {total / 1e9:.2f} GB written, in {time.time() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
