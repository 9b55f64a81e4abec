#!/usr/bin/env python3
"""Expected values for `i2q verify`'s statistics, written to Tests/Fixtures/verify.

Run by hand (NOT in CI), from the repository root, with the pinned venv:

    /work/venv/bin/python scripts/make_verify_goldens.py [--out Tests/Fixtures/verify]

numpy 2.4.6 and safetensors 0.8.0 only; seeded, a rerun writes byte-identical files.

logits.safetensors — cases of float32 logits of two "models" over the same positions:
    <case>.base, <case>.candidate   [n, vocab] float32
    <case>.targets                  [n] int64, the next token at each position
    <case>.nll_base, <case>.nll_candidate, <case>.kld, <case>.delta_p   [n] float64 per position
    <case>.same_top                 [n] uint8
  computed straightforwardly in float64 (scipy-free log-softmax):
    logp = x - logsumexp(x);  nll = -logp[target];  kld = sum(p_base * (logp_base - logp_cand));
    delta_p = p_cand[target] - p_base[target];  same_top = argmax(base) == argmax(cand)
stats.json — per case, the summary llama-perplexity --kl-divergence prints (tools/perplexity/perplexity.cpp):
    ppl = exp(mean nll) ± ppl·sem(nll); mean ln ratio = mean(nll_c − nll_b) ± sem; ratio = exp(that) ± ratio·sem;
    correlation of the nll vectors (Pearson); KLD mean ± sem and percentiles; Δp mean ± sem, RMS ± sem(Δp²)/(2·RMS),
    percentiles; same-top share ± sqrt(p(1−p)/(n−1)). sem(x) = sqrt((E[x²] − E[x]²)/(n − 1)).
    Percentiles: numpy.percentile's default (linear interpolation between order statistics).
layers.json — (needs torch 2.15.0 + transformers 5.24.0) per-decoder-layer relative error of the tiny
    Idefics2's text model (Tests/Fixtures/tiny-idefics2-v5) with its weights rounded to bfloat16 (then
    computed in float32, as i2q's runtime does with a bf16 .i2q) against the float32 model, on the first
    64 tokens of /usr/share/common-licenses/BSD (the tokenizer adds BOS): each layer's output captured
    with a forward hook, rel_error = ||H_c - H_b||_F / ||H_b||_F, mean/max over positions of ||h_c - h_b||/||h_b||.
chatml_prompt.json — (transformers) SmolLM2's chat template (Tests/Fixtures/tokenizer/smollm2) applied by
    `apply_chat_template(add_generation_prompt=True)` to the two-shot DocVQA messages i2q builds for text models.
anls.json — tricky (prediction, answers) pairs with the score of the official DocVQA evaluation
    script's ANLS (Robust Reading Competition, Task "Document VQA", evaluate.py), transcribed below.
"""

import argparse
import json
import os
import sys

import numpy as np

NUMPY_VERSION = "2.4.6"
SAFETENSORS_VERSION = "0.8.0"

import safetensors  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

for name, have, want in [("numpy", np.__version__, NUMPY_VERSION), ("safetensors", safetensors.__version__, SAFETENSORS_VERSION)]:
    if have != want:
        sys.exit(f"expected {name} {want}, found {have}: /work/venv/bin/pip install {name}=={want}")


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - (np.log(np.exp(x - m).sum(axis=-1, keepdims=True)) + m)


def per_token(base, cand, targets):
    lb, lc = log_softmax(base), log_softmax(cand)
    idx = np.arange(len(targets))
    nll_b, nll_c = -lb[idx, targets], -lc[idx, targets]
    kld = (np.exp(lb) * (lb - lc)).sum(axis=-1)
    dp = np.exp(-nll_c) - np.exp(-nll_b)
    same = (base.argmax(axis=-1) == cand.argmax(axis=-1)).astype(np.uint8)
    return nll_b, nll_c, kld, dp, same


def sem(x):
    n = len(x)
    return float(np.sqrt(max(np.mean(x * x) - np.mean(x) ** 2, 0.0) / (n - 1)))


KLD_Q = [("max", 100), ("p99_9", 99.9), ("p99", 99), ("p90", 90), ("median", 50), ("p10", 10), ("p5", 5), ("p1", 1), ("min", 0)]
DP_Q = [("max", 100), ("p99_9", 99.9), ("p99", 99), ("p95", 95), ("p90", 90), ("p75", 75), ("median", 50), ("p25", 25),
        ("p10", 10), ("p5", 5), ("p1", 1), ("p0_1", 0.1), ("min", 0)]


