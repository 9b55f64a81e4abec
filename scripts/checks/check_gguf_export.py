#!/usr/bin/env python3
"""Check an `i2q export --to gguf` file with the reference readers (run by hand; not in CI).

    # (a) the `gguf` Python package (gguf-py 0.19.0, in /work/venv) reads it: metadata and tensors
    /work/venv/bin/python scripts/checks/check_gguf_export.py meta FILE.gguf

    # (b) llama-cpp-python 0.3.36 (builds llama.cpp; in /work/venv-llama) loads it and decodes greedily
    /work/venv-llama/bin/python scripts/checks/check_gguf_export.py run FILE.gguf --prompt "..." [--max-new-tokens 16]
          [--input-ids '[1, 2, 3]']     # also generate from exactly these prompt ids (e.g. i2q's)

    # (a) + (b) + `i2q run MODEL --json` on the source model, compared token by token
    python3 scripts/checks/check_gguf_export.py compare MODEL FILE.gguf --prompt "..." [--max-new-tokens 16]
          [--i2q .build/release/i2q] [--py /work/venv/bin/python] [--llama-py /work/venv-llama/bin/python]

    # every --type: export MODEL, load it in llama.cpp, and compare its greedy tokens with i2q's own
    # runtime on the same GGUF (i2q reads .gguf models, dequantizing the blocks), on a prompt set
    python3 scripts/checks/check_gguf_export.py sweep MODEL --types q4_0,q4_k_m,… [--prompts FILE.json] [--out DIR]

`compare` prints the prompt ids of both tokenizers, both greedy continuations (llama.cpp's from its own
tokenization and from i2q's prompt ids) and SAME / DIFFERENT. The prompt is used raw (apply the chat
template yourself, e.g. "<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n"); special tokens in it
are parsed as special tokens on both sides; BOS is added as the GGUF's tokenizer.ggml.add_bos_token says.
"""

import argparse
import json
import subprocess
import sys


def cmd_meta(a):
    from importlib.metadata import version
    import gguf
    assert version("gguf") == "0.19.0", version("gguf")
    r = gguf.GGUFReader(a.file)
    out = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        if f.types[0] == gguf.GGUFValueType.ARRAY:
            n = len(f.data)
            head = [f.contents(i) for i in range(min(3, n))]
            out[k] = {"type": f"ARRAY[{f.types[-1].name}]", "count": n, "first": head}
        else:
            v = f.contents()
            out[k] = {"type": f.types[0].name, "value": v if not isinstance(v, str) or len(v) < 120 else v[:117] + "..."}
    types = {}
    for t in r.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    out["_tensors"] = {"count": len(r.tensors), "types": types,
                       "first": [[t.name, t.tensor_type.name, [int(x) for x in t.shape]] for t in r.tensors[:3]]}
    print(json.dumps(out, indent=1, ensure_ascii=False, default=str))


def greedy(llm, ids, n):
    out = []
    for tok in llm.generate(ids, temp=0.0, top_k=1, reset=True):
        if llm.token_eos() == tok or tok in getattr(llm, "_stop_ids", ()):
            break
        out.append(int(tok))
        if len(out) >= n:
            break
    return out


def cmd_run(a):
    from importlib.metadata import version
    import llama_cpp
    assert version("llama_cpp_python") == "0.3.36", version("llama_cpp_python")
    llm = llama_cpp.Llama(model_path=a.file, n_ctx=512, n_threads=2, verbose=False, seed=0)
    add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token", "true") == "true"
    ids = llm.tokenize(a.prompt.encode("utf-8"), add_bos=add_bos, special=True)
    res = {"input_ids": ids}
    gen = greedy(llm, ids, a.max_new_tokens)
    res["generated_ids"] = gen
    res["text"] = llm.detokenize(gen).decode("utf-8", errors="replace")
    if a.input_ids:
        given = json.loads(a.input_ids)
        g2 = greedy(llm, given, a.max_new_tokens)
        res["generated_ids_from_given"] = g2
        res["text_from_given"] = llm.detokenize(g2).decode("utf-8", errors="replace")
    print(json.dumps(res, ensure_ascii=False))


def compare_tokens(a, model, file, prompt):
    """i2q's greedy ids on MODEL and llama.cpp's on FILE from i2q's prompt ids: (agree, n, i2q ids, llama ids)."""
    i2q = subprocess.run([a.i2q, "run", model, "--prompt", prompt, "--max-new-tokens", str(a.max_new_tokens), "--json"],
                         capture_output=True, text=True)
    if i2q.returncode != 0:
        raise RuntimeError("i2q run failed: " + i2q.stderr[-2000:])
    mine = json.loads(i2q.stdout)
    llama = subprocess.run([a.llama_py, __file__, "run", file, "--prompt", prompt, "--max-new-tokens", str(a.max_new_tokens),
                            "--input-ids", json.dumps(mine["input_ids"])], capture_output=True, text=True)
    if llama.returncode != 0:
        raise RuntimeError("llama.cpp could not load or run the file: " + llama.stderr[-2000:])
    lc = json.loads(llama.stdout)
    g, h = mine["generated_ids"], lc["generated_ids_from_given"]
    n = min(len(g), len(h))
    agree = next((i for i in range(n) if g[i] != h[i]), n)
    return agree, n, g, h


