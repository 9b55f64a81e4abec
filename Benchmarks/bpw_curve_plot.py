#!/usr/bin/env python3
"""KLD vs bits/weight plot of Benchmarks/plots/bpw_curve.tsv (bpw_curve.sh's measured rows, copied from
Benchmarks/README.md) as a plain SVG (no plotting library): mixed-precision rows as lines per series,
uniform schemes as labelled points; log-scale KLD axis.

Usage: python3 Benchmarks/bpw_curve_plot.py [Benchmarks/plots/bpw_curve.tsv] [Benchmarks/plots/bpw_curve.svg]
TSV columns: series, label, bits_per_weight, mean_kld ("uniform" series: one labelled point each).
"""
import math
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "Benchmarks/plots/bpw_curve.tsv"
dst = sys.argv[2] if len(sys.argv) > 2 else "Benchmarks/plots/bpw_curve.svg"
rows = []
for line in open(src, encoding="utf-8"):
    if not line.strip() or line.startswith("#"):
        continue
    series, label, bpw, kld = line.rstrip("\n").split("\t")
    rows.append((series, label, float(bpw), float(kld)))

W, H, L, R, T, B = 760, 460, 70, 20, 40, 50
x0, x1 = 3.0, 7.0
y0, y1 = math.log10(min(r[3] for r in rows) / 1.5), math.log10(max(r[3] for r in rows) * 1.5)
X = lambda v: L + (v - x0) / (x1 - x0) * (W - L - R)
Y = lambda v: T + (y1 - math.log10(v)) / (y1 - y0) * (H - T - B)
colors = {"mixed": "#1f77b4", "mixed-low": "#d62728", "uniform": "#444444"}
out = [f'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="13">SmolLM2-135M: mean KLD vs bits/weight (held-out text; lower is better)</text>']
for v in [3, 3.5, 4, 4.5, 5, 5.5, 6, 6.5, 7]:
    out.append(f'<line x1="{X(v):.1f}" y1="{T}" x2="{X(v):.1f}" y2="{H - B}" stroke="#eee"/>'
               f'<text x="{X(v):.1f}" y="{H - B + 15}" text-anchor="middle">{v:g}</text>')
for e in range(math.floor(y0), math.ceil(y1) + 1):
    for m in (1, 2, 5):
        v = m * 10 ** e
        if y0 <= math.log10(v) <= y1:
            out.append(f'<line x1="{L}" y1="{Y(v):.1f}" x2="{W - R}" y2="{Y(v):.1f}" stroke="#eee"/>'
                       f'<text x="{L - 5}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
out.append(f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle">bits per weight (whole file over all parameters)</text>')
out.append(f'<text x="16" y="{H / 2}" text-anchor="middle" transform="rotate(-90 16 {H / 2})">mean KLD vs f32</text>')
for s in sorted({r[0] for r in rows if r[0] != "uniform"}):
    pts = sorted((r[2], r[3]) for r in rows if r[0] == s)
    c = colors.get(s, "#2ca02c")
    out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{" ".join(f"{X(a):.1f},{Y(b):.1f}" for a, b in pts)}"/>')
    out += [f'<circle cx="{X(a):.1f}" cy="{Y(b):.1f}" r="3.5" fill="{c}"><title>{s} {a:.3f} bpw: {b:.4f}</title></circle>' for a, b in pts]
for i, s in enumerate(sorted({r[0] for r in rows if r[0] != "uniform"})):
    c = colors.get(s, "#2ca02c")
    out.append(f'<line x1="{W - 190}" y1="{T + 12 + 16 * i}" x2="{W - 170}" y2="{T + 12 + 16 * i}" stroke="{c}" stroke-width="2"/>'
               f'<text x="{W - 165}" y="{T + 16 + 16 * i}">{s} (--target-bpw)</text>')
for s, label, a, b in rows:
    if s == "uniform":
        out.append(f'<rect x="{X(a) - 3.5:.1f}" y="{Y(b) - 3.5:.1f}" width="7" height="7" fill="none" stroke="#444" stroke-width="1.5"/>' +
                   (f'<text x="{X(a) + 6:.1f}" y="{Y(b) - 5:.1f}" fill="#444">{label}</text>' if a < 6.3 else
                    f'<text x="{X(a) - 6:.1f}" y="{Y(b) - 5:.1f}" fill="#444" text-anchor="end">{label}</text>'))
out.append("</svg>\n")
open(dst, "w", encoding="utf-8").write("\n".join(out))
print(f"wrote {dst}: {len(rows)} points", file=sys.stderr)
