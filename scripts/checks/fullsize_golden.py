#!/usr/bin/env python3
"""Full-size Idefics2 golden trace (issue 25): transformers' own Idefics2 modules, driven one layer
at a time in float32, on a real document page — per-layer hidden-state summaries and the
last-position logits, for i2q to compare against (scripts/checks/compare_golden_trace.py).

Run by hand (NOT in CI), from the repository root, with the pinned venv:

    nice -n 19 /work/venv/bin/python scripts/checks/fullsize_golden.py MODEL_DIR OUT.json \
        [--split | --no-split] [--prompt TEXT] [--image PAGE.png] [--full-logits] [--nf4 | --int4-awq AWQ_DIR]
    /work/venv/bin/python scripts/checks/fullsize_golden.py --self-check   # tiny config: driver == whole model

Pinned: torch 2.15.0, transformers 5.24.0, safetensors 0.8.0, numpy 2.4.6 (asserted below).

How it stays within memory: the model is built on PyTorch's `meta` device (no storage), and a
forward pre-hook on each "unit" (the vision embeddings, each vision encoder layer, the
post-layernorm, the modality projection, the resampler's latents + final norm, each perceiver
layer, the token embeddings, each decoder layer, the final norm, lm_head) loads that unit's
weights from the checkpoint's safetensors shards (16-bit weights widened to float32: float32
compute on float32 weights of exactly those values) just before it runs; a forward hook records
its output and frees the weights again. So the forward pass is transformers' own
`Idefics2ForConditionalGeneration.forward` (eager attention), unchanged, with at most one unit's
weights resident (idefics2-8b: one decoder layer, 0.87 GB in float32). `--self-check` proves on
the tiny fixture config (Tests/Fixtures/tiny-idefics2-a) that this driver gives bit-identical
hidden states and logits to the whole model loaded normally.

`--int4-awq AWQ_DIR` (an `i2q export --to hf-awq` directory): every linear the export quantized gets
its int4 weight dequantized in float32 (scripts/lib/awq_gemm.py, equal to gptqmodel 7.7's
`dequantize_gemm`: scripts/checks/awq_dequant_check.py); compare with `i2q-bench trace` on the .i2q
the directory was exported from.

Summaries (`summarize`): for each recorded tensor X (real rows only: padded vision patches are
dropped, as i2q computes only the real ones), rows/cols, float64 sum, sum of squares and max|x|,
the values at S = min(2048, N) flat positions k·N // S (k = 0..S-1), and the whole last row when
it has at most 4096 columns. The comparison reports max|Δ| over those values / std(X_ref).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import awq_gemm  # noqa: E402
from i2qscripts import REPO, log, pin  # noqa: E402

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

pin("torch", torch.__version__, "2.15.0", prefix=True)
pin("transformers", transformers.__version__, "5.24.0")
pin("safetensors", safetensors.__version__, "0.8.0")
pin("numpy", np.__version__, "2.4.6")

from PIL import Image  # noqa: E402
from safetensors import safe_open  # noqa: E402
from transformers import (  # noqa: E402
    Idefics2Config,
    Idefics2ForConditionalGeneration,
    Idefics2ImageProcessorPil,
    Idefics2Processor,
)

transformers.logging.set_verbosity_error()
ATTN = "eager"
SAMPLES = 2048
LAST_ROW_MAX = 4096
DEFAULT_IMAGE = os.path.join(REPO, "Tests", "Fixtures", "docvqa-mini", "documents", "invoice_00.png")
DEFAULT_PROMPT = "User:<image>What is the total amount due?<end_of_utterance>\nAssistant:"


# Summaries -----------------------------------------------------------------------------------------
def summarize(x, full=False):
    """x: [rows, cols] float32 (real rows only). SAMPLES / LAST_ROW_MAX: module settings (the CI
    slice golden keeps fewer values: scripts/fixtures/make_fullwidth_slice_golden.py)."""
    x = x.detach().to(torch.float32).reshape(x.shape[0], -1).contiguous()
    rows, cols = x.shape
    flat = x.reshape(-1)
    n = flat.numel()
    d = flat.to(torch.float64)
    s = min(SAMPLES, n)
    idx = (torch.arange(s, dtype=torch.int64) * n) // s
    out = {"rows": rows, "cols": cols, "sum": float(d.sum()), "sumsq": float((d * d).sum()),
           "absmax": float(d.abs().max()), "samples": [float(v) for v in flat[idx]]}
    if cols <= LAST_ROW_MAX or full:
        out["last_row"] = [float(v) for v in x[-1]]
    return out


# Lazy weights --------------------------------------------------------------------------------------
class ShardedWeights:
    """Tensors of a checkpoint directory (model.safetensors or an index + shards), opened lazily."""

    def __init__(self, model_dir):
        self.dir = model_dir
        idx = os.path.join(model_dir, "model.safetensors.index.json")
        if os.path.exists(idx):
            with open(idx) as f:
                self.where = json.load(f)["weight_map"]
        else:
            with safe_open(os.path.join(model_dir, "model.safetensors"), "pt") as f:
                self.where = {k: "model.safetensors" for k in f.keys()}
        self.handles = {}

    def get(self, name):
        fn = self.where.get(name)
        if fn is None:
            raise SystemExit(f"{self.dir}: tensor {name!r} is missing from the checkpoint")
        if fn not in self.handles:
            self.handles[fn] = safe_open(os.path.join(self.dir, fn), "pt")
        return self.handles[fn].get_tensor(name).to(torch.float32)


def _set_param(module, dotted, tensor):
    *path, leaf = dotted.split(".")
    sub = module.get_submodule(".".join(path)) if path else module
    sub._parameters[leaf] = torch.nn.Parameter(tensor, requires_grad=False)


def nf4_quantizes(name, shape):
    """The weights transformers' bitsandbytes integration quantizes (nn.Linear weights; never lm_head,
    embeddings, norms, convs, the perceiver latents) -- i2q's QuantizePass.quantizes, same rule."""
    if len(shape) != 2 or not name.endswith(".weight"):
        return False
    if name.startswith("lm_head.") or "embed" in name or "norm" in name:
        return False
    return name.endswith("_proj.weight") or name.endswith(".fc1.weight") or name.endswith(".fc2.weight")


