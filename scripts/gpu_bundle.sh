#!/usr/bin/env bash
# Prepare what scripts/gpu_check.sh needs on a GPU machine without network, under dist/:
#   the abi3 wheel (manylinux2014, built with zig so it loads on older glibc) and, for machines
#   whose Python lacks them, pytest and numpy wheels for the target Python (default 3.12).
# Then copy the checkout with dist/ to the GPU machine and run: bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER="${1:-3.12}"
# Builds the manylinux2014 wheel into dist/ and checks it installs without Rust.
bash scripts/check_wheel.sh dist
python -m pip download -q pytest numpy --only-binary=:all: --python-version "$PYVER" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    -d dist/gpu_wheels
ls -l dist dist/gpu_wheels
