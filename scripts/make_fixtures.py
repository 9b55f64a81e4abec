#!/usr/bin/env python3
"""Generate i2q's golden test fixtures (tiny random Idefics2 / Mistral / Llama
checkpoints, torch cast goldens, runtime goldens) under Tests/Fixtures.

Run by hand (NOT in CI), from the repository root, with the pinned venv:

    /work/venv/bin/python scripts/make_fixtures.py [--out Tests/Fixtures] [--i2q PATH_TO_i2q_BINARY]

Options:
    --out DIR               where to write (default: Tests/Fixtures next to this script's repo)
    --i2q PATH              after generating, run `PATH cast <out>/tiny-idefics2-v4 --dtype DT
                            --format safetensors -o TMP/out-DT` for DT in f16, bf16, load each
                            output with transformers and compare tensors and logits bit for bit
                            against torch's own cast; exit 1 on any difference
    --i2q-only              with --i2q: skip generation, check against the fixtures already in --out
    --tokenizer-model PATH  Mistral-7B v0.1 tokenizer.model (mistral_common/data/tokenizer.model.v1);
                            default: `pip download --no-deps mistral-common==1.13.1` into a temp dir
                            and take it from the wheel (mistral-common is never installed)

Versions are pinned (see scripts/requirements-fixtures.txt) and asserted below. Everything runs on
CPU with one torch thread and fixed seeds, so a rerun rewrites byte-identical files (on the same
kind of CPU: the fp32 logits come from MKL/oneDNN kernels chosen per CPU).

What it writes (all described in Tests/Fixtures/README.md, hashed in Tests/Fixtures/MANIFEST.json):
    tiny-idefics2-v5/   transformers 5.x save_pretrained output + 5.x processor (single safetensors)
    tiny-idefics2-v4/   same weights, 4.x-style configs (torch_dtype, rope_theta, sparse text_config,
                        preprocessor_config.json) and sharded weights + model.safetensors.index.json
    cast/               tiny-idefics2.{f16,bf16}.safetensors (torch .to() of every tensor),
                        special.safetensors (special values and their torch casts),
                        torch-cast-behaviour.json (observed NaN bit patterns)
    golden/             tiny-idefics2*.safetensors runtime goldens + the PNG inputs
    tiny-mistral/       tiny MistralForCausalLM (bf16, tied, sliding_window 8) + golden.safetensors
    tiny-llama/         tiny LlamaForCausalLM (f32, vocab 256, tied) + golden.safetensors
"""

import argparse
import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import torch

TORCH_VERSION = "2.15.0"
TRANSFORMERS_VERSION = "5.24.0"
MISTRAL_COMMON_VERSION = "1.13.1"
TOKENIZER_MODEL_SHA256 = "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055"

import transformers  # noqa: E402

assert torch.__version__.startswith(TORCH_VERSION), f"torch {torch.__version__} != pinned {TORCH_VERSION}"
assert transformers.__version__.startswith(TRANSFORMERS_VERSION), (
    f"transformers {transformers.__version__} != pinned {TRANSFORMERS_VERSION}"
)

import PIL  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import (  # noqa: E402
    AutoTokenizer,
    Idefics2Config,
    Idefics2ForConditionalGeneration,
    Idefics2ImageProcessorPil,
    Idefics2Processor,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaTokenizer,
    MistralConfig,
    MistralForCausalLM,
)

transformers.logging.set_verbosity_error()
try:  # silence "Writing model shards" progress bars
    from transformers.utils import logging as _tl

    _tl.disable_progress_bar()
except Exception:  # pragma: no cover
    pass

torch.set_num_threads(1)
ATTN = "eager"  # explicit attention implementation for every golden

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OWNED = [  # the only paths under --out this script deletes and rewrites
    "tiny-idefics2-v5",
    "tiny-idefics2-v4",
    "cast",
    "golden",
    "tiny-mistral",
    "tiny-llama",
    "MANIFEST.json",
    "README.md",
]

IMAGE_TOKEN_ID = 32001
FAKE_TOKEN = "<fake_token_around_image>"
IMAGE_TOKEN = "<image>"
EOU_TOKEN = "<end_of_utterance>"
PROMPT = "User:<image>What is written here?<end_of_utterance>\nAssistant:"
PROMPT_TWO = "User:<image><image>Compare the two pictures.<end_of_utterance>\nAssistant:"
MISTRAL_PROMPT = "The quick brown fox jumps over the lazy dog, then it sleeps."
# Idefics2's chat template as shipped with HuggingFaceM4/idefics2-8b.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{message['role'].capitalize()}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
# Embedding rows that hold overflow/subnormal test values. They must never be looked up by a
# golden (checked), so f16 runs of the prompts stay finite.
EXTREME_ROWS = (31990, 31991, 31992)

# Tiny architecture ------------------------------------------------------------------------------
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              image_size=56, patch_size=14)
PERCEIVER = dict(hidden_size=32, resampler_n_latents=4, resampler_depth=1, resampler_n_heads=2,
                 resampler_head_dim=8, num_key_value_heads=1, hidden_act="silu", rms_norm_eps=1e-6)
TEXT = dict(model_type="mistral", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, vocab_size=32003, rms_norm_eps=1e-5,
            max_position_embeddings=32768, sliding_window=4096, pad_token_id=0,
            rope_parameters={"rope_type": "default", "rope_theta": 100000.0})
IMAGE_PROCESSOR = dict(do_image_splitting=False, size={"longest_edge": 56, "shortest_edge": 28})
IMAGE_SEQ_LEN = PERCEIVER["resampler_n_latents"]
GENERATION = dict(bos_token_id=1, eos_token_id=[2, 32002], pad_token_id=0, bad_words_ids=[[32000], [32001]])


def log(*a):
    print(*a, flush=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def save_st(tensors, path, info):
    """safetensors.torch.save_file with ONE metadata key: safetensors keeps __metadata__ in a hash map,
    so with two or more keys their order (and the file's bytes) would change from run to run."""
    save_file({k: v.contiguous() for k, v in tensors.items()}, path,
              metadata={"info": json.dumps(info, sort_keys=True)})


def bits_equal(a, b):
    """Bitwise equality (NaN payloads included) of two tensors of the same dtype and shape."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.is_floating_point:
        iv = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        return torch.equal(a.contiguous().view(iv), b.contiguous().view(iv))
    return torch.equal(a, b)


def max_abs_diff(a, b):
    a = a.float()
    b = b.float()
    fin = torch.isfinite(a) & torch.isfinite(b)
    d = (a[fin] - b[fin]).abs()
    nonfinite_mismatch = int(((~torch.isfinite(a)) ^ (~torch.isfinite(b))).sum())
    return (float(d.max()) if d.numel() else 0.0), nonfinite_mismatch


# Tokenizer --------------------------------------------------------------------------------------
def get_tokenizer_model(path, workdir):
    if path is None:
        dl = os.path.join(workdir, "mc")
        log(f"downloading mistral-common=={MISTRAL_COMMON_VERSION} (wheel only, not installed)")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        f"mistral-common=={MISTRAL_COMMON_VERSION}", "-d", dl], check=True)
        wheels = [f for f in os.listdir(dl) if f.endswith(".whl")]
        assert len(wheels) == 1, wheels
        with zipfile.ZipFile(os.path.join(dl, wheels[0])) as z:
            data = z.read("mistral_common/data/tokenizer.model.v1")
        path = os.path.join(workdir, "tokenizer.model.v1")
        with open(path, "wb") as f:
            f.write(data)
    digest = sha256_file(path)
    assert digest == TOKENIZER_MODEL_SHA256, f"unexpected tokenizer.model sha256 {digest}"
    folder = os.path.join(workdir, "sp")
    os.makedirs(folder, exist_ok=True)
    shutil.copyfile(path, os.path.join(folder, "tokenizer.model"))
    return folder


def build_tokenizer(sp_folder):
    tok = LlamaTokenizer.from_pretrained(sp_folder, legacy=False, add_bos_token=True)
    assert len(tok) == 32000
    tok.add_special_tokens({"additional_special_tokens": [FAKE_TOKEN, IMAGE_TOKEN, EOU_TOKEN]})
    ids = tok.convert_tokens_to_ids([FAKE_TOKEN, IMAGE_TOKEN, EOU_TOKEN])
    assert ids == [32000, 32001, 32002], ids
    assert len(tok) == 32003
    return tok


# Random weights ---------------------------------------------------------------------------------
def reinit_(model, seed):
    """Re-initialise every parameter with non-trivial values (std 0.02..0.5) from a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # deterministic order; tied params appear once
            leaf = name.rsplit(".", 1)[0]
            if name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif "norm" in leaf:  # LayerNorm / RMSNorm scales
                p.copy_(1.0 + torch.randn(p.shape, generator=g) * 0.2)
            elif "embed_tokens" in name or "lm_head" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif "position_embedding" in name or name.endswith("latents"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            else:
                fan_in = p[0].numel()
                std = min(0.5, max(0.02, 1.2 / fan_in ** 0.5))
                p.copy_(torch.randn(p.shape, generator=g) * std)


def f32_from_bits(bits):
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])


