#!/usr/bin/env bash
# AWQ quality on SmolLM2-135M-Instruct (issue 7): perplexity on a held-out text of the f32 model, RTN
# int4 and AWQ int4 (group 64: 576 is not a multiple of 128), AWQ calibrated on a different text
# (AutoAWQ-style 512-token blocks), then the same AWQ checkpoint exported to AutoAWQ's GEMM layout and
# scored by transformers + gptqmodel (a real AWQ runtime), and llm-compressor's AWQModifier as the peer.
# Usage: Benchmarks/awq_smollm2.sh [MODEL_DIR (default .cache/smollm2/SmolLM2-135M-Instruct-f32)]
# Needs: scripts/get_smollm2.sh run once; a release build (I2Q, default .build/release/i2q); /usr/bin/time;
#        for the peers: /work/venv-awq (gptqmodel) and /work/venv-llmc (llmcompressor), see the scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-.cache/smollm2/SmolLM2-135M-Instruct-f32}
I2Q=${I2Q:-.build/release/i2q}
OUT=${OUT:-$(mktemp -d)}; mkdir -p "$OUT"
CAL=${CAL:-/usr/share/common-licenses/GPL-3}
TEXT=${TEXT:-/usr/share/common-licenses/LGPL-2.1}
G=${G:-64}

/usr/bin/time -f "rtn: %e s, peak RSS %M KB" "$I2Q" quantize "$MODEL" --rtn --group-size "$G" -o "$OUT/rtn.i2q" --overwrite --no-progress
/usr/bin/time -f "awq: %e s, peak RSS %M KB" "$I2Q" quantize "$MODEL" --awq --group-size "$G" --calibration "$CAL" \
  --samples 128 --seq-len 512 -o "$OUT/awq.i2q" --overwrite --no-progress
for m in "$MODEL" "$OUT/rtn.i2q" "$OUT/awq.i2q"; do
  printf '%s\t' "$m"; "$I2Q" perplexity "$m" --text "$TEXT" --ctx 512 --json 2>/dev/null
done
"$I2Q" export "$OUT/awq.i2q" --to hf-awq -o "$OUT/awq-hf" --overwrite --no-progress
if [ -x /work/venv-awq/bin/python ]; then
  /work/venv-awq/bin/python scripts/checks/check_awq_export.py compare "$OUT/awq-hf" --i2q-model "$OUT/awq.i2q" --i2q "$I2Q" --text "$TEXT" 2>/dev/null | tail -2
fi
if [ -x /work/venv-llmc/bin/python ]; then
  /work/venv-llmc/bin/python scripts/peers/awq_peer_llmcompressor.py "$MODEL" --calibration "$CAL" --text "$TEXT" --group-size "$G" 2>/dev/null | tail -1
fi
