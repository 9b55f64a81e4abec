#!/usr/bin/env bash
# What every transform costs in answer accuracy, on a model that has learned something: the trained
# Idefics2 (Tests/Fixtures/easy-vqa-idefics2) on the whole easy-VQA test split (9,673 questions, the
# data set's own answers; scripts/get_easy_vqa.sh). Each candidate is made with i2q from the f32
# checkpoint and compared with it by `i2q verify --docvqa` (greedy answers of both, exact match with a
# 95% Wilson interval, agreement with f32, mean KL divergence on f32's answer tokens); each fused
# variant is verified against its unfused one (same answers expected). Prints the Markdown table of
# Benchmarks/README.md ("Answer accuracy on easy-VQA") and keeps every report under OUT.
#
# Usage: Benchmarks/easy_vqa_accuracy.sh [SAMPLES (default 0 = all 9,673)]
# Needs: a release build (I2Q, default .build/release/i2q), scripts/get_easy_vqa.sh run once (DATA,
# default .cache/easy-vqa).
set -euo pipefail
cd "$(dirname "$0")/.."
I2Q=${I2Q:-.build/release/i2q}
MODEL=${MODEL:-Tests/Fixtures/easy-vqa-idefics2}
DATA=${DATA:-.cache/easy-vqa}
OUT=${OUT:-out/easy-vqa-accuracy}
SAMPLES=${1:-0}
SEL=(); [ "$SAMPLES" -gt 0 ] && SEL=(--samples "$SAMPLES")
mkdir -p "$OUT"
[ -f "$DATA/test/val_v1.0.json" ] || bash scripts/get_easy_vqa.sh "$DATA"
Q=(--no-progress --overwrite)

# Text-only AWQ calibration: the train split's questions and answers in the chat template, without
# the image (the same ~18k tokens as the image calibration below: 36 blocks of 512 vs 512 questions).
python3 - "$DATA/train/questions.json" "$OUT/train-text.txt" <<'PYEOF'
import json, sys
qs = json.load(open(sys.argv[1]))
with open(sys.argv[2], "w") as f:
    for q, a, _ in qs:
        f.write(f"User:{q}<end_of_utterance>\nAssistant: {a}<end_of_utterance>\n")
PYEOF

make() {  # name, i2q arguments...
  local name=$1; shift
  [ -f "$OUT/$name.i2q" ] && [ "${FORCE:-0}" != 1 ] && return 0
  echo "== $name: i2q $*" >&2
  "$I2Q" "$@" -o "$OUT/$name.i2q" "${Q[@]}" >&2
}
make bf16 cast "$MODEL" --dtype bf16
make f16 cast "$MODEL" --dtype f16
make nf4 quantize "$MODEL" --nf4
make nf4-vision16 quantize "$MODEL" --nf4 --skip vision_model
make fp4 quantize "$MODEL" --fp4
make rtn-g32 quantize "$MODEL" --rtn --group-size 32
make rtn-g64 quantize "$MODEL" --rtn --group-size 64
make rtn-g128 quantize "$MODEL" --rtn --group-size 128
make rtn-g64-vision4 quantize "$MODEL" --rtn --group-size 64 --vision-int4
make awq-text-g64 quantize "$MODEL" --awq --group-size 64 --calibration "$OUT/train-text.txt" --samples 36 --seq-len 512
make awq-image-g64 quantize "$MODEL" --awq --group-size 64 --calibration "$DATA/train" --samples 512
make gptq-image-g64 quantize "$MODEL" --gptq --group-size 64 --calibration "$DATA/train" --samples 512
# Mixed precision (issue 22): decoder, embedding and lm_head at ≤ 4.5 bits/weight on average, the cost
# of each tensor under each default candidate measured on the same 512 questions with their images.
make mixed-4.5 quantize "$MODEL" --target-bpw 4.5 --calibration "$DATA/train" --samples 512
for base in nf4 rtn-g64 awq-image-g64; do make "$base-fused" fuse "$OUT/$base.i2q"; done
# llama.cpp's q4_k_m (bytes = llama-quantize's), without and with an importance matrix measured on
# the training text alone or on the training questions with their images (image tokens included).
imatrix() {  # name, calibration, flags...
  local name=$1 cal=$2; shift 2
  [ -f "$OUT/$name.imatrix.gguf" ] && [ "${FORCE:-0}" != 1 ] && return 0
  "$I2Q" imatrix "$MODEL" --calibration "$cal" "$@" -o "$OUT/$name.imatrix.gguf" --overwrite >&2
}
imatrix text "$OUT/train-text.txt" --ctx 512
imatrix image "$DATA/train" --chunks 512
make q4_k_m quantize "$MODEL" --type q4_k_m
make q4_k_m-imatrix-text quantize "$MODEL" --type q4_k_m --imatrix "$OUT/text.imatrix.gguf"
make q4_k_m-imatrix-image quantize "$MODEL" --type q4_k_m --imatrix "$OUT/image.imatrix.gguf"

