#!/usr/bin/env python3
"""Train a small Idefics2 from scratch on easy-VQA (PyPI `easy-vqa` 1.0, MIT) and write
Tests/Fixtures/easy-vqa-idefics2/: safetensors + configs + the real Idefics2 tokenizer + chat template,
the learning curve, and transformers' greedy answers on the whole test split (the goldens i2q is held to).

    /work/venv/bin/python scripts/train_vqa_model.py --data .cache/easy-vqa [--out DIR] [--epochs N]

Run by hand (not in CI), with the pinned torch/transformers of scripts/requirements-fixtures.txt, on
the CPU (a GPU is used when present; nothing depends on it). `--data` is the folder that
scripts/get_easy_vqa.sh writes (it holds the wheel's raw `train/` and `test/` splits). The test split is
never used for training or model selection: a slice of the train images is held out for the curve.

The model is a real `Idefics2ForConditionalGeneration` (every part exercised: a SigLIP-style encoder,
the perceiver resampler with GQA, a Mistral decoder), trained on the chat template the model card
documents, `User:<image>QUESTION<end_of_utterance>\\nAssistant: ANSWER<end_of_utterance>`, with the loss on
the answer tokens and the closing `<end_of_utterance>`. Images are 64x64 and are fed at their native size
(image splitting off, longest_edge = shortest_edge = 64, so the processor's resize is the identity).

Recipe (what was tried is in Benchmarks/README.md, "Training the easy-VQA model"):
1. Stage 1, as Idefics2 starts from a pretrained SigLIP: the vision tower and the connector learn each
   train image's shape and colour (labels read off its own questions and answers) through a linear probe
   on the mean of the connector's latents. Trained end to end from scratch, the decoder learns the
   answer prior within an epoch and then stays at ~70% (it never learns to read the image); with the
   probe on the vision tower alone, shape stays in a few patches that the perceiver does not find.
2. Stage 2: the whole model on the chat template, AdamW with warm-up and a cosine schedule (the vision
   tower and connector at --vision-lr, the rest at --lr). One vision forward is shared between all the
   questions of an image (the decoder sees exactly what Idefics2Model.forward gives it: inputs_merger
   of the connector's output) and lm_head runs only at the answer positions.
The perceiver's latents start from N(0, 1) (transformers initialises them all to 1, which makes them
learn alike). --augment (flips and 90-degree turns, which keep every easy-VQA answer) slowed shape
learning in trials and is off.
"""
import argparse
import copy
import json
import math
import os
import random
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from PIL import Image
from safetensors.torch import save_file
from transformers import (Idefics2Config, Idefics2ForConditionalGeneration, Idefics2Processor,
                          LlamaTokenizer)
from transformers.models.idefics2.image_processing_pil_idefics2 import Idefics2ImageProcessorPil

# The pinned versions, the real Idefics2 tokenizer (mistral-common's tokenizer.model.v1, sha256 checked)
# and idefics2-8b's chat template are make_fixtures.py's: one definition for every fixture script.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import (CHAT_TEMPLATE, EOU_TOKEN, FAKE_TOKEN, IMAGE_TOKEN, IMAGE_TOKEN_ID,  # noqa: E402
                           MISTRAL_COMMON_VERSION, TORCH_VERSION, TRANSFORMERS_VERSION, get_tokenizer_model, log,
                           sha256_file)

EOU_ID = 32002

# Architecture: widths are multiples of 128 so int4 groups of 32/64/128 all apply.
VISION = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
              image_size=64, patch_size=8)
PERCEIVER = dict(hidden_size=128, resampler_n_latents=16, resampler_depth=2, resampler_n_heads=4,
                 resampler_head_dim=32, num_key_value_heads=2, hidden_act="silu", rms_norm_eps=1e-6)
