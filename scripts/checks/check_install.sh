#!/usr/bin/env bash
# The install story, checked as a new machine would see it (issue 20):
# 1. `make install PREFIX=tmp` builds the relocatable binary (static Swift runtime, Swift code for
#    haswell, kernels chosen at run time);
# 2. from another directory, with an empty environment (no toolchain lib dir on the loader path),
#    `i2q --version` works and the binary links no libswift*/libFoundation*;
# 3. under `qemu-x86_64 -cpu Haswell` (AVX2, no AVX-512) it runs a real job — the trained easy-VQA
#    Idefics2 answers a test question — and `--version` shows the AVX2 kernels chosen;
# 4. under `qemu-x86_64 -cpu Nehalem` (no AVX: the portable x86-64 build) it picks the scalar kernels
#    and gives the same answer.
# Needs qemu-user (Debian: qemu-user; installed here when missing) and the easy-VQA test split
# (scripts/get_easy_vqa.sh .cache/easy-vqa).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
command -v qemu-x86_64 >/dev/null || {
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get install -y -qq qemu-user >/dev/null
}
PREFIX=$(mktemp -d); trap 'rm -rf "$PREFIX"' EXIT
make install PREFIX="$PREFIX" >/dev/null
BIN="$PREFIX/bin/i2q"
fail() { echo "check_install: FAIL: $*" >&2; exit 1; }
if ldd "$BIN" | grep -Eq 'libswift|libFoundation|libdispatch|libBlocksRuntime'; then
  ldd "$BIN" >&2; fail "the installed binary links the Swift toolchain's libraries"
fi
v=$(cd / && env -i PATH=/usr/bin:/bin "$BIN" --version) || fail "--version failed from / with an empty environment"
echo "$v" | head -1 | grep -q "^i2q [0-9]" || fail "unexpected --version: $v"
echo "$v" | grep -q "commit unknown" && fail "--version has no commit: $v"
echo "installed binary, from / with env -i:"; echo "$v" | sed 's/^/  /'
for f in share/bash-completion/completions/i2q share/zsh/site-functions/_i2q share/fish/vendor_completions.d/i2q.fish; do
  [ -s "$PREFIX/$f" ] || fail "missing completion $f"
done
q="qemu-x86_64 -cpu Haswell"
hv=$($q "$BIN" --version 2>/dev/null) || fail "--version under qemu -cpu Haswell"
echo "$hv" | grep -q "decode (int4 × int8, nf4/fp4 × int8) avx2" || fail "Haswell: AVX2 kernels not chosen: $hv"
echo "under qemu -cpu Haswell:"; echo "$hv" | sed 's/^/  /'
EASY=${I2Q_EASY_VQA:-$ROOT/.cache/easy-vqa}
if [ ! -f "$EASY/test/images/0.png" ]; then bash scripts/get_easy_vqa.sh "$EASY" >/dev/null; fi
hans=$(cd / && $q "$BIN" run "$ROOT/Tests/Fixtures/easy-vqa-idefics2" --image "$EASY/test/images/0.png" \
  --prompt $'User:<image>what shape is in the image?<end_of_utterance>\nAssistant:' --max-new-tokens 4 2>/dev/null)
echo "  easy-VQA test image 0, 'what shape is in the image?': $hans"
[ -n "$hans" ] || fail "no answer under qemu -cpu Haswell"
# Nehalem (SSE4.2, no AVX): the portable build runs there on the scalar kernels.
nv=$(qemu-x86_64 -cpu Nehalem "$BIN" --version 2>/dev/null) || fail "--version under qemu -cpu Nehalem"
echo "$nv" | grep -q "decode (int4 × int8, nf4/fp4 × int8) scalar" || fail "Nehalem: scalar kernels not chosen: $nv"
echo "under qemu -cpu Nehalem:"; echo "$nv" | sed 's/^/  /'
ans=$(cd / && qemu-x86_64 -cpu Nehalem "$BIN" run "$ROOT/Tests/Fixtures/easy-vqa-idefics2" --image "$EASY/test/images/0.png" \
  --prompt $'User:<image>what shape is in the image?<end_of_utterance>\nAssistant:' --max-new-tokens 4 2>/dev/null)
echo "  easy-VQA test image 0, 'what shape is in the image?': $ans"
[ "$ans" = "$hans" ] || fail "Nehalem's answer ($ans) differs from Haswell's ($hans)"
echo "check_install: OK"
