#!/usr/bin/env bash
# Idefics2 vision encoder speed (patches/s) against transformers on the CPU, same threads, one run;
# and i2q's whole-page time and peak anonymous memory at real shapes (i2q-bench).
# i2q runs in each of MODES (default "f32 bf16 bf16attn"): f32 = float32 activations (transformers'
# float32 results), bf16 = I2Q_BF16_ACTIVATIONS=1 (bf16 weights round their inputs; vdpbf16ps GEMM),
# bf16attn = that and I2Q_BF16_ATTENTION=1 (attention's products on bf16-rounded inputs too);
# int8attn = I2Q_INT8_ACTIVATIONS=1 (W8A8 linears, vpdpbusd) with I2Q_BF16_ATTENTION=1.
# Usage: Benchmarks/vision_idefics2.sh [MODEL (default /work/bench/idefics2-8b-synthetic-bf16)]
#        (PYTHON, THREADS, MODES, PAGE=0 to skip the whole-page runs, SKIP_BUILD=1 to use the binaries as built)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-/work/bench/idefics2-8b-synthetic-bf16}
PY=${PYTHON:-/work/venv/bin/python}
THREADS=${THREADS:-2}
MODES=${MODES:-f32 bf16 bf16attn int8attn}
PAGE=${PAGE:-1}
[ "${SKIP_BUILD:-0}" = 1 ] || swift build -c release --product i2q-bench >/dev/null
.build/release/i2q --version | tail -1 >&2
env_for() {
  case $1 in
    f32) echo "I2Q_BF16_ACTIVATIONS=0 I2Q_BF16_ATTENTION=0" ;;
    bf16) echo "I2Q_BF16_ACTIVATIONS=1 I2Q_BF16_ATTENTION=0" ;;
    bf16attn) echo "I2Q_BF16_ACTIVATIONS=1 I2Q_BF16_ATTENTION=1" ;;
    int8attn) echo "I2Q_INT8_ACTIVATIONS=1 I2Q_BF16_ATTENTION=1" ;;
    *) echo "unknown mode $1" >&2; exit 2 ;;
  esac
}
echo "== transformers vision tower, one 980x557 image (2,730 patches), $THREADS threads" >&2
PEER=$(OMP_NUM_THREADS=$THREADS "$PY" Benchmarks/transformers_vision.py --threads "$THREADS" 2>/dev/null | tail -1)
echo "$PEER" >&2
ROWS=()
for mode in $MODES; do
  echo "== i2q ($mode), the same image alone (vision + connector)" >&2
  ONE=$(env $(env_for "$mode") I2Q_THREADS="$THREADS" .build/release/i2q-bench idefics2 "$MODEL" --crops 0 --original 980x557 --vision-only)
  echo "$ONE" >&2
  PAGEOUT=""
  if [ "$PAGE" = 1 ]; then
    echo "== i2q ($mode), a whole page with splitting (4 crops 490x378 + original 980x557), prefill + 8 tokens" >&2
    PAGEOUT=$(env $(env_for "$mode") I2Q_THREADS="$THREADS" /usr/bin/time -f "maxrss_kb %M" .build/release/i2q-bench idefics2 "$MODEL" 2>&1)
    echo "$PAGEOUT" >&2
  fi
  ROWS+=("$mode" "$ONE" "$PAGEOUT")
done
python3 - "$PEER" "${ROWS[@]}" <<'PYEOF'
import json, re, sys
peer = json.loads(sys.argv[1]); rows = sys.argv[2:]
print("| | patches | seconds | patches/s | vs transformers | page: vision + text = total | peak anon |")
print("|---|---:|---:|---:|---:|---|---:|")
print("| %s (vision tower only, float32) | %d | %.1f | %.1f | 1.00x | | |" % (peer["peer"], peer["patches"], peer["seconds"], peer["patches_per_s"]))
for i in range(0, len(rows), 3):
    mode, one, page = rows[i:i + 3]
    m = re.search(r"vision \+ connector: ([0-9.]+) s \(([0-9.]+) patches/s\)", one)
    s, pps = float(m.group(1)), float(m.group(2))
    pg, anon = "", ""
    if page:
        v = re.search(r"vision \+ connector: ([0-9.]+) s", page); t = re.search(r"\+ 8 greedy tokens: ([0-9.]+) s", page)
        tot = re.search(r"total per page: ([0-9.]+) s", page); a = re.search(r"RssAnon\): ([0-9.]+) GiB", page)
        pg = "%s + %s = %s s" % (v.group(1), t.group(1), tot.group(1)) if v and t and tot else "?"
        anon = "%s GiB" % a.group(1) if a else "?"
    print("| i2q %s (vision tower + connector) | %d | %.1f | %.1f | %.2fx | %s | %s |" % (mode, peer["patches"], s, pps, pps / peer["patches_per_s"], pg, anon))
PYEOF
