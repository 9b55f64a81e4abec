#!/usr/bin/env bash
# Decode speed of ggml-block .i2q models (quantize --type) against llama.cpp on the same bytes, one run:
# SmolLM2-135M-Instruct, 64 greedy tokens after a short prompt, 2 threads. For each type: i2q default
# (fused integer block dots, ggml_dot.c), i2q with I2Q_GGML_FUSED=0 (dequantize rows, float GEMV on
# the rounded activations), i2q --ggml-f32-activations (float32 activations), and llama-cpp-python 0.3.36
# on `export --to gguf` of the same .i2q (Benchmarks/llamacpp_speed.py: decode after a 32-token prompt).
# Usage: Benchmarks/ggml_decode.sh [MODEL_DIR] [TYPES]   (I2Q, OUT, LLAMA_PY as below)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-.cache/smollm2/SmolLM2-135M-Instruct-f32}
TYPES=${2:-q4_0 q4_k_m q6_k q8_0}
I2Q=${I2Q:-.build/release/i2q}
LLAMA_PY=${LLAMA_PY:-/work/venv-llama/bin/python}
OUT=${OUT:-$(mktemp -d)}; mkdir -p "$OUT"
PROMPT="$OUT/prompt.txt"; cat /usr/share/common-licenses/GPL-3 > "$PROMPT"
tps() { sed -nE 's/.*generated: [0-9]+ tokens, ([0-9.]+) tok\/s.*/\1/p' | tail -1; }
printf '| type | i2q (fused) tok/s | i2q, I2Q_GGML_FUSED=0 | i2q --ggml-f32-activations | llama.cpp tok/s | i2q / llama.cpp |\n|---|---:|---:|---:|---:|---:|\n'
for t in $TYPES; do
  "$I2Q" quantize "$MODEL" --type "$t" -o "$OUT/$t.i2q" --overwrite --no-progress 2>/dev/null >&2
  "$I2Q" export "$OUT/$t.i2q" --to gguf -o "$OUT/$t.gguf" --overwrite --no-progress >&2
  run() { "$I2Q" run "$OUT/$t.i2q" "$@" --prompt "The history of Paris begins" --max-new-tokens 64 2>&1 | tps; }
  a=$(run); b=$(I2Q_GGML_FUSED=0 run); c=$(run --ggml-f32-activations)
  l=$("$LLAMA_PY" Benchmarks/llamacpp_speed.py "$OUT/$t.gguf" "$PROMPT" --threads 2 | python3 -c 'import json,sys; print(round(json.loads(sys.stdin.read())["decode_tok_s"], 1))')
  printf '| %s | %s | %s | %s | %s | %.2f |\n' "$t" "$a" "$b" "$c" "$l" "$(python3 -c "print($a/$l)")"
done
