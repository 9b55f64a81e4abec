#!/usr/bin/env python3
"""Do the hf-bnb, hf-awq and compressed-tensors exports of the trained easy-VQA Idefics2 answer as well in transformers as
the .i2q they were exported from answers in i2q? (run by hand, NOT in CI; CPU only)

    PY=/work/venv/bin/python          # torch 2.15.0, transformers 5.24.0, bitsandbytes 0.50.2, accelerate 1.16.0
    PYAWQ=/work/venv-awq/bin/python   # the same + gptqmodel 7.7.0 (see scripts/checks/check_awq_export.py)
    $PY    scripts/checks/check_easy_vqa_exports.py bnb [--data .cache/easy-vqa] [--i2q .build/release/i2q] [--samples N]
    $PYAWQ scripts/checks/check_easy_vqa_exports.py awq [...]
    PYCT=/work/venv-llmc/bin/python   # torch 2.14.0, torchvision 0.29.0, transformers 5.17.0, compressed-tensors 0.19.0
    $PYCT  scripts/checks/check_easy_vqa_exports.py gptq-ct [...]   (issue 23)

Steps: `i2q quantize MODEL --nf4` (bnb), `--awq --group-size 64` (awq) or `--gptq --group-size 64`
(gptq-ct) calibrated on the train split's images + questions → `i2q export --to
hf-bnb|hf-awq|compressed-tensors` → `i2q verify MODEL.i2q --reference MODEL
--docvqa TEST` (i2q's exact match of the .i2q); then transformers `from_pretrained(export)` (bitsandbytes'
CPU path, gptqmodel's CPU AWQ kernel, or compressed-tensors' decompression into nn.Linear) answers the same questions greedily with the export's own
processor, one batch per image, stopping at </s> or <end_of_utterance>. Prints both exact-match
accuracies and their difference; exits 1 when it is above --tolerance points (issue 16: 0.5).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import transformers
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from i2qscripts import REPO  # noqa: E402


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


@torch.no_grad()
def transformers_answers(model_dir, data, items, max_new_tokens=8):
    proc = AutoProcessor.from_pretrained(model_dir)
    proc.tokenizer.padding_side = "left"
    if proc.tokenizer.pad_token is None:
        proc.tokenizer.pad_token = "<unk>"
    model = AutoModelForImageTextToText.from_pretrained(model_dir)  # CPU
    model.eval()
    eos = [2, proc.tokenizer.convert_tokens_to_ids("<end_of_utterance>")]
    by_image = {}
    for it in items:
        by_image.setdefault(it["image"], []).append(it)
    out = {}
    for n, (img, its) in enumerate(sorted(by_image.items())):
        with Image.open(os.path.join(data, img)) as im:
            im.load()
            im = im.convert("RGB")
        texts = [f"User:<image>{it['question']}<end_of_utterance>\nAssistant:" for it in its]
        inputs = proc(text=texts, images=[[im]] * len(its), return_tensors="pt", padding=True)
        gen = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos)
        for r, it in enumerate(its):
            ids = [t for t in gen[r, inputs["input_ids"].shape[1]:].tolist()]
            cut = []
            for t in ids:
                if t in eos or t == 0:
                    break
                cut.append(t)
            out[it["questionId"]] = proc.tokenizer.decode(cut, skip_special_tokens=True).strip()
        if n % 100 == 0:
            print(f"  transformers: image {n}/{len(by_image)}", flush=True)
    return out


def norm(s):
    return " ".join(s.strip().lower().split())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["bnb", "awq", "gptq-ct"])
    ap.add_argument("--model", default=os.path.join(REPO, "Tests/Fixtures/easy-vqa-idefics2"))
    ap.add_argument("--data", default=os.path.join(REPO, ".cache/easy-vqa"))
    ap.add_argument("--i2q", default=os.path.join(REPO, ".build/release/i2q"))
    ap.add_argument("--samples", type=int, default=0, help="0: the whole test split")
    ap.add_argument("--transformers-samples", type=int, default=0,
                    help="compare on this many seeded questions of the i2q report only (0: all; gptqmodel's CPU kernel is slow)")
    ap.add_argument("--tolerance", type=float, default=0.5, help="points of exact match")
    ap.add_argument("--work", default=None)
    ap.add_argument("--reuse", action="store_true", help="keep the .i2q, export and i2q verify report already in --work")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="easy-vqa-exports-")
    os.makedirs(work, exist_ok=True)
    q = os.path.join(work, f"{args.kind}.i2q")
    hf = os.path.join(work, f"{args.kind}-hf")
    report = os.path.join(work, f"{args.kind}-verify.json")
    test = os.path.join(args.data, "test")
    if not (args.reuse and os.path.exists(report)):
        if args.kind == "bnb":
            run([args.i2q, "quantize", args.model, "--nf4", "-o", q, "--overwrite", "--no-progress"])
            run([args.i2q, "export", q, "--to", "hf-bnb", "-o", hf, "--overwrite"])
        else:
            method, to = ("--awq", "hf-awq") if args.kind == "awq" else ("--gptq", "compressed-tensors")
            run([args.i2q, "quantize", args.model, method, "--group-size", "64", "--calibration",
                 os.path.join(args.data, "train"), "--samples", "512", "-o", q, "--overwrite", "--no-progress"])
            run([args.i2q, "export", q, "--to", to, "-o", hf, "--overwrite"])
        sel = ["--samples", str(args.samples)] if args.samples > 0 else []
        with open(report + ".part", "w") as f:
            subprocess.run([args.i2q, "verify", q, "--reference", args.model, "--docvqa", test, *sel,
                            "--max-new-tokens", "8", "--no-progress", "--json"], check=True, stdout=f)
        os.rename(report + ".part", report)
    d = json.load(open(report))["docvqa"]
    items = [{"questionId": it["questionId"], "question": it["question"], "answers": it["answers"],
              "image": os.path.relpath(it["image"], test), "i2q": it["candidate"]} for it in d["items"]]
    if args.transformers_samples:
        items = sorted(np.random.default_rng(0).choice(len(items), args.transformers_samples, replace=False).tolist())
        items = [it for k, it in enumerate(d["items"]) if k in set(items)]
        items = [{"questionId": it["questionId"], "question": it["question"], "answers": it["answers"],
                  "image": os.path.relpath(it["image"], test), "i2q": it["candidate"]} for it in items]
    ans = transformers_answers(hf, test, items)
    acc_t = np.mean([norm(ans[it["questionId"]]) in [norm(a) for a in it["answers"]] for it in items])
    acc_i = np.mean([norm(it["i2q"]) in [norm(a) for a in it["answers"]] for it in items])
    same = np.mean([norm(ans[it["questionId"]]) == norm(it["i2q"]) for it in items])
    print(f"{args.kind}: {len(items)} questions; exact match transformers {100 * acc_t:.2f} %, i2q {100 * acc_i:.2f} % "
          f"(f32 in i2q {100 * d['exact_match_base']:.2f} %); same answer {100 * same:.2f} %; "
          f"torch {torch.__version__}, transformers {transformers.__version__}")
    diff = abs(acc_t - acc_i) * 100
    if diff > args.tolerance:
        print(f"FAIL: {diff:.2f} points apart (tolerance {args.tolerance})")
        sys.exit(1)
    print(f"OK: {diff:.2f} points apart (tolerance {args.tolerance})")


if __name__ == "__main__":
    main()
