#!/usr/bin/env bash
# The Idefics2 model card's memory/time table on the CPU (issue 25), for the full-size synthetic
# checkpoint: Benchmarks/card_table.py over bf16 (the HF directory, mapped as is), NF4
# (`quantize --nf4`), int4 RTN (`quantize --rtn --group-size 128`), int4 RTN fused (`i2q fuse`),
# f16 (`i2q cast --dtype f16`), AWQ (`quantize --awq --group-size 128`, calibrated as in
# awq_fullsize.sh: 32 docvqa-mini questions without splitting, 512 search tokens; ~45-60 min on 2
# cores) and AWQ fused, each with image splitting off and on. The rows run one at a time, cheapest
# first, each card_table.py run merging the previous one's JSON, so a stopped run keeps what it
# measured; every file is deleted once its rows are done, so at most ~17 GB of model files exist at
# once (f16: 16.8 GB; two 4-bit files: 13 GB). f32 (33.6 GB) is not made: see the README.
#
#   Benchmarks/card_table.sh [WORK_DIR]     (default /work/runs/card; needs ~20 GB free)
# Environment: SRC (default /work/bench/idefics2-8b-synthetic-bf16), I2Q (default
# <repo>/.build/release/i2q), NEW_TOKENS (8), GENERATIONS (1), AWQ (1; 0 skips the AWQ rows).
# Report: WORK_DIR/table/<last>/card_table.{md,json,svg}.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
F=${1:-/work/runs/card}
SRC=${SRC:-/work/bench/idefics2-8b-synthetic-bf16}
I2Q=${I2Q:-$ROOT/.build/release/i2q}
[[ -d $SRC ]] || { echo "missing $SRC: make it with scripts/data/make_synthetic_idefics2.py (see Benchmarks/README.md)" >&2; exit 1; }
T=$F/table
mkdir -p "$T" "$F/synth"
# A model directory of links to the shards, the tokenizer of the tiny fixtures (Mistral v0.1 + Idefics2's
# three tokens) and idefics2-8b's processor settings with image splitting on (980 / 378 px, 64 latents);
# the .i2q files made from it carry the same settings, and "splitting off" rows add --no-image-splitting.
for f in "$SRC"/*.safetensors "$SRC"/model.safetensors.index.json "$SRC"/config.json "$SRC"/generation_config.json; do
  ln -sf "$f" "$F/synth/"
done
for f in tokenizer.json tokenizer_config.json special_tokens_map.json; do
  cp "$ROOT/Tests/Fixtures/tiny-idefics2-a/$f" "$F/synth/$f"
done
python3 - "$ROOT/Tests/Fixtures/tiny-idefics2-a/preprocessor_config.json" "$F/synth" <<'PYEOF'
import json, sys
p = json.load(open(sys.argv[1]))
p.update(size={"longest_edge": 980, "shortest_edge": 378}, do_image_splitting=True)
json.dump(p, open(sys.argv[2] + "/preprocessor_config.json", "w"), indent=2)
json.dump({"image_seq_len": 64, "processor_class": "Idefics2Processor"}, open(sys.argv[2] + "/processor_config.json", "w"), indent=2)
PYEOF
TITLE="Full-size synthetic Idefics2-8B on the CPU (i2q)"
last=""
ct() {  # OUT_NAME card_table.py-arguments...
  local out=$1; shift
  local m=(); [[ -n $last ]] && m=(--merge "$T/$last/card_table.json")
  echo "== table $out $* ($(uptime))" >&2
  nice -n 19 python3 "$HERE/card_table.py" --i2q "$I2Q" --out "$T/$out" --title "$TITLE" --new-tokens "${NEW_TOKENS:-8}" \
    --generations "${GENERATIONS:-1}" "${m[@]}" "$@"
  last=$out
}
q() { echo "== i2q $*" >&2; nice -n 19 "$I2Q" "$@" --no-progress --overwrite; }
# --compute-dtype f32: the file the NF4 golden compares (bitsandbytes with a float32 model); the same size on disk (4.74 GB)
q quantize "$F/synth" --nf4 --compute-dtype f32 -o "$F/nf4.i2q"
ct a --splitting off --row bf16="$F/synth" --row nf4="$F/nf4.i2q"
q quantize "$F/synth" --rtn --group-size 128 -o "$F/int4.i2q"
ct b --splitting off --row int4-rtn-g128="$F/int4.i2q"
ct c --splitting on --row bf16="$F/synth"
ct d --splitting on --row nf4="$F/nf4.i2q"
rm -f "$F/nf4.i2q"
q fuse "$F/int4.i2q" -o "$F/int4-fused.i2q"
ct e --splitting off --row int4-rtn-g128-fused="$F/int4-fused.i2q"
ct f --splitting on --row int4-rtn-g128="$F/int4.i2q"
ct g --splitting on --row int4-rtn-g128-fused="$F/int4-fused.i2q"
rm -f "$F/int4.i2q" "$F/int4-fused.i2q"
# f16: the same bytes per weight as bf16 (both widened to float32 for compute), its own 16.8 GB file
q cast "$F/synth" --dtype f16 -o "$F/f16.i2q"
ct h --splitting off --row f16="$F/f16.i2q"
ct i --splitting on --row f16="$F/f16.i2q"
rm -f "$F/f16.i2q"
if [[ ${AWQ:-1} == 1 ]]; then
  # AWQ as the card's "AWQ (LLM only)": the decoder's linears int4 g128, vision tower and connector bf16;
  # calibrated without splitting (the file keeps the directory's processor config, splitting on)
  q quantize "$F/synth" --awq --group-size 128 --search-tokens 512 --calibration "$ROOT/Tests/Fixtures/docvqa-mini" \
    --samples 32 --no-image-splitting -o "$F/awq.i2q"
  q fuse "$F/awq.i2q" -o "$F/awq-fused.i2q"
  ct j --splitting off --row awq-g128="$F/awq.i2q" --row awq-g128-fused="$F/awq-fused.i2q"
  ct k --splitting on --row awq-g128="$F/awq.i2q" --row awq-g128-fused="$F/awq-fused.i2q"
  rm -f "$F/awq.i2q" "$F/awq-fused.i2q"
fi
echo "report: $T/$last/card_table.md (.json, .svg)" >&2
