#!/usr/bin/env bash
# The test command of the README: Rust unit tests of the core crates, then pytest on the Python API.
# pytest's exit code 5 ("no tests collected") is a failure here, not a success.
set -uo pipefail
cd "$(dirname "$0")/.."

# NVRTC and the CUDA headers from pip's nvidia wheels, for mlvec-cuda's compile tests.
while IFS= read -r line; do
    export "${line?}"
done < <(python python/mlvec/_cuda_locate.py)

cargo test -p mlvec-core -p mlvec-cuda || exit $?

python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: failing" >&2
    exit 1
fi
exit "$rc"
