"""Teacher-forced same-top between i2q and llama.cpp on the same ggml bytes (issue 21's check that
llama-cpp-python loads every exported type and agrees with i2q), next to llama.cpp's agreement with itself.

    /work/venv-llama/bin/python scripts/checks/gguf_same_top.py TYPES [--dir DIR] [--i2q .build/release/i2q]

TYPES: comma-separated names of DIR/NAME.gguf (e.g. made by `check_gguf_export.py sweep ... --out DIR`,
plus f32/f16 exports as controls). i2q runs DIR/NAME.i2q when there is one (`i2q quantize MODEL --type NAME
-o DIR/NAME.i2q`: the same blocks as the GGUF, run by i2q's ggml kernels), else the .gguf itself (read as
transformers reads it: dequantized). For three prompts (a licence excerpt, a chat turn, code), i2q's
prompt ids are fed to llama.cpp (F32 KV cache, no flash attention, whole-prompt batch) and the argmax of
every position's logits is compared with:
  - i2q, default (ggml weights: activations rounded as llama.cpp rounds them, Q8_K/Q8_0/Q8_1);
  - i2q with --ggml-f32-activations (float32 activations, transformers on the dequantized weights);
  - llama.cpp itself, the same ids evaluated one token at a time (its decode kernels instead of its
    batched ones): how far llama.cpp agrees with itself on these bytes.
Prints the three shares per type.
"""
import argparse, json, os, subprocess, numpy as np, llama_cpp

ap = argparse.ArgumentParser()
ap.add_argument("types"); ap.add_argument("--dir", default="/tmp/sweep"); ap.add_argument("--i2q", default=".build/release/i2q")
a = ap.parse_args()
text = open("/usr/share/common-licenses/LGPL-2.1").read()[:1400]
prompts = [text, "<|im_start|>user\nWhat is the capital of France? Explain the history of the city in detail.<|im_end|>\n<|im_start|>assistant\nThe capital of France is Paris. Paris has a long history that",
           "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n\ndef main():\n    for i in range(10):\n        print("]


def i2q(model, p, *extra):
    r = subprocess.run([a.i2q, "run", model, *extra, "--prompt", p, "--max-new-tokens", "1", "--json",
                        "--logits-out", f"{a.dir}/.logits.npy"], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)["input_ids"], np.load(f"{a.dir}/.logits.npy")


for t in a.types.split(","):
    f = f"{a.dir}/{t}.gguf"
    mine_model = f"{a.dir}/{t}.i2q" if os.path.exists(f"{a.dir}/{t}.i2q") else f
    llm = llama_cpp.Llama(model_path=f, n_ctx=512, n_threads=2, verbose=False, logits_all=True, flash_attn=False, type_k=0, type_v=0)
    agree = {"i2q": 0, "i2q --ggml-f32-activations": 0, "llama.cpp one token at a time": 0}
    total = 0
    for p in prompts:
        ids, mine = i2q(mine_model, p)
        _, mine_f32 = i2q(mine_model, p, "--ggml-f32-activations")
        llm.reset(); llm.eval(ids)
        theirs = np.array(llm.scores[:len(ids)]).argmax(1)
        llm.reset()
        for i in ids:
            llm.eval([i])
        theirs_dec = np.array(llm.scores[:len(ids)])
        for k, v in zip(agree, [mine, mine_f32, theirs_dec]):
            agree[k] += int((v.argmax(1) == theirs).sum())
        total += len(ids)
    print(f"{t:7s} ({os.path.basename(mine_model)}) same top as llama.cpp (batched), of {total}: "
          + "; ".join(f"{k} {100 * v / total:.2f} %" for k, v in agree.items()), flush=True)