def plant_special_weights_(model):
    """Overflow / tie / subnormal values in real tensors (see EXTREME_ROWS) and a few tiny values
    in weights the forward pass does use."""
    sd = model.state_dict()
    with torch.no_grad():
        emb = sd["model.text_model.embed_tokens.weight"]
        r0, r1, r2 = EXTREME_ROWS
        emb[r0, :12] = torch.tensor([7e4, -7e4, 65520.0, 65519.99, 65504.0, 1e5, -3.4e38, 3.4e38,
                                     1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, 1.0 + 2 ** -11, 2049.0])
        emb[r1, :12] = torch.tensor([3e-6, -3e-6, 1e-8, -1e-8, 2.0 ** -24, 2.0 ** -25, 1.5 * 2 ** -25,
                                     2.0 ** -14 - 2 ** -25, 6e-8, 1e-40, -1e-45, 2.0 ** -14])
        # raw bit patterns (bf16 rounding ties, f32 max)
        for j, b in enumerate([0x3F808000, 0x3F818000, 0x3F80C000, 0x7F7F8000, 0x7F7FFFFF,
                               0x00008000, 0x007F8000, 0x477FF000]):
            emb[r2, j] = f32_from_bits(b)
        sd["model.text_model.layers.0.self_attn.q_proj.weight"][0, :4] = torch.tensor([3e-6, -1e-8, 1e-8, 6.1e-5])
        sd["model.vision_model.encoder.layers.0.mlp.fc1.weight"][0, :3] = torch.tensor([3e-6, 2.0 ** -25, -1e-40])
        sd["lm_head.weight"][5, :3] = torch.tensor([1e-8, 3e-6, 1e-40])
        sd["model.connector.perceiver_resampler.latents"][0, 0] = 2.0 ** -24


def idefics2_config():
    return Idefics2Config(vision_config=copy.deepcopy(VISION), perceiver_config=copy.deepcopy(PERCEIVER),
                          text_config=copy.deepcopy(TEXT), image_token_id=IMAGE_TOKEN_ID,
                          tie_word_embeddings=False, use_cache=True)


def build_idefics2():
    torch.manual_seed(0)
    model = Idefics2ForConditionalGeneration(idefics2_config())
    reinit_(model, seed=1234)
    plant_special_weights_(model)
    model.generation_config.update(**GENERATION)
    model.eval()
    return model


# Checkpoint writers -----------------------------------------------------------------------------
def save_v5(model, processor, out):
    model.save_pretrained(out)  # config.json (dtype, rope_parameters), generation_config.json, model.safetensors
    processor.save_pretrained(out)  # processor_config.json (nested image processor), tokenizer, chat template
    with open(os.path.join(out, "tokenizer_config.json")) as f:
        assert json.load(f)["extra_special_tokens"] == [FAKE_TOKEN, IMAGE_TOKEN, EOU_TOKEN]


def shard_state_dict(sd, max_shard_bytes):
    """transformers 4.x / huggingface_hub greedy sharding over the state_dict order."""
    shards, cur, cur_size = [], {}, 0
    for name, t in sd.items():
        size = t.numel() * t.element_size()
        if cur and cur_size + size > max_shard_bytes:
            shards.append(cur)
            cur, cur_size = {}, 0
        cur[name] = t
        cur_size += size
    if cur:
        shards.append(cur)
    return shards


def v4_config():
    t = TEXT
    return {
        "architectures": ["Idefics2ForConditionalGeneration"],
        "image_token_id": IMAGE_TOKEN_ID,
        "model_type": "idefics2",
        # no rms_norm_eps: the perceiver takes Idefics2PerceiverConfig's default (1e-6); hidden_size
        # must be present because it differs from the 4096 default (else the text eps is copied)
        "perceiver_config": {
            "hidden_act": "silu",
            "hidden_size": PERCEIVER["hidden_size"],
            "model_type": "idefics2",
            "num_key_value_heads": PERCEIVER["num_key_value_heads"],
            "resampler_depth": PERCEIVER["resampler_depth"],
            "resampler_head_dim": PERCEIVER["resampler_head_dim"],
            "resampler_n_heads": PERCEIVER["resampler_n_heads"],
            "resampler_n_latents": PERCEIVER["resampler_n_latents"],
        },
        # sparse, like real checkpoints: no head_dim, hidden_act, sliding_window, bos/eos ids,
        # tie_word_embeddings ... (MistralConfig defaults apply); rope_theta instead of rope_parameters
        "text_config": {
            "hidden_size": t["hidden_size"],
            "intermediate_size": t["intermediate_size"],
            "max_position_embeddings": t["max_position_embeddings"],
            "model_type": "mistral",
            "num_attention_heads": t["num_attention_heads"],
            "num_hidden_layers": t["num_hidden_layers"],
            "num_key_value_heads": t["num_key_value_heads"],
            "pad_token_id": t["pad_token_id"],
            "rms_norm_eps": t["rms_norm_eps"],
            "rope_theta": t["rope_parameters"]["rope_theta"],
            "vocab_size": t["vocab_size"],
        },
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.40.0.dev0",
        "use_cache": True,
        "vision_config": {
            "hidden_size": VISION["hidden_size"],
            "image_size": VISION["image_size"],
            "intermediate_size": VISION["intermediate_size"],
            "model_type": "idefics2",
            "num_attention_heads": VISION["num_attention_heads"],
            "num_hidden_layers": VISION["num_hidden_layers"],
            "patch_size": VISION["patch_size"],
        },
    }


