"""Smoke run of benches/bench_scoring_api.py in its quick mode."""

from support.scripts import run_bench


def test_bench_scoring_api_quick():
    out = run_bench("bench_scoring_api.py", "--quick")
    rows = [line for line in out.splitlines() if "x native" in line]
    assert len(rows) == 9, out
