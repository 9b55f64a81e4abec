#!/usr/bin/env bash
# kill -9 during `quantize --gptq --act-order` on SmolLM2 (4 calibration blocks) at 20 s and 45 s, then the
# same command without --resume (must be refused, naming --resume/--restart) and with --resume: the
# output must equal an uninterrupted run byte for byte and no state/lock may remain.
# Usage: scripts/checks/gptq_kill_resume.sh [MODEL_DIR]   (I2Q=path/to/i2q; default .build/release/i2q)
set -u
cd "$(dirname "$0")/../.."
B=${I2Q:-.build/release/i2q}; M=${1:-.cache/smollm2/SmolLM2-135M-Instruct-f32}
D=$(mktemp -d)
ARGS=(quantize $M --gptq --act-order --group-size 64 --calibration /usr/share/common-licenses/GPL-3 --samples 4 --seq-len 512 --no-progress)
$B "${ARGS[@]}" -o $D/ref.i2q >/dev/null 2>&1; echo "ref rc=$?"
for t in 20 45; do
  rm -rf $D/k.i2q $D/k.i2q.gptq-state
  $B "${ARGS[@]}" -o $D/k.i2q > $D/k.log 2>&1 & p=$!
  sleep $t; kill -9 $p; wait $p 2>/dev/null
  echo "killed at ${t}s: layers done $(ls $D/k.i2q.gptq-state 2>/dev/null | grep -c '^layer-') ; leftovers: $(ls -a $D | tr '\n' ' ')"
  $B "${ARGS[@]}" -o $D/k.i2q > $D/k2.log 2>&1; echo "rerun without --resume rc=$? ($(tail -1 $D/k2.log | cut -c1-160))"
  $B "${ARGS[@]}" -o $D/k.i2q --resume > $D/k3.log 2>&1; echo "resume rc=$? ($(grep -m1 resuming $D/k3.log))"
  cmp $D/ref.i2q $D/k.i2q && echo "identical bytes: $(sha256sum $D/k.i2q | cut -c1-16)"
  ls -a $D | tr '\n' ' '; echo
done
