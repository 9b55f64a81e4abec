#!/usr/bin/env bash
# Full-size cast benchmark: bf16 idefics2-8b shards (16.8 GB) -> f16 safetensors.
#
#   Benchmarks/cast_fullsize.sh [WORK_DIR]        (default /work/bench)
#
# Generates the synthetic checkpoint WORK_DIR/idefics2-8b-synthetic-bf16 if absent, then runs,
# one after the other, each under /usr/bin/time -v (wall time, peak RSS):
#   cat    copy the same bytes with `cat` (coreutils >= 9 copies with copy_file_range, i.e.
#          in the kernel through the page cache, no user-space buffer)
#   dd     the same with `dd bs=16M` (read + write through a 16 MiB user buffer)
#   i2q    i2q cast IN --dtype f16 --format safetensors -o OUT
#   torch  Benchmarks/torch_cast.py IN OUT --dtype f16 (safetensors + torch, the Python way)
# The output goes to WORK_DIR/cast-out (same filesystem as the input) and is deleted after each
# run, so the disk needs the input plus one output (~34 GB). Before each run: `sync` and, where
# permitted (root), drop the page cache so every tool starts cold; after each run the time of a
# final `sync` (flushing what the tool left dirty) is measured too.
#
# Environment:
#   I2Q=path          i2q binary (default: <repo>/.build/release/i2q); skipped if missing
#   PYTHON=path       python with torch + safetensors (default /work/venv/bin/python, else python3)
#   CASES="cat dd i2q torch"   which runs, in order
#   REPEAT=3          rounds; each round runs every case once; the table shows medians
#   DROP_CACHES=0     keep the page cache between runs (default 1 = drop when writable)
#   VERIFY=sample|full|0   check the cast outputs of round 1 against the input (default sample:
#                     every header + the values of 24 tensors; full: every tensor)
# Prints a Markdown table and saves it to WORK_DIR/cast_fullsize.md; logs in WORK_DIR/cast_fullsize-logs.
# Exits 1 if a run failed or an output was wrong. See Benchmarks/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
WORK=${1:-/work/bench}
I2Q=${I2Q:-$ROOT/.build/release/i2q}
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x /work/venv/bin/python ]]; then PYTHON=/work/venv/bin/python; else PYTHON=python3; fi
fi
CASES=${CASES:-cat dd i2q torch}
DROP_CACHES=${DROP_CACHES:-1}
VERIFY=${VERIFY:-sample}
REPEAT=${REPEAT:-3}
CACHE_STATE=-

IN=$WORK/idefics2-8b-synthetic-bf16
OUT=$WORK/cast-out
LOGS=$WORK/cast_fullsize-logs
REPORT=$WORK/cast_fullsize.md
mkdir -p "$WORK" "$LOGS"

say() { echo "+ $*" >&2; }

# ---- input -----------------------------------------------------------------------------------
if [[ ! -f "$IN/model.safetensors.index.json" ]]; then
    say "$PYTHON" "$ROOT/scripts/data/make_synthetic_idefics2.py" "$IN" --dtype bf16
    gen_start=$(date +%s.%N)
    "$PYTHON" "$ROOT/scripts/data/make_synthetic_idefics2.py" "$IN" --dtype bf16
    echo "generated in $(awk -v a="$gen_start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s" >&2
else
    echo "using existing $IN" >&2
