#!/usr/bin/env bash
# One-time (idempotent) setup on Debian/Ubuntu as root: system libraries for FFCV,
# a virtual environment in .venv, and the databrittle package with its dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3 python3-venv python3-dev)
command -v gcc >/dev/null || need_apt+=(build-essential)
command -v git >/dev/null || need_apt+=(git)
for pkg in pkg-config libopencv-dev libturbojpeg0-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv; then
        apt-get update -qq && apt-get install -y -qq python3-venv python3-dev
        rm -rf .venv && python3 -m venv .venv
    fi
fi
.venv/bin/python -m pip install -q --upgrade pip
# The tested torch release first, so that no other requirement pulls in a different build.
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[test]"
echo "databrittle: environment ready in .venv"
