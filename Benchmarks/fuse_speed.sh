#!/usr/bin/env bash
# Runtime speed of fused (i2q fuse: qkv_proj, gate_up_proj) vs unfused weights: the same model stored
# both ways, for each storage in FORMATS (f32, bf16, nf4), timed in alternation by `i2q-bench fuse`
# (random prompt, seed 0): prefill tok/s of a CTX-token prompt (best of TRIALS) and decode tok/s over
# NEW tokens after it (per token: fastest and median over all trials). THREADS for OpenBLAS (the
# runtime's own kernels use 2 threads).
# Usage: Benchmarks/fuse_speed.sh [MODEL_DIR (default .cache/smollm2/SmolLM2-135M-Instruct-f32)]
#   Full-size layers: Benchmarks/fuse_speed.sh /work/bench/mistral-2l (2-layer slice of Idefics2-8B's
#   Mistral decoder at its real width, Benchmarks/make_mistral_slice.py).
#   env: CTX (512), NEW (32), TRIALS (5), FORMATS ("f32 bf16 nf4"), WORK (model dir, default a temp
#   dir; REUSE=1 keeps models already there), I2Q / BENCH (release binaries, default .build/release).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-.cache/smollm2/SmolLM2-135M-Instruct-f32}
I2Q=${I2Q:-.build/release/i2q}
BENCH=${BENCH:-$(dirname "$I2Q")/i2q-bench}
THREADS=${THREADS:-2}
CTX=${CTX:-512}; NEW=${NEW:-32}; TRIALS=${TRIALS:-5}; FORMATS=${FORMATS:-f32 bf16 nf4}
if [ -n "${WORK:-}" ]; then mkdir -p "$WORK"; else WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT; fi
echo "== preparing models in $WORK" >&2
for fmt in $FORMATS; do
  if [ -n "${REUSE:-}" ] && [ -f "$WORK/$fmt-fused.i2q" ]; then continue; fi
  case $fmt in
    f32) "$I2Q" cast "$MODEL" --dtype f32 -o "$WORK/f32.i2q" --overwrite >/dev/null ;;
    bf16) "$I2Q" cast "$MODEL" --dtype bf16 -o "$WORK/bf16.i2q" --overwrite >/dev/null ;;
    # NF4 (bnb defaults: block 64, double quant); embeddings / lm_head / norms in bf16.
    nf4) "$I2Q" quantize "$MODEL" --nf4 --dtype bf16 -o "$WORK/nf4.i2q" --overwrite >/dev/null ;;
    *) echo "unknown format $fmt" >&2; exit 2 ;;
  esac
  "$I2Q" fuse "$WORK/$fmt.i2q" -o "$WORK/$fmt-fused.i2q" --overwrite >&2
done
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
LINES=""
for fmt in $FORMATS; do
  out=$(OPENBLAS_NUM_THREADS=$THREADS "$BENCH" fuse "$WORK/$fmt.i2q" "$WORK/$fmt-fused.i2q" --ctx "$CTX" --new "$NEW" --trials "$TRIALS")
  echo "$out" >&2
  LINES="$LINES$out"$'\n'
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
printf '%s' "$LINES" | python3 -c '
import json, sys, os
rows = [json.loads(l) for l in sys.stdin if l.strip()]
name = os.path.basename(sys.argv[1].rstrip("/"))
print("| %s | prefill tok/s (%d) unfused | fused | ratio | decode tok/s best unfused | fused | ratio | decode median unfused | fused | ratio |" % (name, rows[0]["ctx"]))
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for a, b in zip(rows[0::2], rows[1::2]):
    fmt = os.path.basename(a["model"]).replace(".i2q", "")
    r = lambda k: (a[k], b[k], b[k] / a[k])
    print("| %s (%d trials) | %.1f | %.1f | %.3fx | %.2f | %.2f | %.3fx | %.2f | %.2f | %.3fx |" % ((fmt, a["trials"]) + r("prefill_tok_s") + r("decode_tok_s_best") + r("decode_tok_s_median")))
' "$MODEL"