TEXT = dict(model_type="mistral", hidden_size=128, intermediate_size=512, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, vocab_size=32003, rms_norm_eps=1e-5,
            max_position_embeddings=4096, sliding_window=4096, pad_token_id=0,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
IMAGE_PROCESSOR = dict(do_image_splitting=False, size={"longest_edge": 64, "shortest_edge": 64})
IMAGE_SEQ_LEN = PERCEIVER["resampler_n_latents"]
GENERATION = dict(bos_token_id=1, eos_token_id=[2, EOU_ID], pad_token_id=0, bad_words_ids=[[32000], [32001]])


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


# Tokenizer / processor (the real Idefics2 tokenizer, as scripts/make_fixtures.py builds it) ----------
def build_processor(sp_folder):
    tok = LlamaTokenizer.from_pretrained(sp_folder, legacy=False, add_bos_token=True)
    tok.add_special_tokens({"additional_special_tokens": [FAKE_TOKEN, IMAGE_TOKEN, EOU_TOKEN]})
    ip = Idefics2ImageProcessorPil(**IMAGE_PROCESSOR)
    proc = Idefics2Processor(image_processor=ip, tokenizer=tok, image_seq_len=IMAGE_SEQ_LEN,
                             chat_template=CHAT_TEMPLATE)
    tok.add_special_tokens({"additional_special_tokens": [FAKE_TOKEN, IMAGE_TOKEN, EOU_TOKEN]})
    tok.pad_token = "<unk>"  # as idefics2-8b's tokenizer_config (pad id 0); needed for batched generate
    assert tok.convert_tokens_to_ids([FAKE_TOKEN, IMAGE_TOKEN, EOU_TOKEN]) == [32000, IMAGE_TOKEN_ID, EOU_ID]
    assert len(tok) == 32003
    return proc


def prompt_text(question):
    return f"User:{IMAGE_TOKEN}{question}{EOU_TOKEN}\nAssistant:"


# Data ---------------------------------------------------------------------------------------------
def load_split(data, split):
    with open(os.path.join(data, split, "questions.json")) as f:
        qs = json.load(f)
    return [(q, a, int(i)) for q, a, i in qs]


def load_pixels(proc, data, split, ids):
    """pixel_values [n, 3, 64, 64] exactly as the Idefics2 image processor makes them."""
    out = {}
    for i in sorted(ids):
        with Image.open(os.path.join(data, split, "images", f"{i}.png")) as im:
            im.load()
            pv = proc.image_processor(images=[[im.convert("RGB")]], return_tensors="pt")["pixel_values"]
        assert pv.shape == (1, 1, 3, 64, 64), pv.shape
        out[i] = pv[0, 0]
    return out


def encode_questions(proc, qs):
    """Token ids of prompt + answer. The prompt ids are the processor's (checked on a sample); the
    answer ids are what the full string adds after them (checked to be a prefix extension)."""
    tok = proc.tokenizer
    cache, rows = {}, []
    for q, a, img in qs:
        key = (q, a)
        if key not in cache:
            p = tok(_expand(prompt_text(q)), add_special_tokens=True)["input_ids"]
            full = tok(_expand(prompt_text(q)) + f" {a}{EOU_TOKEN}", add_special_tokens=True)["input_ids"]
            assert full[:len(p)] == p, (q, a)
            cache[key] = (p, full[len(p):])
        p, ans = cache[key]
        rows.append((p, ans, img))
    return rows


def _expand(text):
    """Idefics2Processor's expansion of one <image> (no splitting), with transformers 5.24's space after the
    closing fake token when text follows; checked against the processor in main()."""
    img = f"{FAKE_TOKEN}{IMAGE_TOKEN * IMAGE_SEQ_LEN}{FAKE_TOKEN}"
    head, tail = text.split(IMAGE_TOKEN, 1)
    sep = " " if tail and not tail[0].isspace() and tail[0] != "<" else ""
    return head + img + sep + tail


# Model --------------------------------------------------------------------------------------------
def config():
    return Idefics2Config(vision_config=copy.deepcopy(VISION), perceiver_config=copy.deepcopy(PERCEIVER),
                          text_config=copy.deepcopy(TEXT), image_token_id=IMAGE_TOKEN_ID,
                          tie_word_embeddings=False, use_cache=True)


def image_features(model, pixels):
    """[n, 3, 64, 64] -> [n, IMAGE_SEQ_LEN, text hidden] (vision encoder + connector, as get_image_features)."""
    out = model.model.get_image_features(pixels[:, None], None, return_dict=True)
    return torch.stack(out.pooler_output)


def batch_forward(model, feats, rows, device):
    """Answer-position logits for questions `rows` [(prompt ids, answer ids, feature index)]."""
    m = model.model
    T = max(len(p) + len(a) for p, a, _ in rows)
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    att = torch.zeros(len(rows), T, dtype=torch.long)
    lab = torch.full((len(rows), T), -100, dtype=torch.long)
    for r, (p, a, _) in enumerate(rows):
        seq = p + a
        ids[r, :len(seq)] = torch.tensor(seq)
        att[r, :len(seq)] = 1
        # position t predicts token t+1: labels on the positions before each answer token
        lab[r, len(p) - 1:len(seq) - 1] = torch.tensor(a)
    ids, att, lab = ids.to(device), att.to(device), lab.to(device)
    fi = torch.tensor([f for _, _, f in rows], device=device)
    emb = m.text_model.get_input_embeddings()(ids)
    emb = m.inputs_merger(input_ids=ids, inputs_embeds=emb, image_hidden_states=feats[fi].reshape(-1, feats.shape[-1]))
    h = m.text_model(inputs_embeds=emb, attention_mask=att, use_cache=False, return_dict=True).last_hidden_state
    sel = lab != -100
    logits = model.lm_head(h[sel])
    return logits, lab[sel], sel


COLORS = ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")
SHAPES = ("circle", "rectangle", "triangle")


def image_labels(qs):
    """Per train image, (shape index, colour index) as its questions and answers state them (-1 where
    none does): "what color/shape ..." answers, the colour or shape a question names ("what is the
    blue shape?"), and yes/no answers about a named colour or shape ("is there not a red shape?": no)."""
    lab = {}
    for q, a, i in qs:
        shape, color = lab.get(i, (-1, -1))
        words = q.rstrip("?").split()
        if a in SHAPES:
            shape = SHAPES.index(a)
        if a in COLORS:
            color = COLORS.index(a)
        if a in ("yes", "no"):
            present = (a == "yes") != ("not" in words or "no" in words)
            for w in words:
                if present and w in SHAPES:
                    shape = SHAPES.index(w)
                if present and w in COLORS:
                    color = COLORS.index(w)
        elif q.startswith("what is the ") and words[3] in COLORS:  # "what is the blue shape?"
            color = COLORS.index(words[3])
        elif "color of the" in q or q.startswith("what color is the"):
            if words[-1] in SHAPES:
                shape = SHAPES.index(words[-1])
        lab[i] = (shape, color)
    return lab


def pretrain_vision(model, pixels, labels, val_labels, args, device):
    """Stage 1, as Idefics2 starts from a pretrained SigLIP: the vision tower and the connector learn the
    train images' shape and colour through a linear probe on the mean of the connector's latents (thrown
    away afterwards). Held-out train images give the curve."""
    probe = torch.nn.Linear(TEXT["hidden_size"], len(SHAPES) + len(COLORS)).to(device)
    params = list(model.model.vision_model.parameters()) + list(model.model.connector.parameters())
    opt = torch.optim.AdamW(params + list(probe.parameters()), lr=args.vision_lr, weight_decay=args.weight_decay)
    imgs = sorted(labels)
    rng = random.Random(args.seed + 1)
    steps = math.ceil(len(imgs) / 128) * args.vision_epochs
    t0, step = time.time(), 0

    def logits(chunk, train):
        px = torch.stack([DIHEDRAL[rng.randrange(8) if (train and args.augment) else 0](pixels[i]) for i in chunk])
        return probe(image_features(model, px.to(device)).mean(1))  # [n, 3 + 8]

    def targets(chunk, lab):
        return (torch.tensor([lab[i][0] for i in chunk], device=device), torch.tensor([lab[i][1] for i in chunk], device=device))

    for epoch in range(args.vision_epochs):
        rng.shuffle(imgs)
        model.train()
        for s in range(0, len(imgs), 128):
            chunk = imgs[s:s + 128]
            for g in opt.param_groups:
                g["lr"] = args.vision_lr * min(1.0, (step + 1) / 20) * 0.5 * (1 + math.cos(math.pi * step / steps))
            out = logits(chunk, True)
            ys, yc = targets(chunk, labels)
            loss = F.cross_entropy(out[:, :3], ys, ignore_index=-1) + F.cross_entropy(out[:, 3:], yc, ignore_index=-1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        model.eval()
        with torch.no_grad():
            v = sorted(val_labels)
            out = logits(v, False)
            ys, yc = targets(v, val_labels)
            sa = (out[:, :3].argmax(1) == ys)[ys >= 0].float().mean().item()
            ca = (out[:, 3:].argmax(1) == yc)[yc >= 0].float().mean().item()
        log(f"vision epoch {epoch + 1}: loss {loss.item():.4f}, held-out shape {sa:.3f} colour {ca:.3f} {time.time() - t0:.0f}s")
        args.vision_curve.append({"epoch": epoch + 1, "loss": round(loss.item(), 5), "val_shape": round(sa, 4),
                                  "val_colour": round(ca, 4), "seconds": round(time.time() - t0, 1)})
    model.train()


DIHEDRAL = [lambda x: x, lambda x: x.flip(-1), lambda x: x.flip(-2), lambda x: x.flip(-1, -2),
            lambda x: x.transpose(-1, -2), lambda x: x.transpose(-1, -2).flip(-1),
            lambda x: x.transpose(-1, -2).flip(-2), lambda x: x.transpose(-1, -2).flip(-1, -2)]


@torch.no_grad()
def teacher_forced_accuracy(model, pixels, by_image, device, limit=None):
    """Share of questions whose every answer token (and the closing <end_of_utterance>) is the argmax."""
    model.eval()
    imgs = sorted(by_image)[:limit]
    ok = n = 0
    for s in range(0, len(imgs), 64):
        chunk = imgs[s:s + 64]
        feats = image_features(model, torch.stack([pixels[i] for i in chunk]).to(device))
        rows = [(p, a, k) for k, i in enumerate(chunk) for p, a, _ in by_image[i]]
        logits, lab, sel = batch_forward(model, feats, rows, device)
        good = (logits.argmax(-1) == lab)
        # regroup per row
        counts = sel.sum(1).tolist()
        for g in torch.split(good, counts):
            ok += bool(g.all())
            n += 1
    model.train()
    return ok / max(n, 1)


def train(model, pixels, by_image, val_by_image, args, device, curve):
    params_decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n and "latents" not in n
                    and "position_embedding" not in n]
    params_nodecay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n
                                                                     and "latents" not in n and "position_embedding" not in n)]
    vis = {id(p) for p in list(model.model.vision_model.parameters()) + list(model.model.connector.parameters())}
    groups = []
    for ps, wd in ((params_decay, args.weight_decay), (params_nodecay, 0.0)):
        for is_vis in (False, True):
            sel = [p for p in ps if (id(p) in vis) == is_vis]
            if sel:
                groups.append({"params": sel, "weight_decay": wd, "scale": args.vision_lr / args.lr if is_vis else 1.0})
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.98))
    imgs = sorted(by_image)
    steps_per_epoch = math.ceil(len(imgs) / args.images_per_step)
    total = steps_per_epoch * args.epochs
    warm = max(1, int(0.05 * total))
    rng = random.Random(args.seed)
    step, t0, seen = 0, time.time(), 0
    prior = curve[-1] if curve else None
    model.train()
    for epoch in range(args.epochs):
        rng.shuffle(imgs)
        for s in range(0, len(imgs), args.images_per_step):
            chunk = imgs[s:s + args.images_per_step]
            lr = args.lr * min(1.0, (step + 1) / warm) * (0.5 * (1 + math.cos(math.pi * min(1.0, step / total))))
            lr = max(lr, args.lr * 0.02) if step >= warm else lr
            for g in opt.param_groups:
                g["lr"] = lr * g["scale"]
            px = torch.stack([DIHEDRAL[rng.randrange(8) if args.augment else 0](pixels[i]) for i in chunk]).to(device)
            feats = image_features(model, px)
            rows = [(p, a, k) for k, i in enumerate(chunk) for p, a, _ in by_image[i]]
            logits, lab, _ = batch_forward(model, feats, rows, device)
            loss = F.cross_entropy(logits.float(), lab)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            seen += len(rows)
            if step % args.log_every == 0 or step == total:
                el = time.time() - t0
                msg = f"epoch {epoch + 1} step {step}/{total} loss {loss.item():.4f} lr {lr:.2e} {el:.0f}s"
                if step % (args.log_every * args.eval_every) == 0 or step == total:
                    acc = teacher_forced_accuracy(model, pixels, val_by_image, device)
                    b = prior or {"step": 0, "epoch": 0, "questions_seen": 0, "seconds": 0}  # a continued run
                    curve.append({"step": b["step"] + step, "epoch": round(b["epoch"] + step / steps_per_epoch, 3),
                                  "questions_seen": b["questions_seen"] + seen, "seconds": round(b["seconds"] + el, 1),
                                  "loss": round(loss.item(), 5), "val_accuracy": round(acc, 4)})
                    msg += f" val {acc:.4f}"
                log(msg)


