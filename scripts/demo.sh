#!/usr/bin/env bash
# Command one of the README: install what is needed, build, and run the main job end to end on the
# embedded default model (the bundled tiny Idefics2 in Tests/Fixtures/tiny-idefics2-v4, a real
# transformers-made checkpoint in the 4.x layout of HuggingFaceM4/idefics2-8b).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release
I2Q=.build/release/i2q
MODEL=${1:-Tests/Fixtures/tiny-idefics2-v4}
OUT=${DEMO_OUT:-out/demo}
mkdir -p "$OUT"
set -x
$I2Q inspect "$MODEL" --brief
$I2Q cast "$MODEL" --dtype bf16 -o "$OUT/model-bf16.i2q" --overwrite
$I2Q inspect "$OUT/model-bf16.i2q" --brief --verify-checksums
$I2Q export "$OUT/model-bf16.i2q" --to hf -o "$OUT/model-bf16-hf" --overwrite
$I2Q cast "$MODEL" --dtype f16 --format safetensors -o "$OUT/model-f16-hf" --overwrite
$I2Q inspect "$OUT/model-f16-hf" --brief
