#!/usr/bin/env bash
# Decode and prefill speed of i2q on SmolLM2-135M-Instruct stored as f32, bf16, NF4 and affine int4
# (RTN, group 64), against llama.cpp (llama-cpp-python 0.3.36) on the Q4_1 GGUF, same thread count,
# all in one run. Prefill: one 512-token prompt; decode: 64 greedy tokens (EOS ignored) after a
# 32-token prompt — the same protocol as the llama.cpp peer (llamacpp_speed.py), so both decode at
# context 32…96 (decoding after the 512-token prompt would add attention over ~540 keys per token).
# Usage: Benchmarks/decode_4bit.sh [MODEL_DIR (default .cache/smollm2/SmolLM2-135M-Instruct-f32)]
# Needs: scripts/get_smollm2.sh run once (the model and the Q4_1 GGUF next to it); a release build of
# i2q (I2Q, default .build/release/i2q); PYTHON with transformers (the prompt's tokenization,
# default /work/venv/bin/python); LLAMA_PYTHON with llama-cpp-python 0.3.36 (default /work/venv-llama/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-.cache/smollm2/SmolLM2-135M-Instruct-f32}
GGUF=${GGUF:-$(dirname "$MODEL")/SmolLM2-135M-Instruct.Q4_1.gguf}
I2Q=${I2Q:-.build/release/i2q}
PY=${PYTHON:-/work/venv/bin/python}
LPY=${LLAMA_PYTHON:-/work/venv-llama/bin/python}
THREADS=${THREADS:-2}
CTX=512; NEW=64
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
# The first CTX tokens of the GPL-3 text, as the model's tokenizer cuts them.
"$PY" - "$MODEL" /usr/share/common-licenses/GPL-3 "$CTX" "$WORK" <<'PYEOF'
import sys
from transformers import AutoTokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
ids = tok(open(sys.argv[2]).read())["input_ids"]
open(sys.argv[4] + "/prompt.txt", "w").write(tok.decode(ids[: int(sys.argv[3])], skip_special_tokens=True))
open(sys.argv[4] + "/prompt32.txt", "w").write(tok.decode(ids[:32], skip_special_tokens=True))
PYEOF
echo "== preparing models" >&2
"$I2Q" cast "$MODEL" --dtype bf16 -o "$WORK/bf16.i2q" >/dev/null
# NF4 (bnb defaults: block 64, double quant); embeddings / lm_head / norms kept in bf16.
"$I2Q" quantize "$MODEL" --nf4 --dtype bf16 -o "$WORK/nf4.i2q" >/dev/null
# Affine int4, round to nearest, group 64; embeddings / lm_head / norms kept in bf16.
"$I2Q" quantize "$MODEL" --rtn --group-size 64 --dtype bf16 -o "$WORK/int4.i2q" >/dev/null
ls -l "$WORK"/*.i2q "$GGUF" >&2
echo "== load: $(uptime)" >&2
echo "== llama.cpp ($THREADS threads)" >&2
PEER=$("$LPY" Benchmarks/llamacpp_speed.py "$GGUF" "$WORK/prompt.txt" --threads "$THREADS" --ctx "$CTX" --new "$NEW" 2>/dev/null | tail -1)
echo "$PEER" >&2
RESULTS=""
# int4: default decode (int8 activations × int4, VNNI); int4-exact: the float dequant-dot GEMV.
for name in f32 bf16 nf4 int4 int4-exact; do
  src=$WORK/$name.i2q; [ "$name" = f32 ] && src=$MODEL; [ "$name" = int4-exact ] && src=$WORK/int4.i2q
  export I2Q_EXACT_GEMV=0; [ "$name" = int4-exact ] && export I2Q_EXACT_GEMV=1
  best_p=0; best_d=0
  for r in 1 2 3; do
    line=$(OPENBLAS_NUM_THREADS=$THREADS "$I2Q" run "$src" --prompt "$(cat "$WORK/prompt.txt")" --max-new-tokens 1 --ignore-eos 2>&1 >/dev/null | tail -1)
    echo "$name prefill: $line" >&2
    p=$(echo "$line" | sed -E 's/.*tokens, ([0-9.]+) tok\/s; generated.*/\1/')
    line=$(OPENBLAS_NUM_THREADS=$THREADS "$I2Q" run "$src" --prompt "$(cat "$WORK/prompt32.txt")" --max-new-tokens $NEW --ignore-eos 2>&1 >/dev/null | tail -1)
    echo "$name decode: $line" >&2
    d=$(echo "$line" | sed -E 's/.*generated: [0-9]+ tokens, ([0-9.]+) tok\/s.*/\1/')
    best_p=$(python3 -c "print(max($best_p, $p))"); best_d=$(python3 -c "print(max($best_d, $d))")
  done
  RESULTS="$RESULTS $name:$best_p:$best_d"
done
python3 - "$PEER" $RESULTS <<'PYEOF'
import json, sys
peer = json.loads(sys.argv[1])
rows = [(n, float(p), float(d)) for n, p, d in (a.split(":") for a in sys.argv[2:])]
bf16 = dict((n, d) for n, _, d in rows)["bf16"]
print("| SmolLM2-135M, 2 threads | prefill tok/s (512) | decode tok/s (64 after 32) | decode vs llama.cpp | decode vs i2q bf16 |")
print("|---|---:|---:|---:|---:|")
print("| %s | %.0f | %.1f | 1.00x | |" % (peer["peer"], peer["prefill_tok_s"], peer["decode_tok_s"]))
for n, p, d in rows:
    print("| i2q %s (best of 3) | %.0f | %.1f | %.2fx | %.2fx |" % (n, p, d, d / peer["decode_tok_s"], d / bf16))
PYEOF
