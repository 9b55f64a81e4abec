#!/usr/bin/env python3
"""Generate the bitsandbytes 4-bit (NF4 / FP4) golden fixtures under Tests/Fixtures/bnb.

Run by hand (NOT in CI), from the repository root, with the pinned venv:

    /work/venv/bin/pip install bitsandbytes==0.50.2
    /work/venv/bin/python scripts/make_bnb_fixtures.py [--out Tests/Fixtures/bnb] [--bench]

A warning "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'"
is harmless (only the fused 4-bit matmul is affected, not quantize/dequantize).

Everything runs on CPU with one torch thread and fixed seeds; a rerun rewrites byte-identical
files. What it writes is described tensor by tensor in Tests/Fixtures/bnb/README.md:

    codebooks.safetensors   the code tables bnb uses (NF4, FP4, FP4 sort order, 4-bit bucket
                            bounds, the 8-bit signed dynamic map of double quantization)
    cases.safetensors       per input case: the input, and for every (type, blocksize): the packed
                            bytes, the float32 absmax, the double-quant codes / nested absmax /
                            offset, and dequantize_4bit outputs (plain and double-quant)
    behaviour.json          versions, CPU, and what bnb does with NaN / inf / bf16 / f16 inputs

--bench additionally times bnb's CPU quantize_4bit (NF4, block 64, with and without double
quantization) on a 4096x4096 float32 normal*0.02 tensor, 1 thread and all threads (printed only).
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

TORCH_VERSION = "2.15.0"
BNB_VERSION = "0.50.2"
SAFETENSORS_VERSION = "0.8.0"

import bitsandbytes  # noqa: E402
import bitsandbytes.functional as F  # noqa: E402
import safetensors  # noqa: E402
from bitsandbytes.backends.default.ops import _get_4bit_quantize_bounds  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

assert torch.__version__.startswith(TORCH_VERSION), f"torch {torch.__version__} != pinned {TORCH_VERSION}"
assert bitsandbytes.__version__ == BNB_VERSION, f"bitsandbytes {bitsandbytes.__version__} != pinned {BNB_VERSION}"
assert safetensors.__version__ == SAFETENSORS_VERSION, f"safetensors {safetensors.__version__} != {SAFETENSORS_VERSION}"

torch.set_num_threads(1)
torch._dynamo.config.recompile_limit = 64  # bnb compiles _dequantize_4bit_compute per shape

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TYPES = ("nf4", "fp4")
BLOCKSIZES = (32, 64, 128)
DEQ_SLICE = 8192  # dequantized outputs (block 64 only) are stored for the first N elements of each case


def f32(values):
    return torch.tensor(values, dtype=torch.float32)


def special_blocks():
    """Hand-made 64-element blocks (all finite), concatenated; 17 blocks + a 37-element tail."""
    g = torch.Generator().manual_seed(7)
    blocks = []
    blocks.append(torch.zeros(64))  # 0: all zero
    b = torch.full((64,), 0.01)
    b[17] = 1e4
    blocks.append(b)  # 1: one huge value among 0.01s
    b = torch.randn(64, generator=g) * 0.01
    b[40] = -1e4
    blocks.append(b)  # 2: one huge negative among small randoms
    blocks.append(-(torch.rand(64, generator=g) + 1e-3))  # 3: negative only
    blocks.append(torch.rand(64, generator=g) + 1e-3)  # 4: positive only
    for t in TYPES:  # 5, 6: ties: absmax exactly 1.0, the other values exactly on the midpoints
        bounds, _ = _get_4bit_quantize_bounds(t, torch.device("cpu"))
        b = torch.zeros(64)
        b[0] = 1.0
        b[1 : 1 + 15] = bounds
        b[16 : 16 + 15] = torch.nextafter(bounds, torch.full_like(bounds, 2.0))  # just above
        b[31 : 31 + 15] = torch.nextafter(bounds, torch.full_like(bounds, -2.0))  # just below
        b[46:61] = -bounds
        b[61] = -1.0
        b[62] = -0.0
        b[63] = 0.5
        blocks.append(b)
    for t in TYPES:  # 7, 8: midpoint ties scaled by 2 (exact) with absmax 2.0 held by a negative value
        bounds, _ = _get_4bit_quantize_bounds(t, torch.device("cpu"))
        b = torch.zeros(64)
        b[0] = -2.0
        b[1:16] = bounds * 2
        b[16:31] = -bounds * 2
        b[31:64] = torch.linspace(-2, 2, 33)
        blocks.append(b)
    # 9: absmax 3.0 (reciprocal rounding: x * (1/3) differs from x / 3 for some x)
    b = torch.linspace(-3, 3, 64)
    blocks.append(b)
    # 10: subnormal values only (absmax < 1e-38: bnb scales by 1/1e-38, stores the true absmax)
    blocks.append(torch.linspace(-1, 1, 64) * 1e-40)
    # 11: mixed tiny normal / subnormal around 1e-38
    blocks.append(torch.linspace(-1, 1, 64) * 3e-38)
    # 12: values near float32 max
    blocks.append(torch.linspace(-1, 1, 64) * 3e38)
    # 13: all equal
    blocks.append(torch.full((64,), -0.125))
    # 14: single nonzero
    b = torch.zeros(64)
    b[63] = 5e-3
    blocks.append(b)
    # 15: dense uniform grid over [-1, 1] (many values near every midpoint)
    blocks.append(torch.linspace(-1, 1, 64) * 0.7)
    # 16: -0.0 block with one tiny positive
    b = torch.full((64,), -0.0)
    b[5] = 1e-30
    blocks.append(b)
    tail = torch.randn(37, generator=g) * 0.02  # odd tail: numel 17*64 + 37 = 1125
    return torch.cat(blocks + [tail])


def nan_inf_case():
    """Blocks of 64 with NaN / inf (bnb propagates them; see behaviour.json)."""
    g = torch.Generator().manual_seed(11)
    base = torch.randn(6 * 64 + 21, generator=g) * 0.02
    nan, inf = float("nan"), float("inf")
    base[3] = nan  # block 0: one NaN
    base[64 + 9] = inf  # block 1: +inf
    base[128 + 30] = -inf  # block 2: -inf
    base[192 + 1] = nan  # block 3: NaN and +inf
    base[192 + 2] = inf
    # block 4: finite
    base[320:384] = nan  # block 5: all NaN
    base[384 + 20] = nan  # tail (21 elements): a NaN
    return base


def make_cases():
    g = torch.Generator().manual_seed(1234)
    cases = {}
    # Mistral-like: 64 rows of a 4096-wide matrix, normal * 0.02, a few rows with outlier columns; bf16.
    w = torch.randn(64, 4096, generator=g) * 0.02
    w[:, 123] *= 20
    w[5] *= 4
    cases["real_bf16"] = w.to(torch.bfloat16)
    cases["randn_f32"] = (torch.randn(257, 64, generator=g) * 0.02)  # 16448 = 257 blocks of 64
    cases["odd_1000"] = torch.randn(1000, generator=g) * 0.05  # not a multiple of 64 nor 256
    cases["odd_4099"] = torch.randn(4099, generator=g)  # odd numel
    cases["odd_65x3"] = torch.randn(65, 3, generator=g) * 0.1  # odd last dim (dequant fallback path)
    cases["many_blocks"] = torch.randn(40000, generator=g) * 0.02 + 0.001  # 625 absmax at b64: 3 nested blocks
    cases["f16_1000"] = (torch.randn(10, 100, generator=g) * 0.03).to(torch.float16)
    cases["special"] = special_blocks()
    cases["nan_inf"] = nan_inf_case()
    return cases


MEAN_SIZES = (1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 100, 255, 256, 1000, 4096, 4097, 32768, 32769,
              65539, 262144, 917504, 1835008)


def mean_input(n):
    """Deterministic float32 vector (reproducible in Swift): x[i] = (h(i) >> 8) * 2^-24 * 0.05 + 0.01,
    h(i) = (i * 2654435761) mod 2^32; every operation is one float32 IEEE operation."""
    i = np.arange(n, dtype=np.uint64)
    h = ((i * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)) >> np.uint64(8)
    x = h.astype(np.float32) * np.float32(2.0**-24)
    x = x * np.float32(0.05)
    x = x + np.float32(0.01)
    return torch.from_numpy(x.astype(np.float32))


def torch_means():
    """torch's float32 mean (what bnb uses for the double-quant offset) of mean_input(n), with 1
    and with 2 torch threads (torch splits reductions above 32768 elements across threads)."""
    out = {"torch_mean.sizes": torch.tensor(MEAN_SIZES, dtype=torch.int64)}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        out[f"torch_mean.threads{threads}"] = torch.stack([mean_input(n).mean() for n in MEAN_SIZES])
    torch.set_num_threads(1)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "Tests", "Fixtures", "bnb"))
    ap.add_argument("--bench", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    # ---- code books
    books = {
        "nf4.code": F.get_4bit_type("nf4", device="cpu").float().contiguous(),
        "fp4.code": F.get_4bit_type("fp4", device="cpu").float().contiguous(),
        "dynamic.code": F.create_dynamic_map(signed=True).float().contiguous(),
    }
    for t in TYPES:
        bounds, order = _get_4bit_quantize_bounds(t, torch.device("cpu"))
        books[f"{t}.bounds"] = bounds.float().contiguous()
        books[f"{t}.order"] = order.to(torch.uint8).contiguous()
    save_file(books, os.path.join(args.out, "codebooks.safetensors"))

    # ---- cases
    out = {}
    behaviour = {
        "bitsandbytes": bitsandbytes.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "cases": {},
    }
    for name, x in make_cases().items():
        out[f"{name}.input"] = x.contiguous()
        info = {"dtype": str(x.dtype).replace("torch.", ""), "shape": list(x.shape), "numel": x.numel()}
        for t in TYPES:
            for bs in BLOCKSIZES:
                p = f"{name}.{t}.b{bs}"
                packed, st = F.quantize_4bit(x, blocksize=bs, compress_statistics=False, quant_type=t)
                packed_dq, st_dq = F.quantize_4bit(x, blocksize=bs, compress_statistics=True, quant_type=t)
                assert torch.equal(packed, packed_dq), "packed bytes depend on double quant"
                assert packed.dtype == torch.uint8 and packed.shape == ((x.numel() + 1) // 2, 1)
                assert st.absmax.dtype == torch.float32 and st_dq.absmax.dtype == torch.uint8
                assert st_dq.state2.blocksize == 256
                assert torch.equal(st_dq.state2.code, books["dynamic.code"])
                deq = F.dequantize_4bit(packed, st)
                deq_dq = F.dequantize_4bit(packed_dq, st_dq)
                assert deq.dtype == x.dtype and deq.numel() == x.numel()  # 1-D inputs come back as [1, n]
                out[f"{p}.packed"] = packed.reshape(-1).contiguous()
                out[f"{p}.absmax"] = st.absmax.contiguous()
                out[f"{p}.dq.codes"] = st_dq.absmax.contiguous()
                out[f"{p}.dq.nested_absmax"] = st_dq.state2.absmax.float().contiguous()
                out[f"{p}.dq.offset"] = st_dq.offset.float().reshape(1).contiguous()
                # the absmax bnb restores from double quant (dequantize_blockwise + offset), float32
                restored = F.dequantize_blockwise(st_dq.absmax, st_dq.state2) + st_dq.offset
                out[f"{p}.dq.absmax_restored"] = restored.float().contiguous()
                if bs == 64:  # dequantized outputs: block 64 only, first DEQ_SLICE elements
                    out[f"{p}.deq"] = deq.reshape(-1)[:DEQ_SLICE].contiguous()
                    out[f"{p}.dq.deq"] = deq_dq.reshape(-1)[:DEQ_SLICE].contiguous()
        if name == "nan_inf":
            p = "nan_inf.nf4.b64"
            info["observed_nf4_b64"] = {
                "absmax": [repr(v) for v in out[f"{p}.absmax"].tolist()],
                "codes_block0": sorted(set((out[f"{p}.packed"][:32] >> 4).tolist() + (out[f"{p}.packed"][:32] & 15).tolist())),
                "offset_dq": repr(out[f"{p}.dq.offset"].item()),
                "nested_absmax_dq": [repr(v) for v in out[f"{p}.dq.nested_absmax"].tolist()],
                "dq_codes": out[f"{p}.dq.codes"].tolist(),
            }
        behaviour["cases"][name] = info
    out.update(torch_means())
    save_file(out, os.path.join(args.out, "cases.safetensors"))
    for f in ("cases.safetensors", "codebooks.safetensors"):
        os.chmod(os.path.join(args.out, f), 0o644)
    with open(os.path.join(args.out, "behaviour.json"), "w") as f:
        json.dump(behaviour, f, indent=1, sort_keys=True)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"wrote {args.out} ({total} bytes)")

    if args.bench:
        g = torch.Generator().manual_seed(0)
        w = torch.randn(4096, 4096, generator=g) * 0.02
        for threads in (1, os.cpu_count()):
            torch.set_num_threads(threads)
            for dq in (False, True):
                F.quantize_4bit(w, blocksize=64, compress_statistics=dq, quant_type="nf4")
                best = float("inf")
                for _ in range(5):
                    t0 = time.perf_counter()
                    F.quantize_4bit(w, blocksize=64, compress_statistics=dq, quant_type="nf4")
                    best = min(best, time.perf_counter() - t0)
                print(f"bnb quantize_4bit nf4 b64 dq={dq} threads={threads}: {best*1e3:.1f} ms, "
                      f"{w.numel()/best/1e6:.1f} M elements/s")
        torch.set_num_threads(1)


if __name__ == "__main__":
    sys.exit(main())