def save_v4(model, v5_dir, out):
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, "config.json"), v4_config())
    write_json(os.path.join(out, "generation_config.json"), {
        "_from_model_config": True, "bad_words_ids": GENERATION["bad_words_ids"],
        "bos_token_id": 1, "eos_token_id": GENERATION["eos_token_id"], "pad_token_id": 0,
        "transformers_version": "4.40.0.dev0"})
    ip = dict(IMAGE_PROCESSOR)
    write_json(os.path.join(out, "preprocessor_config.json"), {
        "do_convert_rgb": True, "do_image_splitting": ip["do_image_splitting"], "do_normalize": True,
        "do_pad": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "Idefics2ImageProcessor", "image_std": [0.5, 0.5, 0.5],
        "processor_class": "Idefics2Processor", "resample": 2, "rescale_factor": 1 / 255,
        "size": ip["size"]})
    write_json(os.path.join(out, "processor_config.json"),
               {"image_seq_len": IMAGE_SEQ_LEN, "processor_class": "Idefics2Processor"})
    # tokenizer: the same tokenizer.json bytes, 4.x-style tokenizer_config + special_tokens_map
    shutil.copyfile(os.path.join(v5_dir, "tokenizer.json"), os.path.join(out, "tokenizer.json"))
    with open(os.path.join(v5_dir, "tokenizer.json")) as f:
        added = {str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
                 for a in json.load(f)["added_tokens"]}
    assert sorted(added, key=int) == ["0", "1", "2", "32000", "32001", "32002"], sorted(added)
    write_json(os.path.join(out, "tokenizer_config.json"), {
        "add_bos_token": True, "add_eos_token": False, "added_tokens_decoder": added,
        "additional_special_tokens": [FAKE_TOKEN, IMAGE_TOKEN, EOU_TOKEN], "bos_token": "<s>",
        "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": False, "eos_token": "</s>",
        "legacy": False, "model_max_length": 1000000000000000019884624838656, "pad_token": "<unk>",
        "processor_class": "Idefics2Processor", "sp_model_kwargs": {}, "spaces_between_special_tokens": False,
        "tokenizer_class": "LlamaTokenizer", "unk_token": "<unk>", "use_default_system_prompt": False})

    def tokd(c):
        return {"content": c, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
    write_json(os.path.join(out, "special_tokens_map.json"), {
        "additional_special_tokens": [FAKE_TOKEN, IMAGE_TOKEN, EOU_TOKEN], "bos_token": tokd("<s>"),
        "eos_token": tokd("</s>"), "pad_token": "<unk>", "unk_token": tokd("<unk>")})
    # sharded weights, 4.x naming and index (tensors straddle module boundaries between shards)
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    shards = shard_state_dict(sd, max_shard_bytes=100_000)
    n = len(shards)
    assert n >= 3
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        save_file(shard, os.path.join(out, fname), metadata={"format": "pt"})
        for k, t in shard.items():
            weight_map[k] = fname
            total += t.numel() * t.element_size()
    write_json(os.path.join(out, "model.safetensors.index.json"),
               {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    return n


# Images -----------------------------------------------------------------------------------------
def make_images(golden_dir):
    # 75x50 RGB: gradients plus a hash-like pattern so bilinear resampling has detail to get wrong
    w, h = 75, 50
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([(x * 255) // (w - 1), (y * 255) // (h - 1), (x * 37 + y * 91 + (x * y) % 23) % 256],
                   axis=-1).astype(np.uint8)
    a_path = os.path.join(golden_dir, "gradient-75x50.png")
    Image.fromarray(rgb, "RGB").save(a_path)
    # 30x61 RGBA (portrait, partially transparent: alpha is composited onto white)
    w, h = 30, 61
    y, x = np.mgrid[0:h, 0:w]
    rgba = np.stack([(255 - (y * 4) % 256), (x * 8) % 256, ((x + y) * 5) % 256, np.clip(y * 9, 0, 255)],
                    axis=-1).astype(np.uint8)
    rgba[:, :3, 3] = 255
    b_path = os.path.join(golden_dir, "rgba-30x61.png")
    Image.fromarray(rgba, "RGBA").save(b_path)

    def load(p):
        with Image.open(p) as im:
            im.load()
            return im.copy()
    return load(a_path), load(b_path)


def make_processor(tok, **overrides):
    kw = dict(IMAGE_PROCESSOR)
    kw.update(overrides)
    ip = Idefics2ImageProcessorPil(**kw)
    proc = Idefics2Processor(image_processor=ip, tokenizer=tok, image_seq_len=IMAGE_SEQ_LEN,
                             chat_template=CHAT_TEMPLATE)
    # Idefics2Processor.__init__ re-adds its tokens one group at a time, which leaves only
    # <end_of_utterance> in the tokenizer's extra_special_tokens; list all three again (ids unchanged).
    tok.add_special_tokens({"additional_special_tokens": [FAKE_TOKEN, IMAGE_TOKEN, EOU_TOKEN]})
    assert tok.convert_tokens_to_ids([FAKE_TOKEN, IMAGE_TOKEN, EOU_TOKEN]) == [32000, 32001, 32002]
    assert len(tok) == 32003
    return proc


# Runtime goldens --------------------------------------------------------------------------------
@torch.no_grad()
def idefics2_forward_with_taps(model, inputs):
    taps = {}
    m = model.model
    hooks = [
        m.vision_model.embeddings.position_embedding.register_forward_hook(
            lambda mod, inp, out: taps.__setitem__("vision_position_ids", inp[0].clone())),
        m.vision_model.register_forward_hook(
            lambda mod, inp, out: taps.__setitem__("vision_last_hidden_state", out.last_hidden_state.clone())),
        m.connector.register_forward_hook(
            lambda mod, inp, out: taps.__setitem__("image_hidden_states", out.clone())),
        m.text_model.norm.register_forward_hook(
            lambda mod, inp, out: taps.__setitem__("text_last_hidden_state", out.clone())),
    ]
    try:
        out = model(**inputs)
    finally:
        for hk in hooks:
            hk.remove()
    return out.logits, taps


def patch_mask(pixel_attention_mask, patch):
    pam = pixel_attention_mask.view(-1, *pixel_attention_mask.shape[-2:])
    sub = pam.unfold(1, patch, patch).unfold(2, patch, patch)
    return (sub.sum(dim=(-1, -2)) == patch * patch).to(torch.int64)


def idefics2_golden(model, processor, text, images, full_logits, generate):
    enc = processor(text=text, images=images, return_tensors="pt")
    inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "pixel_values", "pixel_attention_mask")}
    logits, taps = idefics2_forward_with_taps(model, inputs)
    ids = inputs["input_ids"]
    assert not any(int(r) in ids for r in EXTREME_ROWS)
    t = {
        "input_ids": ids.to(torch.int64).contiguous(),
        "attention_mask": inputs["attention_mask"].to(torch.int64).contiguous(),
        "pixel_values": inputs["pixel_values"].to(torch.float32).contiguous(),
        "pixel_attention_mask": inputs["pixel_attention_mask"].to(torch.int64).contiguous(),
        "patch_attention_mask": patch_mask(inputs["pixel_attention_mask"], VISION["patch_size"]),
        "vision_position_ids": taps["vision_position_ids"].to(torch.int64).contiguous(),
        "vision_last_hidden_state": taps["vision_last_hidden_state"].contiguous(),
        "image_hidden_states": taps["image_hidden_states"].contiguous(),
        "text_last_hidden_state": taps["text_last_hidden_state"].contiguous(),
        "logits_argmax": logits.argmax(-1).to(torch.int64).contiguous(),
    }
    if full_logits:
        t["logits"] = logits.contiguous()
    else:
        t["logits_last4"] = logits[:, -4:, :].contiguous()
    meta = {"prompt": text, "logits": "full [1, seq, vocab]" if full_logits else "last 4 positions only (logits_last4)",
            "n_images": str(len(images))}
    if generate:
        gen = model.generate(**inputs, do_sample=False, max_new_tokens=8)
        new = gen[:, ids.shape[1]:].to(torch.int64).contiguous()
        assert not any(int(r) in new for r in EXTREME_ROWS)
        assert torch.equal(new, greedy_without_cache(model, inputs, 8, banned=(32000, 32001)))
        t["generated_ids"] = new
        meta["generated_ids"] = ("greedy, max_new_tokens=8, generation_config: eos [2, 32002], "
                                 "bad_words_ids [[32000], [32001]]")
        log(f"    generated {new.tolist()}")
    return t, meta


@torch.no_grad()
def greedy_without_cache(model, inputs, n, banned=()):
    """Greedy decoding by full forward passes (no KV cache): cross-checks generate()'s cache path."""
    ids = inputs["input_ids"]
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    for _ in range(n):
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False, **extra).logits[:, -1]
        for b in banned:
            logits[:, b] = float("-inf")
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids[:, inputs["input_ids"].shape[1]:]


def save_golden(path, tensors, meta):
    meta = dict(meta)
    meta.update({"torch": torch.__version__, "transformers": transformers.__version__,
                 "attn_implementation": ATTN, "compute_dtype": "float32"})
    save_st(tensors, path, meta)


# Tiny text-only models ----------------------------------------------------------------------------
def lm_golden(model, input_ids):
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))
        gen = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                             do_sample=False, max_new_tokens=8, min_new_tokens=0)
    new = gen[:, input_ids.shape[1]:].contiguous()
    assert new.shape[1] == 8, f"generation stopped early: {new.tolist()}"
    assert torch.equal(new, greedy_without_cache(model, {"input_ids": input_ids}, 8))
    return out.logits.contiguous(), new.to(torch.int64)


