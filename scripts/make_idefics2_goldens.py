#!/usr/bin/env python3
"""Idefics2 end-to-end goldens on two more tiny random configurations (A: odd sizes, GQA perceiver,
image splitting, sliding window; B: perceiver hidden/eps inherited from the text config, no GQA) and
real images (photos, diagrams, document crops) of several sizes, aspect ratios and PNG/JPEG modes.

Run by hand (NOT in CI), from the repository root, with the pinned venv:

    /work/venv/bin/python scripts/make_idefics2_goldens.py [--out Tests/Fixtures] [--rust-docs DIR]

It reuses make_fixtures.py's helpers (reinit_, idefics2_golden, save_golden, version pins) and
never touches make_fixtures.py's outputs. It (re)writes only:
    tiny-idefics2-a/, tiny-idefics2-b/        4.x-style checkpoints (single model.safetensors, float32)
    golden/images/                            the real input images + README.md (origin of each)
    golden/idefics2-{a,b}-<case>.safetensors  goldens (float32, eager attention)
    golden/idefics2-cases.json                manifest of every case (the Swift test iterates over it)
The tokenizer files are copied from tiny-idefics2-v4/ (written by make_fixtures.py), so run
make_fixtures.py first. NOTE: make_fixtures.py deletes and rewrites golden/ as a whole, so rerun
this script after it.

The images are taken from the Rust toolchain's HTML docs (rustup, stable toolchain); a rerun
rewrites them from there (crops/re-encodes are deterministic) -- pass --keep-images to reuse the
committed ones instead (e.g. when the docs are not installed).
"""

import argparse
import hashlib
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (asserts the pinned torch / transformers versions)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import (  # noqa: E402
    Idefics2Config,
    Idefics2ForConditionalGeneration,
    Idefics2ImageProcessorPil,
    Idefics2Processor,
)

log = mf.log
torch.set_num_threads(1)

PROMPT_ONE = "User:<image>What is in this picture?<end_of_utterance>\nAssistant:"
PROMPT_TWO = "User:<image><image>Which one is larger?<end_of_utterance>\nAssistant:"
RUST_DOCS = "/root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html"

# Configurations (written in the 4.x layout; what transformers derives from them is checked below) ---
CONFIGS = {
    "a": dict(
        seed=2024,
        vision=dict(hidden_size=48, intermediate_size=80, num_hidden_layers=3, num_attention_heads=3,
                    image_size=70, patch_size=14),
        perceiver=dict(hidden_act="silu", hidden_size=40, rms_norm_eps=1e-5, num_key_value_heads=2,
                       resampler_depth=2, resampler_head_dim=12, resampler_n_heads=4, resampler_n_latents=5),
        text=dict(hidden_size=40, intermediate_size=72, max_position_embeddings=32768, model_type="mistral",
                  num_attention_heads=5, num_hidden_layers=3, num_key_value_heads=1, pad_token_id=0,
                  rms_norm_eps=1e-6, rope_theta=10000.0, sliding_window=16, vocab_size=32003),
        image_processor=dict(do_image_splitting=True, size={"longest_edge": 70, "shortest_edge": 42}),
        image_seq_len=5,
        # expected values after transformers loads the config
        expect=dict(perceiver_hidden=40, perceiver_eps=1e-5, text_eps=1e-6, sliding_window=16, text_head_dim=8,
                    rope_theta=10000.0, tied=False),
    ),
    "b": dict(
        seed=4242,
        vision=dict(hidden_size=36, intermediate_size=52, num_hidden_layers=1, num_attention_heads=2,
                    image_size=42, patch_size=14),
        # hidden_size 36 != text hidden 24: transformers replaces it by 24 AND replaces rms_norm_eps
        # (1e-6 here) by the text eps (1e-3), see Idefics2Config.__post_init__.
        perceiver=dict(hidden_act="silu", hidden_size=36, rms_norm_eps=1e-6, num_key_value_heads=3,
                       resampler_depth=1, resampler_head_dim=8, resampler_n_heads=3, resampler_n_latents=3),
        # sparse like real checkpoints: no sliding_window (MistralConfig default 4096), no head_dim
        text=dict(hidden_size=24, intermediate_size=56, max_position_embeddings=32768, model_type="mistral",
                  num_attention_heads=3, num_hidden_layers=2, num_key_value_heads=3, pad_token_id=0,
                  rms_norm_eps=1e-3, rope_theta=1000000.0, vocab_size=32003),
        image_processor=dict(do_image_splitting=False, size={"longest_edge": 42, "shortest_edge": 28}),
        image_seq_len=3,
        expect=dict(perceiver_hidden=24, perceiver_eps=1e-3, text_eps=1e-3, sliding_window=4096, text_head_dim=8,
                    rope_theta=1000000.0, tied=False),
    ),
}


