#!/usr/bin/env bash
# kill -9 during the measurement of `quantize --target-bpw` (issue 22) on SmolLM2, twice (once during the
# importance collection or early tensors, once after N tensors were measured), then the same command
# without --resume (must be refused, naming --resume/--restart, once pieces are finished) and with --resume:
# the .i2q, the recipe and its plot must equal an uninterrupted run byte for byte (the plot but its title's
# file name), and no state/lock may remain.
# Measured 2026-12-07 (SmolLM2, 6.17 bpw): killed after 60 of 211 tensors → refused without --resume ("holds
# 62 finished piece(s) … --resume … or --restart"), resumed ("importance matrix from …bpw-state"): .i2q and
# recipe identical to the uninterrupted run, nothing left behind.
# Usage: scripts/checks/bpw_kill_resume.sh [MODEL_DIR]   (I2Q=path/to/i2q; default .build/release/i2q;
#        TARGET (6.17), KILL_AT_TENSORS (60))
set -u
cd "$(dirname "$0")/../.."
B=${I2Q:-.build/release/i2q}; M=${1:-.cache/smollm2/SmolLM2-135M-Instruct-f32}
TARGET=${TARGET:-6.17}; AT=${KILL_AT_TENSORS:-60}
D=$(mktemp -d)
ARGS=(quantize $M --target-bpw $TARGET --calibration /usr/share/common-licenses/GPL-3 --samples 4 --seq-len 512 --no-progress)
$B "${ARGS[@]}" -o $D/ref.i2q >$D/ref.log 2>&1; echo "uninterrupted rc=$? ($(grep -m1 '^bpw: [0-9]' $D/ref.log))"
fail=0
for when in early $AT; do
  rm -rf $D/k.*
  $B "${ARGS[@]}" -o $D/k.i2q > $D/k.log 2>&1 & p=$!
  if [[ $when == early ]]; then
    until grep -q "imatrix: chunk 3/\|bpw: measured" $D/k.log 2>/dev/null; do sleep 1; done
  else
    until grep -q "bpw: measured $when/" $D/k.log 2>/dev/null; do kill -0 $p 2>/dev/null || break; sleep 1; done
  fi
  kill -9 $p; wait $p 2>/dev/null
  echo "killed ($when): state files $(ls $D/k.i2q.bpw-state 2>/dev/null | wc -l); leftovers: $(ls -a $D | grep -v '^ref\|^\.$\|^\.\.$' | tr '\n' ' ')"
  $B "${ARGS[@]}" -o $D/k.i2q > $D/k2.log 2>&1; echo "rerun without --resume rc=$? ($(tail -1 $D/k2.log | cut -c1-170))"
  $B "${ARGS[@]}" -o $D/k.i2q --resume > $D/k3.log 2>&1; echo "resume rc=$? ($(grep -m1 'measured by an earlier run\|importance matrix from' $D/k3.log))"
  for f in .i2q .recipe.json; do
    if cmp -s $D/ref$f $D/k$f; then echo "  k$f identical to ref$f"; else echo "  k$f DIFFERS"; fail=1; fi
  done
  # The plot's title names its own output file: compare with that name swapped.
  if cmp -s <(sed 's/ref\.i2q/k.i2q/g' $D/ref.recipe.svg) $D/k.recipe.svg; then echo "  k.recipe.svg identical (but its file name)"; else echo "  k.recipe.svg DIFFERS"; fail=1; fi
  left=$(ls -a $D | grep -c 'bpw-state\|i2q-lock\|i2q-partial\|\.tmp') ; echo "  state/lock/tmp left: $left"; [[ $left == 0 ]] || fail=1
done
rm -rf $D
exit $fail
