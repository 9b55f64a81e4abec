#!/usr/bin/env bash
# Prefill time of a text model against transformers on the CPU, same threads, one run.
# For Idefics2-8B's text model at its real width: Benchmarks/make_mistral_slice.py makes a 2-layer
# slice (hidden 4096, intermediate 14336, 32/8 heads, vocab 32003, f32) with the Idefics2 tokenizer.
# Usage: Benchmarks/prefill_text.sh MODEL_DIR [CTX (default 512)]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$1; CTX=${2:-512}
PY=${PYTHON:-/work/venv/bin/python}
THREADS=${THREADS:-2}
PROMPT=$(mktemp); trap 'rm -f "$PROMPT"' EXIT
"$PY" - "$MODEL" /usr/share/common-licenses/GPL-3 "$CTX" > "$PROMPT" <<'PYEOF'
import sys
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
ids = tok(open(sys.argv[2]).read())["input_ids"][1: int(sys.argv[3]) + 16]  # BOS is added back; a few spare tokens, both sides cut at CTX
print(tok.decode(ids), end="")
PYEOF
PEER=$(OMP_NUM_THREADS=$THREADS "$PY" Benchmarks/transformers_speed.py "$MODEL" "$PROMPT" --threads "$THREADS" --ctx "$CTX" --new 8 2>/dev/null | tail -1)
echo "$PEER" >&2
best=0
for r in 1 2; do
  line=$(.build/release/i2q run "$MODEL" --prompt "$(cat "$PROMPT")" --max-new-tokens 1 2>&1 >/dev/null | tail -1)
  echo "$line" >&2
  p=$(echo "$line" | sed -E 's/prompt: ([0-9]+) tokens, ([0-9.]+) tok\/s.*/\2/')
  best=$(python3 -c "print(max($best, $p))")
done
python3 - "$PEER" "$best" "$CTX" <<'PYEOF'
import json, sys
peer = json.loads(sys.argv[1]); p, ctx = float(sys.argv[2]), int(sys.argv[3])
print("| %d-token prefill | tok/s | seconds |" % ctx)
print("|---|---:|---:|")
print("| %s | %.1f | %.2f |" % (peer["peer"], peer["prefill_tok_s"], ctx / peer["prefill_tok_s"]))
print("| i2q (best of 2) | %.1f | %.2f |" % (p, ctx / p))
print("| ratio i2q / transformers | %.2fx | |" % (p / peer["prefill_tok_s"]))
PYEOF
