#!/usr/bin/env bash
# GPU check on a bare GPU machine with torch (Python >= 3.10, no network needed):
#   installs the abi3 wheel built elsewhere (argument, else the newest dist/*.whl) with --no-deps,
#   runs the GPU tests and the GPU benchmark, and writes $OUT/gpu_check.json (OUT defaults to
#   ./gpu_check_out). pytest / numpy come from dist/gpu_wheels/ when the machine lacks them.
#   Budget: under 8 minutes (tests <= 4, sanitizer <= 1, benchmark <= 3).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT="${OUT:-$ROOT/gpu_check_out}"
mkdir -p "$OUT"
WHEEL="${1:-$(ls -t dist/*.whl 2>/dev/null | head -n 1)}"
if [ -z "$WHEEL" ] || [ ! -f "$WHEEL" ]; then
    echo "gpu_check: no wheel given and none in dist/" >&2
    exit 2
fi

VENV="$(mktemp -d)/venv"
python3 -m venv --system-site-packages "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1
for mod in numpy pytest; do
    if ! python -c "import $mod" 2>/dev/null; then
        python -m pip install -q --no-index --find-links dist/gpu_wheels "$mod" || echo "gpu_check: cannot install $mod" >&2
    fi
done
python -m pip install -q --no-deps --no-index --force-reinstall "$WHEEL" || exit 3

export MLVEC_CACHE_DIR="$OUT/.cache-not-returned"
mkdir -p "$MLVEC_CACHE_DIR"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/nvidia-smi.csv" 2>&1 || true
python - > "$OUT/env.json" <<'PY'
import json, platform, torch, mlvec, mlvec.cuda as mc
print(json.dumps({
    "python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
    "mlvec": mlvec.__version__, "cuda_available": mc.available(),
    "device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
}))
PY
cat "$OUT/env.json"

# Tests from a copy outside the checkout, so `import mlvec` is the installed wheel.
TESTS="$(mktemp -d)"
cp -r tests cuda_kernels benches pyproject.toml "$TESTS/"
(cd "$TESTS" && MLVEC_REQUIRE_GPU=1 timeout 240 python -m pytest -q -p no:cacheprovider tests/cuda \
    --junitxml="$OUT/pytest.xml" -rs 2>&1 | tail -n 60) | tee "$OUT/pytest.txt"
PYTEST_RC=${PIPESTATUS[0]}

# No memory errors under compute-sanitizer for a small case (when the tool is on this machine).
SAN="skipped: compute-sanitizer not found"
if command -v compute-sanitizer >/dev/null 2>&1; then
    cat > "$TESTS/small_case.py" <<'PY'
import torch, mlvec.cuda as mc
q = torch.randn(37, 40, device="cuda", dtype=torch.bfloat16); qo = torch.tensor([0, 5, 37], device="cuda")
d = torch.randn(90, 40, device="cuda", dtype=torch.bfloat16); do = torch.tensor([0, 1, 66, 90], device="cuda")
m = torch.rand(90, device="cuda") > 0.2
s, qa, ds, da = mc.maxsim_forward(q, qo, None, d, do, m, q2d_argmax=True, d2q=True, d2q_argmax=True)
mc.maxsim_backward(q, qo, None, d, do, m, grad_q2d=torch.ones_like(s), q2d_argmax=qa, grad_d2q=torch.ones_like(s), d2q_argmax=da)
mc.filip_forward(q, qo, None, d, do, m, argmax=True)
r, c = mc.clip_lse(q, d, 2.0); mc.clip_lse_backward(q, d, 2.0, r, c, torch.ones(37, device="cuda"), None)
mc.siglip_backward(q, d, 2.0, -1.0, torch.ones(37, device="cuda"))
mc.topk_smallest(mc.pq_scan(torch.randint(0, 255, (300, 4), dtype=torch.uint8, device="cuda"), torch.randn(2, 4, 256, device="cuda")), 7)
torch.cuda.synchronize(); print("ok")
PY
    if timeout 60 compute-sanitizer --tool memcheck --error-exitcode 9 python "$TESTS/small_case.py" > "$OUT/sanitizer.txt" 2>&1; then
        SAN="clean"
    else
        SAN="errors (rc $?), see sanitizer.txt"
    fi
fi

timeout 200 python benches/bench_cuda.py --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"
BENCH_RC=${PIPESTATUS[0]}

python - "$OUT" "$PYTEST_RC" "$BENCH_RC" "$SAN" <<'PY'
import json, os, sys
out, pytest_rc, bench_rc, san = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
tests = None
try:
    import xml.etree.ElementTree as ET
    s = ET.parse(os.path.join(out, "pytest.xml")).getroot()
    s = s if s.tag == "testsuite" else s.find("testsuite")
    tests = {k: int(s.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
except Exception as e:  # noqa: BLE001
    tests = {"unreadable": str(e)}
res = {"env": load("env.json"), "pytest_rc": pytest_rc, "tests": tests, "sanitizer": san,
       "bench_rc": bench_rc, "bench": load("bench.json")}
with open(os.path.join(out, "gpu_check.json"), "w") as f:
    json.dump(res, f, indent=2)
print(json.dumps({k: res[k] for k in ("pytest_rc", "tests", "sanitizer", "bench_rc")}))
PY
rm -rf "$MLVEC_CACHE_DIR"
[ "$PYTEST_RC" -eq 0 ] && [ "$BENCH_RC" -eq 0 ]
