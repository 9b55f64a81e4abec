#!/usr/bin/env bash
# Command two of the README: install what is needed, then run the whole test suite.
# Numeric tests run on tiny fixtures; the suite is built in release mode with testing enabled so
# the kernels run at real speed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release -Xswiftc -enable-testing --build-tests
swift test -c release -Xswiftc -enable-testing --skip-build "$@"