def summary(nll_b, nll_c, kld, dp, same):
    n = len(kld)
    d = nll_c - nll_b
    ratio = float(np.exp(d.mean()))
    ms = float(np.mean(dp * dp))
    rms = float(np.sqrt(ms))
    p = float(same.mean())
    return {
        "count": n,
        "ppl_base": float(np.exp(nll_b.mean())), "ppl_base_err": float(np.exp(nll_b.mean())) * sem(nll_b),
        "ppl_candidate": float(np.exp(nll_c.mean())), "ppl_candidate_err": float(np.exp(nll_c.mean())) * sem(nll_c),
        "mean_ln_ratio": float(d.mean()), "mean_ln_ratio_err": sem(d),
        "ppl_ratio": ratio, "ppl_ratio_err": ratio * sem(d),
        "nll_correlation": float(np.corrcoef(nll_b, nll_c)[0, 1]),
        "kld": dict([("mean", float(kld.mean())), ("mean_err", sem(kld))] +
                    [(k, float(np.percentile(kld, q))) for k, q in KLD_Q]),
        "delta_p": dict([("mean", float(dp.mean())), ("mean_err", sem(dp)), ("rms", rms),
                         ("rms_err", sem(dp * dp) / (2 * rms))] + [(k, float(np.percentile(dp, q))) for k, q in DP_Q]),
        "same_top": {"share": p, "err": float(np.sqrt(p * (1 - p) / (n - 1)))},
    }


# --- ANLS: the official DocVQA evaluation (RRC evaluate.py), transcribed ---------------------------

def levenshtein_distance(s1, s2):
    if len(s1) > len(s2):
        s1, s2 = s2, s1
    distances = range(len(s1) + 1)
    for i2, c2 in enumerate(s2):
        distances_ = [i2 + 1]
        for i1, c1 in enumerate(s1):
            if c1 == c2:
                distances_.append(distances[i1])
            else:
                distances_.append(1 + min((distances[i1], distances[i1 + 1], distances_[-1])))
        distances = distances_
    return distances[-1]


def anls_question(answers, prediction, threshold=0.5):
    values = []
    for gt_answer in answers:
        gt = " ".join(gt_answer.strip().lower().split())
        det = " ".join(prediction.strip().lower().split())
        dist = levenshtein_distance(gt, det)
        length = max(len(gt.upper()), len(prediction.upper()))
        values.append(0.0 if length == 0 else float(dist) / float(length))
    result = 1 - min(values)
    if result < threshold:
        result = 0
    return result


ANLS_PAIRS = [
    ("Total: $884.49", ["$884.49", "884.49"]),
    ("$884.49", ["$884.49", "884.49"]),
    ("884.49", ["$884.49", "884.49"]),
    ("ELENA LINDQVIST", ["Elena Lindqvist"]),
    ("  elena   lindqvist \n", ["Elena Lindqvist"]),
    ("Elena\tLindqvist", ["elena lindqvist"]),
    ("six", ["6", "six"]),
    ("seven", ["6", "six"]),
    ("abcd", ["abce"]),            # 1 - 1/4 = 0.75
    ("ab", ["cd"]),                # 0 -> thresholded
    ("abcd", ["abxy"]),            # exactly 0.5: kept (threshold is "< 0.5")
    ("abcde", ["abxyz"]),          # 0.4 -> 0
    ("abcdefgh", ["abcdxyzw"]),    # 0.5 again, longer
    ("abcdefg", ["abcxyzw"]),      # 3/7 -> 0
    ("", ["something"]),
    ("", [""]),
    ("answer", [""]),
    ("INV-7042", ["INV-7042", "7042"]),
    ("inv 7042", ["INV-7042", "7042"]),
    ("7042.", ["INV-7042", "7042"]),
    ("a  b", ["ab"]),              # raw prediction length 4 (official script), normalised "a b"
    ("Straße", ["STRASSE"]),       # upper() changes length: raw len('Straße'.upper()) = 7
    ("café", ["Cafe"]),
    ("Ärger", ["ärger"]),
    ("\u00a0net 14 days\u2003", ["net 14 days"]),  # NBSP / em space are whitespace for str.split
    ("2023-01-03", ["2023-01-03", "January 3, 2023"]),
    ("January 3 2023", ["2023-01-03", "January 3, 2023"]),
    ("yes", ["Yes", "yes"]),
    ("no", ["Yes"]),
    ("The answer is 42", ["42"]),
]


