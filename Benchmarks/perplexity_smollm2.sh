#!/usr/bin/env bash
# Perplexity (prefill-bound) of SmolLM2-135M-Instruct on GPL-3 (14 windows of 512), i2q against
# transformers on the same machine, same threads, one run: transformers float32 and bfloat16;
# i2q on the f32 model, on its bf16 cast (float32 activations, transformers' float32 results), and
# on the bf16 cast with --bf16-activations (linear inputs rounded to bf16, the vdpbf16ps GEMM on
# CPUs with AVX-512 BF16), and with --bf16-attention too (attention's q, k, probabilities and v rounded
# to bf16, both products in vdpbf16ps); and with --int8-activations (W8A8: every linear's input and weight
# rows quantized to int8, vpdpbusd) with bf16 attention, and on the f32 model alone. Prints each time, PPL, and the ratio transformers f32 time / i2q time — i2q's whole process, and its
# windows alone (the peer's protocol).
# Usage: Benchmarks/perplexity_smollm2.sh [MODEL_DIR]  (PYTHON, I2Q, THREADS, REPEAT as in the other scripts)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-.cache/smollm2/SmolLM2-135M-Instruct-f32}
I2Q=${I2Q:-.build/release/i2q}
PY=${PYTHON:-/work/venv/bin/python}
THREADS=${THREADS:-2}
REPEAT=${REPEAT:-2}
TEXT=/usr/share/common-licenses/GPL-3
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
"$I2Q" cast "$MODEL" --dtype bf16 -o "$TMP/bf16.i2q" >/dev/null 2>&1
"$I2Q" --version | tail -1
best() { sort -n | head -1; }
declare -A T P L
for dt in float32 bfloat16; do
  for r in $(seq "$REPEAT"); do
    line=$(OMP_NUM_THREADS=$THREADS "$PY" Benchmarks/transformers_perplexity.py "$MODEL" "$TEXT" --threads "$THREADS" --dtype $dt 2>/dev/null | tail -1)
    echo "transformers $dt: $line" >&2
    T[tf-$dt]="${T[tf-$dt]:-} $(echo "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')"
    P[tf-$dt]=$(echo "$line" | python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["ppl"])')
  done
done
run_i2q() {  # name, model, flags...
  local name=$1 m=$2; shift 2
  for r in $(seq "$REPEAT"); do
    local s e out
    s=$(date +%s.%N)
    out=$(I2Q_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS "$I2Q" perplexity "$m" --text "$TEXT" "$@" 2>&1 | grep -E '^perplexity|tokens/s$')
    e=$(date +%s.%N)
    local ppl tps loop
    ppl=$(echo "$out" | grep '^perplexity')
    tps=$(echo "$out" | grep 'tokens/s$' | sed -E 's/ tokens\/s//')
    loop=$(echo "$ppl" | sed -E 's/.* over ([0-9]+) windows of ([0-9]+) tokens.*/\1 \2/' | python3 -c "import sys; w, c = map(int, sys.stdin.read().split()); print(w * c / $tps)")
    echo "i2q $name: $ppl ($(python3 -c "print('%.2f' % ($e - $s))") s wall, $(python3 -c "print('%.2f' % $loop)") s windows)" >&2
    T[$name]="${T[$name]:-} $(python3 -c "print($e - $s)")"
    L[$name]="${L[$name]:-} $loop"
    P[$name]=$(echo "$ppl" | sed -E 's/perplexity ([0-9.]+).*/\1/')
  done
}
run_i2q f32 "$MODEL"
run_i2q bf16 "$TMP/bf16.i2q"
run_i2q bf16-act "$TMP/bf16.i2q" --bf16-activations
run_i2q bf16-act-attn "$TMP/bf16.i2q" --bf16-activations --bf16-attention
run_i2q int8-act-attn "$TMP/bf16.i2q" --int8-activations --bf16-attention
run_i2q f32-int8-act "$MODEL" --int8-activations
ref=$(echo ${T[tf-float32]} | tr ' ' '\n' | best)
# "best s": i2q's whole process (start, model and tokenizer load, windows); "windows s": the windows'
# forward + loss alone, the peer's own protocol (transformers_perplexity.py times only those, after a warm-up).
printf '%-28s %9s %10s %9s %8s %11s\n' "SmolLM2-135M, $THREADS threads" "best s" "windows s" "PPL" "vs tf f32" "(windows)"
for k in tf-float32 tf-bfloat16 f32 bf16 bf16-act bf16-act-attn int8-act-attn f32-int8-act; do
  b=$(echo ${T[$k]} | tr ' ' '\n' | best)
  l=$(echo ${L[$k]:-$b} | tr ' ' '\n' | best)
  printf '%-28s %9.2f %10.2f %9s %7.2fx %10.2fx\n' "$k" "$b" "$l" "${P[$k]}" "$(python3 -c "print($ref / $b)")" "$(python3 -c "print($ref / $l)")"
done
