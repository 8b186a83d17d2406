"""The benchmark scripts run end to end in their quick mode (seconds), and exit 0."""

import subprocess
import sys
from pathlib import Path

BENCHES = Path(__file__).resolve().parents[1] / "benches"


def test_bench_maxsim_quick():
    out = subprocess.run(
        [sys.executable, str(BENCHES / "bench_maxsim.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # The table and the bandwidth line are printed.
    assert "| fixed: 1 x 50 docs" in out.stdout and "GB/s" in out.stdout
