"""Run a benchmark script from ``benches/`` the way a user would, for the smoke tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHES = Path(__file__).resolve().parents[1] / "benches"


def run_bench(script: str, *args: str, timeout: int = 300) -> str:
    """``python benches/<script> <args>``; its standard output, after checking it exited 0."""
    out = subprocess.run(
        [sys.executable, str(BENCHES / script), *args], capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    return out.stdout
