#!/usr/bin/env bash
# The long fuzz run by hand (issue 17): every reader of Fuzz/Targets on COUNT mutated inputs each,
# in chunks of CHUNK inputs per process (a crash loses one chunk and is kept: OUT/crash-*.bin),
# JOBS processes at a time. Writes OUT/runs.jsonl (one line per chunk, from i2q-fuzz --json) and
# prints per reader: inputs, errors, errors not naming the file, crashes (signal exits), hangs
# (> 60 s: exit 124), the slowest input and the largest peak RSS of any chunk.
#   bash scripts/fuzz.sh [COUNT=112000] [OUT=out/fuzz]      (CHUNK, JOBS, SEED from the environment)
# The CI run is the short one inside the test suite (Tests/I2QFuzzTests, 600 inputs per reader).
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-112000}
OUT=${2:-out/fuzz}
CHUNK=${CHUNK:-8000}
JOBS=${JOBS:-2}
SEED=${SEED:-20261206}
BIN=.build/release/i2q-fuzz
[ -x "$BIN" ] || swift build -c release --product i2q-fuzz
mkdir -p "$OUT"
cp "$BIN" "$OUT/i2q-fuzz"  # a rebuild during the run does not change what is measured
BIN=$OUT/i2q-fuzz
: > "$OUT/runs.jsonl"
: > "$OUT/exits.txt"
TARGETS="safetensors index i2q gguf configs tokenizer png jpeg docvqa"
jobs_list() {
  for t in $TARGETS; do
    for ((first = 0; first < COUNT; first += CHUNK)); do
      n=$(( COUNT - first < CHUNK ? COUNT - first : CHUNK ))
      echo "$t $first $n"
    done
  done
}
run_one() {
  local t=$1 first=$2 n=$3 rc=0
  "$BIN" --target "$t" --first "$first" --count "$n" --seed "$SEED" --out "$OUT" --json \
      --fixtures "$PWD/Tests/Fixtures" >> "$OUT/runs.jsonl" 2>> "$OUT/stderr.txt" || rc=$?
  echo "$t $first $n $rc" >> "$OUT/exits.txt"
}
export -f run_one
export BIN OUT SEED
start=$(date +%s)
jobs_list | xargs -P "$JOBS" -L 1 bash -c 'run_one $0 $1 $2'
python3 - "$OUT" "$(( $(date +%s) - start ))" <<'PY'
import json, sys, collections
out, secs = sys.argv[1], sys.argv[2]
agg = collections.OrderedDict()
for line in open(f"{out}/runs.jsonl"):
    d = json.loads(line)
    a = agg.setdefault(d["target"], dict(inputs=0, errors=0, unnamed=0, slowest=0.0, rss=0.0, crashes=0, hangs=0, examples=[]))
    a["inputs"] += d["inputs"]; a["errors"] += d["errors"]; a["unnamed"] += d["errors_not_naming_file"]
    a["slowest"] = max(a["slowest"], float(d["slowest_input_s"])); a["rss"] = max(a["rss"], float(d["peak_rss_mib"]))
    a["examples"] += d["examples"][:2]
for line in open(f"{out}/exits.txt"):
    t, first, n, rc = line.split()
    a = agg.setdefault(t, dict(inputs=0, errors=0, unnamed=0, slowest=0.0, rss=0.0, crashes=0, hangs=0, examples=[]))
    if rc == "124": a["hangs"] += 1
    elif rc not in ("0", "1"): a["crashes"] += 1
print(f"{'reader':12} {'inputs':>9} {'errors':>9} {'unnamed':>8} {'crashes':>8} {'hangs':>6} {'slowest s':>10} {'peak RSS MiB':>13}")
tot = 0
for t, a in agg.items():
    tot += a["inputs"]
    print(f"{t:12} {a['inputs']:9d} {a['errors']:9d} {a['unnamed']:8d} {a['crashes']:8d} {a['hangs']:6d} {a['slowest']:10.3f} {a['rss']:13.0f}")
    for e in a["examples"][:3]: print("   ", e)
print(f"total {tot} inputs in {secs} s")
json.dump(agg, open(f"{out}/summary.json", "w"), indent=1)
bad = any(a["unnamed"] or a["crashes"] or a["hangs"] or a["rss"] > 2048 for a in agg.values())
sys.exit(1 if bad else 0)
PY
