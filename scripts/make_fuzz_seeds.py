#!/usr/bin/env python3
"""Seeds of the fuzz harness (Fuzz/, Tests/I2QFuzzTests) that the fixtures do not already hold small:
two small tokenizer.json files cut from the real ones (SmolLM2's byte-level BPE; Idefics2's
SentencePiece-style BPE with byte fallback) — every model section kept, the vocabulary cut to the
first 400 ids plus the added tokens, merges kept when both parts and the result survive — and tiny
.i2q files made by i2q from the tiny Llama fixture (plain f32, bf16, NF4, affine int4, fused).

Usage: I2Q=.build/release/i2q python3 scripts/make_fuzz_seeds.py  (writes Tests/Fixtures/fuzz/)
"""
import json, os, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests/Fixtures/fuzz")


def cut_tokenizer(src, dst, keep=400):
    t = json.load(open(src, encoding="utf-8"))
    m = t["model"]
    added = {a["content"] for a in t.get("added_tokens", [])}
    vocab = {k: v for k, v in m["vocab"].items() if v < keep or k in added}
    merges = []
    for mg in m.get("merges", []):
        a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(mg)
    m["vocab"], m["merges"] = vocab, merges
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(t, f, ensure_ascii=False, separators=(",", ":"))
    print(dst, os.path.getsize(dst), "bytes,", len(vocab), "tokens,", len(merges), "merges")


def main():
    os.makedirs(OUT, exist_ok=True)
    cut_tokenizer(os.path.join(ROOT, "Tests/Fixtures/tokenizer/smollm2/tokenizer.json"), os.path.join(OUT, "tokenizer-bytelevel.json"))
    cut_tokenizer(os.path.join(ROOT, "Tests/Fixtures/tiny-idefics2-v4/tokenizer.json"), os.path.join(OUT, "tokenizer-sentencepiece.json"))
    i2q = os.environ.get("I2Q", os.path.join(ROOT, ".build/release/i2q"))
    src = os.path.join(ROOT, "Tests/Fixtures/tiny-llama")
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [
            ("f32.i2q", ["cast", src, "--dtype", "f32", "--alignment", "64"]),
            ("bf16.i2q", ["cast", src, "--dtype", "bf16", "--alignment", "64"]),
            ("nf4.i2q", ["quantize", src, "--nf4"]),
            ("int4.i2q", ["quantize", src, "--rtn", "--group-size", "32"]),
        ]
        for name, args in jobs:
            subprocess.run([i2q] + args + ["-o", os.path.join(OUT, name), "--overwrite", "--no-progress"], check=True)
        subprocess.run([i2q, "fuse", os.path.join(OUT, "int4.i2q"), "-o", os.path.join(OUT, "int4-fused.i2q"), "--overwrite", "--no-progress"], check=True)
    for n in sorted(os.listdir(OUT)):
        print(n, os.path.getsize(os.path.join(OUT, n)))


if __name__ == "__main__":
    sys.exit(main())
