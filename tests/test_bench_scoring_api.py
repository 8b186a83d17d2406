"""Smoke run of benches/bench_scoring_api.py in its quick mode."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benches" / "bench_scoring_api.py"


def test_bench_scoring_api_quick():
    out = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if "x native" in line]
    assert len(rows) == 9, out.stdout