def layer_errors(out_dir):
    import torch
    import transformers
    if torch.__version__.split("+")[0] != "2.15.0" or transformers.__version__ != "5.24.0":
        sys.exit(f"layers.json needs torch 2.15.0 and transformers 5.24.0, found {torch.__version__} / {transformers.__version__}")
    from transformers import AutoTokenizer, Idefics2ForConditionalGeneration
    torch.manual_seed(0)
    torch.set_num_threads(1)
    path = "Tests/Fixtures/tiny-idefics2-v5"
    tok = AutoTokenizer.from_pretrained(path)
    ids = tok(open("/usr/share/common-licenses/BSD").read())["input_ids"][:64]

    def hidden(model):
        text = model.model.text_model
        outs = []
        hooks = [layer.register_forward_hook(lambda m, i, o: outs.append((o[0] if isinstance(o, tuple) else o).detach().double()[0]))
                 for layer in text.layers]
        with torch.no_grad():
            text(input_ids=torch.tensor([ids]))
        for h in hooks:
            h.remove()
        return outs

    base = Idefics2ForConditionalGeneration.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    hb = hidden(base)
    cand = Idefics2ForConditionalGeneration.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        for p in cand.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))
    hc = hidden(cand)
    layers = []
    for i, (b, c) in enumerate(zip(hb, hc)):
        d = (c - b).norm(dim=-1)
        n = b.norm(dim=-1)
        layers.append({"layer": i, "rel_error": float((c - b).norm() / b.norm()),
                       "mean_token_rel_error": float((d / n).mean()), "max_token_rel_error": float((d / n).max())})
    with open(os.path.join(out_dir, "layers.json"), "w") as f:
        json.dump({"model": path, "text": "/usr/share/common-licenses/BSD", "input_ids": ids, "candidate": "weights rounded to bfloat16",
                   "torch": torch.__version__, "transformers": transformers.__version__, "layers": layers}, f, indent=1)
        f.write("\n")
    print(layers)


def vision_layer_errors(out_dir):
    """vision_layers.json — per vision-encoder-layer relative error of the tiny Idefics2 with bf16-rounded
    weights against float32, on one page of the shipped DocVQA set processed by Idefics2ImageProcessorPil
    (named explicitly: the PIL path i2q reproduces), real patches only (transformers' patch_attention_mask).
    Forward hooks on vision_model.encoder.layers during get_image_features."""
    import torch
    from PIL import Image
    from transformers import Idefics2ForConditionalGeneration
    from transformers import Idefics2ImageProcessorPil
    torch.set_num_threads(1)
    path = "Tests/Fixtures/tiny-idefics2-v5"
    image = "Tests/Fixtures/docvqa-mini/documents/invoice_00.png"
    proc = Idefics2ImageProcessorPil.from_pretrained(path)
    enc = proc(images=[[Image.open(image)]], return_tensors="pt")

    def hidden(model):
        outs, masks = [], []
        vm = model.model.vision_model
        hooks = [layer.register_forward_hook(lambda m, i, o: outs.append((o[0] if isinstance(o, tuple) else o).detach().double()))
                 for layer in vm.encoder.layers]
        hooks.append(vm.register_forward_hook(lambda m, a, kw, o: masks.append(kw["patch_attention_mask"].reshape(kw["patch_attention_mask"].shape[0], -1)),
                                              with_kwargs=True))
        with torch.no_grad():
            model.model.get_image_features(pixel_values=enc["pixel_values"], pixel_attention_mask=enc["pixel_attention_mask"])
        for h in hooks:
            h.remove()
        real = masks[0]
        return [o[real] for o in outs], int(real.sum())

    base = Idefics2ForConditionalGeneration.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    hb, patches = hidden(base)
    cand = Idefics2ForConditionalGeneration.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        for p in cand.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))
    hc, _ = hidden(cand)
    layers = []
    for i, (b, c) in enumerate(zip(hb, hc)):
        d = (c - b).norm(dim=-1)
        n = b.norm(dim=-1)
        layers.append({"layer": i, "rel_error": float((c - b).norm() / b.norm()),
                       "mean_token_rel_error": float((d / n).mean()), "max_token_rel_error": float((d / n).max())})
    with open(os.path.join(out_dir, "vision_layers.json"), "w") as f:
        json.dump({"model": path, "image": image, "images": int(enc["pixel_values"].shape[1]), "patches": patches,
                   "candidate": "weights rounded to bfloat16", "layers": layers}, f, indent=1)
        f.write("\n")
    print(layers)


