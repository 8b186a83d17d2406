"""The losses benchmark runs end to end in its quick mode."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benches" / "bench_losses.py"


def test_bench_losses_quick():
    p = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "| 256 | clip | mlvec_clip |" in out and "open_clip_clip" in out
    assert "| 32 | mlvec_filip |" in out and "dense_filip" in out
    assert "| ring |" in out
    assert "error" not in out.lower() and "failed" not in out.lower()