fi
shopt -s nullglob
SHARDS=("$IN"/*.safetensors)
shopt -u nullglob
(( ${#SHARDS[@]} > 0 )) || { echo "no shards in $IN" >&2; exit 1; }
IN_BYTES=$(stat -c %s "${SHARDS[@]}" | awk '{s += $1} END {printf "%.0f", s}')
echo "input: ${#SHARDS[@]} shards, $IN_BYTES bytes" >&2

# ---- helpers ---------------------------------------------------------------------------------
settle() {
    say sync
    sync
    if [[ "$DROP_CACHES" == 1 ]]; then
        if [[ -w /proc/sys/vm/drop_caches ]]; then
            say "echo 3 > /proc/sys/vm/drop_caches"
            echo 3 > /proc/sys/vm/drop_caches
            CACHE_STATE=cold
        else
            echo "(cannot drop the page cache: not root; runs start warm-ish)" >&2
            CACHE_STATE=unknown
        fi
    else
        CACHE_STATE=as-left
    fi
}

# verify_cast OUTDIR: the output has every input tensor, as F16, equal to input.to(float16).
verify_cast() {
    [[ "$VERIFY" == 0 ]] && return 0
    say "verify $1 against $IN ($VERIFY)"
    "$PYTHON" - "$IN" "$1" "$VERIFY" <<'PY'
import json, os, random, sys
import torch
from safetensors import safe_open
src, dst, mode = sys.argv[1:4]
def tensor_files(d):
    p = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(p):
        with open(p) as f:
            return json.load(f)["weight_map"]
    with safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
        return {k: "model.safetensors" for k in f.keys()}
a, b = tensor_files(src), tensor_files(dst)
assert set(a) == set(b), f"tensor names differ: {sorted(set(a) ^ set(b))[:5]}"
handles = {}
def h(d, fn):
    if (d, fn) not in handles:
        handles[d, fn] = safe_open(os.path.join(d, fn), "pt")
    return handles[d, fn]
FLOAT = {"F64", "F32", "F16", "BF16"}
for k in b:
    sa, sb = h(src, a[k]).get_slice(k), h(dst, b[k]).get_slice(k)
    want = "F16" if sa.get_dtype() in FLOAT else sa.get_dtype()
    assert sb.get_dtype() == want, (k, sa.get_dtype(), sb.get_dtype())
    assert sa.get_shape() == sb.get_shape(), (k, sa.get_shape(), sb.get_shape())
names = sorted(b)
if mode != "full":
    big = sorted(names, key=lambda k: -torch.Size(h(dst, b[k]).get_slice(k).get_shape()).numel())[:4]
    names = sorted(set(big) | set(random.Random(0).sample(names, 20)))
for k in names:
    x, y = h(src, a[k]).get_tensor(k), h(dst, b[k]).get_tensor(k)
    if x.is_floating_point():
        x = x.to(torch.float16)
        assert y.dtype == torch.float16 and torch.equal(x.view(torch.int16), y.view(torch.int16)), k
    else:
        assert y.dtype == x.dtype and torch.equal(x, y), k
with open(os.path.join(dst, "config.json")) as f:
    cfg = json.load(f)
print(f"verified: {len(b)} tensor headers, {len(names)} tensors' values bit-equal to input.to(float16) "
      f"(non-float tensors unchanged); "
      f"config dtype {cfg.get('torch_dtype', cfg.get('dtype'))}", file=sys.stderr)
PY
}

declare -A WALLS TOTALS RSS NOTES
ORDER=()

# run_case NAME KIND ROUND CMD...
#   KIND: copy (the output must have the input's size) or cast (f16 output, checked in round 1)
run_case() {
    local name=$1 kind=$2 round=$3; shift 3
    [[ -n "${NOTES[$name]+x}" ]] || { ORDER+=("$name"); NOTES[$name]=""; }
    rm -rf "$OUT"
    settle
    local tlog=$LOGS/$name.$round.time log=$LOGS/$name.$round.log
    say "$@"
    local rc=0
    /usr/bin/time -v -o "$tlog" "$@" 2>&1 | tee "$log" || rc=$?
    [[ $rc == 0 ]] && rc=$(awk -F': ' '/Exit status/ {print $2}' "$tlog")
    local s0 s1 sync_s
    s0=$(date +%s.%N); say sync; sync; s1=$(date +%s.%N)
    sync_s=$(awk -v a="$s0" -v b="$s1" 'BEGIN {printf "%.2f", b - a}')
    local wall rss_kb
    wall=$(awk -F'): ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.2f", s}' "$tlog")
    rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tlog")
    local out_bytes=0
    if [[ -d "$OUT" ]]; then
        out_bytes=$(find "$OUT" -name '*.safetensors' -printf '%s\n' | awk '{s += $1} END {printf "%.0f", s}')
    fi
    local note=""
    if [[ "$rc" != 0 ]]; then
        note="FAILED in round $round (rc $rc), see $log"
    elif [[ "$kind" == copy ]]; then
        [[ "$out_bytes" == "$IN_BYTES" ]] || note="WRONG SIZE in round $round ($out_bytes bytes)"
    elif [[ "$round" == 1 && "$VERIFY" != 0 ]]; then
        if verify_cast "$OUT" 2>>"$log"; then note="output verified"; else note="VERIFY FAILED, see $log"; fi
        tail -n 1 "$log" >&2
    fi
    if [[ "$rc" == 0 ]]; then
        WALLS[$name]+="$wall "
        TOTALS[$name]+="$(awk -v a="$wall" -v b="$sync_s" 'BEGIN {printf "%.2f", a + b}') "
        RSS[$name]+="$rss_kb "
    fi
    [[ -n "$note" ]] && NOTES[$name]+="${NOTES[$name]:+; }$note"
    echo "== $name (round $round): wall ${wall}s (+sync ${sync_s}s), peak RSS ${rss_kb} KB, cache $CACHE_STATE${note:+, $note}" >&2
    rm -rf "$OUT"
}

median() { tr ' ' '\n' | awk NF | sort -g | awk '{v[NR] = $1} END {if (NR == 0) print ""; else if (NR % 2) printf "%.2f", v[(NR + 1) / 2]; else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
spread() { tr ' ' '\n' | awk NF | sort -g | awk '{v[NR] = $1} END {if (NR > 1) printf "%.1f-%.1f", v[1], v[NR]}'; }
maxof() { tr ' ' '\n' | awk NF | sort -g | tail -n 1; }

# ---- runs: REPEAT rounds, each running every case once (interleaved, so drift hits all alike) ----
for ((round = 1; round <= REPEAT; round++)); do
    for c in $CASES; do
        case $c in
            cat)
                run_case cat copy $round bash -c 'mkdir -p "$2" && for f in "$1"/*.safetensors; do cat "$f" > "$2/${f##*/}"; done' _ "$IN" "$OUT" ;;
            dd)
                run_case dd copy $round bash -c 'mkdir -p "$2" && for f in "$1"/*.safetensors; do dd if="$f" of="$2/${f##*/}" bs=16M status=none; done' _ "$IN" "$OUT" ;;
            i2q)
                if [[ -x "$I2Q" ]]; then
                    run_case i2q cast $round "$I2Q" cast "$IN" --dtype f16 --format safetensors -o "$OUT"
                else
                    echo "skipping i2q: no executable at $I2Q (build with: swift build -c release, or set I2Q=)" >&2
                    [[ -n "${NOTES[i2q]+x}" ]] || ORDER+=(i2q)
                    NOTES[i2q]="skipped: no binary at $I2Q"
                fi ;;
            torch)
                run_case torch cast $round "$PYTHON" "$HERE/torch_cast.py" "$IN" "$OUT" --dtype f16 ;;
            *) echo "unknown case $c" >&2; exit 2 ;;
        esac
    done