def chatml_prompt(out_dir):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained("Tests/Fixtures/tokenizer/smollm2")
    ex = "ACME Tools\nOrder number: 5521\nDate: March 3, 2021\nTotal: $41.20"
    ins = "Answer with words from the document only."

    def user(d, q):
        return {"role": "user", "content": f"Document:\n{d}\n\nQuestion: {q}\n{ins}"}

    doc, q = "Invoice number: INV-7042\nTotal due: $884.49", "What is the total amount due?"
    msgs = [user(ex, "What is the order number?"), {"role": "assistant", "content": "5521"},
            user(ex, "What is the total?"), {"role": "assistant", "content": "$41.20"}, user(doc, q)]
    prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    with open(os.path.join(out_dir, "chatml_prompt.json"), "w") as f:
        json.dump({"tokenizer": "Tests/Fixtures/tokenizer/smollm2", "document_text": doc, "question": q, "prompt": prompt}, f, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="Tests/Fixtures/verify")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(20240611)
    tensors, stats = {}, {}

    def add(name, base, cand, targets):
        base = base.astype(np.float32)
        cand = cand.astype(np.float32)
        targets = targets.astype(np.int64)
        nll_b, nll_c, kld, dp, same = per_token(base, cand, targets)
        for k, v in [("base", base), ("candidate", cand), ("targets", targets), ("nll_base", nll_b),
                     ("nll_candidate", nll_c), ("kld", kld), ("delta_p", dp), ("same_top", same)]:
            tensors[f"{name}.{k}"] = np.ascontiguousarray(v)
        stats[name] = summary(nll_b, nll_c, kld, dp, same)

    # 1. A "model" and a lightly perturbed copy (like a quantized model): vocab 400, 160 positions.
    n, v = 160, 400
    base = rng.normal(0, 3, (n, v))
    cand = base + rng.normal(0, 0.3, (n, v))
    add("perturbed", base, cand, rng.integers(0, v, n))
    # 2. Peaked distributions (a trained model is confident), big logits, a few large disagreements.
    n, v = 129, 256
    base = rng.normal(0, 1, (n, v))
    top = rng.integers(0, v, n)
    base[np.arange(n), top] += 25
    cand = base + rng.normal(0, 0.05, (n, v))
    flip = rng.choice(n, 20, replace=False)
    cand[flip, rng.integers(0, v, 20)] += 40
    targets = np.where(rng.random(n) < 0.8, top, rng.integers(0, v, n))
    add("peaked", base * 3.0, cand * 3.0, targets)
    # 3. Identical rows in part (KLD exactly 0, Δp 0), ties for the argmax (first index wins), large offsets.
    n, v = 64, 100
    base = np.round(rng.normal(0, 2, (n, v)), 1)
    base[:, 7] = base.max(axis=1) + 1
    base[:, 3] = base[:, 7]          # tie between 3 and 7: argmax is 3
    cand = base.copy()
    cand[32:] += rng.normal(0, 0.5, (32, v))
    cand[40:48] += 1000.0            # a constant shift changes nothing in the softmax
    add("ties", base, cand, rng.integers(0, v, n))

    save_file(tensors, os.path.join(args.out, "logits.safetensors"), metadata={"generator": "scripts/make_verify_goldens.py"})
    with open(os.path.join(args.out, "stats.json"), "w") as f:
        json.dump({"numpy": np.__version__, "cases": stats}, f, indent=1)
        f.write("\n")
    anls = [{"prediction": p, "answers": a, "anls": anls_question(a, p)} for p, a in ANLS_PAIRS]
    with open(os.path.join(args.out, "anls.json"), "w") as f:
        json.dump({"threshold": 0.5, "pairs": anls, "mean": float(np.mean([x["anls"] for x in anls]))}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    layer_errors(args.out)
    vision_layer_errors(args.out)
    chatml_prompt(args.out)
    for x in anls:
        print(f"{x['anls']:.4f}  {x['prediction']!r} vs {x['answers']}")
    print({k: (s["kld"]["mean"], s["same_top"]["share"], s["ppl_ratio"]) for k, s in stats.items()})


if __name__ == "__main__":
    main()