def make_mistral(tok, out_dir):
    cfg = MistralConfig(vocab_size=32003, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
                        rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                        sliding_window=8, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
                        pad_token_id=None)
    torch.manual_seed(0)
    model = MistralForCausalLM(cfg)
    reinit_(model, seed=4321)
    model.generation_config.update(bos_token_id=1, eos_token_id=2)
    model.to(torch.bfloat16).save_pretrained(out_dir)  # real Mistral checkpoints are bf16
    tok.save_pretrained(out_dir)
    # golden: the stored bf16 weights, computed in float32
    ref = MistralForCausalLM.from_pretrained(out_dir, dtype=torch.float32, attn_implementation=ATTN).eval()
    ids = tok(MISTRAL_PROMPT, return_tensors="pt").input_ids.to(torch.int64)
    assert ids.shape[1] > cfg.sliding_window, "prompt must be longer than the sliding window"
    logits, gen = lm_golden(ref, ids)
    # sdpa must agree with eager (sliding-window mask semantics)
    sdpa = MistralForCausalLM.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
    with torch.no_grad():
        d = (sdpa(input_ids=ids).logits - logits).abs().max().item()
    assert d < 1e-4, f"sdpa vs eager differ by {d}"
    save_golden(os.path.join(out_dir, "golden.safetensors"),
                {"input_ids": ids, "logits": logits, "generated_ids": gen},
                {"prompt": MISTRAL_PROMPT, "weights": "bf16 checkpoint upcast to float32",
                 "generated_ids": "greedy, max_new_tokens=8, eos 2", "logits": "full [1, seq, vocab]"})
    log(f"  tiny-mistral: prompt {ids.shape[1]} tokens, generated {gen.tolist()}")
    return model


def make_llama(out_dir):
    cfg = LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=256,
                      rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
                      tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=None)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    reinit_(model, seed=777)
    model.generation_config.update(bos_token_id=1, eos_token_id=2)
    model.save_pretrained(out_dir)
    ref = LlamaForCausalLM.from_pretrained(out_dir, dtype=torch.float32, attn_implementation=ATTN).eval()
    g = torch.Generator().manual_seed(99)
    ids = torch.cat([torch.tensor([[1]]), torch.randint(3, 256, (1, 11), generator=g)], dim=1).to(torch.int64)
    logits, gen = lm_golden(ref, ids)
    save_golden(os.path.join(out_dir, "golden.safetensors"),
                {"input_ids": ids, "logits": logits, "generated_ids": gen},
                {"prompt": "BOS + 11 random ids in [3, 256) (torch.Generator seed 99)",
                 "generated_ids": "greedy, max_new_tokens=8, eos 2", "logits": "full [1, seq, vocab]"})
    log(f"  tiny-llama: generated {gen.tolist()}")


# Special values ---------------------------------------------------------------------------------
F32_NAN_BITS = [0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FA00000, 0x7FFFFFFF, 0x7F802000,
                0xFF800001, 0xFFFFFFFF, 0x7FC00001, 0x7F801000, 0xFFA00000, 0x7FBFFFFF]


def f32_special_bits():
    def fb(x):
        return int(np.array([x], dtype=np.float32).view(np.uint32)[0])

    vals = [0.0, -0.0, float("inf"), float("-inf"),
            # f16 overflow boundary
            65504.0, 65519.99, 65520.0, 65536.0, 1e5, -1e5, -65504.0, -65520.0, 3.4e38, -3.4e38,
            # f16 subnormals / underflow
            2.0 ** -24, 2.0 ** -25, 1.5 * 2 ** -25, 3 * 2.0 ** -25, 1.5 * 2 ** -24, -(2.0 ** -24), -(2.0 ** -25),
            2.0 ** -14, 2.0 ** -14 - 2 ** -24, 2.0 ** -14 - 2 ** -25, 2.0 ** -14 - 2 ** -26, 6e-8, 5.96e-8, 3e-6,
            1e-8, -1e-8,
            # f32 subnormals
            1e-40, -1e-45, 1e-39,
            # f16 rounding ties
            1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 1 + 2.0 ** -11 + 2.0 ** -23, 1 + 2.0 ** -11 - 2.0 ** -23,
            2049.0, 2051.0, -(1 + 2.0 ** -11), 65512.0, 65528.0,
            # bf16 rounding ties
            1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, -(1 + 2.0 ** -8),
            # ordinary
            1.0, -1.0, 0.1, -0.1, 1 / 3, 3.14159265358979, 1234.5678, -0.000123]
    bits = [fb(v) for v in vals]
    bits += [0x3F808000, 0x3F818000, 0x3F80C000, 0x3F807FFF, 0x3F808001, 0x7F7F8000, 0x7F7F7FFF,
             0x7F7FFFFF, 0xFF7FFFFF, 0x00008000, 0x00018000, 0x80008000, 0x00010000, 0x007F8000,
             0x00000001, 0x007FFFFF, 0x80000001, 0x00800000, 0x477FE000, 0x477FF000, 0x477FEFFF,
             0x33000000, 0x33000001, 0x32FFFFFF, 0x387FE000, 0x387FF000]
    bits += F32_NAN_BITS
    return bits


def random_f32_bits(n, seed):
    rng = np.random.default_rng(seed)
    mag = 10.0 ** rng.uniform(-45.5, 38.6, size=n)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return list((mag * sign).astype(np.float32).view(np.uint32).astype(np.uint64))


def t_from_bits(bits, npu, npf):
    return torch.from_numpy(np.array(bits, dtype=np.uint64).astype(npu).view(npf).copy())


def assemble(head, tail, residue, filler):
    """head + filler... + tail with len % 16 == residue, so that `tail` (len(tail) <= residue) sits in the
    final partial vector block that torch's CPU kernels convert with their scalar code."""
    assert len(tail) <= residue
    out = list(head)
    i = 0
    while (len(out) + len(tail)) % 16 != residue:
        out.append(filler(i))
        i += 1
    return out + list(tail)


F64_NAN_BITS = [0x7FF8000000000000, 0xFFF8000000000000, 0x7FF0000000000001, 0x7FF4000000000000,
                0x7FFFFFFFFFFFFFFF, 0x7FF8000000000001, 0x7FF0000020000000, 0xFFFFFFFFFFFFFFFF]
F16_NAN_BITS = [0x7E00, 0xFE00, 0x7C01, 0x7D00, 0x7FFF, 0xFFFF, 0x7E01, 0xFC01]
BF16_NAN_BITS = [0x7FC0, 0xFFC0, 0x7F81, 0x7FA0, 0x7FFF, 0xFFFF, 0x7F90, 0xFF81]


