#!/usr/bin/env bash
# Speed of two i2q builds in one run, interleaved (issue 18: a refactor must not slow the runtime):
# prefill and decode tok/s of SmolLM2-135M f32 on the first 512 tokens of the GPL-3 text + 64 new
# tokens (`i2q run`'s own rates), and the wall time of AWQ on SmolLM2 (docvqa-mini, 8 samples of
# 128 tokens). Best of ROUNDS per build; prints one line per build.
#   bash scripts/checks/compare_speed.sh OLD_I2Q NEW_I2Q [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/../.."
OLD=$1; NEW=$2; ROUNDS=${3:-3}
SMOL=${I2Q_SMOLLM2:-.cache/smollm2/SmolLM2-135M-Instruct-f32}
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
head -c 2600 /usr/share/common-licenses/GPL-3 > "$W/prompt.txt"   # ≈ 512 tokens
declare -A P D A
for b in old new; do P[$b]=0; D[$b]=0; A[$b]=999999; done
for r in $(seq "$ROUNDS"); do
  for b in old new; do
    bin=$OLD; [ $b = new ] && bin=$NEW
    line=$("$bin" run "$SMOL" --prompt "$(cat "$W/prompt.txt")" --max-new-tokens 64 --ignore-eos 2>&1 >/dev/null | grep "tok/s" | tail -1)
    p=$(echo "$line" | sed -E 's/.*prompt: [0-9]+ tokens, ([0-9.]+) tok\/s.*/\1/')
    d=$(echo "$line" | sed -E 's/.*generated: [0-9]+ tokens, ([0-9.]+) tok\/s.*/\1/')
    t0=$(date +%s.%N)
    "$bin" quantize "$SMOL" --awq --group-size 64 --calibration Tests/Fixtures/docvqa-mini --samples 8 --seq-len 128 \
        -o "$W/awq-$b.i2q" --overwrite --no-progress >/dev/null 2>&1
    a=$(echo "$(date +%s.%N) - $t0" | bc)
    P[$b]=$(echo "if (${P[$b]} > $p) ${P[$b]} else $p" | bc); D[$b]=$(echo "if (${D[$b]} > $d) ${D[$b]} else $d" | bc)
    A[$b]=$(echo "if (${A[$b]} < $a) ${A[$b]} else $a" | bc)
  done
done
for b in old new; do
  printf '%s: prefill %s tok/s, decode %s tok/s, AWQ %.2f s (best of %s)\n' "$b" "${P[$b]}" "${D[$b]}" "${A[$b]}" "$ROUNDS"
done