def nf4_roundtrip(t):
    """bitsandbytes NF4 (blocksize 64, double quantization) of the float32 weight (transformers loading
    the checkpoint with dtype=float32), dequantized by bitsandbytes: the weight Linear4bit multiplies
    by for more than one row (MatMul4Bit: linear(A, dequantize_4bit(B, quant_state).to(A.dtype).t())).

    Quantized and dequantized as a flat tensor: the packed bytes are the same as for the 2-D weight
    (checked), but bitsandbytes 0.50.2's CPU dequantize_4bit is wrong for 2-D shapes whose last
    dimension is not a multiple of the block size (e.g. idefics2-8b's vision fc2 [1152, 4304]: it
    differs from code[q]·absmax by up to 3 for randn input; 1-D inputs match exactly)."""
    import bitsandbytes.functional as bf
    flat = t.reshape(-1).contiguous()
    q, st = bf.quantize_4bit(flat, blocksize=64, compress_statistics=True, quant_type="nf4")
    return bf.dequantize_4bit(q, st).to(torch.float32).reshape(t.shape)


class AwqWeights:
    """`--int4-awq DIR`: the weights of an `i2q export --to hf-awq` directory (AutoAWQ GEMM layout).
    Every linear the export quantized (a `MODULE.qweight` tensor) gets `MODULE.weight` =
    awq_gemm.dequantize(qweight, qzeros, scales) in float32 -- gptqmodel 7.7's `dequantize_gemm`
    exactly (scripts/checks/awq_dequant_check.py), and the value i2q's int4 prefill multiplies by.

    Every other tensor comes from the 16-bit checkpoint `base` (widened to float32): the export
    writes those as float16 (AutoAWQ's convention), while the .i2q it was exported from -- the file
    i2q is compared on -- keeps them in the checkpoint's bf16; bf16 -> f16 is exact except below
    f16's normal range (|x| < 6.1e-5). The export's copy is read too and the differences counted
    (`f16_copy`: tensors and elements that differ, max|Δ|), so the JSON says how far the export's
    own values are from the ones used."""

    def __init__(self, awq_dir, base):
        self.exp, self.base = ShardedWeights(awq_dir), base
        with open(os.path.join(awq_dir, "config.json")) as f:
            qc = json.load(f).get("quantization_config") or {}
        if qc.get("quant_method") != "awq" or qc.get("version") != "gemm" or qc.get("bits") != 4 or not qc.get("zero_point"):
            raise SystemExit(f"{awq_dir}/config.json: quantization_config is not AutoAWQ GEMM int4 with zero points "
                             f"({qc}); make the directory with `i2q export MODEL.i2q --to hf-awq -o DIR`")
        self.group_size = qc["group_size"]
        self.quantized = sorted(n[: -len(".qweight")] for n in self.exp.where if n.endswith(".qweight"))
        self.qset = set(self.quantized)
        self.used = set()
        self.f16_copy = {"tensors": 0, "tensors_differ": 0, "elements": 0, "elements_differ": 0, "max_abs_diff": 0.0}

    def raw(self, name):
        fn = self.exp.where[name]
        if fn not in self.exp.handles:
            self.exp.handles[fn] = safe_open(os.path.join(self.exp.dir, fn), "pt")
        return self.exp.handles[fn].get_tensor(name)

    def get(self, name):
        module = name[: -len(".weight")] if name.endswith(".weight") else None
        if module in self.qset:
            self.used.add(module)
            return awq_gemm.dequantize(self.raw(module + ".qweight"), self.raw(module + ".qzeros"),
                                       self.raw(module + ".scales"), self.group_size)
        t = self.base.get(name)
        if name not in self.exp.where:
            raise SystemExit(f"{self.exp.dir}: tensor {name!r} is missing from the export")
        e = self.raw(name).to(torch.float32)
        d = (e - t).abs()
        c = self.f16_copy
        c["tensors"] += 1
        c["elements"] += t.numel()
        nd = int((d != 0).sum())
        c["tensors_differ"] += nd > 0
        c["elements_differ"] += nd
        c["max_abs_diff"] = max(c["max_abs_diff"], float(d.max()) if d.numel() else 0.0)
        return t


