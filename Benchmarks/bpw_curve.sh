#!/usr/bin/env bash
# KLD vs bits/weight on SmolLM2-135M-Instruct for `quantize --target-bpw` (issue 22), with the uniform
# schemes on the same axis. Held-out text, windows and reference as kquant_quality.sh / verify_smollm2.sh
# (LGPL-2.1 + MPL-1.1, 22 windows of 512, KLD against the f32 model); the importance matrix is
# collected over GPL-3 (14 chunks of 512, the AWQ / q4_k_m+imatrix calibration text, never the held-out
# one), the KLD probe on its first 128 tokens. One measurement per candidate list (--target-bpw 6.17,
# recipe written), then every other budget re-optimized from the recipe's cost table (--recipe R
# --target-bpw X, with `i2q imatrix --process-output` on the same text: the same importance).
# Rows: mixed (the issue's default candidates), mixed+ (with llama.cpp's block-32 types too), mixed-low
# (the default candidates plus affine int3/int2 g64/g128, which fit SmolLM2's 576-wide rows: budgets
# below 4.4), and uniform q4_0, q4_k_m, q4_k_m + imatrix, q5_k_m, q6_k, RTN int4 g64 (linears; embedding
# bf16), int4 g64 everywhere (embedding too; a recipe), RTN int3 g64 (linears; embedding bf16), int3 g64
# everywhere (a recipe). bits/weight: the whole file's bits over all parameters.
# Usage: Benchmarks/bpw_curve.sh [MODEL_DIR]   (I2Q, OUT as in verify_smollm2.sh; TARGETS to change the budgets;
#        LISTS="mixed mixed+" the candidate lists to measure (mixed-low: add it); UNIFORM=0 leaves the uniform
#        rows out, UNIFORMS="…" picks some of them)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-.cache/smollm2/SmolLM2-135M-Instruct-f32}
I2Q=${I2Q:-.build/release/i2q}
OUT=${OUT:-$(mktemp -d)}; mkdir -p "$OUT"
TARGETS=${TARGETS:-"4.4 4.5 4.75 5 5.35 5.5 6 6.17 6.5"}
DEFAULT=int4g128,int4g64,q4_k,q5_k,q6_k,q8_0,bf16
# Block-32 types too, but not q4_1: this SmolLM2 "f32" model is the dequantized Q4_1 GGUF of
# scripts/get_smollm2.sh, so q4_1 stores it exactly (KLD ~1e-6) — a property of the test model.
EXTENDED=int4g128,int4g64,q4_0,q5_0,q5_1,q4_k,q5_k,q6_k,q8_0,bf16
LOW=$DEFAULT,int3g128,int3g64,int2g128,int2g64
TEXT="$OUT/heldout.txt"
cat /usr/share/common-licenses/LGPL-2.1 /usr/share/common-licenses/MPL-1.1 > "$TEXT"
IM="$OUT/gpl3.imatrix.gguf"
"$I2Q" imatrix "$MODEL" --calibration /usr/share/common-licenses/GPL-3 --process-output -o "$IM" --overwrite >&2

