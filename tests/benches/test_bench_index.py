"""The index benchmark runs end to end in its quick mode (tiny sizes) and reports every peer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from support.scripts import run_bench


def run_index_bench(tmp_path: Path, *args: str) -> str:
    """Run ``benches/bench_index.py`` with ``args``; the markdown table it wrote."""
    table = tmp_path / "t.md"
    run_bench("bench_index.py", *args, "--table", str(table))
    return table.read_text()


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("faiss", "hnswlib", "usearch")),
    reason="benchmark peers (faiss-cpu, hnswlib, usearch) not installed",
)
def test_bench_index_quick(tmp_path):
    text = run_index_bench(
        tmp_path,
        *("--quick", "--skip-real", "--synthetic-n", "3000", "--single-queries", "5", "--threads", "1"),
    )
    for name in ("mlvec", "faiss", "hnswlib", "usearch", "Best queries/s", "GB/s"):
        assert name in text, name


@pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="faiss-cpu not installed")
def test_bench_index_graph_only_with_build_memory(tmp_path):
    text = run_index_bench(
        tmp_path,
        *("--quick", "--skip-real", "--synthetic-n", "2000", "--single-queries", "5", "--threads", "1"),
        *("--hnsw-only", "--build-memory", "--peers", "faiss", "--hnsw-kinds", "HNSW8_40,SQ8"),
        *("--removal", "0.5"),
    )
    for name in ("HNSW8_40,SQ8", "faiss", "Best queries/s", "Peak build memory", "faiss HNSW32", "Removal"):
        assert name in text, name
    assert "IVF" not in text
