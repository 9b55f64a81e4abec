#!/usr/bin/env bash
# Time and memory to open a full-size .i2q and read its first tensor (zero copy), and to inspect it.
# Usage: Benchmarks/i2q_load.sh [WORK_DIR (default /work/bench)]
# Needs the synthetic checkpoint of scripts/data/make_synthetic_idefics2.py in WORK_DIR (made if absent).
set -euo pipefail
W=${1:-/work/bench}
I2Q=${I2Q:-$(cd "$(dirname "$0")/.." && pwd)/.build/release/i2q}
SRC=$W/idefics2-8b-synthetic-bf16
F=$W/idefics2-8b-f16.i2q
[ -d "$SRC" ] || python3 "$(dirname "$0")/../scripts/data/make_synthetic_idefics2.py" "$SRC" --dtype bf16
[ -f "$F" ] || "$I2Q" cast "$SRC" --dtype f16 -o "$F" --no-progress
T=model.text_model.layers.31.mlp.down_proj.weight
row() { # label, command...
  local label=$1; shift
  local out; out=$( { /usr/bin/time -f "TIME %e %M" "$@" >/dev/null; } 2>&1 )
  local t m; t=$(echo "$out" | awk '/^TIME/{print $2}'); m=$(echo "$out" | awk '/^TIME/{print $3}')
  local ms; ms=$(echo "$out" | grep -o 'after [0-9.]* ms' | awk '{print $2}' || true)
  printf '| %s | %s | %s | %s |\n' "$label" "${ms:--}" "$t" "$((m / 1024))"
}
echo "| step | in-process ms | wall s | peak RSS MiB |"
echo "|---|---|---|---|"
if [ -w /proc/sys/vm/drop_caches ]; then sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null && row "open + first values of $T (cold cache)" "$I2Q" inspect "$F" --tensor $T || true; fi
row "open + first values of $T (warm)" "$I2Q" inspect "$F" --tensor $T
row "inspect --brief" "$I2Q" inspect "$F" --brief
row "inspect (full directory listing)" "$I2Q" inspect "$F"
echo
echo "file: $(stat -c %s "$F") bytes"
