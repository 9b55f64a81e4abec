#!/usr/bin/env python3
"""Check an `i2q export --to compressed-tensors` or `--to hf-gptq` directory in the runtime it is for,
on CPU: transformers + the compressed-tensors package (compressed-tensors), transformers + gptqmodel
(hf-gptq, loaded by gptqmodel's own GPTQModel.load: transformers' GPTQ integration needs optimum).

Run by hand (NOT in CI), each in its venv:

    # compressed-tensors: the llm-compressor venv (python3 -m venv /work/venv-llmc --system-site-packages;
    #   /work/venv-llmc/bin/pip install llmcompressor==0.14.0.1 → compressed-tensors 0.19.0, transformers 5.17.0, torch 2.14.0)
    /work/venv-llmc/bin/python scripts/checks/check_int4_export.py compare DIR --i2q-model MODEL.i2q --text FILE
    # hf-gptq: /work/venv-awq (gptqmodel 7.7.0, transformers 5.24.0, torch 2.15.0; see check_awq_export.py)
    /work/venv-awq/bin/python scripts/checks/check_int4_export.py compare DIR --i2q-model MODEL.i2q --text FILE
        [--i2q .build/release/i2q] [--ctx 512] [--tolerance 0.005]

The layout is read from DIR/config.json (quantization_config.quant_method "compressed-tensors" or
"gptq"); the pins are those of the venv that runtime needs. Perplexity is the definition `i2q
perplexity` uses (Sources/I2QEval/Perplexity.swift): the text tokenized once (BOS as the tokenizer
adds it), consecutive windows of --ctx tokens, each scored on positions 1..ctx-1, PPL = exp(mean
NLL). `compare` also runs `i2q perplexity --json` on the .i2q the directory was exported from and
fails unless the two agree within --tolerance (relative; issue 23: 0.5%).
"""

import argparse
import json
import math
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from i2qscripts import pin  # noqa: E402

import importlib.metadata as md  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

PINS = {
    "compressed-tensors": {"torch": "2.14.0", "transformers": "5.17.0", "compressed-tensors": "0.19.0"},
    "gptq": {"torch": "2.15.0", "transformers": "5.24.0", "gptqmodel": "7.7.0"},
}


def check_pins(layout):
    want = PINS[layout]
    pin("torch", torch.__version__, want["torch"], prefix=True)
    pin("transformers", transformers.__version__, want["transformers"])
    for pkg in want:
        if pkg in ("torch", "transformers"):
            continue
        try:
            pin(pkg, md.version(pkg), want[pkg])
        except md.PackageNotFoundError:
            sys.exit(f"{pkg} is not installed; see the docstring (own venv)")


def perplexity(model_dir: str, text_path: str, ctx: int, layout: str) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    if layout == "gptq":
        # transformers' own GPTQ path needs optimum (not installed); gptqmodel's loader is the runtime.
        from gptqmodel import GPTQModel
        # gptqmodel's CPU kernels compute in 16 bits (its TorchLinear refuses float32; the float32
        # auto choice, TorchFusedLinear, gave garbage here), so expect ~0.2 % from i2q's float32.
        model = GPTQModel.load(model_dir, device="cpu").model
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, device_map="cpu", dtype=torch.float32)
    model.eval()
    kinds = sorted({type(m).__name__ for m in model.modules() if "Linear" in type(m).__name__})
    ids = tok(open(text_path, encoding="utf-8").read(), return_tensors="pt").input_ids[0]
    windows = len(ids) // ctx
    nll, n = 0.0, 0
    with torch.no_grad():
        for w in range(windows):
            x = ids[w * ctx:(w + 1) * ctx][None]
            logits = model(x).logits[0].double()
            logp = torch.log_softmax(logits[:-1], dim=-1)
            nll -= logp.gather(1, x[0, 1:, None]).sum().item()
            n += ctx - 1
    return {"ppl": math.exp(nll / n), "tokens": int(len(ids)), "windows": windows, "ctx": ctx, "modules": kinds}


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ppl")
    p.add_argument("dir")
    p.add_argument("--text", required=True)
    p.add_argument("--ctx", type=int, default=512)
    c = sub.add_parser("compare")
    c.add_argument("dir")
    c.add_argument("--i2q-model", required=True)
    c.add_argument("--text", required=True)
    c.add_argument("--i2q", default=".build/release/i2q")
    c.add_argument("--ctx", type=int, default=512)
    c.add_argument("--tolerance", type=float, default=0.005)
    a = ap.parse_args()
    layout = json.load(open(os.path.join(a.dir, "config.json")))["quantization_config"]["quant_method"]
    check_pins(layout)
    torch.set_num_threads(2)
    r = perplexity(a.dir, a.text, a.ctx, layout)
    if a.cmd == "ppl":
        print(json.dumps(r))
        return
    out = subprocess.run([a.i2q, "perplexity", a.i2q_model, "--text", a.text, "--ctx", str(a.ctx), "--json"],
                         check=True, capture_output=True, text=True).stdout
    mine = json.loads(out.strip().splitlines()[-1])
    rel = abs(mine["ppl"] - r["ppl"]) / r["ppl"]
    print(json.dumps({"layout": layout, "transformers": r, "i2q": mine, "relative_difference": rel}))
    if rel > a.tolerance:
        sys.exit(f"FAIL: i2q perplexity {mine['ppl']:.6f} vs transformers ({layout}) {r['ppl']:.6f} ({rel:.4%} > {a.tolerance:.2%})")
    print(f"OK: within {rel:.4%} (tolerance {a.tolerance:.2%})")


if __name__ == "__main__":
    main()
