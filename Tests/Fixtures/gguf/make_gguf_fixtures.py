#!/usr/bin/env python3
"""Generate the GGUF reader's test fixtures in Tests/Fixtures/gguf (run by hand, not in CI):

    /work/venv/bin/python Tests/Fixtures/gguf/make_gguf_fixtures.py

Pinned: gguf 0.19.0 (llama.cpp's gguf-py), numpy 2.4.6, torch 2.15.0, transformers 5.24.0.
Fixed seeds: a rerun writes byte-identical files.

Writes:
  types.gguf                 one small tensor per dequantizable ggml type (F32, F16, BF16, Q4_0, Q4_1,
                             Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K), 1-D to 3-D, plus tensors of
                             special blocks (inf / NaN / subnormal / -0 scales and values, signalling NaNs),
                             general.alignment 64, metadata of every value type (incl. arrays).
  types.expected.safetensors gguf-py's `dequantize(t.data, t.tensor_type)` of every tensor of types.gguf
                             (float32, numpy shape, same names) — what the Swift dequantizers must equal bit for bit.
  tiny-llama.gguf            a tiny llama (vocab 64, hidden 64, 4 heads, 2 kv heads, 2 layers, intermediate 96,
                             untied output, an extra rope_freqs tensor) with mixed tensor types, q/k permuted as
                             llama.cpp's convert_hf_to_gguf.py permutes them.
  tiny-llama.expected.safetensors / .config.json / .generation_config.json
                             the state_dict transformers builds from tiny-llama.gguf
                             (AutoModelForCausalLM.from_pretrained(dir, gguf_file=..., dtype=float32)), its config
                             as save_pretrained writes it (quantization_config removed, architectures set) and
                             its generation config.
  tiny-tied.gguf (+ same three files)
                             tied output (no output.weight), 1 layer, F32 tensors, no llama.vocab_size
                             (transformers then takes the number of tokenizer.ggml.tokens).
  tiny-nokv.gguf (+ same three files)
                             a llama without attention.head_count_kv: transformers then permutes neither q nor k.
"""

import json
import os
import shutil
import sys
import tempfile

import numpy as np

GGUF_VERSION = "0.19.0"
NUMPY_VERSION = "2.4.6"
TORCH_VERSION = "2.15.0"
TRANSFORMERS_VERSION = "5.24.0"

import gguf  # noqa: E402
from gguf import GGMLQuantizationType as T, GGUFReader, GGUFWriter, dequantize, quantize  # noqa: E402
from gguf.constants import GGML_QUANT_SIZES  # noqa: E402
from importlib.metadata import version  # noqa: E402

assert version("gguf") == GGUF_VERSION, version("gguf")
assert np.__version__ == NUMPY_VERSION, np.__version__

OUT = os.path.dirname(os.path.abspath(__file__))


def f16bits(vals):
    return np.array(vals, dtype=np.uint16).view(np.uint8)


def kquant_blocks(rng, qtype, n_blocks, scale_offsets):
    """Random K-quant blocks with sane f16 scales at the given byte offsets."""
    _, ts = GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, size=(n_blocks, ts), dtype=np.uint8)
    for off in scale_offsets:
        v = (rng.standard_normal(n_blocks) * 0.01).astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
        b[:, off:off + 2] = v
    return b


SPECIAL_F16 = [0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFD55, 0x0001, 0x8001, 0x03FF, 0x0400, 0x8000, 0x0000,
               0x7BFF, 0xFBFF, 0x3C00, 0x3555, 0x7FFF]


def special_blocks(qtype, rng):
    """Blocks whose f16 scale fields hold specials (one per block), other bytes random."""
    bs, ts = GGML_QUANT_SIZES[qtype]
    offs = {T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
            T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}[qtype]
    n = len(SPECIAL_F16)
    b = rng.integers(0, 256, size=(n, ts), dtype=np.uint8)
    for i, s in enumerate(SPECIAL_F16):
        for j, off in enumerate(offs):
            # first scale special; a second (min) scale gets a special from the other end
            val = s if j == 0 else SPECIAL_F16[(n - 1 - i)]
            b[i, off:off + 2] = f16bits([val])
    return b