CANDS=""
LISTS=${LISTS:-"mixed mixed+"}
for list in mixed:$DEFAULT mixed+:$EXTENDED mixed-low:$LOW; do
  name=${list%%:*}; cands=${list#*:}
  [[ " $LISTS " == *" $name "* ]] || continue
  # Measure once (at q4_k_m's size), then re-optimize the recipe's costs for every budget.
  /usr/bin/time -f "$name measurement + write: %e s, %M KB" "$I2Q" quantize "$MODEL" --target-bpw 6.17 --candidates "$cands" \
    --calibration /usr/share/common-licenses/GPL-3 --samples 14 --seq-len 512 \
    -o "$OUT/$name-measure.i2q" --overwrite --no-progress 2> "$OUT/$name-measure.log" >&2
  grep -E "^bpw: [0-9]|measurement" "$OUT/$name-measure.log" >&2
  first="$OUT/$name-measure.recipe.json"
  for x in $TARGETS; do
    "$I2Q" quantize "$MODEL" --recipe "$first" --target-bpw "$x" --imatrix "$IM" -o "$OUT/$name-$x.i2q" --overwrite --no-progress 2>"$OUT/$name-$x.log" >&2 \
      || { echo "$name $x: $(tail -1 "$OUT/$name-$x.log")" >&2; continue; }
    CANDS="$CANDS $name-$x"
  done
done
if [[ ${UNIFORM:-1} == 1 ]]; then
UNIFORMS=${UNIFORMS:-"q4_0 q4_k_m q4_k_m-imatrix q5_k_m q6_k rtn-g64 int4g64-all rtn3-g64 int3g64-all"}
for u in $UNIFORMS; do
  case $u in
    q4_0|q4_k_m|q5_k_m|q6_k) "$I2Q" quantize "$MODEL" --type $u -o "$OUT/$u.i2q" --overwrite --no-progress 2>/dev/null >&2 ;;
    q4_k_m-imatrix) "$I2Q" quantize "$MODEL" --type q4_k_m --imatrix "$IM" -o "$OUT/$u.i2q" --overwrite --no-progress 2>/dev/null >&2 ;;
    rtn-g64) "$I2Q" quantize "$MODEL" --rtn --group-size 64 --dtype bf16 -o "$OUT/$u.i2q" --overwrite --no-progress >&2 ;;
    rtn3-g64) "$I2Q" quantize "$MODEL" --rtn --bits 3 --group-size 64 --dtype bf16 -o "$OUT/$u.i2q" --overwrite --no-progress >&2 ;;
    int4g64-all|int3g64-all)
      # Every tensor of the measured recipe (decoder linears, embedding) in one scheme, applied as a recipe.
      python3 - "$first" "$OUT/$u.recipe.json" "${u%-all}" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
for t in r["tensors"]: t["scheme"] = sys.argv[3]
r.pop("target_bpw", None)
json.dump(r, open(sys.argv[2], "w"), indent=2)
PYEOF
      "$I2Q" quantize "$MODEL" --recipe "$OUT/$u.recipe.json" --recipe-out "$OUT/$u.out.recipe.json" -o "$OUT/$u.i2q" --overwrite --no-progress 2>/dev/null >&2 ;;
    *) echo "unknown uniform row $u" >&2; exit 2 ;;
  esac
  CANDS="$CANDS $u"
done
fi

printf '| candidate | size MB | bits/weight | schemes | PPL ratio | mean KLD | KLD p99 | same top |\n'
printf '|---|---:|---:|---|---:|---:|---:|---:|\n'
for c in $CANDS; do
  "$I2Q" verify "$OUT/$c.i2q" --reference "$MODEL" --text "$TEXT" --ctx 512 --json --no-progress > "$OUT/$c.json" 2> "$OUT/$c.log"
  "$I2Q" inspect "$OUT/$c.i2q" --json > "$OUT/$c.inspect.json"
  python3 - "$OUT/$c.json" "$c" "$(stat -c %s "$OUT/$c.i2q")" "$OUT/$c.inspect.json" <<'PYEOF'
import json, sys, collections
r = json.load(open(sys.argv[1])); t = r["text"]; info = json.load(open(sys.argv[4]))
m = info.get("mixed")
schemes = ", ".join(f"{k} ×{v}" for k, v in sorted(collections.Counter(x["scheme"] for x in m["tensors"]).items())) if m else ""
print(f"| {sys.argv[2]} | {int(sys.argv[3])/1e6:.1f} | {float(info['bits_per_weight']):.3f} | {schemes} | {t['ppl_ratio']:.5f} ± {t['ppl_ratio_err']:.5f} "
      f"| {t['kld']['mean']:.6f} ± {t['kld']['mean_err']:.6f} | {t['kld']['p99']:.4f} | {100*t['same_top']['share']:.2f} ± {100*t['same_top']['err']:.2f} % |")
PYEOF
done
