#!/usr/bin/env bash
# Full-size golden (issue 25): transformers' own Idefics2 modules, driven one layer at a time in
# float32 (scripts/checks/fullsize_golden.py), and i2q (`i2q-bench trace`) on the synthetic
# idefics2-8b checkpoint (bf16, real shapes; scripts/data/make_synthetic_idefics2.py), two prompts
# about a real DocVQA-format page, one with image splitting and one without; then
# scripts/checks/compare_golden_trace.py per stage. bf16 weights are widened to float32 on both
# sides (exact), so this is the float32-weight comparison.
#
#   Benchmarks/fullsize_golden.sh [WORK_DIR]   (default /work/golden-work; ~20 min on 2 idle cores)
# Environment: MODEL (default /work/bench/idefics2-8b-synthetic-bf16), PY (/work/venv/bin/python),
# I2Q_BENCH (default <repo>/.build/release/i2q-bench), PAGE (default docvqa-mini invoice_00.png).
# Needs ~4 GB of anonymous memory per side (the mapped shards are page cache).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
WORK=${1:-/work/golden-work}
SRC=${MODEL:-/work/bench/idefics2-8b-synthetic-bf16}
PY=${PY:-/work/venv/bin/python}
BENCH=${I2Q_BENCH:-$ROOT/.build/release/i2q-bench}
PAGE=${PAGE:-$ROOT/Tests/Fixtures/docvqa-mini/documents/invoice_00.png}
[[ -d $SRC ]] || { echo "missing $SRC: make it with scripts/data/make_synthetic_idefics2.py (see Benchmarks/README.md)" >&2; exit 1; }
# A model directory of links to the shards plus the tokenizer (Mistral v0.1 + Idefics2's three
# tokens, as shipped with the tiny fixtures) and idefics2-8b's processor settings (980 / 378 px, 64 latents).
M=$WORK/idefics2-8b-synth
mkdir -p "$M"
for f in "$SRC"/*.safetensors "$SRC"/model.safetensors.index.json "$SRC"/config.json "$SRC"/generation_config.json; do
  ln -sf "$f" "$M/"
done
for f in tokenizer.json tokenizer_config.json special_tokens_map.json; do
  rm -f "$M/$f"; cp "$ROOT/Tests/Fixtures/tiny-idefics2-a/$f" "$M/$f"
done
"$PY" - "$ROOT/Tests/Fixtures/tiny-idefics2-a/preprocessor_config.json" "$M" <<'PYEOF'
import json, sys
p = json.load(open(sys.argv[1]))
p.update(size={"longest_edge": 980, "shortest_edge": 378}, do_image_splitting=False)
json.dump(p, open(sys.argv[2] + "/preprocessor_config.json", "w"), indent=2)
json.dump({"image_seq_len": 64, "processor_class": "Idefics2Processor"}, open(sys.argv[2] + "/processor_config.json", "w"), indent=2)
PYEOF
P1=$'User:<image>What is the total amount due?<end_of_utterance>\nAssistant:'
P2=$'User:<image>What is the invoice number?<end_of_utterance>\nAssistant:'
for c in "split|$P1" "no-split|$P2"; do
  name=${c%%|*}; prompt=${c#*|}
  echo "== $name: transformers ($(uptime))" >&2
  /usr/bin/time -v nice -n 19 "$PY" "$ROOT/scripts/checks/fullsize_golden.py" "$M" "$WORK/tf-$name.json" --$name \
    --full-logits --image "$PAGE" --prompt "$prompt" > "$WORK/tf-$name.log" 2>&1
  echo "== $name: i2q ($(uptime))" >&2
  /usr/bin/time -v nice -n 19 "$BENCH" trace "$M" "$WORK/i2q-$name.json" --$name --full-logits --image "$PAGE" \
    --prompt "$prompt" > "$WORK/i2q-$name.log" 2>&1
  python3 "$ROOT/scripts/checks/compare_golden_trace.py" "$WORK/tf-$name.json" "$WORK/i2q-$name.json" --markdown \
    | tee "$WORK/compare-$name.md"
done