def make_types(path, expected_path):
    rng = np.random.default_rng(1234)
    w = GGUFWriter(path, "llama")
    w.add_custom_alignment(64)
    # Metadata of every value type.
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -5)
    w.add_uint16("test.u16", 65000)
    w.add_int16("test.i16", -3000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.1)
    w.add_uint64("test.u64", 18000000000000000000)
    w.add_int64("test.i64", -9000000000000000000)
    w.add_float64("test.f64", 1e-300)
    w.add_bool("test.bool", True)
    w.add_string("test.str", "héllo ✓")
    w.add_array("test.arr_i32", [1, -2, 3])
    w.add_array("test.arr_str", ["a", "", "ü"])
    w.add_array("test.arr_f32", [0.5, -1.25])

    tensors = []
    # Plain types.
    f32 = rng.standard_normal((3, 5)).astype(np.float32)
    f32s = np.array([0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0xFFC12345, 0x00000001, 0x80000000,
                     0x3F800000], dtype=np.uint32).view(np.float32)
    tensors += [("f32", f32, None), ("f32.special", f32s, None)]
    tensors += [("f16", rng.standard_normal((2, 3, 4)).astype(np.float16), None),
                ("f16.special", np.array(SPECIAL_F16, dtype=np.uint16).view(np.float16), None)]
    bf = rng.standard_normal((4, 6)).astype(np.float32)
    tensors.append(("bf16", quantize(bf, T.BF16), T.BF16))
    bfs = np.array([0x7F80, 0xFF80, 0x7FC0, 0x7F81, 0xFFAB, 0x0001, 0x8000, 0x3F80], dtype=np.uint16).view(np.uint8)
    tensors.append(("bf16.special", bfs, T.BF16))
    # 32-element block types, quantized by gguf-py from random data.
    for q in [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]:
        x = (rng.standard_normal((3, 64)) * 0.05).astype(np.float32)
        x[0, :32] += 1.0  # a block with an offset (min far from 0)
        tensors.append((q.name.lower(), quantize(x, q), q))
        tensors.append((q.name.lower() + ".3d", quantize(rng.standard_normal((2, 2, 32)).astype(np.float32), q), q))
        tensors.append((q.name.lower() + ".special", special_blocks(q, rng).reshape(1, -1), q))
    # K-quants: gguf-py has no quantizer for them; random blocks with sane scales.
    kscales = {T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}
    for q, offs in kscales.items():
        blocks = kquant_blocks(rng, q, 6, offs)  # 3 rows × 512
        tensors.append((q.name.lower(), blocks.reshape(3, -1), q))
        tensors.append((q.name.lower() + ".special", special_blocks(q, rng).reshape(1, -1), q))

    for name, data, raw in tensors:
        if raw is None:
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    r = GGUFReader(path)
    expected = {}
    for t in r.tensors:
        expected[t.name] = np.ascontiguousarray(dequantize(t.data, t.tensor_type)).astype(np.float32, copy=False)
    from safetensors.numpy import save_file
    save_file(expected, expected_path)
    return [(t.name, t.tensor_type.name, [int(d) for d in t.shape]) for t in r.tensors]


