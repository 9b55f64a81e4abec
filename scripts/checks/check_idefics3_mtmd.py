#!/usr/bin/env python3
"""i2q's GGUF + mmproj of an Idefics3 / SmolVLM model through llama.cpp's multimodal path (issue 24;
run by hand, not in CI): greedy tokens of llama-cpp-python 0.3.36 (libmtmd: mtmd_tokenize +
mtmd_helper_eval_chunk_single, as its MTMDChatHandler does) vs `i2q run MODEL --image IMG` on the
source checkpoint, same prompt and image.

    python3 scripts/checks/check_idefics3_mtmd.py [--i2q .build/release/i2q] [--llama-py /work/venv-llama/bin/python]
          [--models Tests/Fixtures/tiny-idefics3,Tests/Fixtures/tiny-smolvlm] [--image IMG] [--max-new-tokens 8]

For each model: `i2q export MODEL --to gguf -o text.gguf --mmproj mmproj.gguf` into a temporary
directory, `i2q run MODEL --prompt P --image IMG --json`, then (in --llama-py) llama.cpp loads both
files, tokenizes P with the image at mtmd's media marker (BOS as the GGUF says, special tokens parsed),
evaluates it and decodes greedily. Prints both prompt lengths (i2q expands <image> into tiles + the
global image; llama.cpp into what its idefics3 preprocessing gives), both token lists and SAME /
DIFFERENT; a load or evaluation failure is printed with llama.cpp's error.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

PROMPT = "User:<image>What is in this picture?<end_of_utterance>\nAssistant:"

LLAMA_SIDE = r"""
import ctypes, json, sys
import numpy as np
import llama_cpp
import llama_cpp.mtmd_cpp as mtmd
text, mmproj, image, prompt, n_new = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
out = {"llama_cpp": llama_cpp.__version__}
llm = llama_cpp.Llama(model_path=text, n_ctx=4096, n_batch=4096, n_ubatch=4096, verbose=False, logits_all=False)
p = mtmd.mtmd_context_params_default()
p.use_gpu = False
p.print_timings = False
ctx = mtmd.mtmd_init_from_file(mmproj.encode(), llm._model.model, p)
if ctx is None:
    print(json.dumps({"error": "mtmd_init_from_file returned NULL (the projector was refused; see stderr)"})); sys.exit(0)
bmp = mtmd.mtmd_helper_bitmap_init_from_file(ctx, image.encode(), False)
if bmp is None:
    print(json.dumps({"error": "mtmd_helper_bitmap_init_from_file failed"})); sys.exit(0)
marker = mtmd.mtmd_default_marker().decode()
t = mtmd.mtmd_input_text()
b = prompt.replace("<image>", marker).encode()
t.text, t.text_len, t.add_special, t.parse_special = b, len(b), True, True
chunks = mtmd.mtmd_input_chunks_init()
arr = (mtmd.mtmd_bitmap_p_ctypes * 1)(bmp)
rc = mtmd.mtmd_tokenize(ctx, chunks, ctypes.byref(t), arr, 1)
if rc != 0:
    print(json.dumps({"error": f"mtmd_tokenize returned {rc}"})); sys.exit(0)
llm.reset()
pieces = []
for i in range(mtmd.mtmd_input_chunks_size(chunks)):
    c = mtmd.mtmd_input_chunks_get(chunks, i)
    if mtmd.mtmd_input_chunk_get_type(c) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
        n = ctypes.c_size_t()
        ptr = mtmd.mtmd_input_chunk_get_tokens_text(c, ctypes.byref(n))
        toks = [ptr[j] for j in range(n.value)]
        pieces.append({"text": toks})
        llm.eval(toks)
    else:
        nt = mtmd.mtmd_input_chunk_get_n_tokens(c)
        pieces.append({"image_tokens": nt})
        new_past = llama_cpp.llama_pos(0)
        rc = mtmd.mtmd_helper_eval_chunk_single(ctx, llm._ctx.ctx, c, llama_cpp.llama_pos(llm.n_tokens), llama_cpp.llama_seq_id(0),
                                               llm.n_batch, False, ctypes.byref(new_past))
        if rc != 0:
            print(json.dumps({"error": f"mtmd_helper_eval_chunk_single returned {rc}", "chunks": pieces})); sys.exit(0)
        llm.n_tokens = new_past.value
out["chunks"] = pieces
out["prompt_positions"] = llm.n_tokens
gen = []
for _ in range(n_new):
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(llm.n_vocab(),))
    tok = int(np.argmax(logits))
    gen.append(tok)
    llm.eval([tok])
out["generated_ids"] = gen
print(json.dumps(out))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--i2q", default=".build/release/i2q")
    ap.add_argument("--llama-py", default="/work/venv-llama/bin/python")
    ap.add_argument("--models", default="Tests/Fixtures/tiny-idefics3,Tests/Fixtures/tiny-smolvlm")
    ap.add_argument("--image", default="Tests/Fixtures/images/photo_xmp8_120x90.jpg")
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--mmproj-type", default="auto")
    a = ap.parse_args()
    for model in a.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            text, mm = os.path.join(tmp, "text.gguf"), os.path.join(tmp, "mmproj.gguf")
            subprocess.run([a.i2q, "export", model, "--to", "gguf", "-o", text, "--mmproj", mm,
                            "--mmproj-type", a.mmproj_type], check=True, stdout=subprocess.DEVNULL)
            r = subprocess.run([a.i2q, "run", model, "--prompt", a.prompt, "--image", a.image,
                                "--max-new-tokens", str(a.max_new_tokens), "--json"], check=True, capture_output=True, text=True)
            mine = json.loads(r.stdout)
            r = subprocess.run([a.llama_py, "-c", LLAMA_SIDE, text, mm, a.image, a.prompt, str(a.max_new_tokens)],
                               capture_output=True, text=True)
            lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
            theirs = json.loads(lines[-1]) if lines else {"error": f"exit {r.returncode}: {r.stderr.strip()[-2000:]}"}
            print(f"== {model} (mmproj {a.mmproj_type})")
            print(f"i2q run:   {len(mine['input_ids'])} prompt tokens, generated {mine['generated_ids']}")
            if "error" in theirs:
                print(f"llama.cpp: ERROR {theirs['error']}")
                err = [ln for ln in r.stderr.splitlines() if "error" in ln.lower() or "failed" in ln.lower()]
                for ln in err[-8:]:
                    print("   ", ln)
                continue
            print(f"llama.cpp: {theirs['prompt_positions']} prompt positions {theirs['chunks']}, generated {theirs['generated_ids']}")
            same = theirs["generated_ids"] == mine["generated_ids"]
            n = next((i for i, (x, y) in enumerate(zip(mine["generated_ids"], theirs["generated_ids"])) if x != y), len(mine["generated_ids"]))
            print("SAME" if same else f"DIFFERENT (first {n} agree)")


if __name__ == "__main__":
    main()