class LayerDriver:
    """Hooks that load each unit's weights just before it runs and free them after."""

    def __init__(self, model, weights, nf4=False):
        self.model, self.w, self.nf4 = model, weights, nf4
        self.loaded_bytes = 0
        self.peak_loaded = 0
        self.handles = []
        names = {id(m): n for n, m in model.named_modules()}
        m = model.model
        units = [m.vision_model.embeddings, *m.vision_model.encoder.layers, m.vision_model.post_layernorm,
                 m.connector.modality_projection, *m.connector.perceiver_resampler.layers,
                 m.text_model.embed_tokens, *m.text_model.layers, m.text_model.norm, model.lm_head]
        for u in units:
            self._hook(u, names[id(u)], recurse=True)
        # the resampler's own parameters (latents) and its final norm: around the whole resampler
        r = m.connector.perceiver_resampler
        self._hook(r, names[id(r)], recurse=False, extra=["norm.weight"])

    def _hook(self, unit, prefix, recurse, extra=()):
        names = [n for n, _ in unit.named_parameters(recurse=recurse)] + list(extra)

        def pre(mod, args):
            for n in names:
                t = self.w.get(f"{prefix}.{n}")
                if self.nf4 and nf4_quantizes(f"{prefix}.{n}", t.shape):
                    t = nf4_roundtrip(t)
                _set_param(unit, n, t)
                self.loaded_bytes += t.numel() * 4
            self.peak_loaded = max(self.peak_loaded, self.loaded_bytes)

        def post(mod, args, out):
            for n in names:
                p = unit.get_parameter(n)
                self.loaded_bytes -= p.numel() * 4
                _set_param(unit, n, torch.empty(p.shape, device="meta"))

        self.handles.append(unit.register_forward_pre_hook(pre))
        self.handles.append(unit.register_forward_hook(post))


