#!/usr/bin/env bash
# Quality of llama.cpp's file types made by i2q on SmolLM2-135M-Instruct (issue 21's table): KLD /
# PPL ratio / same-top / size against the f32 model on the held-out text of verify_smollm2.sh
# (LGPL-2.1 + MPL-1.1, 22 windows of 512), for q4_0, q4_k_m, q4_k_m + imatrix (i2q imatrix over
# GPL-3, the AWQ calibration text), q5_k_m, q6_k and NF4. `quantize --type` writes exactly
# llama-quantize's bytes (GGMLQuantizePassTests), so these are llama.cpp's models too.
# Usage: Benchmarks/kquant_quality.sh [MODEL_DIR]   (I2Q, OUT as in verify_smollm2.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-.cache/smollm2/SmolLM2-135M-Instruct-f32}
I2Q=${I2Q:-.build/release/i2q}
OUT=${OUT:-$(mktemp -d)}; mkdir -p "$OUT"
TEXT="$OUT/heldout.txt"
cat /usr/share/common-licenses/LGPL-2.1 /usr/share/common-licenses/MPL-1.1 > "$TEXT"
"$I2Q" imatrix "$MODEL" --calibration /usr/share/common-licenses/GPL-3 -o "$OUT/gpl3.imatrix.gguf" --overwrite >&2
for t in q4_0 q4_k_m q5_k_m q6_k; do
  "$I2Q" quantize "$MODEL" --type $t -o "$OUT/$t.i2q" --overwrite --no-progress 2>/dev/null >&2
done
"$I2Q" quantize "$MODEL" --type q4_k_m --imatrix "$OUT/gpl3.imatrix.gguf" -o "$OUT/q4_k_m-imatrix.i2q" --overwrite --no-progress 2>/dev/null >&2
"$I2Q" quantize "$MODEL" --nf4 -o "$OUT/nf4.i2q" --overwrite --no-progress >&2
printf '| candidate | size MB | bits/weight | PPL(base) | PPL(cand) | PPL ratio | mean KLD | KLD p99 | same top |\n'
printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for c in q4_0 q4_k_m q4_k_m-imatrix q5_k_m q6_k nf4; do
  "$I2Q" verify "$OUT/$c.i2q" --reference "$MODEL" --text "$TEXT" --ctx 512 --json --no-progress > "$OUT/$c.json" 2> "$OUT/$c.log"
  bpw=$("$I2Q" inspect "$OUT/$c.i2q" | sed -nE 's/.*parameters: .*, ([0-9.]+) bits\/weight.*/\1/p')
  python3 - "$OUT/$c.json" "$c" "$(stat -c %s "$OUT/$c.i2q")" "$bpw" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1])); t = r["text"]
print(f"| {sys.argv[2]} | {int(sys.argv[3])/1e6:.1f} | {sys.argv[4]} | {t['ppl_base']:.4f} | {t['ppl_candidate']:.4f} | {t['ppl_ratio']:.5f} ± {t['ppl_ratio_err']:.5f} "
      f"| {t['kld']['mean']:.6f} ± {t['kld']['mean_err']:.6f} | {t['kld']['p99']:.4f} | {100*t['same_top']['share']:.2f} ± {100*t['same_top']['err']:.2f} % |")
PYEOF
done