# The verifies run JOBS at a time (default 2: one per core), each on one thread: for this tiny model
# single-threaded BLAS and kernels are faster than two threads contending (measured: 200 questions
# in 6.9 s vs 14.0 s with a second process running).
JOBS=${JOBS:-2}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} I2Q_POOL=${I2Q_POOL:-0}
limited() { while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 1; done; "$@" & }
verify() {  # name, candidate, reference
  [ -f "$OUT/$1.json" ] && [ "${FORCE:-0}" != 1 ] && return 0
  echo "== verify $1" >&2
  "$I2Q" verify "$2" --reference "$3" --docvqa "$DATA/test" "${SEL[@]}" --max-new-tokens 8 --no-progress \
    --no-layers --json > "$OUT/$1.json.part" 2> "$OUT/$1.log"
  mv "$OUT/$1.json.part" "$OUT/$1.json"
}
limited verify f32 "$MODEL" "$MODEL"
for c in bf16 f16 nf4 nf4-vision16 fp4 rtn-g32 rtn-g64 rtn-g128 rtn-g64-vision4 awq-text-g64 awq-image-g64 gptq-image-g64 mixed-4.5 q4_k_m q4_k_m-imatrix-text q4_k_m-imatrix-image; do
  limited verify "$c" "$OUT/$c.i2q" "$MODEL"
done
for base in nf4 rtn-g64 awq-image-g64; do limited verify "$base-fused-vs-unfused" "$OUT/$base-fused.i2q" "$OUT/$base.i2q"; done
wait

python3 - "$OUT" "$MODEL" <<'PYEOF'
import json, os, sys
out, model = sys.argv[1], sys.argv[2]
size = lambda p: os.path.getsize(p) if os.path.isfile(p) else sum(os.path.getsize(os.path.join(p, f)) for f in os.listdir(p) if f.endswith(".safetensors"))
st = json.load(open(os.path.join(model, "config.json")))
f32 = json.load(open(os.path.join(out, "f32.json")))["docvqa"]
params = size(model) / 4  # the f32 checkpoint: 4 bytes a parameter
rows = [("f32", model, "f32 (reference, transformers' dtype)"), ("bf16", None, "bf16"), ("f16", None, "f16"),
        ("nf4", None, "NF4 (bitsandbytes default: every linear, vision tower too)"),
        ("nf4-vision16", None, "NF4, vision tower 16-bit (`--skip vision_model`)"), ("fp4", None, "FP4 (every linear)"),
        ("rtn-g32", None, "RTN int4 g32 (decoder)"), ("rtn-g64", None, "RTN int4 g64 (decoder)"),
        ("rtn-g128", None, "RTN int4 g128 (decoder)"), ("rtn-g64-vision4", None, "RTN int4 g64, decoder + vision tower (`--vision-int4`)"), ("awq-text-g64", None, "AWQ int4 g64, text-only calibration"),
        ("awq-image-g64", None, "AWQ int4 g64, image + question calibration"),
        ("gptq-image-g64", None, "GPTQ int4 g64, image + question calibration"),
        ("mixed-4.5", None, "mixed `--target-bpw 4.5` (decoder, embedding and lm_head; image + question calibration)"),
        ("q4_k_m", None, "llama.cpp q4_k_m (decoder; no importance matrix)"),
        ("q4_k_m-imatrix-text", None, "q4_k_m, importance matrix from the training text"),
        ("q4_k_m-imatrix-image", None, "q4_k_m, importance matrix from training questions + images")]
print(f"| model | exact match (95% interval) | Δ vs f32 | same answer as f32 | flipped (→wrong / →right) | mean KLD, answer tokens | file MB | bits/weight |")
print("|---|---|---|---|---|---|---|---|")
for name, path, label in rows:
    d = json.load(open(os.path.join(out, name + ".json")))["docvqa"]
    p = path or os.path.join(out, name + ".i2q")
    lo, hi = d["exact_match_candidate_ci95"]
    kld = d["kld_answer_mean"]
    print(f"| {label} | {100*d['exact_match_candidate']:.2f} % ({100*lo:.2f}–{100*hi:.2f}) | {100*(d['exact_match_candidate']-f32['exact_match_base']):+.2f} pt "
          f"| {100*d['same_answer_share']:.2f} % | {d['flipped_to_wrong']} / {d['flipped_to_right']} | {kld:.2e} | {size(p)/1e6:.1f} | {8*size(p)/params:.2f} |")
print()
print(f"questions: {f32['samples']} of {f32['questions_in_set']}; the f32 row is the reference against itself.")
gold = {a["questionId"]: a["text"] for a in json.load(open(os.path.join(model, "test_answers.json")))["answers"]}
same = sum(it["base"] == gold[it["questionId"]] for it in f32["items"])
print(f"- i2q f32 greedy answers equal transformers' f32 generate (test_answers.json) on {same} of {len(f32['items'])} "
      f"questions ({100*same/len(f32['items']):.3f} %)")
for base in ("nf4", "rtn-g64", "awq-image-g64"):
    d = json.load(open(os.path.join(out, base + "-fused-vs-unfused.json")))["docvqa"]
    print(f"- fused {base}: exact match {100*d['exact_match_candidate']:.2f} % vs unfused {100*d['exact_match_base']:.2f} %, "
          f"same answer {100*d['same_answer_share']:.2f} %, mean KLD {d['kld_answer_mean']:.2e}")
PYEOF
