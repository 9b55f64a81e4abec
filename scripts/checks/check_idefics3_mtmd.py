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

Measured 2026-12-07 (release i2q, llama-cpp-python 0.3.36 CPU, 8 new tokens, prompt above):
- llama.cpp loads both files of both tiny models (text GGUF and mmproj, f16 and q8_0) and slices the
  120x90 photo as transformers does (2x2 tiles of 32 px + the overview, <row_i_col_j> tokens): with the
  image positions as <image>, its prompt ids equal i2q's (55 for tiny-idefics3, 54 for tiny-smolvlm).
- Without --split-missing, mtmd_tokenize gives LLAMA_TOKEN_NULL (-1) for the "\n\n" before the overview
  (mtmd looks it up as ONE token; the tiny trained vocabulary has no such token, real SmolVLM/Llama 3
  vocabularies do) and llama_decode fails: "init: all entries in the batch must have the same content
  types" / "llama_decode returned -1".
- --split-missing, solid-colour 120x90 image (every resampler gives the same pixels): SAME 8/8 on both
  models, with the f16 and with the q8_0 projector.
- --split-missing, Tests/Fixtures/images/photo_xmp8_120x90.jpg: DIFFERENT (tiny-idefics3 0 of 8 agree,
  tiny-smolvlm 1 of 8): llama.cpp resizes with its own LANCZOS (mtmd-image.cpp, float, no PIL
  fixed-point/uint8 steps), i2q with Pillow's (as transformers), so the pixels differ and the random
  tiny models' near-flat logits flip. Text-only prompts (no image) give SAME 8/8 on both.
- --split-missing, 32x32 and 64x64 crops of that photo (saved as PNG; sizes at which both resamplers give
  the same pixels for these models' tiles): SAME 8/8 on both models (lead's rerun, same day).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

PROMPT = "User:<image>What is in this picture?<end_of_utterance>\nAssistant:"
IMAGE_TOKEN = {"tiny-idefics3": 385, "tiny-smolvlm": 385}  # config.json image_token_id (for the prompt comparison)

LLAMA_SIDE = r"""
import ctypes, json, sys
import numpy as np
import llama_cpp
import llama_cpp.mtmd_cpp as mtmd
text, mmproj, image, prompt, n_new, split_missing = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6] == "1"
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
        if -1 in toks:
            # mtmd's idefics3 layout looks "\n\n" up as ONE token (lookup_token, before the global image);
            # a vocabulary without it gets LLAMA_TOKEN_NULL and llama_decode fails ("all entries in the
            # batch must have the same content types"). With --split-missing the "\n\n" is fed as the
            # vocabulary tokenizes it (what transformers' processor feeds).
            out.setdefault("missing_token", "mtmd looked \"\\n\\n\" up as one token: LLAMA_TOKEN_NULL (-1)")
            if not split_missing:
                print(json.dumps({"error": "mtmd_tokenize gave LLAMA_TOKEN_NULL (-1) for \"\\n\\n\" (idefics3's overview prefix): the vocabulary has no single \"\\n\\n\" token", "chunks": pieces + [{"text": toks}]})); sys.exit(0)
            nn = llm.tokenize(b"\n\n", add_bos=False, special=False)
            toks = [t for x in toks for t in (nn if x == -1 else [x])]
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
    ap.add_argument("--split-missing", action="store_true",
                    help="feed a \"\\n\\n\" that the vocabulary has no single token for as its tokens (see LLAMA_SIDE)")
    a = ap.parse_args()
    for model in a.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            text, mm = os.path.join(tmp, "text.gguf"), os.path.join(tmp, "mmproj.gguf")
            subprocess.run([a.i2q, "export", model, "--to", "gguf", "-o", text, "--mmproj", mm,
                            "--mmproj-type", a.mmproj_type], check=True, stdout=subprocess.DEVNULL)
            r = subprocess.run([a.i2q, "run", model, "--prompt", a.prompt, "--image", a.image,
                                "--max-new-tokens", str(a.max_new_tokens), "--json"], check=True, capture_output=True, text=True)
            mine = json.loads(r.stdout)
            r = subprocess.run([a.llama_py, "-c", LLAMA_SIDE, text, mm, a.image, a.prompt, str(a.max_new_tokens), "1" if a.split_missing else "0"],
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
            if "missing_token" in theirs:
                print(f"llama.cpp: {theirs['missing_token']} (fed as its tokens: --split-missing)")
            flat = [t for c in theirs["chunks"] for t in (c["text"] if "text" in c else [IMAGE_TOKEN.get(os.path.basename(model), -2)] * c["image_tokens"])]
            print(f"llama.cpp: {theirs['prompt_positions']} prompt positions, chunks {theirs['chunks']}")
            print(f"prompt ids (image positions as <image>): {'SAME as i2q' if flat == mine['input_ids'] else 'DIFFERENT from i2q'}")
            if flat != mine["input_ids"]:
                print(f"   i2q:       {mine['input_ids']}")
                print(f"   llama.cpp: {flat}")
            print(f"llama.cpp: generated {theirs['generated_ids']}")
            same = theirs["generated_ids"] == mine["generated_ids"]
            n = next((i for i, (x, y) in enumerate(zip(mine["generated_ids"], theirs["generated_ids"])) if x != y), len(mine["generated_ids"]))
            print("SAME" if same else f"DIFFERENT (first {n} agree)")


if __name__ == "__main__":
    main()
