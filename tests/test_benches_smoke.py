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


def test_bench_losses_openmp_small():
    out = subprocess.run(
        [
            sys.executable,
            str(BENCHES / "bench_losses_openmp.py"),
            "--batch",
            "512",
            "--dim",
            "32",
            "--calls",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "mlvec pool / OpenMP team" in out.stdout


def test_bench_single_query_small_mlvec_only():
    out = subprocess.run(
        [
            sys.executable,
            str(BENCHES / "bench_single_query.py"),
            "--synthetic-n",
            "3000",
            "--clusters",
            "30",
            "--nlist",
            "32",
            "--calls",
            "50",
            "--repeat",
            "1",
            "--peers",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "| mlvec | IVF32,SQ8 |" in out.stdout
