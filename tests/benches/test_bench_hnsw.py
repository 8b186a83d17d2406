"""The HNSW benchmark runs end to end in its quick mode and measures what it claims."""

import pytest

from support.scripts import load_script

pytest.importorskip("faiss")
pytest.importorskip("hnswlib")
pytest.importorskip("usearch")

def test_bench_hnsw_quick(capsys):
    mod = load_script("benches/bench_hnsw.py")
    [(rows, builds)] = mod.main(["--quick"])
    names = {r[0] for r in rows}
    assert names == {"mlvec-f32", "mlvec-sq8", "faiss-hnsw-flat", "faiss-hnsw-sq8", "hnswlib", "usearch"}
    for name, ef, rec, qps_batch, qps_one, bpv in rows:
        assert 0.0 <= rec <= 1.0 and qps_batch > 0 and qps_one > 0 and bpv > 0
        if ef == 64 and name in ("mlvec-f32", "hnswlib", "faiss-hnsw-flat"):
            assert rec >= 0.9, (name, rec)
    assert "recall@10" in capsys.readouterr().out
