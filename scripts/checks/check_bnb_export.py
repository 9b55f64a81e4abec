#!/usr/bin/env python3
"""Does transformers + bitsandbytes load `i2q export --to hf-bnb` and compute what i2q computes?
(run by hand, NOT in CI; CPU only; torch 2.15.0, transformers 5.24.0, bitsandbytes 0.50.2)

    /work/venv/bin/python scripts/checks/check_bnb_export.py --i2q .build/release/i2q MODEL_DIR [--image PNG] [--prompt P]

Steps: `i2q quantize MODEL --nf4 --compute-dtype f32` → `i2q export --to hf-bnb` → `i2q run --json
--logits-out` on the .i2q; then transformers `from_pretrained(export)` (bnb's plain CPU path:
dequantize_4bit + matmul in float32) runs the same input ids (and the export's processor on the
image) and the logits are compared: max|Δ| / std(logits) and argmax agreement are printed; the
script exits 1 above 1e-4 × std. Without --generic-dequant the model runs bnb's own CPU
kernels (the path transformers users get).
"""
import argparse, json, os, subprocess, sys, tempfile
import numpy as np
import torch, transformers, bitsandbytes
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--i2q", default=".build/release/i2q")
    ap.add_argument("model")
    ap.add_argument("--image")
    ap.add_argument("--prompt", default="The capital of France is")
    ap.add_argument("--type", default="nf4", choices=["nf4", "fp4"])
    ap.add_argument("--no-double-quant", action="store_true")
    ap.add_argument("--generic-dequant", action="store_true",
                    help="use bnb's generic dequantization instead of its native CPU kernel (needed when a "
                         "linear's in-features are not a multiple of 64, e.g. the tiny fixtures; see "
                         "make_bnb_export_goldens.py)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        q, hf, npy = os.path.join(tmp, "m.i2q"), os.path.join(tmp, "hf"), os.path.join(tmp, "logits.npy")
        cmd = [a.i2q, "quantize", a.model, "--" + a.type, "--compute-dtype", "f32", "-o", q, "--no-progress"]
        if a.no_double_quant:
            cmd.append("--no-double-quant")
        subprocess.run(cmd, check=True)
        subprocess.run([a.i2q, "export", q, "--to", "hf-bnb", "-o", hf, "--no-progress"], check=True)
        run = [a.i2q, "run", q, "--prompt", a.prompt, "--max-new-tokens", "8", "--json", "--logits-out", npy]
        if a.image:
            run += ["--image", a.image]
        r = json.loads(subprocess.run(run, check=True, capture_output=True, text=True).stdout)
        ours = np.load(npy)
        cfg = json.load(open(os.path.join(hf, "config.json")))
        print("quantization_config:", cfg["quantization_config"])
        if cfg.get("model_type") == "idefics2":
            m = AutoModelForImageTextToText.from_pretrained(hf, device_map="cpu").eval()
            from PIL import Image
            proc = AutoProcessor.from_pretrained(hf)
            enc = proc(text=a.prompt, images=[[Image.open(a.image)]], return_tensors="pt")
            assert enc["input_ids"][0].tolist() == r["input_ids"], "tokenization differs"
            inputs = dict(enc)
        else:
            m = AutoModelForCausalLM.from_pretrained(hf, device_map="cpu").eval()
            inputs = {"input_ids": torch.tensor([r["input_ids"]])}
        n4 = sum(isinstance(mod, bitsandbytes.nn.Linear4bit) for mod in m.modules())
        if a.generic_dequant:
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
            from make_bnb_export_goldens import plain_cpu_path
            plain_cpu_path(m)
        with torch.inference_mode():
            theirs = m(**inputs).logits[0].float().numpy()
            gen = m.generate(**inputs, max_new_tokens=8, do_sample=False)[0, inputs["input_ids"].shape[1]:].tolist()
        d = float(np.abs(theirs - ours).max()); s = float(theirs.std())
        same = float((theirs.argmax(-1) == ours.argmax(-1)).mean())
        print(f"{n4} Linear4bit modules; logits {theirs.shape}: max|d| {d:.3g}, std {s:.3g}, max|d|/std {d/s:.3g}, argmax agreement {same:.3f}")
        print(f"greedy: transformers {gen} i2q {r['generated_ids']}")
        sys.exit(0 if d <= 1e-4 * s else 1)


if __name__ == "__main__":
    main()
