#!/usr/bin/env python3
"""Generate the GGUF writer's test fixtures in Tests/Fixtures/gguf-export (run by hand, not in CI):

    /work/venv/bin/python scripts/make_gguf_export_fixtures.py [--llama-cpp DIR]

Pinned: gguf 0.19.0 (llama.cpp's gguf-py), numpy 2.4.6, safetensors 0.7.x, torch 2.15.0,
transformers 5.24.0. Fixed seeds: a rerun writes byte-identical quants.safetensors.

Writes:
  quants.safetensors   `input` float32 [rows, 256] (random normal rows at several scales plus edge
                       blocks: zeros, -0, ties at .5 after scaling, equal |max| of both signs, a negative
                       largest value, subnormals, tiny blocks whose 1/d overflows, large values whose d
                       overflows f16) and `q8_0` / `q4_0` uint8 [rows, 256/32*34 or *18]: gguf-py's
                       `gguf.quants.quantize(input, Q8_0 / Q4_0)` — the bytes the Swift encoders must equal.
  With --llama-cpp DIR (a llama.cpp checkout: convert_hf_to_gguf.py, conversion/, gguf-py/):
  tiny-mistral.q8_0.reference.gguf
                       DIR/convert_hf_to_gguf.py Tests/Fixtures/tiny-mistral --outtype q8_0 (tensor bytes,
                       names, types and metadata i2q's export must reproduce; see GGUFExportTests).
  tiny-mistral.reference-types.json
                       tensor name -> ggml type name for --outtype f16 and bf16 (and q8_0).
  The llama.cpp commit used is recorded in the JSON (git HEAD of DIR, or --llama-cpp-commit).
  The committed files come from the llama.cpp vendored by llama-cpp-python 0.3.36 (its sdist's
  vendor/llama.cpp, commit 0c1e57098bba43ac29e6e3b677cdceebdd22334f).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

GGUF_VERSION = "0.19.0"
NUMPY_VERSION = "2.4.6"

from importlib.metadata import version  # noqa: E402

assert version("gguf") == GGUF_VERSION, version("gguf")
assert np.__version__ == NUMPY_VERSION, np.__version__

import gguf  # noqa: E402
from gguf import GGMLQuantizationType as T  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "gguf-export")


def quant_inputs() -> np.ndarray:
    rng = np.random.default_rng(20251129)
    rows = []
    for scale in (1e-3, 0.02, 1.0, 300.0):
        rows.append(rng.standard_normal((4, 256)).astype(np.float32) * np.float32(scale))
    edge = []
    b = np.zeros(32, np.float32); edge.append(b)                              # all zero
    b = np.full(32, -0.0, np.float32); edge.append(b)                         # all -0
    b = (np.arange(32, dtype=np.float32) - 16) / np.float32(2); edge.append(b)  # halves: ties
    b = np.linspace(-127, 127, 32, dtype=np.float32); edge.append(b)          # exact multiples
    b = rng.standard_normal(32).astype(np.float32); b[3] = 5; b[20] = -5; edge.append(b)  # |max| tie, + first
    b = rng.standard_normal(32).astype(np.float32); b[3] = -5; b[20] = 5; edge.append(b)  # |max| tie, - first
    b = rng.standard_normal(32).astype(np.float32); b[31] = -9; edge.append(b)  # negative largest value
    b = (rng.standard_normal(32) * 1e-39).astype(np.float32); edge.append(b)   # subnormals: 1/d overflows
    b = (rng.standard_normal(32) * 1e-30).astype(np.float32); edge.append(b)   # tiny normal values
    b = (rng.standard_normal(32) * 1e7).astype(np.float32); edge.append(b)     # d overflows f16 (q8_0)
    b = (rng.standard_normal(32) * 6e5).astype(np.float32); edge.append(b)     # d near the f16 max
    b = np.zeros(32, np.float32); b[7] = 1e-45; edge.append(b)                 # one denormal
    b = np.full(32, 3.0, np.float32); edge.append(b)                           # constant
    b = (np.arange(32, dtype=np.float32) * np.float32(8.5 / 31)) - np.float32(4.25); edge.append(b)
    while len(edge) % 8:
        edge.append(rng.uniform(-1, 1, 32).astype(np.float32))
    rows.append(np.concatenate(edge).reshape(-1, 256))
    return np.concatenate(rows, axis=0)


def make_quants():
    x = quant_inputs()
    with np.errstate(all="ignore"):
        q8 = gguf.quants.quantize(x, T.Q8_0)
        q4 = gguf.quants.quantize(x, T.Q4_0)
    assert q8.dtype == np.uint8 and q8.shape == (x.shape[0], 256 // 32 * 34)
    assert q4.dtype == np.uint8 and q4.shape == (x.shape[0], 256 // 32 * 18)
    save_file({"input": x, "q8_0": q8, "q4_0": q4}, os.path.join(OUT, "quants.safetensors"))
    print(f"quants.safetensors: {x.shape[0]} rows")


def run_convert(llama_cpp: str, outtype: str, dst: str):
    env = dict(os.environ)
    subprocess.run([sys.executable, os.path.join(llama_cpp, "convert_hf_to_gguf.py"),
                    os.path.join(ROOT, "Tests", "Fixtures", "tiny-mistral"), "--outtype", outtype, "--outfile", dst],
                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_reference(llama_cpp: str, commit: str | None):
    if not commit:
        try:
            commit = subprocess.run(["git", "-C", llama_cpp, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        except OSError:
            commit = "?"
    print(f"llama.cpp at {llama_cpp}: commit {commit or '?'}")
    types = {}
    with tempfile.TemporaryDirectory() as tmp:
        for outtype in ("q8_0", "f16", "bf16"):
            dst = os.path.join(tmp, f"tiny-mistral.{outtype}.gguf")
            run_convert(llama_cpp, outtype, dst)
            r = gguf.GGUFReader(dst)
            types[outtype] = {t.name: t.tensor_type.name for t in r.tensors}
            types[outtype + ".file_type"] = int(r.fields["general.file_type"].contents())
            if outtype == "q8_0":
                with open(dst, "rb") as f, open(os.path.join(OUT, "tiny-mistral.q8_0.reference.gguf"), "wb") as g:
                    g.write(f.read())
    types["llama_cpp_commit"] = commit
    with open(os.path.join(OUT, "tiny-mistral.reference-types.json"), "w") as f:
        json.dump(types, f, indent=1, sort_keys=True)
        f.write("\n")
    print("tiny-mistral.q8_0.reference.gguf, tiny-mistral.reference-types.json")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-cpp", help="llama.cpp checkout with convert_hf_to_gguf.py (for the reference conversions)")
    ap.add_argument("--llama-cpp-commit", help="the checkout's commit when DIR is not a git repository (e.g. the copy\n"
                    "vendored by llama-cpp-python 0.3.36: 0c1e57098bba43ac29e6e3b677cdceebdd22334f)")
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    make_quants()
    if a.llama_cpp:
        make_reference(a.llama_cpp, a.llama_cpp_commit)


if __name__ == "__main__":
    main()
