#!/usr/bin/env bash
# GPTQ quality on SmolLM2-135M-Instruct (issue 23), the calibration and windows of awq_smollm2.sh:
# int4 group 64, calibrated on GPL-3 (14 blocks of 512 tokens), perplexity on LGPL-2.1 (11 windows of 512).
# Rows: RTN, GPTQ, GPTQ --act-order (and AWQ with AWQ=1: ~6 min idle, longer under load); then the
# GPTQ and RTN models exported to compressed-tensors and scored by transformers + compressed-tensors,
# the GPTQ model exported to hf-gptq and scored by transformers + gptqmodel, and llm-compressor's
# GPTQModifier as the peer (PEER=1; ~15 min idle).
# Usage: Benchmarks/gptq_smollm2.sh [MODEL_DIR (default .cache/smollm2/SmolLM2-135M-Instruct-f32)]
# Needs: a release build (I2Q, default .build/release/i2q); /usr/bin/time; for the checks and the peer
#        /work/venv-llmc (llmcompressor 0.14.0.1 + compressed-tensors 0.19.0) and /work/venv-awq (gptqmodel 7.7.0).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-.cache/smollm2/SmolLM2-135M-Instruct-f32}
I2Q=${I2Q:-.build/release/i2q}
OUT=${OUT:-$(mktemp -d)}; mkdir -p "$OUT"
CAL=${CAL:-/usr/share/common-licenses/GPL-3}
TEXT=${TEXT:-/usr/share/common-licenses/LGPL-2.1}
G=${G:-64}
CALARGS=(--calibration "$CAL" --samples 128 --seq-len 512)

/usr/bin/time -f "rtn: %e s, peak RSS %M KB" "$I2Q" quantize "$MODEL" --rtn --group-size "$G" -o "$OUT/rtn.i2q" --overwrite --no-progress
/usr/bin/time -f "gptq: %e s, peak RSS %M KB" "$I2Q" quantize "$MODEL" --gptq --group-size "$G" "${CALARGS[@]}" -o "$OUT/gptq.i2q" --overwrite --no-progress
/usr/bin/time -f "gptq act-order: %e s, peak RSS %M KB" "$I2Q" quantize "$MODEL" --gptq --act-order --group-size "$G" "${CALARGS[@]}" -o "$OUT/gptq-act.i2q" --overwrite --no-progress
MODELS=("$MODEL" "$OUT/rtn.i2q" "$OUT/gptq.i2q" "$OUT/gptq-act.i2q")
if [ "${AWQ:-0}" = 1 ]; then
  /usr/bin/time -f "awq: %e s, peak RSS %M KB" "$I2Q" quantize "$MODEL" --awq --group-size "$G" "${CALARGS[@]}" -o "$OUT/awq.i2q" --overwrite --no-progress
  MODELS+=("$OUT/awq.i2q")
fi
for m in "${MODELS[@]}"; do
  printf '%s\t' "$m"; "$I2Q" perplexity "$m" --text "$TEXT" --ctx 512 --json 2>/dev/null
done
for m in rtn gptq; do
  "$I2Q" export "$OUT/$m.i2q" --to compressed-tensors -o "$OUT/$m-ct" --overwrite --no-progress
  if [ -x /work/venv-llmc/bin/python ]; then
    /work/venv-llmc/bin/python scripts/checks/check_int4_export.py compare "$OUT/$m-ct" --i2q-model "$OUT/$m.i2q" --i2q "$I2Q" --text "$TEXT" 2>/dev/null | tail -2
  fi
done
"$I2Q" export "$OUT/gptq.i2q" --to hf-gptq -o "$OUT/gptq-hf" --overwrite --no-progress
if [ -x /work/venv-awq/bin/python ]; then
  /work/venv-awq/bin/python scripts/checks/check_int4_export.py compare "$OUT/gptq-hf" --i2q-model "$OUT/gptq.i2q" --i2q "$I2Q" --text "$TEXT" 2>/dev/null | tail -2
fi
if [ "${PEER:-0}" = 1 ] && [ -x /work/venv-llmc/bin/python ]; then
  /usr/bin/time -f "peer: %e s, peak RSS %M KB" /work/venv-llmc/bin/python scripts/peers/gptq_peer_llmcompressor.py "$MODEL" \
    --calibration "$CAL" --text "$TEXT" --group-size "$G" 2>/dev/null | tail -1
fi