# Images -------------------------------------------------------------------------------------------
def sha256(path):
    return mf.sha256_file(path)


def make_images(idir, docs):
    """Six real images from the Rust docs: (file name, description, source)."""
    os.makedirs(idir, exist_ok=True)
    src = lambda p: os.path.join(docs, p)  # noqa: E731
    out = []

    def copy(rel, name, desc):
        shutil.copyfile(src(rel), os.path.join(idir, name))
        out.append((name, desc, f"rust docs html/{rel}, unmodified"))

    # 1. JPEG photo, landscape (baseline JPEG, 4:4:4, EXIF orientation 1), original bytes
    copy("embedded-book/assets/verify.jpeg", "photo_verify_720x477.jpg", "JPEG photo, landscape, baseline")
    # 2. portrait document crop (memory-map diagram), quantized to an adaptive 48-colour palette (mode P)
    with Image.open(src("embedded-book/assets/nrf52-memory-map.png")) as im:
        crop = im.convert("RGB").crop((100, 60, 100 + 330, 60 + 610))
        pal = crop.quantize(colors=48, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        pal.save(os.path.join(idir, "doc_portrait_palette_330x610.png"), optimize=False)
    out.append(("doc_portrait_palette_330x610.png", "portrait document crop, palette PNG (mode P, 48 colours)",
                "rust docs html/embedded-book/assets/nrf52-memory-map.png, crop (100,60)-(430,670), "
                "PIL quantize(48, MEDIANCUT, no dither)"))
    # 3. tiny JPEG (< 30 px a side): crop of the progressive 4:2:2 photo, re-encoded baseline 4:2:0
    with Image.open(src("embedded-book/assets/f3.jpg")) as im:
        crop = im.convert("RGB").crop((300, 200, 327, 219))
        crop.save(os.path.join(idir, "tiny_photo_27x19.jpg"), quality=92, subsampling=2)
    out.append(("tiny_photo_27x19.jpg", "tiny JPEG 27x19 (upscaled by the shortest_edge rule)",
                "rust docs html/embedded-book/assets/f3.jpg, crop (300,200)-(327,219), "
                "PIL JPEG quality 92, 4:2:0"))
    # 4. wider than 980 (the real longest_edge): screenshot, original bytes
    copy("cargo/images/org-level-acl.png", "wide_screenshot_2026x834.png",
         "RGB PNG screenshot, 2026x834 (wider than 980)")
    # 5. PNG with real alpha (62% of pixels partly/fully transparent), original bytes
    copy("cargo/images/Cargo-Logo-Small.png", "alpha_cargo_logo_306x275.png", "RGBA PNG logo with transparency")
    # 6. grayscale + alpha PNG (mode LA), original bytes
    copy("favicon-32x32.png", "gray_alpha_favicon_32x32.png", "grayscale+alpha PNG (mode LA), 32x32")
    return out


def write_images_readme(idir, images):
    lines = ["# Real input images for the Idefics2 goldens (generated by scripts/make_idefics2_goldens.py)", "",
             "Taken from the Rust toolchain's HTML documentation (installed by rustup, "
             "`share/doc/rust/html/`; the Rust project's docs, MIT/Apache-2.0).", "",
             "| file | what | origin | size | sha256 |", "|---|---|---|---|---|"]
    for name, desc, origin in images:
        p = os.path.join(idir, name)
        with Image.open(p) as im:
            dims = f"{im.size[0]}x{im.size[1]} {im.format} {im.mode}"
        lines.append(f"| `{name}` | {desc} | {origin} | {dims}, {os.path.getsize(p)} B | `{sha256(p)[:16]}…` |")
    with open(os.path.join(idir, "README.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def load_image(path):
    with Image.open(path) as im:
        im.load()
        return im.copy()


# Checkpoints --------------------------------------------------------------------------------------
def v4_config(c):
    return {
        "architectures": ["Idefics2ForConditionalGeneration"],
        "image_token_id": mf.IMAGE_TOKEN_ID,
        "model_type": "idefics2",
        "perceiver_config": {**c["perceiver"], "model_type": "idefics2"},
        "text_config": dict(c["text"]),
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.40.0.dev0",
        "use_cache": True,
        "vision_config": {**c["vision"], "model_type": "idefics2"},
    }


def write_checkpoint(name, c, out):
    d = os.path.join(out, f"tiny-idefics2-{name}")
    v4src = os.path.join(out, "tiny-idefics2-v4")
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    mf.write_json(os.path.join(d, "config.json"), v4_config(c))
    g = mf.GENERATION
    mf.write_json(os.path.join(d, "generation_config.json"), {
        "_from_model_config": True, "bad_words_ids": g["bad_words_ids"], "bos_token_id": 1,
        "eos_token_id": g["eos_token_id"], "pad_token_id": 0, "transformers_version": "4.40.0.dev0"})
    ip = c["image_processor"]
    mf.write_json(os.path.join(d, "preprocessor_config.json"), {
        "do_convert_rgb": True, "do_image_splitting": ip["do_image_splitting"], "do_normalize": True,
        "do_pad": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "Idefics2ImageProcessor", "image_std": [0.5, 0.5, 0.5],
        "processor_class": "Idefics2Processor", "resample": 2, "rescale_factor": 1 / 255, "size": ip["size"]})
    mf.write_json(os.path.join(d, "processor_config.json"),
                  {"image_seq_len": c["image_seq_len"], "processor_class": "Idefics2Processor"})
    for fn in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(os.path.join(v4src, fn), os.path.join(d, fn))

    # build from the written config (so transformers' config rules apply exactly as when loading)
    cfg = Idefics2Config.from_pretrained(d)
    torch.manual_seed(0)
    model = Idefics2ForConditionalGeneration(cfg)
    mf.reinit_(model, seed=c["seed"])
    model.eval()
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    return d, sd


def check_loaded(name, c, d, sd):
    m = Idefics2ForConditionalGeneration.from_pretrained(d, dtype=torch.float32, attn_implementation=mf.ATTN).eval()
    s = m.state_dict()
    assert set(s) == set(sd), set(s) ^ set(sd)
    for k in sd:
        assert mf.bits_equal(sd[k], s[k]), k
    assert m.lm_head.weight.data_ptr() != m.model.text_model.embed_tokens.weight.data_ptr()
    e, cf = c["expect"], m.config
    got = dict(perceiver_hidden=cf.perceiver_config.hidden_size, perceiver_eps=cf.perceiver_config.rms_norm_eps,
               text_eps=cf.text_config.rms_norm_eps, sliding_window=cf.text_config.sliding_window,
               text_head_dim=cf.text_config.head_dim, rope_theta=cf.text_config.rope_parameters["rope_theta"],
               tied=bool(cf.tie_word_embeddings))
    assert got == e, (name, got, e)
    # the modules really use those eps values
    pr = m.model.connector.perceiver_resampler
    eps_mod = {float(mod.variance_epsilon) for n_, mod in pr.named_modules() if hasattr(mod, "variance_epsilon")}
    assert eps_mod == {e["perceiver_eps"]}, eps_mod
    log(f"  {name}: loaded config {got}")
    return m


def make_proc(d, c):
    proc = Idefics2Processor.from_pretrained(d)
    pil = Idefics2ImageProcessorPil.from_pretrained(d)  # the PIL path, named explicitly
    ip = c["image_processor"]
    assert pil.size.longest_edge == ip["size"]["longest_edge"]
    assert pil.size.shortest_edge == ip["size"]["shortest_edge"]
    assert bool(pil.do_image_splitting) == ip["do_image_splitting"]
    assert proc.image_seq_len == c["image_seq_len"]
    proc.image_processor = pil
    return proc


@torch.no_grad()
def sensitivity(model, inputs, ref_logits):
    """How far the logits move when a runtime gets the perceiver eps / sliding window wrong
    (relative to the acceptance tolerance 1e-4 * std(logits))."""
    tol = 1e-4 * float(ref_logits.std())
    res = {}
    pr = model.model.connector.perceiver_resampler
    mods = [mod for _, mod in pr.named_modules() if hasattr(mod, "variance_epsilon")]
    old = mods[0].variance_epsilon
    for mod in mods:
        mod.variance_epsilon = 1e-6 if old != 1e-6 else 1e-5
    res["perceiver_eps_wrong"] = float((model(**inputs).logits - ref_logits).abs().max()) / tol
    for mod in mods:
        mod.variance_epsilon = old
    tc = model.config.text_config
    sw = tc.sliding_window
    tc.sliding_window = None
    try:
        res["no_sliding_window"] = float((model(**inputs).logits - ref_logits).abs().max()) / tol
    finally:
        tc.sliding_window = sw
    assert torch.equal(model(**inputs).logits, ref_logits)
    return {k: round(v, 3) for k, v in res.items()}


# Main ---------------------------------------------------------------------------------------------
SINGLE_CASES = [  # (case name, image)
    ("photo", "photo_verify_720x477.jpg"),
    ("portrait", "doc_portrait_palette_330x610.png"),
    ("tiny", "tiny_photo_27x19.jpg"),
    ("wide", "wide_screenshot_2026x834.png"),
    ("alpha", "alpha_cargo_logo_306x275.png"),
    ("gray", "gray_alpha_favicon_32x32.png"),
]
TWO_CASES = [
    ("two-photo-portrait", ["photo_verify_720x477.jpg", "doc_portrait_palette_330x610.png"]),
    ("two-wide-tiny", ["wide_screenshot_2026x834.png", "tiny_photo_27x19.jpg"]),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(mf.REPO, "Tests", "Fixtures"))
    ap.add_argument("--rust-docs", default=RUST_DOCS)
    ap.add_argument("--keep-images", action="store_true")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    gdir = os.path.join(out, "golden")
    idir = os.path.join(gdir, "images")
    for f in os.listdir(gdir):
        if f.startswith("idefics2-"):
            os.remove(os.path.join(gdir, f))
    if not args.keep_images:
        if os.path.isdir(idir):
            shutil.rmtree(idir)
        images = make_images(idir, args.rust_docs)
        write_images_readme(idir, images)
    for _, im in SINGLE_CASES:
        assert os.path.exists(os.path.join(idir, im)), im

    manifest = {"generator": "scripts/make_idefics2_goldens.py",
                "versions": {"torch": torch.__version__, "transformers": mf.transformers.__version__},
                "attn_implementation": mf.ATTN, "compute_dtype": "float32",
                "tolerance": "logits max|d| <= 1e-4 * std(logits); pixel_values within 1e-6; ids exact",
                "cases": []}
    for name, c in CONFIGS.items():
        log(f"config {name}")
        d, sd = write_checkpoint(name, c, out)
        model = check_loaded(name, c, d, sd)
        proc = make_proc(d, c)
        cases = [(cn, [im], PROMPT_ONE) for cn, im in SINGLE_CASES] + [(cn, ims, PROMPT_TWO) for cn, ims in TWO_CASES]
        for cn, ims, prompt in cases:
            imgs = [load_image(os.path.join(idir, im)) for im in ims]
            t, meta = mf.idefics2_golden(model, proc, prompt, imgs, full_logits=False, generate=True)
            per = 5 if c["image_processor"]["do_image_splitting"] else 1
            n = t["pixel_values"].shape[1]
            assert n == per * len(ims), (cn, t["pixel_values"].shape)
            assert int((t["input_ids"] == mf.IMAGE_TOKEN_ID).sum()) == n * c["image_seq_len"]
            assert t["image_hidden_states"].shape == (n, c["image_seq_len"], c["text"]["hidden_size"])
            for k, v in t.items():
                if v.dtype.is_floating_point:
                    assert torch.isfinite(v).all(), (cn, k)
            fname = f"idefics2-{name}-{cn}.safetensors"
            rel_images = [f"golden/images/{im}" for im in ims]
            mf.save_golden(os.path.join(gdir, fname), t, {
                **meta, "config": f"tiny-idefics2-{name}", "images": ", ".join(ims),
                "do_image_splitting": str(c["image_processor"]["do_image_splitting"]).lower(),
                "image_seq_len": str(c["image_seq_len"])})
            lg = t["logits_last4"]
            log(f"    {fname}: seq {t['input_ids'].shape[1]}, pixel_values {tuple(t['pixel_values'].shape)}, "
                f"valid patches {t['patch_attention_mask'].sum(dim=(1, 2)).tolist()}, "
                f"logits std {float(lg.std()):.3g}")
            entry = {"name": f"{name}-{cn}", "file": f"golden/{fname}", "model": f"tiny-idefics2-{name}",
                     "prompt": prompt, "images": rel_images,
                     "do_image_splitting": c["image_processor"]["do_image_splitting"],
                     "image_seq_len": c["image_seq_len"],
                     "longest_edge": c["image_processor"]["size"]["longest_edge"],
                     "shortest_edge": c["image_processor"]["size"]["shortest_edge"],
                     "seq_len": int(t["input_ids"].shape[1]),
                     "pixel_values_shape": list(t["pixel_values"].shape),
                     "generated_ids": t["generated_ids"][0].tolist(),
                     "sha256": sha256(os.path.join(gdir, fname))}
            if cn == "photo":
                inputs = {k: t[k] for k in ("input_ids", "attention_mask", "pixel_values", "pixel_attention_mask")}
                with torch.no_grad():
                    full = model(**inputs).logits
                assert mf.bits_equal(full[:, -4:], t["logits_last4"])
                entry["sensitivity_in_tolerances"] = sensitivity(model, inputs, full)
                log(f"    sensitivity (max|d| / tolerance): {entry['sensitivity_in_tolerances']}")
            manifest["cases"].append(entry)
    mf.write_json(os.path.join(gdir, "idefics2-cases.json"), manifest)

    total = 0
    log("\nwritten:")
    paths = [os.path.join("tiny-idefics2-a", f) for f in sorted(os.listdir(os.path.join(out, "tiny-idefics2-a")))]
    paths += [os.path.join("tiny-idefics2-b", f) for f in sorted(os.listdir(os.path.join(out, "tiny-idefics2-b")))]
    paths += [os.path.join("golden", "images", f) for f in sorted(os.listdir(idir))]
    paths += [os.path.join("golden", f) for f in sorted(os.listdir(gdir)) if f.startswith("idefics2-")]
    for p in paths:
        s = os.path.getsize(os.path.join(out, p))
        total += s
        log(f"  {s:>10}  {p}")
    log(f"  total {total} bytes")


if __name__ == "__main__":
    main()
