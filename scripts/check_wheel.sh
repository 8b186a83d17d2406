#!/usr/bin/env bash
# Build the abi3 manylinux2014 wheel (maturin + zig) and check that it installs and works in a fresh
# virtual env with no Rust toolchain on PATH, on every Python (>= 3.10) found among python3.10 ..
# python3.13. Usage: bash scripts/check_wheel.sh [out_dir]   (default: dist/)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-dist}"
python -m pip install -q "maturin>=1.7,<2" ziglang
rm -f "$OUT"/mlvec-*.whl
python -m maturin build --release --zig --compatibility manylinux2014 -o "$OUT"
WHEEL="$(ls "$OUT"/mlvec-*.whl)"
echo "built $WHEEL"

# A PATH with no cargo/rustc on it: only the system directories.
CLEAN_PATH=/usr/local/bin:/usr/bin:/bin
checked=0
for v in 3.10 3.11 3.12 3.13; do
    # On PATH, or installed by pyenv but not selected (its shim would refuse to run it).
    py=""
    for cand in "$(command -v "python$v" || true)" "$HOME"/.pyenv/versions/"$v".*/bin/"python$v"; do
        if [ -n "$cand" ] && [ -x "$cand" ] && "$cand" -c 'import sys' 2>/dev/null; then
            py="$cand"
            break
        fi
    done
    [ -n "$py" ] || continue
    venv="$(mktemp -d)/venv"
    "$py" -m venv "$venv"
    if PATH="$venv/bin:$CLEAN_PATH" command -v cargo >/dev/null 2>&1; then
        echo "cargo is still on the clean PATH" >&2
        exit 1
    fi
    PATH="$venv/bin:$CLEAN_PATH" "$venv/bin/python" -m pip install -q --disable-pip-version-check "$WHEEL"
    (cd "$(mktemp -d)" && PATH="$venv/bin:$CLEAN_PATH" "$venv/bin/python" "$OLDPWD/scripts/wheel_smoke.py")
    rm -rf "$(dirname "$venv")"
    checked=$((checked + 1))
done
if [ "$checked" -eq 0 ]; then
    echo "no python3.1x found to check the wheel with" >&2
    exit 1
fi
echo "wheel checked on $checked Python version(s)"
