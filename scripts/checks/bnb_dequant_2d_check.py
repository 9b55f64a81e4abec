#!/usr/bin/env python3
"""bitsandbytes' CPU dequantize_4bit on 2-D tensors whose last dimension is not a multiple of the
block size (issue 25): shows the bug the full-size NF4 golden works around, and that the workaround
(quantize and dequantize the flattened 1-D tensor) is exact.

    /work/venv/bin/python scripts/checks/bnb_dequant_2d_check.py

Pinned: torch 2.15.0, bitsandbytes 0.50.2. For each shape: the packed bytes of quantize_4bit on the
2-D tensor and on its flattened 1-D view (expected equal), and each dequantize_4bit against an
independent decode of those bytes, code[q] * absmax per block of 64 (high nibble first; the absmax
of double quantization decoded with dequantize_blockwise + offset). Exit 1 if the 1-D path is not
exact or the bytes differ; the 2-D error is printed (non-zero for [80, 48] and [1152, 4304] — the
vision fc2 of idefics2-8b — on bitsandbytes 0.50.2's CPU backend).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from i2qscripts import pin  # noqa: E402

import bitsandbytes as bnb  # noqa: E402
import bitsandbytes.functional as bf  # noqa: E402
import torch  # noqa: E402

pin("torch", torch.__version__, "2.15.0", prefix=True)
pin("bitsandbytes", bnb.__version__, "0.50.2")


def decode(q, st, n):
    """code[q] * absmax of the packed bytes q (1-D quantization state st), first n values."""
    absmax = bf.dequantize_blockwise(st.absmax, st.state2) + st.offset if st.nested else st.absmax
    b = q.reshape(-1)
    idx = torch.stack([(b >> 4) & 15, b & 15], 1).reshape(-1)[:n].long()
    return st.code[idx] * absmax.float().repeat_interleave(st.blocksize)[:n]


def main():
    torch.manual_seed(0)
    ok = True
    for shape in [(64, 64), (80, 48), (1152, 4304)]:
        t = torch.randn(*shape)
        q2, s2 = bf.quantize_4bit(t, blocksize=64, compress_statistics=True, quant_type="nf4")
        q1, s1 = bf.quantize_4bit(t.reshape(-1), blocksize=64, compress_statistics=True, quant_type="nf4")
        ref = decode(q1, s1, t.numel())
        same = torch.equal(q1.reshape(-1), q2.reshape(-1))
        e1 = float((bf.dequantize_4bit(q1, s1).reshape(-1) - ref).abs().max())
        e2 = float((bf.dequantize_4bit(q2, s2).reshape(-1) - ref).abs().max())
        print(f"{list(shape)}: packed bytes 2-D == 1-D: {same}; max|dequantize_4bit - code[q]*absmax| "
              f"1-D {e1:.3g}, 2-D {e2:.3g}")
        ok &= same and e1 == 0.0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
