#!/usr/bin/env bash
# The Idefics2 model card's memory/time table on the CPU (issue 25), for the full-size synthetic
# checkpoint: Benchmarks/card_table.py over bf16 (the HF directory, mapped as is), NF4
# (`quantize --nf4`), int4 (`quantize --rtn --group-size 128`, standing in for AWQ: AWQ at full
# size takes ~45 min here, see "Full-size AWQ") and int4 fused (`i2q fuse`), each with image
# splitting off and on. The rows run one at a time, cheapest first, each card_table.py run merging
# the previous one's JSON, so a stopped run keeps what it measured; at most two 4-bit files
# (~4.7 GB each) exist at once. f16 (16.8 GB more) and f32 (33.6 GB) are not made: see the README.
#
#   Benchmarks/card_table.sh [WORK_DIR]     (default /work/runs/card; needs ~10 GB free)
# Environment: SRC (default /work/bench/idefics2-8b-synthetic-bf16), I2Q (default
# <repo>/.build/release/i2q), NEW_TOKENS (8), GENERATIONS (1). Report: WORK_DIR/table/<last>/card_table.{md,json,svg}.
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
echo "report: $T/g/card_table.md (.json, .svg)" >&2