def make_special(path):
    def f64b(v):
        return int(np.array([v], dtype=np.float64).view(np.uint64)[0])

    special = f32_special_bits()
    rnd = [int(b) for b in random_f32_bits(200, seed=2024)]
    extra = [int(b) for b in random_f32_bits(16, seed=2025)]
    # len % 16 == 13; the last 12 elements are NaNs (F32_NAN_BITS also appear in the body)
    f32 = t_from_bits(assemble(special + rnd, F32_NAN_BITS, 13, lambda i: extra[i]), np.uint32, np.float32)
    long_n = 4099  # 4096-element body + 3-element tail
    body = (special * (long_n // len(special) + 1))[: long_n - len(F32_NAN_BITS)]
    f32_long = t_from_bits(body + F32_NAN_BITS, np.uint32, np.float32)  # ends with 12 NaNs
    f32_short = t_from_bits(F32_NAN_BITS[:7] + [0x3F808000, 0x3F818000, 0x477FF000, 0x33000000, 0x7F7F8000,
                                                0x00008000], np.uint32, np.float32)  # 13 < any vector block

    d = [0.0, -0.0, float("inf"), float("-inf"), 65504.0, 65519.99, 65520.0, 1e5, 3.4e38, 3.5e38, -3.5e38,
         2.0 ** -24, 2.0 ** -25, 1.5 * 2 ** -25, 2.0 ** -14, 1e-40, 2.0 ** -149, 2.0 ** -150, 2.0 ** -150 + 2.0 ** -170,
         1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8,
         # double rounding: direct f64->f16/bf16 rounding would differ from rounding through f32
         1 + 2.0 ** -11 + 2.0 ** -40, 1 + 2.0 ** -8 + 2.0 ** -40, -(1 + 2.0 ** -8 + 2.0 ** -40),
         2.0 ** -25 + 2.0 ** -60, 65520.0 - 2.0 ** -30, 1 + 2.0 ** -24 + 2.0 ** -60,
         1e300, -1e300, 1e-300, 5e-324, 1.7976931348623157e308, 0.1, 1 / 3, -2.5]
    rng = np.random.default_rng(7)
    mag = 10.0 ** rng.uniform(-50, 40, size=100) * np.where(rng.random(100) < 0.5, -1.0, 1.0)
    f64_head = [f64b(v) for v in d] + F64_NAN_BITS + [int(b) for b in mag.view(np.uint64)]
    # len % 16 == 11: the scalar tail holds 3 double-rounding values and all 8 NaN kinds
    f64_tail = [f64b(1 + 2.0 ** -8 + 2.0 ** -40), f64b(2.0 ** -25 + 2.0 ** -60), f64b(65520.0 - 2.0 ** -30)]
    f64 = t_from_bits(assemble(f64_head, f64_tail + F64_NAN_BITS, 11, lambda i: f64b(i + 0.5)),
                      np.uint64, np.float64)

    f16_head = [0x0000, 0x8000, 0x7C00, 0xFC00] + F16_NAN_BITS + [
        0x0001, 0x8001, 0x03FF, 0x0200, 0x0400, 0x3C00, 0x3C01, 0x3C04, 0x3C0C, 0x3C0A,
        0x3C02, 0x3C06, 0x7BFF, 0xFBFF, 0x0003, 0x0005]
    f16_head += [int(x) for x in np.random.default_rng(11).integers(0, 1 << 16, size=200)]
    # len % 16 == 13 (len % 8 == 5): the last 5 elements (scalar tail of the 8-wide f16 kernels) are NaNs
    f16src = t_from_bits(assemble(f16_head, F16_NAN_BITS[:5], 13, lambda i: 0x3555 + i), np.uint16, np.float16)

    bf16_head = [0x0000, 0x8000, 0x7F80, 0xFF80] + BF16_NAN_BITS + [
        0x0001, 0x8001, 0x007F, 0x0080, 0x3F80, 0x3F81, 0x7F7F, 0xFF7F, 0x477F, 0x4780, 0x477E,
        0x3380, 0x3300, 0x3340, 0x33C0, 0x3320, 0x3880, 0x387F, 0x3870, 0x3878, 0x3874, 0x3364]
    bf16_head += [int(x) for x in np.random.default_rng(13).integers(0, 1 << 16, size=200)]
    bf16src = t_from_bits(assemble(bf16_head, BF16_NAN_BITS[:5], 13, lambda i: 0x3E4D + i),
                          np.uint16, np.int16).view(torch.bfloat16)

    tensors = {}
    for name, src in [("f32", f32), ("f32_long", f32_long), ("f32_short", f32_short)]:
        tensors[name] = src
        tensors[f"{name}.f16"] = src.to(torch.float16)
        tensors[f"{name}.bf16"] = src.to(torch.bfloat16)
    tensors["f64"] = f64
    tensors["f64.f32"] = f64.to(torch.float32)
    tensors["f64.f16"] = f64.to(torch.float16)
    tensors["f64.bf16"] = f64.to(torch.bfloat16)
    tensors["f16src"] = f16src
    tensors["f16src.f32"] = f16src.to(torch.float32)
    tensors["f16src.bf16"] = f16src.to(torch.bfloat16)
    tensors["bf16src"] = bf16src
    tensors["bf16src.f32"] = bf16src.to(torch.float32)
    tensors["bf16src.f16"] = bf16src.to(torch.float16)
    for k, v in tensors.items():
        assert v.is_contiguous() and v.dim() == 1, k
    save_st(tensors, path, {
        "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "how": "X.f16 = X.to(torch.float16), X.bf16 = X.to(torch.bfloat16), X.f32 = X.to(torch.float32); "
               "contiguous 1-D CPU tensors, one torch thread. See torch-cast-behaviour.json for NaNs."})
    back = load_file(path)
    for k, v in tensors.items():
        assert bits_equal(back[k], v), f"safetensors round trip changed {k}"
    return tensors


def hexs(t):
    iv = {2: (torch.int16, 0xFFFF, 4), 4: (torch.int32, 0xFFFFFFFF, 8), 8: (torch.int64, (1 << 64) - 1, 16)}
    dt, mask, w = iv[t.element_size()]
    return [f"0x{(int(v) & mask):0{w}X}" for v in t.contiguous().view(dt).reshape(-1).tolist()]


SRC_DTYPES = {"f32": torch.float32, "f64": torch.float64, "f16": torch.float16, "bf16": torch.bfloat16}
NAN_BITS = {"f32": F32_NAN_BITS, "f64": F64_NAN_BITS, "f16": F16_NAN_BITS, "bf16": BF16_NAN_BITS}


def filled(src, bits, n):
    npu = {"f32": np.uint32, "f64": np.uint64, "f16": np.uint16, "bf16": np.uint16}[src]
    a = np.full(n, bits, dtype=npu)
    if src == "bf16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a.view({"f32": np.float32, "f64": np.float64, "f16": np.float16}[src]))


def cast_behaviour(tensors):
    """Probe torch's CPU casts of NaNs: the vectorised body of a contiguous tensor and the scalar code
    that converts the final partial block (and 1-element / 0-dim / strided tensors)."""
    rep = {
        "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "note": ("Input NaN bits -> output bits of torch .to(dtype) on CPU. Only NaNs ever depend on the code "
                 "path: every non-NaN value (ties, subnormals, overflow, f64 double rounding) gives the same "
                 "bits in the vector body, the scalar tail, 1-element, 0-dim and strided tensors. "
                 "'vector_block' W (when the paths differ for NaNs): in a contiguous tensor of n elements "
                 "converted by ONE thread, elements [0, n - n % W) take the 'vector' result and the last n % W "
                 "the 'scalar' one. With T torch threads and n above the 32768 grain, each thread converts its "
                 "own chunk of ceil(n / T) elements and every chunk has such a tail, so NaN bits in the middle "
                 "of large tensors depend on the thread count. The golden files were made with 1 thread."),
        "directions": {},
    }
    for src, dst in [("f32", "bf16"), ("f32", "f16"), ("f64", "f32"), ("f64", "bf16"), ("f64", "f16"),
                     ("f16", "f32"), ("f16", "bf16"), ("bf16", "f32"), ("bf16", "f16")]:
        tdt = SRC_DTYPES[dst]
        vec, sca, strided, zero = {}, {}, {}, {}
        for b in NAN_BITS[src]:
            key = hexs(filled(src, b, 1))[0]
            vec[key] = hexs(filled(src, b, 64).to(tdt))[0]
            sca[key] = hexs(filled(src, b, 1).to(tdt))[0]
            st = torch.stack([filled(src, b, 64)] * 2, dim=1)[:, 0]
            assert not st.is_contiguous()
            strided[key] = sorted(set(hexs(st.to(tdt))))
            strided[key] = strided[key][0] if len(strided[key]) == 1 else strided[key]
            zero[key] = hexs(filled(src, b, 1)[0].to(tdt).reshape(1))[0]
        entry = {"vector": vec, "scalar": sca}
        if vec != sca:
            b = next(x for x in NAN_BITS[src] if vec[hexs(filled(src, x, 1))[0]] != sca[hexs(filled(src, x, 1))[0]])
            ns, nvec = (9, 17, 33, 63, 100, 1000, 4099), []
            for n in ns:
                out = hexs(filled(src, b, n).to(tdt))
                nscalar = sum(1 for v in out if v == sca[hexs(filled(src, b, 1))[0]])
                assert all(v == out[-1] for v in out[n - nscalar:])
                nvec.append(n - nscalar)
            ws = [w for w in (8, 16, 32, 64) if all(n - n % w == k for n, k in zip(ns, nvec))]
            entry["vector_block"] = ws[0] if ws else f"unknown (vector lengths {nvec} for n={ns})"
        else:
            entry["vector_block"] = "same result on every path"
        entry["strided"] = strided
        entry["0-dim"] = zero
        rep["directions"][f"{src}->{dst}"] = entry
    # where the NaNs sit in special.safetensors
    layout = {}
    for name in ("f32", "f32_long", "f32_short", "f64", "f16src", "bf16src"):
        x = tensors[name]
        isn = torch.isnan(x.float() if x.dtype == torch.bfloat16 else x)
        idx = torch.nonzero(isn).reshape(-1).tolist()
        layout[name] = {"len": len(x), "nan_indices": idx}
    rep["special.safetensors"] = layout
    # every golden NaN output equals the probe's vector/scalar prediction
    for name, src in (("f32", "f32"), ("f32_long", "f32"), ("f32_short", "f32"), ("f64", "f64"),
                      ("f16src", "f16"), ("bf16src", "bf16")):
        x = tensors[name]
        n = len(x)
        for dst in ("f32", "f16", "bf16"):
            k = f"{name}.{dst}"
            if k not in tensors:
                continue
            e = rep["directions"][f"{src}->{dst}"]
            w = e["vector_block"] if isinstance(e["vector_block"], int) else None
            xs, ys = hexs(x), hexs(tensors[k])
            for i in layout[name]["nan_indices"]:
                bits = int(xs[i], 16)
                probe = filled(src, bits, 1) if (w and i >= n - n % w) else filled(src, bits, 64)
                pred = hexs(probe.to(SRC_DTYPES[dst]))[0]
                assert ys[i] == pred, (k, i, xs[i], ys[i], pred)
    # double rounding observed for f64 sources
    f64 = tensors["f64"]
    dr = {}
    for v in (1 + 2.0 ** -11 + 2.0 ** -40, 1 + 2.0 ** -8 + 2.0 ** -40, 2.0 ** -25 + 2.0 ** -60, 65520.0 - 2.0 ** -30):
        i = int(torch.nonzero(f64 == v)[0])
        dr[repr(v)] = {"f16": hexs(tensors["f64.f16"][i:i + 1])[0], "bf16": hexs(tensors["f64.bf16"][i:i + 1])[0],
                       "via_f32_f16": hexs(f64[i:i + 1].float().half())[0],
                       "via_f32_bf16": hexs(f64[i:i + 1].float().bfloat16())[0]}
    rep["f64 double rounding (torch f64 -> f16/bf16 vs via f32)"] = dr
    return rep


# i2q check --------------------------------------------------------------------------------------
def check_i2q(i2q, out):
    import tempfile as _tf

    v4 = os.path.join(out, "tiny-idefics2-v4")
    golden = load_file(os.path.join(out, "golden", "tiny-idefics2.safetensors"))
    inputs = {k: golden[k] for k in ("input_ids", "attention_mask", "pixel_values", "pixel_attention_mask")}
    ref32 = Idefics2ForConditionalGeneration.from_pretrained(v4, dtype=torch.float32,
                                                             attn_implementation=ATTN).eval()
    ok = True
    with _tf.TemporaryDirectory(prefix="i2q-check-") as tmp:
        for dt, tdt in (("f16", torch.float16), ("bf16", torch.bfloat16)):
            dst = os.path.join(tmp, f"out-{dt}")
            cmd = [i2q, "cast", v4, "--dtype", dt, "--format", "safetensors", "-o", dst]
            log("$ " + " ".join(cmd))
            r = subprocess.run(cmd)
            if r.returncode != 0:
                log(f"FAIL {dt}: i2q exited {r.returncode}")
                ok = False
                continue
            want = load_file(os.path.join(out, "cast", f"tiny-idefics2.{dt}.safetensors"))
            got = {}
            for f in sorted(os.listdir(dst)):
                if f.endswith(".safetensors"):
                    got.update(load_file(os.path.join(dst, f)))
            bad = [k for k in want if k not in got or not bits_equal(got[k], want[k])]
            extra = sorted(set(got) - set(want))
            log(f"  {dt}: {len(want) - len(bad)}/{len(want)} tensors bit-identical to torch .to(); "
                f"differ/missing: {bad[:8]}{' ...' if len(bad) > 8 else ''}; extra: {extra[:8]}")
            ok &= not bad and not extra
            try:
                m = Idefics2ForConditionalGeneration.from_pretrained(dst, dtype="auto", attn_implementation=ATTN).eval()
            except Exception as e:  # noqa: BLE001
                log(f"FAIL {dt}: transformers cannot load the output: {e!r}")
                ok = False
                continue
            dts = {p.dtype for p in m.parameters()}
            if dts != {tdt}:
                log(f"FAIL {dt}: loaded parameter dtypes {dts} (config dtype?)")
                ok = False
            # Reference: the fp32 checkpoint loaded with dtype=DT, i.e. every weight cast with torch .to(DT)
            # (asserted below) and the model built the same way as the i2q output is. (A fp32 model
            # followed by model.to(DT) is NOT comparable bit for bit: .to() also casts the rotary
            # inv_freq buffer, which a model loaded in DT keeps in float32.)
            ref = Idefics2ForConditionalGeneration.from_pretrained(v4, dtype=tdt, attn_implementation=ATTN).eval()
            rsd = ref.state_dict()
            assert all(bits_equal(rsd[k], want[k]) for k in want), "transformers' load-time cast != torch .to()"
            moved = Idefics2ForConditionalGeneration.from_pretrained(v4, dtype=torch.float32,
                                                                     attn_implementation=ATTN).eval().to(tdt)
            with torch.no_grad():
                a = m(**inputs).logits
                b = ref(**inputs).logits
                c = ref32(**inputs).logits
                e = moved(**inputs).logits
            same = bits_equal(a, b)
            mad, nf = max_abs_diff(a, b)
            log(f"  {dt}: logits max|i2q - torch({dt})| = {mad:.6g} (non-finite mismatches {nf}), "
                f"exactly equal: {same}")
            log(f"       for scale: max|i2q - fp32| = {max_abs_diff(a, c)[0]:.6g}, "
                f"max|i2q - fp32 model.to({dt})| = {max_abs_diff(a, e)[0]:.6g}")
            ok &= same
    log("i2q check: " + ("PASS" if ok else "FAIL"))
    return ok


# Verification -----------------------------------------------------------------------------------
def verify_checkpoints(out, model, golden_a):
    v5, v4 = os.path.join(out, "tiny-idefics2-v5"), os.path.join(out, "tiny-idefics2-v4")
    inputs = {k: golden_a[k] for k in ("input_ids", "attention_mask", "pixel_values", "pixel_attention_mask")}
    m5 = Idefics2ForConditionalGeneration.from_pretrained(v5, dtype=torch.float32, attn_implementation=ATTN).eval()
    m4 = Idefics2ForConditionalGeneration.from_pretrained(v4, dtype=torch.float32, attn_implementation=ATTN).eval()
    sd, s5, s4 = model.state_dict(), m5.state_dict(), m4.state_dict()
    assert set(sd) == set(s5) == set(s4)
    for k in sd:
        assert bits_equal(sd[k], s5[k]) and bits_equal(sd[k], s4[k]), k
    assert m4.lm_head.weight.data_ptr() != m4.model.text_model.embed_tokens.weight.data_ptr()
    c4, c5 = m4.config, m5.config
    checks = [
        (c4.text_config.rms_norm_eps, c5.text_config.rms_norm_eps, 1e-5),
        (c4.perceiver_config.rms_norm_eps, c5.perceiver_config.rms_norm_eps, 1e-6),
        (c4.text_config.rope_parameters["rope_theta"], c5.text_config.rope_parameters["rope_theta"], 100000.0),
        (c4.text_config.sliding_window, c5.text_config.sliding_window, 4096),
        (c4.text_config.head_dim, c5.text_config.head_dim, 8),
        (c4.vision_config.layer_norm_eps, c5.vision_config.layer_norm_eps, 1e-6),
    ]
    for a, b, want in checks:
        assert a == b == want, (a, b, want)
    def cfg_diff(x, y, prefix=""):
        out = []
        for k in sorted(set(x) | set(y)):
            if isinstance(x.get(k), dict) and isinstance(y.get(k), dict):
                out += cfg_diff(x[k], y[k], prefix + k + ".")
            elif x.get(k, "<missing>") != y.get(k, "<missing>"):
                out.append(prefix + k)
        return out
    diff = [k for k in cfg_diff(c4.to_dict(), c5.to_dict()) if k not in ("_name_or_path", "transformers_version")]
    assert not diff, f"v4 and v5 configs load differently: {diff}"
    with torch.no_grad():
        l5 = m5(**inputs).logits
        l4 = m4(**inputs).logits
    assert bits_equal(l5, golden_a["logits"]), "v5 reload logits differ from golden"
    assert bits_equal(l4, golden_a["logits"]), "v4 logits differ from v5 / golden"
    # sdpa vs eager sanity
    ms = Idefics2ForConditionalGeneration.from_pretrained(v5, dtype=torch.float32, attn_implementation="sdpa").eval()
    with torch.no_grad():
        ds = (ms(**inputs).logits - l5).abs().max().item()
    assert ds < 1e-4, ds
    # processors: v4 (preprocessor_config.json, 4.x tokenizer_config) must equal v5
    p5 = Idefics2Processor.from_pretrained(v5)
    p4 = Idefics2Processor.from_pretrained(v4)
    log(f"  loaded processors: v5 {type(p5.image_processor).__name__}, v4 {type(p4.image_processor).__name__}")
    img = Image.open(os.path.join(out, "golden", "gradient-75x50.png"))
    for d, p in ((v5, p5), (v4, p4)):
        pil = Idefics2ImageProcessorPil.from_pretrained(d)  # the PIL path, whatever is installed
        assert pil.size.longest_edge == 56 and pil.size.shortest_edge == 28 and not pil.do_image_splitting, d
        assert p.image_seq_len == IMAGE_SEQ_LEN, d
        p.image_processor = pil
        e = p(text=PROMPT, images=[img], return_tensors="pt")
        assert torch.equal(e["input_ids"], golden_a["input_ids"]), (d, e["input_ids"])
        assert bits_equal(e["pixel_values"], golden_a["pixel_values"]), d
        assert torch.equal(e["pixel_attention_mask"], golden_a["pixel_attention_mask"]), d
    t4 = AutoTokenizer.from_pretrained(v4)
    t5 = AutoTokenizer.from_pretrained(v5)
    for s in (MISTRAL_PROMPT, "<fake_token_around_image><image><end_of_utterance> héllo\n wörld 123 ✓"):
        assert t4(s).input_ids == t5(s).input_ids, s
    log(f"  v4/v5 reload: configs equal after loading, state dicts and logits bit-identical to the golden "
        f"(sdpa vs eager {ds:.2g})")


# Main -------------------------------------------------------------------------------------------
def write_readme(out, info):
    txt = f"""# Test fixtures (generated — do not edit by hand)

Regenerate with `/work/venv/bin/python scripts/make_fixtures.py` (versions pinned in
`scripts/requirements-fixtures.txt`: torch {torch.__version__}, transformers {transformers.__version__}).
`MANIFEST.json` lists every file with its sha256 and size.

## Checkpoints
- `tiny-idefics2-v5/`: random tiny Idefics2ForConditionalGeneration as transformers 5.x `save_pretrained`
  writes it (`dtype`, `rope_parameters`; image-processor settings nested in `processor_config.json`;
  single `model.safetensors`, float32), tokenizer (Mistral-7B v0.1 + 3 added tokens) and chat template.
- `tiny-idefics2-v4/`: the same weights in the 4.x layout of real checkpoints: `torch_dtype`,
  `rope_theta`, sparse `text_config` (MistralConfig defaults apply), sub-config `model_type` "idefics2",
  `preprocessor_config.json`, `processor_config.json` = image_seq_len only, 4.x `tokenizer_config.json` +
  `special_tokens_map.json`, {info['n_shards']} shards `model-0000N-of-{info['n_shards']:05d}.safetensors` + `model.safetensors.index.json`.
  transformers {transformers.__version__} loads it to the identical model (logits bit-identical).
- Tiny Idefics2: vision hidden 32, intermediate 64, 2 layers, 4 heads, image_size 56, patch 14
  (4x4 position grid); perceiver hidden 32, 4 latents, depth 1, 2 heads x head_dim 8, 1 kv head,
  rms_norm_eps 1e-6 (default); text Mistral hidden 32, intermediate 64, 2 layers, 4 heads, 2 kv heads
  (head_dim 8), vocab 32003, rms_norm_eps 1e-5, rope_theta 100000, sliding_window 4096; untied lm_head;
  image_token_id 32001; image processor longest_edge 56, shortest_edge 28, no splitting; image_seq_len 4.
  Embedding rows {EXTREME_ROWS} hold overflow/tie/subnormal values (7e4, 65520, 3.4e38, 3e-6, 1e-8,
  1e-40, ...); no golden prompt looks them up.
- `tiny-mistral/`: MistralForCausalLM, bf16 weights, tied embeddings, hidden 32, 2 layers, 4 heads,
  2 kv heads, vocab 32003 (Idefics2 tokenizer), rope_theta 1e6, **sliding_window 8** (the golden prompt is
  longer than the window). `golden.safetensors`: input_ids, full logits (weights upcast to float32),
  8 greedy tokens.
- `tiny-llama/`: LlamaForCausalLM, float32, tied, vocab 256 (no tokenizer), hidden 32, 2 layers,
  4 heads, 1 kv head, rope_theta 1e5. `golden.safetensors`: input_ids, full logits, 8 greedy tokens.

## cast/
- `tiny-idefics2.f16.safetensors` / `.bf16.safetensors`: every tensor of the tiny Idefics2 state_dict
  cast with torch `.to(torch.float16)` / `.to(torch.bfloat16)`, same names.
- `special.safetensors`: `X`, `X.f16`, `X.bf16` (and `X.f32`) for X in f32 (len {info['len_f32']}),
  f32_long (4099), f32_short (13), f64 (len {info['len_f64']}), f16src, bf16src. Raw bits, NaN payloads kept.
  Each source ends with NaNs so that torch's scalar tail code (the last n % W elements) converts some:
  f64 has len % 16 == 11 (tail: 3 double-rounding values + 8 NaN kinds), f16src len % 8 == 5 (tail: 5 NaNs).
- `torch-cast-behaviour.json`: the NaN bit patterns torch produced, per direction and code path
  (vector body, scalar tail / 1-element tensors, strided, 0-dim), and where the NaNs sit in special.safetensors.
  Non-NaN values never depend on the path (round to nearest even; f64 -> f16/bf16 rounds through f32,
  i.e. double rounding). NaNs, contiguous tensors, one thread (what the files hold):
  - f32 -> bf16: every NaN -> 0xFFFF (body and tail alike; strided and 0-dim tensors give 0x7FC0)
  - f32 -> f16, f64 -> f16, bf16 -> f16: sign kept, quiet bit set, top mantissa bits kept (F16C), e.g.
    0x7FC00000 -> 0x7E00, 0xFFC00000 -> 0xFE00, 0x7FA00000 -> 0x7F00, 0x7F802000 -> 0x7E01, 0x7FFFFFFF -> 0x7FFF
  - f64 -> f32: quiet bit set, payload's top bits kept; bf16 -> f32: exact bit shift (signalling NaNs stay)
  - f16 -> bf16: every NaN -> 0x7FC0
  - f64 -> bf16: body (first n - n % 16 elements) -> 0xFFFF, tail -> 0x7FC0
  - f16 -> f32: body (first n - n % 8) keeps payload and sign, quiet bit set (0x7D00 -> 0x7FE00000);
    tail -> 0x7FFFFFFF for every NaN, negative ones included
  With several torch threads each thread's chunk of a large tensor (> 32768 elements) has its own tail,
  so for f64 -> bf16 and f16 -> f32 the NaN bits mid-tensor depend on the thread count.

## golden/ (float32 compute, attn_implementation="{ATTN}")
- `tiny-idefics2.safetensors`: prompt {PROMPT!r} with `gradient-75x50.png`: input_ids, attention_mask,
  pixel_values, pixel_attention_mask, patch_attention_mask, vision_position_ids, vision_last_hidden_state,
  image_hidden_states (connector output), text_last_hidden_state (after the final norm), full logits,
  logits_argmax, generated_ids (8 greedy tokens, eos [2, 32002], bad words 32000/32001).
- `tiny-idefics2-two-images.safetensors`: prompt {PROMPT_TWO!r} with the PNG above and `rgba-30x61.png`
  (alpha composited onto white; padding to 56x56 makes partially real patches invalid).
  Logits: last 4 positions (`logits_last4`) + `logits_argmax` of all positions.
- `tiny-idefics2-split.safetensors`: the first prompt with do_image_splitting=True (5 images).
  Logits: `logits_last4` + `logits_argmax`.
Note: transformers 5.24's processor inserts a space after the closing `<fake_token_around_image>` when text
follows ("...<fake_token_around_image> What"), so the text after an image starts with "▁What".
"""
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(txt)


def write_manifest(out):
    files = []
    for root, _, names in os.walk(out):
        for n in names:
            p = os.path.join(root, n)
            rel = os.path.relpath(p, out)
            if rel == "MANIFEST.json":
                continue
            files.append({"path": rel, "sha256": sha256_file(p), "size": os.path.getsize(p)})
    files.sort(key=lambda f: f["path"])
    write_json(os.path.join(out, "MANIFEST.json"), {
        "generator": "scripts/make_fixtures.py",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tokenizers": __import__("tokenizers").__version__, "safetensors": __import__("safetensors").__version__,
                     "numpy": np.__version__, "pillow": PIL.__version__, "python": sys.version.split()[0],
                     "mistral_common_wheel": MISTRAL_COMMON_VERSION},
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "total_size": sum(f["size"] for f in files),
        "files": files})
    return files


