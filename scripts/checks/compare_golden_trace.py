#!/usr/bin/env python3
"""Compare an i2q trace (`i2q-bench trace`) with a transformers golden trace
(scripts/checks/fullsize_golden.py), stage by stage.

    python3 scripts/checks/compare_golden_trace.py GOLDEN.json I2Q.json [--tol-logits 1e-3] [--tol-layer 1e-3] [--markdown] [--case NAME]

For every stage: max|Δ| over the recorded values (samples, and the last row when both have it)
divided by the golden stage's std (from its float64 sum / sum of squares), and the relative
difference of the std itself. Per-image stages are reported as the worst over the images.
Exit status 1 when the logits exceed --tol-logits, any other stage --tol-layer, the input ids
differ, or a stage is missing. Standard library only.
"""

import argparse
import json
import math
import re
import sys


def std(s):
    n = s["rows"] * s["cols"]
    m = s["sum"] / n
    return math.sqrt(max(s["sumsq"] / n - m * m, 0.0))


def sampled(s):
    """{flat index: value} of a stage's samples (positions k*N // S)."""
    n = s["rows"] * s["cols"]
    k = len(s["samples"])
    return {(i * n) // k: v for i, v in enumerate(s["samples"])}


def diff(a, b):
    if a["rows"] != b["rows"] or a["cols"] != b["cols"]:
        return None
    if len(a["samples"]) == len(b["samples"]):
        d = max(abs(x - y) for x, y in zip(a["samples"], b["samples"]))
    else:  # traces with different sample counts (e.g. the CI slice golden's 512): compare common positions
        sa, sb = sampled(a), sampled(b)
        common = sa.keys() & sb.keys()
        if len(common) < min(len(sa), len(sb)):
            return None
        d = max(abs(sa[i] - sb[i]) for i in common)
    if "last_row" in a and "last_row" in b:
        d = max(d, max(abs(x - y) for x, y in zip(a["last_row"], b["last_row"])))
    sa, sb = std(a), std(b)
    return d / sa if sa > 0 else d, abs(sb - sa) / sa if sa > 0 else abs(sb - sa)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("golden")
    ap.add_argument("i2q")
    ap.add_argument("--tol-logits", type=float, default=1e-3)
    ap.add_argument("--tol-layer", type=float, default=1e-3)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--case", help="GOLDEN holds several cases (Tests/Fixtures/fullwidth-slice/golden.json): this one")
    a = ap.parse_args()
    g, q = json.load(open(a.golden)), json.load(open(a.i2q))
    if "cases" in g:
        g = next((c for c in g["cases"] if c["name"] == a.case), None)
        if g is None:
            sys.exit(f"{a.golden}: no case {a.case!r} (use --case)")
    ok = True
    if g["input_ids"] != q["input_ids"]:
        print(f"input_ids differ: golden {len(g['input_ids'])} ids, i2q {len(q['input_ids'])}")
        ok = False
    qs = {s["name"]: s for s in q["stages"]}
    groups = {}  # group name -> [worst rel, worst std rel, shape, count]
    for s in g["stages"]:
        o = qs.get(s["name"])
        if o is None:
            print(f"missing in i2q: {s['name']}")
            ok = False
            continue
        r = diff(s, o)
        if r is None:
            print(f"{s['name']}: shape golden {s['rows']}x{s['cols']}, i2q {o['rows']}x{o['cols']}")
            ok = False
            continue
        key = re.sub(r"^(image|pixel_values)\.\d+", lambda m: m.group(1) + ".*", s["name"])
        w = groups.setdefault(key, [0.0, 0.0, f"{s['rows']}x{s['cols']}", 0, 0.0])
        w[0], w[1], w[3], w[4] = max(w[0], r[0]), max(w[1], r[1]), w[3] + 1, max(w[4], std(s))
        tol = a.tol_logits if s["name"] == "logits.last" else a.tol_layer
        if r[0] > tol:
            ok = False
    lg, lq = g["stages"][-1], qs.get("logits.last", {})
    arg = (lg.get("argmax"), lq.get("argmax"))
    if a.markdown:
        print("| stage | shape (last) | count | std (golden) | max\\|Δ\\|/std | \\|Δstd\\|/std |")
        print("|---|---|---|---|---|---|")
        for k, (r, sr, shape, n, sd) in groups.items():
            print(f"| `{k}` | {shape} | {n} | {sd:.4g} | {r:.2e} | {sr:.1e} |")
    else:
        for k, (r, sr, shape, n, sd) in groups.items():
            print(f"{k:45s} {shape:>12s} x{n:<3d} std {sd:10.4g}  max|d|/std {r:.2e}  |dstd|/std {sr:.1e}")
    worst_layer = max((v[0] for k, v in groups.items() if k != "logits.last"), default=0.0)
    print(f"logits.last max|d|/std {groups.get('logits.last', [float('nan')])[0]:.3e} (tol {a.tol_logits:g}); "
          f"argmax golden {arg[0]} i2q {arg[1]}; worst other stage {worst_layer:.3e} (tol {a.tol_layer:g}); "
          f"{'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
