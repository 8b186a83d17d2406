"""examples/retrieval_backend.py at reduced size on random clustered data (no shared files needed)."""

import json

import numpy as np

from support.scripts import load_script


def _load():
    return load_script("examples/retrieval_backend.py")


def test_backend_example_quick(tmp_path, capsys):
    mod = _load()
    out = mod.main(["--quick", "--synthetic", "--factory", "IVF32,SQ8,rescore", "--nprobe", "8",
                    "--workers", "3", "--batch", "16", "--out", str(tmp_path / "i.mlvec"),
                    "--json", str(tmp_path / "r.json")])
    printed = capsys.readouterr().out
    assert "recall@10 vs exact" in printed and "p99" in printed
    assert (tmp_path / "i.mlvec").stat().st_size == out["file_bytes"] > 0
    assert json.loads((tmp_path / "r.json").read_text())["factory"] == "IVF32,SQ8,rescore"
    assert out["n_queries"] == 200 and out["n_index"] == 4000 - 200
    # Rescored SQ8 over 8 of 32 lists on clustered data: nearly the exact top 10.
    assert out["recall@10_vs_exact"] >= 0.9
    assert out["translation@10_exact"] == 1.0 and out["translation@10"] >= 0.9
    assert out["queries_per_s"] > 0
    lat = out["latency_ms"]
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"]


def test_backend_example_serves_what_a_single_thread_gets(tmp_path):
    """Threaded, memory-mapped serving returns exactly a plain single-threaded search of the saved index."""
    import argparse

    import mlvec.index as mi

    mod = _load()
    out = mod.main(["--quick", "--synthetic", "--factory", "IVF16,SQ8", "--nprobe", "4", "--workers", "4",
                    "--batch", "8", "--out", str(tmp_path / "i.mlvec"), "--quiet"])
    x, n, _ = mod.load_vectors(argparse.Namespace(synthetic=True, quick=True, seed=0, data=None))
    idx = mi.load(tmp_path / "i.mlvec", mmap=False)
    assert len(idx) == 2 * n - len(out["query_rows"]) and idx.kind == "IVF16,SQ8"
    _, ids = idx.search(x[out["query_rows"]], 10, nprobe=4)
    np.testing.assert_array_equal(out["ids"], ids)