# Reference answers --------------------------------------------------------------------------------
@torch.no_grad()
def greedy_answers(model, proc, data, split, qs, device, max_new_tokens=8):
    """transformers' own generate() on the processor's inputs, one batch per image (left padding)."""
    model.eval()
    tok = proc.tokenizer
    tok.padding_side = "left"
    by_img = {}
    for k, (q, a, i) in enumerate(qs):
        by_img.setdefault(i, []).append(k)
    out = [None] * len(qs)
    for n, (i, ks) in enumerate(sorted(by_img.items())):
        with Image.open(os.path.join(data, split, "images", f"{i}.png")) as im:
            im.load()
            im = im.convert("RGB")
        texts = [prompt_text(qs[k][0]) for k in ks]
        inputs = proc(text=texts, images=[[im]] * len(ks), return_tensors="pt", padding=True).to(device)
        gen = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        for r, k in enumerate(ks):
            ids = gen[r, inputs["input_ids"].shape[1]:].tolist()
            cut = []
            for t in ids:
                if t in (2, EOU_ID, 0):
                    break
                cut.append(t)
            out[k] = {"ids": cut, "text": tok.decode(cut, skip_special_tokens=True).strip()}
        if n % 200 == 0:
            log(f"  generate {split}: image {n}/{len(by_img)}")
    return out


