#!/usr/bin/env bash
# Prefill and decode speed of the CPU runtime on SmolLM2-135M-Instruct, f32 and its bf16 cast (i2q
# cast --dtype bf16), against transformers f32 on the same machine with the same thread count, in one run.
# Usage: Benchmarks/decoder_smollm2.sh [MODEL_DIR (default .cache/smollm2/SmolLM2-135M-Instruct-f32)]
# Needs: scripts/get_smollm2.sh run once; a Python with torch + transformers (PYTHON, default /work/venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-.cache/smollm2/SmolLM2-135M-Instruct-f32}
I2Q=${I2Q:-.build/release/i2q}
PY=${PYTHON:-/work/venv/bin/python}
THREADS=${THREADS:-2}
CTX=512; NEW=64
PROMPT=$(mktemp); WORK=$(mktemp -d); trap 'rm -rf "$PROMPT" "$WORK"' EXIT
"$I2Q" cast "$MODEL" --dtype bf16 -o "$WORK/bf16.i2q" >/dev/null 2>&1
cat /usr/share/common-licenses/GPL-3 > "$PROMPT"
# The first CTX tokens of the licence, as the model's tokenizer cuts them.
TEXT=$("$PY" - "$MODEL" "$PROMPT" "$CTX" <<'PYEOF'
import sys
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
ids = tok(open(sys.argv[2]).read())["input_ids"][: int(sys.argv[3])]
print(tok.decode(ids, skip_special_tokens=True), end="")
PYEOF
)
printf '%s' "$TEXT" > "$PROMPT"
echo "== transformers ($THREADS threads)" >&2
PEER=$(OMP_NUM_THREADS=$THREADS "$PY" Benchmarks/transformers_speed.py "$MODEL" "$PROMPT" --threads "$THREADS" --ctx "$CTX" --new "$NEW" 2>/dev/null | tail -1)
echo "$PEER" >&2
ROWS=()
for name in f32 bf16 bf16-act-attn; do
  m=$MODEL; flags=(); [ $name != f32 ] && m=$WORK/bf16.i2q
  [ $name = bf16-act-attn ] && flags=(--bf16-activations --bf16-attention)
  echo "== i2q $name" >&2
  best_p=0; best_d=0
  for r in 1 2 3; do
    line=$("$I2Q" run "$m" --prompt "$(cat "$PROMPT")" --max-new-tokens $NEW --ignore-eos "${flags[@]}" 2>&1 >/dev/null | tail -1)
    echo "$line" >&2
    p=$(echo "$line" | sed -E 's/.*tokens, ([0-9.]+) tok\/s; generated.*/\1/'); d=$(echo "$line" | sed -E 's/.*generated: [0-9]+ tokens, ([0-9.]+) tok\/s.*/\1/')
    best_p=$(python3 -c "print(max($best_p, $p))"); best_d=$(python3 -c "print(max($best_d, $d))")
  done
  ROWS+=("$name" "$best_p" "$best_d")
done
python3 - "$PEER" "$CTX" "${ROWS[@]}" <<'PYEOF'
import json, sys
peer = json.loads(sys.argv[1]); ctx = int(sys.argv[2]); rows = sys.argv[3:]
# Prefill FLOPs per token (SmolLM2-135M: 30 layers, hidden 576, inter 1536, 9 heads x 64, 3 kv heads),
# without the lm_head (generation computes only the last row's logits) + causal attention (avg ctx/2).
layers, h, inter, qd, kd = 30, 576, 1536, 576, 192
per_tok = 2 * layers * (h * qd + 2 * h * kd + qd * h + 3 * h * inter) + 2 * layers * 2 * qd * (ctx / 2)
print("| | prefill tok/s (%d-token window) | decode tok/s | prefill GFLOP/s | share of fp32 peak (450 GFLOP/s) | prefill vs transformers | decode vs transformers |" % ctx)
print("|---|---:|---:|---:|---:|---:|---:|")
print("| %s, f32 | %.0f | %.1f | %.0f | %.0f%% | 1.00x | 1.00x |" % (peer["peer"], peer["prefill_tok_s"], peer["decode_tok_s"], peer["prefill_tok_s"] * per_tok / 1e9, 100 * peer["prefill_tok_s"] * per_tok / 1e9 / 450))
for i in range(0, len(rows), 3):
    name, p, d = rows[i], float(rows[i + 1]), float(rows[i + 2])
    gflops = p * per_tok / 1e9
    print("| i2q %s (best of 3) | %.0f | %.1f | %.0f | %.0f%% | %.2fx | %.2fx |" % (name, p, d, gflops, 100 * gflops / 450, p / peer["prefill_tok_s"], d / peer["decode_tok_s"]))
PYEOF
