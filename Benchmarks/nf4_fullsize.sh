#!/usr/bin/env bash
# Full-size NF4 benchmark (issue 6): the synthetic idefics2-8b checkpoint (bf16, 16.8 GB, exact
# shapes) → `i2q quantize --nf4` (transformers' default module set: every nn.Linear incl. the
# vision tower and connector; lm_head and embeddings kept), in one run:
#   read     cat the input shards > /dev/null, cold cache (what reading the input costs)
#   write    dd if=/dev/zero bs=16M oflag=direct of the NF4 output's size (what writing it costs)
#   i2q      i2q quantize IN --nf4 -o OUT (cold cache) under /usr/bin/time -v: wall, peak RSS
#   codec    the NF4 codec alone on layer 0's text linears + one vision linear, in memory:
#            i2q-bench nf4 (1 thread) vs bitsandbytes quantize_4bit (2 torch threads)
# and the output size against the fp16 size of the same checkpoint (2 bytes per parameter).
#
#   Benchmarks/nf4_fullsize.sh [WORK_DIR]    (default /work/bench; needs ~5 GB free)
# Environment: I2Q, I2Q_BENCH (binaries; default <repo>/.build/release/...), PYTHON (with torch +
# bitsandbytes; default /work/venv/bin/python), DROP_CACHES=1 (drop the page cache before the cold
# runs when writable). Prints a Markdown report and saves it to WORK_DIR/nf4_fullsize.md.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
WORK=${1:-/work/bench}
I2Q=${I2Q:-$ROOT/.build/release/i2q}
BENCH=${I2Q_BENCH:-$ROOT/.build/release/i2q-bench}
PYTHON=${PYTHON:-/work/venv/bin/python}
DROP_CACHES=${DROP_CACHES:-1}
IN=$WORK/idefics2-8b-synthetic-bf16
OUT=$WORK/nf4-out.i2q
REPORT=$WORK/nf4_fullsize.md
LOGS=$WORK/nf4_fullsize-logs
mkdir -p "$LOGS"
[[ -d $IN ]] || { echo "missing $IN: make it with scripts/data/make_synthetic_idefics2.py (see Benchmarks/README.md)" >&2; exit 1; }

cold() { sync; if [[ $DROP_CACHES == 1 && -w /proc/sys/vm/drop_caches ]]; then echo 3 > /proc/sys/vm/drop_caches; echo cold; else echo warm; fi; }
timed() {  # name cmd... → wall seconds and peak RSS (KiB) in $LOGS/name.time
    local name=$1; shift
    /usr/bin/time -v -o "$LOGS/$name.time" "$@" > "$LOGS/$name.out" 2>&1
}
wall() { awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,p,":"); s=0; for(i=1;i<=n;i++) s=s*60+p[i]; print s}' "$LOGS/$1.time"; }
rss() { awk -F': ' '/Maximum resident set size/ {print $2}' "$LOGS/$1.time"; }

in_bytes=$(du -cb "$IN"/*.safetensors | tail -1 | cut -f1)
params=$("$PYTHON" -c "import json,sys; print(json.load(open('$IN/model.safetensors.index.json'))['metadata']['total_size']//2)")

state=$(cold); echo "+ read ($state)" >&2
timed read sh -c "cat '$IN'/*.safetensors > /dev/null"
rm -f "$OUT"
state=$(cold); echo "+ i2q quantize --nf4 ($state)" >&2
timed i2q "$I2Q" quantize "$IN" --nf4 -o "$OUT" --no-progress
sync
out_bytes=$(stat -c %s "$OUT")
"$I2Q" inspect "$OUT" > "$LOGS/inspect.out" 2>&1 || true
rm -f "$OUT"   # the write reference needs the same space
echo "+ write reference: $out_bytes bytes" >&2
timed write dd if=/dev/zero of="$WORK/nf4-dd.bin" bs=16M count=$(( (out_bytes + 16777215) / 16777216 )) oflag=direct
rm -f "$WORK/nf4-dd.bin"

NAMES="model.text_model.layers.0.self_attn.q_proj.weight model.text_model.layers.0.self_attn.k_proj.weight model.text_model.layers.0.self_attn.v_proj.weight model.text_model.layers.0.self_attn.o_proj.weight model.text_model.layers.0.mlp.gate_proj.weight model.text_model.layers.0.mlp.up_proj.weight model.text_model.layers.0.mlp.down_proj.weight model.vision_model.encoder.layers.0.mlp.fc1.weight"
echo "+ codec: i2q-bench nf4 / bitsandbytes" >&2
"$BENCH" nf4 "$IN" $NAMES | tee "$LOGS/codec-i2q.out" >&2
"$PYTHON" "$HERE/bnb_quantize_speed.py" "$IN" $NAMES 2>/dev/null | tee "$LOGS/codec-bnb.out" >&2

r=$(wall read); w=$(wall write); q=$(wall i2q)
ci=$(tail -1 "$LOGS/codec-i2q.out" | sed -E 's/.*= ([0-9]+) M.*/\1/'); cb=$(tail -1 "$LOGS/codec-bnb.out" | sed -E 's/.*= ([0-9]+) M.*/\1/')
{
echo "## NF4 of the full-size synthetic Idefics2-8B ($(date -u +%F), $(nproc) cores, cache: $state)"
echo
echo "| step | wall s | peak RSS |"
echo "|---|---:|---:|"
echo "| read input ($(numfmt --to=si $in_bytes)B, cat) | $r | $(( $(rss read) / 1024 )) MiB |"
echo "| write output size ($(numfmt --to=si $out_bytes)B, dd oflag=direct) | $w | $(( $(rss write) / 1024 )) MiB |"
echo "| read + write | $(echo "$r + $w" | bc) | |"
echo "| **i2q quantize --nf4** | **$q** | **$(( $(rss i2q) / 1024 )) MiB** |"
echo
echo "i2q / (read + write) = $(echo "scale=2; $q / ($r + $w)" | bc)"
echo
echo "Output $(numfmt --to=si $out_bytes)B vs fp16 $(numfmt --to=si $((params * 2)))B ($params parameters): $(echo "scale=3; $out_bytes / ($params * 2)" | bc) of fp16."
echo
echo "NF4 codec on layer 0's text linears + vision fc1 (in memory, float32 in): i2q $ci M elements/s (1 thread), bitsandbytes $cb M elements/s (2 threads): $(echo "scale=1; $ci / $cb" | bc)×"
} | tee "$REPORT"