# Writing ------------------------------------------------------------------------------------------
def save_checkpoint(model, proc, out):
    model.generation_config.update(**GENERATION)
    model.save_pretrained(out)
    proc.save_pretrained(out)


def write_manifest(out, extra):
    """MANIFEST.json: every file of the checkpoint folder with its sha256 and size, and how it was made."""
    files = []
    for root, _, names in os.walk(out):
        for n in sorted(names):
            p = os.path.join(root, n)
            rel = os.path.relpath(p, out)
            if rel != "MANIFEST.json":
                files.append({"path": rel, "sha256": sha256_file(p), "size": os.path.getsize(p)})
    files.sort(key=lambda f: f["path"])
    write_json(os.path.join(out, "MANIFEST.json"), {
        "generator": "scripts/train_vqa_model.py", **extra,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "mistral_common_wheel": MISTRAL_COMMON_VERSION, "python": sys.version.split()[0]},
        "total_size": sum(f["size"] for f in files), "files": files})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="folder written by scripts/get_easy_vqa.sh")
    ap.add_argument("--out", default="Tests/Fixtures/easy-vqa-idefics2")
    ap.add_argument("--tokenizer-model", default=None)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--images-per-step", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--vision-lr", type=float, default=3e-4, help="peak learning rate of the vision tower and connector (both stages)")
    ap.add_argument("--vision-epochs", type=int, default=25, help="stage 1: vision tower + connector on shape/colour labels")
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--holdout-images", type=int, default=200, help="train images held out for the curve")
    ap.add_argument("--augment", action="store_true", help="dihedral augmentation (slowed shape learning in trials)")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--eval-every", type=int, default=5, help="validation every N log lines")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--limit-test", type=int, default=0, help="only the first N test questions (smoke runs)")
    ap.add_argument("--init", default=None, help="start from this checkpoint (with --vision-epochs 0: more stage-2 epochs)")
    ap.add_argument("--skip-train", action="store_true", help="load --out and only regenerate the goldens")
    args = ap.parse_args()
    assert torch.__version__.split("+")[0] == TORCH_VERSION, torch.__version__
    assert transformers.__version__ == TRANSFORMERS_VERSION, transformers.__version__
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(args.seed)
    random.seed(args.seed)

    with tempfile.TemporaryDirectory() as work:
        proc = build_processor(get_tokenizer_model(args.tokenizer_model, work))
    train_qs, test_qs = load_split(args.data, "train"), load_split(args.data, "test")
    if args.limit_test:
        test_qs = test_qs[:args.limit_test]
    log(f"easy-vqa: train {len(train_qs)} questions, test {len(test_qs)}; torch threads {torch.get_num_threads()}, {device}")

    # the expansion used for training equals the processor's (prompt ids)
    with Image.open(os.path.join(args.data, "train", "images", "0.png")) as im:
        im.load()
        im = im.convert("RGB")
        for q, a, _ in train_qs[:300:7]:
            ids = proc(text=[prompt_text(q)], images=[[im]], return_tensors="pt")["input_ids"][0].tolist()
            assert ids == proc.tokenizer(_expand(prompt_text(q)))["input_ids"], q

    curve = []
    os.makedirs(args.out, exist_ok=True)
    if args.skip_train:
        model = Idefics2ForConditionalGeneration.from_pretrained(args.out).to(device)
    else:
        images = sorted({i for _, _, i in train_qs})
        rng = random.Random(args.seed)
        held = set(rng.sample(images, args.holdout_images))
        rows = encode_questions(proc, train_qs)
        by_image, val_by_image = {}, {}
        for r in rows:
            (val_by_image if r[2] in held else by_image).setdefault(r[2], []).append(r)
        pixels = load_pixels(proc, args.data, "train", images)
        log(f"train images {len(by_image)}, held out {len(val_by_image)}; tokens per question "
            f"{np.mean([len(p) + len(a) for p, a, _ in rows]):.1f}")
        if args.init:  # continue from a checkpoint this script wrote (more stage-2 epochs)
            model = Idefics2ForConditionalGeneration.from_pretrained(args.init).to(device)
            with open(os.path.join(args.init, "training.json")) as f:
                before = json.load(f)
            args.vision_curve = before.get("vision_curve", [])
            curve.extend(before.get("curve", []))
            args.continued_from = {k: before[k] for k in ("recipe", "seconds")}
        else:
            model = Idefics2ForConditionalGeneration(config()).to(device)
            # transformers initialises every latent to 1 (identical latents learn alike); start them apart
            with torch.no_grad():
                model.model.connector.perceiver_resampler.latents.normal_(0.0, 1.0)
        log(f"parameters: {sum(p.numel() for p in model.parameters()):,}")
        t0 = time.time()
        labels = image_labels([q for q in train_qs if q[2] not in held])
        val_labels = image_labels([q for q in train_qs if q[2] in held])
        if not args.init:
            args.vision_curve = []
        log(f"vision labels: shape known for {sum(v[0] >= 0 for v in labels.values())}, colour for "
            f"{sum(v[1] >= 0 for v in labels.values())} of {len(labels)} train images")
        if args.vision_epochs:
            pretrain_vision(model, pixels, labels, val_labels, args, device)
        train(model, pixels, by_image, val_by_image, args, device, curve)
        train_s = time.time() - t0
        model = model.to("cpu").float()
        save_checkpoint(model, proc, args.out)
        write_json(os.path.join(args.out, "training.json"), {
            "data": "easy-vqa 1.0 (PyPI, MIT): train split minus the held-out images",
            "recipe": {k: v for k, v in vars(args).items() if k not in ("data", "out", "tokenizer_model", "vision_curve", "continued_from")},
            "continued_from": getattr(args, "continued_from", None),
            "seconds": round(train_s, 1), "device": device, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "held_out_train_images": sorted(held), "vision_curve": args.vision_curve, "curve": curve})
        model = model.to(device)

    # transformers' greedy answers on the whole test split: the goldens
    t0 = time.time()
    ans = greedy_answers(model, proc, args.data, "test", test_qs, device)
    acc = np.mean([a["text"] == q[1] for a, q in zip(ans, test_qs)])
    log(f"transformers f32 greedy exact match on {len(test_qs)} test questions: {acc:.4f} ({time.time() - t0:.0f}s)")
    write_json(os.path.join(args.out, "test_answers.json"), {
        "reference": f"transformers {transformers.__version__} generate(do_sample=False, max_new_tokens=8), f32, "
                     f"eos [2, 32002]; easy-vqa 1.0 test split in file order; questionId = index",
        "exact_match": round(float(acc), 6), "questions": len(test_qs),
        "answers": [{"questionId": k, "ids": a["ids"], "text": a["text"]} for k, a in enumerate(ans)]})
    write_manifest(args.out, {"data": "easy-vqa 1.0 (PyPI, MIT)", "test_exact_match": round(float(acc), 6)})


if __name__ == "__main__":
    main()