def meta_model(cfg):
    """The model with every parameter on `meta`, and its (non-persistent) buffers computed on the CPU."""
    with torch.device("meta"):
        model = Idefics2ForConditionalGeneration(cfg)
    # buffers are computed at construction (rotary inv_freq): rebuild those modules on the CPU
    real = {}
    for name, mod in model.named_modules():
        if any(b.is_meta for b in mod.buffers(recurse=False)):
            assert not list(mod.parameters(recurse=False)), name
            real[name] = mod
    for name, mod in real.items():
        *path, leaf = name.split(".")
        parent = model.get_submodule(".".join(path))
        new = type(mod)(config=mod.config) if hasattr(mod, "config") else None
        assert new is not None and not any(b.is_meta for b in new.buffers()), name
        setattr(parent, leaf, new)
    assert not any(b.is_meta for b in model.buffers())
    return model.eval()


class AnonPeak:
    """Peak RssAnon (heap and buffers; the mapped safetensors shards are page cache and not counted),
    sampled every 20 ms from /proc/self/status."""

    def __init__(self):
        import threading
        self.peak, self.running = 0, True
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    @staticmethod
    def now():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
        return 0

    def _loop(self):
        while self.running:
            self.peak = max(self.peak, self.now())
            time.sleep(0.02)

    def stop(self):
        self.running = False
        self.t.join()
        return max(self.peak, self.now())


# Tracing -------------------------------------------------------------------------------------------
class Trace:
    """Forward hooks recording the per-layer summaries."""

    def __init__(self, model, full_logits=False):
        self.stages = []
        self.full_logits = full_logits
        self.patch_mask = None  # [images, patches] bool
        self.handles = []
        m = model.model
        vm = m.vision_model

        def vis_pre(mod, args, kwargs):
            pm = kwargs.get("patch_attention_mask")
            self.patch_mask = pm.reshape(pm.shape[0], -1).clone()
        self.handles.append(vm.register_forward_pre_hook(vis_pre, with_kwargs=True))
        for i, layer in enumerate(vm.encoder.layers):
            self.handles.append(layer.register_forward_hook(self._per_image(f"vision.layer.{i}")))
        self.handles.append(vm.post_layernorm.register_forward_hook(self._per_image("vision.post_layernorm")))
        self.handles.append(m.connector.modality_projection.register_forward_hook(
            self._per_image("connector.modality_projection")))
        for i, layer in enumerate(m.connector.perceiver_resampler.layers):
            self.handles.append(layer.register_forward_hook(self._per_image(f"connector.perceiver.{i}", real=False)))
        self.handles.append(m.connector.register_forward_hook(self._per_image("connector.output", real=False)))
        for i, layer in enumerate(m.text_model.layers):
            self.handles.append(layer.register_forward_hook(self._text(f"text.layer.{i}")))
        self.handles.append(m.text_model.norm.register_forward_hook(self._text("text.norm")))

    def _per_image(self, name, real=True):
        def hook(mod, args, out):
            x = out[0] if isinstance(out, tuple) else out
            for j in range(x.shape[0]):
                xj = x[j][self.patch_mask[j]] if real else x[j]
                self.stages.append({"name": f"image.{j}.{name}", **summarize(xj)})
        return hook

    def _text(self, name):
        def hook(mod, args, out):
            x = out[0] if isinstance(out, tuple) else out
            assert x.shape[0] == 1
            self.stages.append({"name": name, **summarize(x[0])})
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def make_processor(model_dir, split):
    proc = Idefics2Processor.from_pretrained(model_dir)
    ip = Idefics2ImageProcessorPil.from_pretrained(model_dir)  # the PIL path, named explicitly
    ip.do_image_splitting = split
    proc.image_processor = ip
    return proc