def llama_permute(weights, n_head, n_head_kv):
    """convert_hf_to_gguf.py LlamaModel.permute."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def write_model(path, *, name, vocab, hidden, heads, kv, layers, inter, tied, types, kv_key=True,
                extra=True, vocab_key=True, seed=0):
    rng = np.random.default_rng(seed)
    head_dim = hidden // heads
    w = GGUFWriter(path, "llama")
    w.add_name(name)
    w.add_uint32("llama.block_count", layers)
    w.add_uint32("llama.context_length", 256)
    w.add_uint32("llama.embedding_length", hidden)
    w.add_uint32("llama.feed_forward_length", inter)
    w.add_uint32("llama.attention.head_count", heads)
    if kv_key:
        w.add_uint32("llama.attention.head_count_kv", kv)
    w.add_float32("llama.rope.freq_base", 500000.0)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_uint32("llama.rope.dimension_count", head_dim)
    w.add_uint32("general.file_type", 1)
    if vocab_key:
        w.add_uint32("llama.vocab_size", vocab)
    else:  # transformers then takes len(tokenizer.ggml.tokens)
        w.add_array("tokenizer.ggml.tokens", [f"t{i}" for i in range(vocab)])
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_uint32("tokenizer.ggml.bos_token_id", 3)
    w.add_uint32("tokenizer.ggml.eos_token_id", 4)
    w.add_uint32("tokenizer.ggml.padding_token_id", 5)
    w.add_string("tokenizer.chat_template", "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}")
    w.add_uint32("general.quantization_version", 2)

    def add(gname, arr, qtype):
        arr = arr.astype(np.float32)
        if qtype == T.F32:
            w.add_tensor(gname, arr)
        elif qtype == T.F16:
            w.add_tensor(gname, arr.astype(np.float16))
        else:
            w.add_tensor(gname, quantize(arr, qtype), raw_dtype=qtype)

    def rnd(*shape):
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    add("token_embd.weight", rnd(vocab, hidden), types["embd"])
    for i in range(layers):
        lt = types["layers"][i % len(types["layers"])]
        add(f"blk.{i}.attn_norm.weight", 1 + rnd(hidden), T.F32)
        q = rnd(heads * head_dim, hidden)
        k = rnd(kv * head_dim, hidden)
        add(f"blk.{i}.attn_q.weight", llama_permute(q, heads, heads), lt["q"])
        add(f"blk.{i}.attn_k.weight", llama_permute(k, heads, kv), lt["k"])
        add(f"blk.{i}.attn_v.weight", rnd(kv * head_dim, hidden), lt["v"])
        add(f"blk.{i}.attn_output.weight", rnd(hidden, heads * head_dim), lt["o"])
        add(f"blk.{i}.ffn_norm.weight", 1 + rnd(hidden), T.F32)
        add(f"blk.{i}.ffn_gate.weight", rnd(inter, hidden), lt["gate"])
        add(f"blk.{i}.ffn_up.weight", rnd(inter, hidden), lt["up"])
        add(f"blk.{i}.ffn_down.weight", rnd(hidden, inter), lt["down"])
    add("output_norm.weight", 1 + rnd(hidden), T.F32)
    if not tied:
        add("output.weight", rnd(vocab, hidden), types["out"])
    if extra:
        add("rope_freqs.weight", 1 + rnd(head_dim // 2), T.F32)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def transformers_reference(gguf_path, prefix):
    """What transformers makes of the file: state_dict (float32), config.json, generation_config.json."""
    import torch
    import transformers
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    assert torch.__version__.startswith(TORCH_VERSION), torch.__version__
    assert transformers.__version__ == TRANSFORMERS_VERSION, transformers.__version__
    d, f = os.path.split(gguf_path)
    m = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    sd = m.state_dict()
    tied = m.config.tie_word_embeddings
    out = {k: v.contiguous() for k, v in sd.items() if not (tied and k == "lm_head.weight")}
    save_file(out, prefix + ".expected.safetensors")
    cfg = m.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    cfg.architectures = [type(m).__name__]
    with open(prefix + ".config.json", "w") as fh:
        fh.write(cfg.to_json_string(use_diff=True))
    with open(prefix + ".generation_config.json", "w") as fh:
        fh.write(m.generation_config.to_json_string(use_diff=True))
    return type(m).__name__, sorted(out)


def main():
    info = {"gguf": GGUF_VERSION, "numpy": NUMPY_VERSION, "torch": TORCH_VERSION, "transformers": TRANSFORMERS_VERSION}
    info["types"] = make_types(os.path.join(OUT, "types.gguf"), os.path.join(OUT, "types.expected.safetensors"))

    layer_a = {"q": T.Q4_1, "k": T.Q4_0, "v": T.Q5_0, "o": T.Q5_1, "gate": T.F16, "up": T.BF16, "down": T.Q8_0}
    layer_b = {"q": T.F32, "k": T.F16, "v": T.Q8_0, "o": T.F32, "gate": T.Q4_1, "up": T.Q4_0, "down": T.F32}
    models = {
        "tiny-llama": dict(name="Tiny Llama Test", vocab=64, hidden=64, heads=4, kv=2, layers=2, inter=96,
                           tied=False, types={"embd": T.Q8_0, "out": T.Q4_1, "layers": [layer_a, layer_b]}, seed=1),
        "tiny-tied": dict(name="Tiny Tied", vocab=48, hidden=32, heads=4, kv=2, layers=1, inter=64, tied=True,
                             types={"embd": T.F32, "layers": [{k: T.F32 for k in layer_a}]}, extra=False, vocab_key=False,
                             seed=2),
        "tiny-nokv": dict(name="nokv", vocab=48, hidden=32, heads=2, kv=2, layers=1, inter=64, tied=True,
                          types={"embd": T.F32, "layers": [{k: T.F32 for k in layer_a}]}, kv_key=False,
                          extra=False, seed=3),
    }
    info["models"] = {}
    for name, kw in models.items():
        with tempfile.TemporaryDirectory() as tmp:
            p = os.path.join(tmp, name + ".gguf")
            write_model(p, **kw)
            cls, names = transformers_reference(p, os.path.join(OUT, name))
            shutil.copy(p, os.path.join(OUT, name + ".gguf"))
        info["models"][name] = {"class": cls, "tensors": names}
    with open(os.path.join(OUT, "info.json"), "w") as fh:
        json.dump(info, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
