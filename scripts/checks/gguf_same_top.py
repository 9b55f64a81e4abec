"""Teacher-forced same-top between i2q and llama.cpp on the same GGUF files (issue 21's check that
llama-cpp-python loads every exported type and agrees with i2q).

    /work/venv-llama/bin/python scripts/checks/gguf_same_top.py TYPES [--dir DIR]

TYPES: comma-separated names of DIR/NAME.gguf (e.g. made by `check_gguf_export.py sweep ... --out DIR`,
plus f32/f16 exports as controls). For three prompts (a licence excerpt, a chat turn, code), i2q's prompt
ids are fed to both runtimes (llama.cpp: F32 KV cache, no flash attention) and the argmax of every
position's logits is compared. Prints the share per type.
"""
import argparse, json, subprocess, numpy as np, llama_cpp

ap = argparse.ArgumentParser()
ap.add_argument("types"); ap.add_argument("--dir", default="/tmp/sweep"); ap.add_argument("--i2q", default=".build/release/i2q")
a = ap.parse_args()
text = open("/usr/share/common-licenses/LGPL-2.1").read()[:1400]
prompts = [text, "<|im_start|>user\nWhat is the capital of France? Explain the history of the city in detail.<|im_end|>\n<|im_start|>assistant\nThe capital of France is Paris. Paris has a long history that",
           "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n\ndef main():\n    for i in range(10):\n        print("]
for t in a.types.split(","):
    f = f"{a.dir}/{t}.gguf"
    llm = llama_cpp.Llama(model_path=f, n_ctx=512, n_threads=2, verbose=False, logits_all=True, flash_attn=False, type_k=0, type_v=0)
    agree = total = 0
    for p in prompts:
        r = subprocess.run([a.i2q, "run", f, "--prompt", p, "--max-new-tokens", "1", "--json", "--logits-out", f"{a.dir}/.logits.npy"],
                           capture_output=True, text=True, check=True)
        ids = json.loads(r.stdout)["input_ids"]
        mine = np.load(f"{a.dir}/.logits.npy")
        llm.reset(); llm.eval(ids)
        theirs = np.array(llm.scores[:len(ids)])
        agree += int((mine.argmax(1) == theirs.argmax(1)).sum()); total += len(ids)
    print(f"{t:8s} same top {agree}/{total} = {100 * agree / total:.2f} %", flush=True)
