#!/usr/bin/env bash
# Full-size AWQ (issue 7): the synthetic idefics2-8b checkpoint (bf16, 16.8 GB, the real shapes; see
# scripts/data/make_synthetic_idefics2.py) quantized with `i2q quantize --awq` calibrated on 32 questions
# of the shipped DocVQA-format set (page images through the vision tower + connector), twice:
#   A  uninterrupted, under /usr/bin/time -v: wall time, peak RSS, time per layer (from the log);
#   B  the same command killed with SIGKILL once layer KILL_AFTER has finished, then continued with
#      --resume; its output must be byte-identical to A's (sha256).
# Only one output exists at a time (A's is hashed, then deleted): needs ~15 GB free in WORK_DIR.
#
#   Benchmarks/awq_fullsize.sh [WORK_DIR]    (default /work/bench; takes ~2 × 50 min on 2 cores)
#   METHOD=gptq Benchmarks/awq_fullsize.sh   the same for `quantize --gptq` (issue 23), report gptq_fullsize.md
# Environment: METHOD (awq | gptq), I2Q (binary; default <repo>/.build/release/i2q — copied first, so rebuilding during
# the run cannot change it), SAMPLES (32), SEARCH_TOKENS (512), KILL_AFTER (16), CALIBRATION
# (default Tests/Fixtures/docvqa-mini). Prints a Markdown report and saves it to WORK_DIR/awq_fullsize.md.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
WORK=${1:-/work/bench}
IN=$WORK/idefics2-8b-synthetic-bf16
CAL=${CALIBRATION:-$ROOT/Tests/Fixtures/docvqa-mini}
SAMPLES=${SAMPLES:-32}; SEARCH_TOKENS=${SEARCH_TOKENS:-512}; KILL_AFTER=${KILL_AFTER:-16}
METHOD=${METHOD:-awq}
case $METHOD in
  awq) METHOD_ARGS=(--awq --search-tokens "$SEARCH_TOKENS") ;;
  gptq) METHOD_ARGS=(--gptq) ;;   # group 128, damp 0.01, no act-order (GPTQModel's defaults)
  *) echo "METHOD must be awq or gptq" >&2; exit 2 ;;
esac
LOGS=$WORK/${METHOD}_fullsize-logs; REPORT=$WORK/${METHOD}_fullsize.md
[[ -d $IN ]] || { echo "missing $IN: make it with scripts/data/make_synthetic_idefics2.py (see Benchmarks/README.md)" >&2; exit 1; }
mkdir -p "$LOGS"
# The synthetic checkpoint has no tokenizer; calibration needs Idefics2's (the real one: Mistral v0.1
# + the three added tokens, as shipped with the tiny fixtures).
for f in tokenizer.json tokenizer_config.json special_tokens_map.json; do
  [[ -f $IN/$f ]] || cp "$ROOT/Tests/Fixtures/tiny-idefics2-a/$f" "$IN/$f"
done
BIN=$LOGS/i2q; cp "${I2Q:-$ROOT/.build/release/i2q}" "$BIN"
ARGS=(quantize "$IN" "${METHOD_ARGS[@]}" --calibration "$CAL" --samples "$SAMPLES"
      --no-image-splitting --no-progress)

echo "== A: uninterrupted ($(uptime))" >&2
LOAD_A=$(uptime | sed 's/.*load average: //')
/usr/bin/time -v "$BIN" "${ARGS[@]}" -o "$WORK/$METHOD-a.i2q" --overwrite 2> "$LOGS/a.log" >/dev/null
SHA_A=$(sha256sum "$WORK/$METHOD-a.i2q" | cut -d' ' -f1)
SIZE_A=$(stat -c %s "$WORK/$METHOD-a.i2q")
rm -f "$WORK/$METHOD-a.i2q"

echo "== B: killed after layer $KILL_AFTER, then --resume ($(uptime))" >&2
"$BIN" "${ARGS[@]}" -o "$WORK/$METHOD-b.i2q" --overwrite 2> "$LOGS/b1.log" >/dev/null &
PID=$!
until grep -q "$METHOD: layer $KILL_AFTER/" "$LOGS/b1.log" 2>/dev/null; do
  kill -0 $PID 2>/dev/null || { echo "B ended before layer $KILL_AFTER" >&2; exit 1; }
  sleep 2
done
kill -9 $PID; wait $PID 2>/dev/null || true
[[ ! -e $WORK/$METHOD-b.i2q ]] || { echo "a killed run left an output file" >&2; exit 1; }
/usr/bin/time -v "$BIN" "${ARGS[@]}" -o "$WORK/$METHOD-b.i2q" --resume 2> "$LOGS/b2.log" >/dev/null
SHA_B=$(sha256sum "$WORK/$METHOD-b.i2q" | cut -d' ' -f1)
rm -f "$WORK/$METHOD-b.i2q"

python3 - "$LOGS" "$SHA_A" "$SHA_B" "$SIZE_A" "$KILL_AFTER" "$LOAD_A" "$METHOD" > "$REPORT" <<'PYEOF'
import re, sys
logs, sha_a, sha_b, size, kill_after, load, method = sys.argv[1:8]
def timev(path):
    t = open(path).read()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", t).group(1)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
    return t, wall, rss
a, wall_a, rss_a = timev(logs + "/a.log")
b2, wall_b2, rss_b2 = timev(logs + "/b2.log")
layers = [float(x) for x in re.findall(method + r": layer \d+/\d+ in ([0-9.]+)s", a)]
search = [float(x) for x in re.findall(r"search ([0-9.]+)s", a)]
clip = [float(x) for x in re.findall(r"clip ([0-9.]+)s", a)]
cal = re.search(method + r": calibration: (.*) in ([0-9.]+)s", a)
resumed = re.search(r"resuming after layer (\d+)", b2)
print(f"| full-size {method.upper()} (synthetic idefics2-8b, bf16) | value |")
print("|---|---|")
print(f"| A: wall time (uninterrupted; load at start {load}) | {wall_a} |")
print(f"| A: peak RSS | {rss_a / 1048576:.2f} GiB |")
print(f"| calibration ({cal.group(1)}) | {float(cal.group(2)):.0f} s |")
per = f"; search {sum(search)/len(search):.1f} s, clip {sum(clip)/len(clip):.1f} s per layer" if search and clip else ""
print(f"| decoder layers | {len(layers)} × {sum(layers)/len(layers):.1f} s (min {min(layers):.1f}, max {max(layers):.1f}){per} |")
print(f"| output | {int(size) / 1e9:.2f} GB |")
where = resumed.group(1) if resumed else "?"
print(f"| B: killed (SIGKILL) after layer {kill_after}; the resumed run said 'resuming after layer {where}' | resume: {wall_b2}, peak RSS {rss_b2 / 1048576:.2f} GiB |")
print(f"| sha256 A / B | {sha_a[:16]}… / {sha_b[:16]}… — {'identical' if sha_a == sha_b else 'DIFFERENT'} |")
PYEOF
cat "$REPORT"
[[ $SHA_A == "$SHA_B" ]]