def generate(out, tokenizer_model):
    os.makedirs(out, exist_ok=True)
    for name in OWNED:
        p = os.path.join(out, name)
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)
    with tempfile.TemporaryDirectory(prefix="i2q-fixtures-") as work:
        _generate(out, get_tokenizer_model(tokenizer_model, work))


def _generate(out, sp_folder):
    info = {}
    tok = build_tokenizer(sp_folder)

    log("building tiny Idefics2")
    model = build_idefics2()
    proc = make_processor(tok)
    v5 = os.path.join(out, "tiny-idefics2-v5")
    save_v5(model, proc, v5)
    info["n_shards"] = save_v4(model, v5, os.path.join(out, "tiny-idefics2-v4"))
    log(f"  v5 + v4 written ({info['n_shards']} shards)")

    # chat template reproduces the documented prompt
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is written here?"}]}]
    assert proc.apply_chat_template(msgs, add_generation_prompt=True) == PROMPT

    log("cast goldens")
    cast = os.path.join(out, "cast")
    os.makedirs(cast)
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    for dt, tdt in (("f16", torch.float16), ("bf16", torch.bfloat16)):
        save_file({k: v.to(tdt) for k, v in sd.items()}, os.path.join(cast, f"tiny-idefics2.{dt}.safetensors"),
                  metadata={"format": "pt"})  # one key: deterministic bytes (see save_st)
    tensors = make_special(os.path.join(cast, "special.safetensors"))
    info["len_f32"], info["len_f64"] = len(tensors["f32"]), len(tensors["f64"])
    behaviour = cast_behaviour(tensors)
    write_json(os.path.join(cast, "torch-cast-behaviour.json"), behaviour)

    log("runtime goldens")
    gdir = os.path.join(out, "golden")
    os.makedirs(gdir)
    img_a, img_b = make_images(gdir)
    ref = Idefics2ForConditionalGeneration.from_pretrained(v5, dtype=torch.float32, attn_implementation=ATTN).eval()
    ga, ma = idefics2_golden(ref, proc, PROMPT, [img_a], full_logits=True, generate=True)
    save_golden(os.path.join(gdir, "tiny-idefics2.safetensors"), ga, {**ma, "images": "gradient-75x50.png"})
    log(f"  A: seq {ga['input_ids'].shape[1]}, pixel_values {tuple(ga['pixel_values'].shape)}")
    gb, mb = idefics2_golden(ref, proc, PROMPT_TWO, [img_a, img_b], full_logits=False, generate=False)
    save_golden(os.path.join(gdir, "tiny-idefics2-two-images.safetensors"), gb,
                {**mb, "images": "gradient-75x50.png, rgba-30x61.png"})
    log(f"  B: seq {gb['input_ids'].shape[1]}, pixel_values {tuple(gb['pixel_values'].shape)}, "
        f"patch mask rows {gb['patch_attention_mask'].sum(dim=(1, 2)).tolist()}")
    proc_split = make_processor(tok, do_image_splitting=True)
    gc, mc = idefics2_golden(ref, proc_split, PROMPT, [img_a], full_logits=False, generate=False)
    save_golden(os.path.join(gdir, "tiny-idefics2-split.safetensors"), gc,
                {**mc, "images": "gradient-75x50.png", "do_image_splitting": "true"})
    log(f"  C: seq {gc['input_ids'].shape[1]}, pixel_values {tuple(gc['pixel_values'].shape)}")

    log("verifying v4/v5")
    verify_checkpoints(out, model, ga)

    log("tiny mistral / llama")
    make_mistral(build_tokenizer(sp_folder), os.path.join(out, "tiny-mistral"))  # fresh: no processor_class
    make_llama(os.path.join(out, "tiny-llama"))

    write_readme(out, info)
    files = write_manifest(out)
    log("\nwritten:")
    for f in files:
        log(f"  {f['size']:>10}  {f['path']}")
    log(f"  total {sum(f['size'] for f in files)} bytes")
    log("\ntorch NaN casts (see cast/torch-cast-behaviour.json):")
    for k, e in behaviour["directions"].items():
        log(f"  {k}: vector {e['vector']}\n      scalar {e['scalar']} (block {e['vector_block']})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(REPO, "Tests", "Fixtures"))
    ap.add_argument("--i2q", default=None, help="path to the i2q binary to check against torch")
    ap.add_argument("--i2q-only", action="store_true", help="skip generation (needs --i2q)")
    ap.add_argument("--tokenizer-model", default=None, help="tokenizer.model.v1 from the mistral-common wheel")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    if args.i2q_only and not args.i2q:
        ap.error("--i2q-only needs --i2q")
    if not args.i2q_only:
        generate(out, args.tokenizer_model)
    if args.i2q:
        sys.exit(0 if check_i2q(os.path.abspath(args.i2q), out) else 1)


if __name__ == "__main__":
    main()