def cmd_sweep(a):
    import os
    os.makedirs(a.out, exist_ok=True)
    prompts = json.load(open(a.prompts)) if a.prompts else [
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
        "The quick brown fox",
        "def fibonacci(n):",
    ]
    rows = []
    for t in a.types.split(","):
        f = os.path.join(a.out, f"{t}.gguf")
        e = subprocess.run([a.i2q, "export", a.model, "--to", "gguf", "--type", t, "-o", f, "--no-progress", "--overwrite"],
                           capture_output=True, text=True)
        if e.returncode != 0:
            rows.append((t, 0, "EXPORT FAILED: " + e.stderr.strip()[-300:])); continue
        res = []
        try:
            for p in prompts:
                agree, n, _, _ = compare_tokens(a, f, f, p)
                res.append(f"{agree}/{n}")
            same = all(r.split("/")[0] == r.split("/")[1] for r in res)
            rows.append((t, os.path.getsize(f), ("SAME " if same else "DIFFERENT ") + " ".join(res)))
        except RuntimeError as err:
            rows.append((t, os.path.getsize(f), "LOAD/RUN FAILED: " + str(err)[-300:]))
        print(f"{rows[-1][0]:8s} {rows[-1][1] / 1e6:8.1f} MB  {rows[-1][2]}", flush=True)
    print(json.dumps({"model": a.model, "max_new_tokens": a.max_new_tokens, "prompts": len(prompts),
                      "results": [{"type": t, "bytes": b, "greedy": r} for t, b, r in rows]}, indent=1))


def cmd_compare(a):
    meta = subprocess.run([a.py, __file__, "meta", a.file], capture_output=True, text=True)
    if meta.returncode != 0:
        print(meta.stderr); sys.exit("gguf-py could not read the file")
    m = json.loads(meta.stdout)
    keys = [k for k in m if not k.startswith("_")]
    print(f"gguf-py: {len(keys)} keys, {m['_tensors']['count']} tensors {m['_tensors']['types']}")
    for k in ("general.architecture", "general.file_type", "llama.block_count", "llama.embedding_length",
              "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.freq_base",
              "llama.attention.layer_norm_rms_epsilon", "llama.vocab_size", "tokenizer.ggml.model", "tokenizer.ggml.pre",
              "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.add_bos_token"):
        print(f"  {k} = {m.get(k, {}).get('value', m.get(k))}")
    i2q = subprocess.run([a.i2q, "run", a.model, "--prompt", a.prompt, "--max-new-tokens", str(a.max_new_tokens), "--json"],
                         capture_output=True, text=True)
    if i2q.returncode != 0:
        print(i2q.stderr); sys.exit("i2q run failed")
    mine = json.loads(i2q.stdout)
    llama = subprocess.run([a.llama_py, __file__, "run", a.file, "--prompt", a.prompt, "--max-new-tokens", str(a.max_new_tokens),
                            "--input-ids", json.dumps(mine["input_ids"])], capture_output=True, text=True)
    if llama.returncode != 0:
        print(llama.stderr[-3000:]); sys.exit("llama.cpp could not load or run the file")
    lc = json.loads(llama.stdout)
    print(f"prompt ids  i2q      : {mine['input_ids']}")
    print(f"prompt ids  llama.cpp: {lc['input_ids']}  ({'same' if lc['input_ids'] == mine['input_ids'] else 'DIFFERENT tokenization'})")
    print(f"greedy i2q              : {mine['generated_ids']} {mine['text']!r}")
    print(f"greedy llama.cpp        : {lc['generated_ids']} {lc['text']!r}")
    print(f"greedy llama.cpp (i2q ids): {lc['generated_ids_from_given']} {lc['text_from_given']!r}")
    n = min(len(mine["generated_ids"]), len(lc["generated_ids_from_given"]))
    same = mine["generated_ids"][:n] == lc["generated_ids_from_given"][:n] and n > 0
    agree = next((i for i in range(n) if mine["generated_ids"][i] != lc["generated_ids_from_given"][i]), n)
    print(f"RESULT: {'SAME' if same else 'DIFFERENT'} greedy tokens from the same prompt ids (first {agree} of {n} agree)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("meta"); p.add_argument("file")
    p = sub.add_parser("run"); p.add_argument("file"); p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=16); p.add_argument("--input-ids")
    p = sub.add_parser("compare"); p.add_argument("model"); p.add_argument("file"); p.add_argument("--prompt", required=True)
    p.add_argument("--max-new-tokens", type=int, default=16); p.add_argument("--i2q", default=".build/release/i2q")
    p.add_argument("--py", default="/work/venv/bin/python"); p.add_argument("--llama-py", default="/work/venv-llama/bin/python")
    p = sub.add_parser("sweep"); p.add_argument("model"); p.add_argument("--types", default="q8_0,q4_0,q4_1,q5_0,q5_1,q4_k_s,q4_k_m,q5_k_s,q5_k_m,q6_k")
    p.add_argument("--prompts"); p.add_argument("--out", default="out/gguf-sweep"); p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--i2q", default=".build/release/i2q"); p.add_argument("--llama-py", default="/work/venv-llama/bin/python")
    a = ap.parse_args()
    {"meta": cmd_meta, "run": cmd_run, "compare": cmd_compare, "sweep": cmd_sweep}[a.cmd](a)


if __name__ == "__main__":
    main()