done

# ---- report ----------------------------------------------------------------------------------
CAT_MED=$(echo "${WALLS[cat]:-}" | median)
{
    echo "## Cast benchmark: idefics2-8b synthetic, bf16 -> f16 ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo "Input: ${#SHARDS[@]} shards, $(awk -v n="$IN_BYTES" 'BEGIN {printf "%.2f", n / 1e9}') GB ($IN)."
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM,"\
         "$(uname -r); output on the input's filesystem ($(df -PT "$WORK" | awk 'NR == 2 {print $2}'));"\
         "page cache before each run: $CACHE_STATE; $REPEAT interleaved round(s)."
    echo "wall = median /usr/bin/time -v elapsed (range over rounds); +sync = wall plus the sync after it;"
    echo "GB/s = input GB / median wall; peak RSS = max over rounds of the process tree's max RSS;"
    echo "vs cat = median wall / cat's median wall."
    echo
    echo "| tool | wall s | range s | wall+sync s | GB/s | peak RSS | vs cat | notes |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    for name in "${ORDER[@]}"; do
        w=$(echo "${WALLS[$name]:-}" | median)
        if [[ -z "$w" ]]; then
            echo "| $name | - | - | - | - | - | - | ${NOTES[$name]} |"
            continue
        fi
        printf '| %s | %s | %s | %s | %s | %s GiB | %s | %s |\n' "$name" "$w" \
            "$(echo "${WALLS[$name]}" | spread)" "$(echo "${TOTALS[$name]}" | median)" \
            "$(awk -v n="$IN_BYTES" -v w="$w" 'BEGIN {printf "%.2f", (w > 0 ? n / 1e9 / w : 0)}')" \
            "$(awk -v k="$(echo "${RSS[$name]}" | maxof)" 'BEGIN {printf "%.2f", k / 1048576}')" \
            "$([[ -n "$CAT_MED" ]] && awk -v a="$w" -v b="$CAT_MED" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}' || echo -)" \
            "${NOTES[$name]}"
    done
} | tee "$REPORT"
echo "saved $REPORT" >&2
for name in "${ORDER[@]}"; do
    [[ "${NOTES[$name]}" == *FAILED* || "${NOTES[$name]}" == *"WRONG SIZE"* ]] && { echo "$name: ${NOTES[$name]}" >&2; exit 1; }
done
exit 0