@torch.no_grad()
def trace_case(model, proc, prompt, image_paths, full_logits=False):
    images = []
    for p in image_paths:
        with Image.open(p) as im:
            im.load()
            images.append(im.copy())
    enc = proc(text=prompt, images=images, return_tensors="pt")
    inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "pixel_values", "pixel_attention_mask")}
    tr = Trace(model, full_logits)
    try:
        t0 = time.time()
        out = model(**inputs, logits_to_keep=1, use_cache=False)
        secs = time.time() - t0
    finally:
        tr.remove()
    logits = out.logits[0, -1:].to(torch.float32)  # [1, vocab]
    pv = inputs["pixel_values"][0]
    pixel = [{"name": f"pixel_values.{j}", **summarize(pv[j].reshape(1, -1))} for j in range(pv.shape[0])
             if bool((pv[j] != 0).any())]
    lg = summarize(logits, full=full_logits)
    top = torch.topk(logits[0], 16)
    lg.update(argmax=int(logits[0].argmax()), top_ids=[int(i) for i in top.indices],
              top_values=[float(v) for v in top.values])
    return {"input_ids": [int(i) for i in inputs["input_ids"][0]],
            "pixel_values_shape": list(inputs["pixel_values"].shape),
            "stages": pixel + tr.stages + [{"name": "logits.last", **lg}],
            "seconds": round(secs, 1)}


def run(model_dir, out, split, prompt, images, full_logits, threads=2, nf4=False, awq_dir=None):
    torch.set_num_threads(threads)
    anon = AnonPeak()
    cfg = Idefics2Config.from_pretrained(model_dir)
    cfg._attn_implementation = ATTN
    for sub in (cfg.vision_config, cfg.perceiver_config, cfg.text_config):
        sub._attn_implementation = ATTN
    model = meta_model(cfg)
    weights = AwqWeights(awq_dir, ShardedWeights(model_dir)) if awq_dir else ShardedWeights(model_dir)
    driver = LayerDriver(model, weights, nf4=nf4)
    proc = make_processor(model_dir, split)
    res = trace_case(model, proc, prompt, images, full_logits)
    if awq_dir:
        missed = sorted(weights.qset - weights.used)
        if missed:
            raise SystemExit(f"{awq_dir}: quantized modules the model never loaded (names do not match the model's): {missed[:5]}")
    import resource
    doc = {"generator": "scripts/checks/fullsize_golden.py",
           "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
           "attn_implementation": ATTN, "compute_dtype": "float32",
           "weights": ("bitsandbytes NF4 (blocksize 64, double quant) of the float32 weights, dequantized; "
                       "the rest widened to float32" if nf4 else
                       f"AWQ GEMM int4 (group {weights.group_size}) of {os.path.abspath(awq_dir)}: the "
                       f"{len(weights.quantized)} quantized linears dequantized (q - z)·s in float32; the rest "
                       "from the checkpoint widened to float32" if awq_dir else
                       "checkpoint values widened to float32 (exact)"),
           **({"awq_export": {"dir": os.path.abspath(awq_dir), "group_size": weights.group_size,
                              "quantized_linears": len(weights.quantized), "f16_copy": weights.f16_copy}}
              if awq_dir else {}),
           "model": os.path.abspath(model_dir), "prompt": prompt,
           "images": [os.path.relpath(os.path.abspath(p), REPO) for p in images],
           "do_image_splitting": split,
           "summary_rule": f"rows/cols, float64 sum/sumsq/absmax, values at k*N//S for S=min({SAMPLES},N), "
                           f"last row when cols <= {LAST_ROW_MAX}; vision/projection stages: real patches only",
           **res,
           "peak_weights_bytes": driver.peak_loaded,
           "peak_rss_anon_kib": anon.stop(),
           "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    if out:
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, out)
    return doc, model


