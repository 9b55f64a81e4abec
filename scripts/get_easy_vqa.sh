#!/usr/bin/env bash
# Fetch the public easy-VQA data set (PyPI `easy-vqa` 1.0, MIT licence; 64x64 RGB shapes, 13 answers)
# and write each split as a DocVQA-format directory that `i2q verify --docvqa` and AWQ calibration read
# unchanged — no torch needed.
#
#   scripts/get_easy_vqa.sh [DEST]          (default DEST: .cache/easy-vqa, git-ignored)
#
# DEST/train and DEST/test each hold the wheel's own files (questions.json = [question, answer,
# image_id], images/N.png) plus val_v1.0.json: {"data": [{questionId, question, image, answers,
# docId}]}, questionId = the question's index in questions.json, image = images/<image_id>.png,
# answers = [the answer]. Train: 4,000 images / 38,575 questions; test: 1,000 / 9,673. The test split
# is for scoring only (never training or calibration). DEST/answers.txt: the 13 answers.
#
# Idempotent (FORCE=1 redoes it). Environment: PYTHON (an interpreter with pip; default python3).
set -euo pipefail
VERSION=1.0
WHEEL=easy_vqa-$VERSION-py3-none-any.whl
WHEEL_SHA256=fcb51b309b78c7b00f97b64cdbcbcf5c105f94da1b39c0796cee5a787c4f650f
DEST=${1:-.cache/easy-vqa}
PYTHON=${PYTHON:-python3}
FORCE=${FORCE:-0}
say() { echo "get_easy_vqa: $*" >&2; }
die() { echo "get_easy_vqa: error: $*" >&2; exit 1; }

mkdir -p "$DEST" || die "cannot create $DEST"
if [ "$FORCE" != 1 ] && [ -f "$DEST/test/val_v1.0.json" ] && [ -f "$DEST/train/val_v1.0.json" ]; then
  say "already there: $DEST/{train,test} (FORCE=1 redoes it)"
  exit 0
fi
if [ "$FORCE" = 1 ] || [ ! -f "$DEST/$WHEEL" ]; then
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  say "pip download --no-deps easy-vqa==$VERSION"
  "$PYTHON" -m pip download --no-deps --quiet "easy-vqa==$VERSION" -d "$tmp" \
    || die "pip download easy-vqa==$VERSION failed (PyPI must be reachable; PYTHON=$PYTHON needs pip)"
  mv "$tmp/$WHEEL" "$DEST/$WHEEL.part" && mv "$DEST/$WHEEL.part" "$DEST/$WHEEL"
fi
got=$(sha256sum "$DEST/$WHEEL" | cut -d' ' -f1)
[ "$got" = "$WHEEL_SHA256" ] || die "$DEST/$WHEEL: sha256 $got, expected $WHEEL_SHA256; delete it and run again"
"$PYTHON" "$(dirname "$0")/data/easy_vqa_to_docvqa.py" "$DEST/$WHEEL" "$DEST"
