#!/usr/bin/env bash
# Byte-identity of every writing verb's outputs (issue 18: refactors change no output byte).
# Runs cast (.i2q and safetensors), quantize (nf4, rtn, awq with a fixed seed), fuse and every export
# on SmolLM2-135M (f32, from scripts/get_smollm2.sh) and two Idefics2 models (the tiny random
# tiny-idefics2-v4 and the trained easy-vqa-idefics2), and writes one sha256 per output file to
# OUT/hashes.txt. Compare two builds:
#   I2Q=old/i2q bash scripts/checks/check_outputs_identical.sh out/ident-old
#   I2Q=.build/release/i2q bash scripts/checks/check_outputs_identical.sh out/ident-new
#   diff out/ident-old/hashes.txt out/ident-new/hashes.txt && echo identical
# Output paths and inputs are the same in both runs, so provenance (which records them) matches too.
set -euo pipefail
cd "$(dirname "$0")/../.."
I2Q=${I2Q:-.build/release/i2q}
OUT=${1:-out/identical}
SMOL=${I2Q_SMOLLM2:-.cache/smollm2/SmolLM2-135M-Instruct-f32}
W=/tmp/i2q-identical  # one fixed work path: provenance records output paths
rm -rf "$W" && mkdir -p "$W" "$OUT"
q() { "$I2Q" "$@" --no-progress >/dev/null 2>>"$W/log.txt"; }
for m in smol tiny vqa; do
  case $m in
    smol) src=$SMOL; g=64; cal=(--calibration Tests/Fixtures/docvqa-mini --samples 8 --seq-len 128) ;;
    tiny) src=Tests/Fixtures/tiny-idefics2-v4; g=16; cal=(--calibration Tests/Fixtures/docvqa-mini --samples 4 --seq-len 128) ;;
    vqa)  src=Tests/Fixtures/easy-vqa-idefics2; g=64; cal=(--calibration Tests/Fixtures/docvqa-mini --samples 4 --seq-len 64) ;;
  esac
  q cast "$src" --dtype bf16 -o "$W/$m-bf16.i2q"
  q cast "$src" --dtype f16 --format safetensors -o "$W/$m-f16-hf"
  q quantize "$src" --nf4 -o "$W/$m-nf4.i2q"
  q quantize "$src" --rtn --group-size $g -o "$W/$m-rtn.i2q"
  q quantize "$src" --awq --group-size $g "${cal[@]}" -o "$W/$m-awq.i2q"
  q fuse "$W/$m-rtn.i2q" -o "$W/$m-rtn-fused.i2q"
  q fuse "$W/$m-nf4.i2q" -o "$W/$m-nf4-fused.i2q"
  q export "$W/$m-bf16.i2q" --to hf -o "$W/$m-export-hf"
  q export "$W/$m-nf4.i2q" --to hf-bnb -o "$W/$m-export-bnb"
  q export "$W/$m-awq.i2q" --to hf-awq -o "$W/$m-export-awq"
  q export "$W/$m-rtn-fused.i2q" --to hf-awq -o "$W/$m-export-awq-fused"
  if [ $m = smol ]; then
    q export "$src" --to gguf --type q8_0 -o "$W/$m-q8_0.gguf"
    q export "$W/$m-bf16.i2q" --to gguf -o "$W/$m-bf16.gguf"
  fi
done
(cd "$W" && find . -type f ! -name log.txt | sort | xargs sha256sum) > "$OUT/hashes.txt"
echo "$(wc -l < "$OUT/hashes.txt") output files hashed into $OUT/hashes.txt"