# Self-check on the tiny fixture --------------------------------------------------------------------
@torch.no_grad()
def self_check():
    d = os.path.join(REPO, "Tests", "Fixtures", "tiny-idefics2-a")
    image = os.path.join(REPO, "Tests", "Fixtures", "docvqa-mini", "documents", "form_01.png")
    prompt = "User:<image>What is the form number?<end_of_utterance>\nAssistant:"
    for split in (True, False):
        doc, _ = run(d, None, split, prompt, [image], full_logits=True, threads=1)
        whole = Idefics2ForConditionalGeneration.from_pretrained(d, dtype=torch.float32, attn_implementation=ATTN).eval()
        proc = make_processor(d, split)
        ref = trace_case(whole, proc, prompt, [image], full_logits=True)
        assert ref["input_ids"] == doc["input_ids"]
        assert len(ref["stages"]) == len(doc["stages"]), (len(ref["stages"]), len(doc["stages"]))
        for a, b in zip(ref["stages"], doc["stages"]):
            assert a == b, f"split={split}: stage {a['name']} differs"
        # and the whole model's own hidden_states / logits agree with the recorded text stages
        enc = proc(text=prompt, images=[Image.open(image).convert("RGB")], return_tensors="pt")
        o = whole(**{k: enc[k] for k in ("input_ids", "attention_mask", "pixel_values", "pixel_attention_mask")},
                  output_hidden_states=True, logits_to_keep=1, use_cache=False)
        hs = o.hidden_states
        text = {s["name"]: s for s in doc["stages"] if s["name"].startswith("text.layer.")}
        for i in range(len(hs) - 2):
            assert text[f"text.layer.{i}"]["sum"] == float(hs[i + 1][0].double().sum()), i
        last = doc["stages"][-1]
        assert last["last_row"] == [float(v) for v in o.logits[0, -1]]
        log(f"self-check split={split}: {len(doc['stages'])} stages bit-identical to the whole model "
            f"(seq {len(doc['input_ids'])}, pixel_values {doc['pixel_values_shape']})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?")
    ap.add_argument("out", nargs="?")
    ap.add_argument("--split", dest="split", action="store_true", default=True)
    ap.add_argument("--no-split", dest="split", action="store_false")
    ap.add_argument("--prompt", default=DEFAULT_PROMPT)
    ap.add_argument("--image", action="append")
    ap.add_argument("--full-logits", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--nf4", action="store_true", help="the linear weights through bitsandbytes NF4 (as Linear4bit computes)")
    ap.add_argument("--int4-awq", metavar="AWQ_DIR",
                    help="the linears an `i2q export --to hf-awq` directory quantized, as their dequantized int4 weights")
    ap.add_argument("--self-check", action="store_true")
    a = ap.parse_args()
    if a.self_check:
        self_check()
        return
    if not a.model or not a.out:
        ap.error("MODEL_DIR and OUT.json are required (or --self-check)")
    if not os.path.isdir(os.path.dirname(os.path.abspath(a.out))):
        ap.error(f"the output directory of {a.out} does not exist")
    if a.nf4 and a.int4_awq:
        ap.error("--nf4 and --int4-awq exclude each other")
    if a.int4_awq and not os.path.isfile(os.path.join(a.int4_awq, "config.json")):
        ap.error(f"--int4-awq {a.int4_awq}: no config.json there (an `i2q export --to hf-awq` directory)")
    t0 = time.time()
    doc, _ = run(a.model, a.out, a.split, a.prompt, a.image or [DEFAULT_IMAGE], a.full_logits, threads=a.threads, nf4=a.nf4,
                 awq_dir=a.int4_awq)
    log(f"{a.out}: {len(doc['stages'])} stages, seq {len(doc['input_ids'])}, pixel_values {doc['pixel_values_shape']}, "
        f"forward {doc['seconds']} s, total {time.time() - t0:.0f} s, peak RssAnon {doc['peak_rss_anon_kib'] / 2**20:.2f} GiB "
        f"(RSS with the mapped shards {doc['peak_rss_kib'] / 2**20:.2f} GiB), "
        f"argmax {doc['stages'][-1]['argmax']}")


if __name__ == "__main__":
    main()
