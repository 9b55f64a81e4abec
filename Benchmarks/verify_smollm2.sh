#!/usr/bin/env bash
# `i2q verify` on SmolLM2-135M-Instruct: bf16, NF4 and RTN int4 (and AWQ int4 when AWQ=1) against the
# f32 model on a held-out text (~12k tokens: LGPL-2.1 + MPL-1.1 from /usr/share/common-licenses; the
# perplexity tests use GPL-3, AWQ calibration here uses GPL-3 too), plus the shipped DocVQA set with
# the page text in the prompt. Prints one table row per candidate: PPL ratio, mean KLD, same-top,
# DocVQA ANLS, verify wall time and peak RSS (GNU time).
# Usage: Benchmarks/verify_smollm2.sh [MODEL_DIR (default .cache/smollm2/SmolLM2-135M-Instruct-f32)]
# Needs: scripts/get_smollm2.sh run once; a release build (I2Q, default .build/release/i2q); /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-.cache/smollm2/SmolLM2-135M-Instruct-f32}
I2Q=${I2Q:-.build/release/i2q}
OUT=${OUT:-$(mktemp -d)}; mkdir -p "$OUT"
CTX=${CTX:-512}
TEXT="$OUT/heldout.txt"
cat /usr/share/common-licenses/LGPL-2.1 /usr/share/common-licenses/MPL-1.1 > "$TEXT"

"$I2Q" cast "$MODEL" --dtype bf16 -o "$OUT/bf16.i2q" --overwrite --no-progress >&2
"$I2Q" quantize "$MODEL" --nf4 -o "$OUT/nf4.i2q" --overwrite --no-progress >&2
"$I2Q" quantize "$MODEL" --rtn --group-size 64 -o "$OUT/rtn.i2q" --overwrite --no-progress >&2
CANDS="bf16 nf4 rtn"
if [ "${AWQ:-0}" = 1 ]; then
  "$I2Q" quantize "$MODEL" --awq --group-size 64 --calibration /usr/share/common-licenses/GPL-3 --samples 128 --seq-len 512 \
    -o "$OUT/awq.i2q" --overwrite --no-progress >&2
  CANDS="$CANDS awq"
fi

printf '| candidate | tokens | PPL(base) | PPL(cand) | PPL ratio | mean KLD | KLD p99 | RMS Δp | same top | verify s | text tok/s (both models) | peak RSS MB |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for c in $CANDS; do
  /usr/bin/time -f '%e %M' -o "$OUT/$c.time" "$I2Q" verify "$OUT/$c.i2q" --reference "$MODEL" --text "$TEXT" --ctx "$CTX" \
    --json --no-progress --report "$OUT/report-$c" > "$OUT/$c.json" 2> "$OUT/$c.log"
  read -r secs rss < "$OUT/$c.time"
  python3 - "$OUT/$c.json" "$c" "$secs" "$rss" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1])); t = r["text"]
print(f"| {sys.argv[2]} | {t['scored_tokens']} | {t['ppl_base']:.4f} | {t['ppl_candidate']:.4f} | {t['ppl_ratio']:.5f} ± {t['ppl_ratio_err']:.5f} "
      f"| {t['kld']['mean']:.6f} ± {t['kld']['mean_err']:.6f} | {t['kld']['p99']:.4f} | {100*t['delta_p']['rms']:.3f} % "
      f"| {100*t['same_top']['share']:.2f} ± {100*t['same_top']['err']:.2f} % | {float(sys.argv[3]):.1f} | {t['tokens_per_second']:.1f} | {int(sys.argv[4])/1024:.0f} |")
PYEOF
done

# DocVQA with the page text in the prompt (SmolLM2 reads document_text; greedy, 24 new tokens at most).
for c in $CANDS; do
  "$I2Q" verify "$OUT/$c.i2q" --reference "$MODEL" --docvqa Tests/Fixtures/docvqa-mini --max-new-tokens 24 --json --no-progress \
    > "$OUT/$c.docvqa.json" 2> "$OUT/$c.docvqa.log"
  python3 - "$OUT/$c.docvqa.json" "$c" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1]))["docvqa"]
print(f"docvqa {sys.argv[2]}: {d['samples']} questions, ANLS cand {d['anls_candidate']:.4f} base {d['anls_base']:.4f}, "
      f"agreement {d['anls_agreement']:.4f}, exact cand {100*d['exact_match_candidate']:.1f} % base {100*d['exact_match_base']:.1f} %, "
      f"same answer {100*d['same_answer_share']:.1f} %, {d['seconds']:.0f} s")
PYEOF
done
echo "reports: $OUT/report-*" >&2
