"""``benches/bench_serve.py --quick`` runs end to end (server, load generator, JSON report)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("httpx")


def test_bench_serve_quick(run_script, tmp_path):
    out = tmp_path / "serve.json"
    run_script("benches/bench_serve.py", "--quick", "--servers", "uvicorn", "--micro-batch", "on",
               "--concurrency", "1,4", "--seconds", "1", "--requests", "200", "--json", str(out), timeout=300)
    report = json.loads(out.read_text())
    assert report["recall@10"] >= 0.9
    assert [r["concurrency"] for r in report["runs"]] == [1, 4]
    for r in report["runs"]:
        assert r["requests"] > 0 and r["errors"] == 0 and r["qps"] > 0
        assert r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
    table = run_script("benches/bench_serve.py", "--summarize", str(out), str(out)).stdout
    assert "| uvicorn | on | 4 |" in table
