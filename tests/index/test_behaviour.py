"""Index behaviour: persistence, corrupted files, bad input, removal, filters, threads."""

from __future__ import annotations

import struct
import threading
import time

import numpy as np
import pytest

import mlvec
import mlvec.index as mi

from harness.truth import exact_knn as exact
from harness.truth import recall
from support.index_data import mixture

KINDS = [
    "Flat",
    "IVF8,Flat",
    "IVF8,SQ8",
    "PQ8",
    "IVF8,PQ8x4,rescore",
    "IVF8,BIN,rescore",
    "BIN",
    "HNSW8",
    "HNSW8,SQ8",
    "HNSW8,SQ8,rescore16",
]


def built(kind: str, n: int = 1500, d: int = 32, metric: str = "ip", ids=None) -> tuple[mi.Index, np.ndarray]:
    db = mixture(n, d, seed=11)
    index = mi.index_factory(d, kind, metric=metric, seed=3)
    if not index.is_trained:
        index.train(db)
    index.add(db, ids=ids)
    return index, db


def snapshot(index: mi.Index, q: np.ndarray):
    return len(index), index.ids().copy(), index.search(q, 7, nprobe=4)


def same(a, b):
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2][0], b[2][0])
    np.testing.assert_array_equal(a[2][1], b[2][1])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_save_load_round_trip_including_mmap(tmp_path, kind, metric):
    index, db = built(kind, metric=metric, ids=np.arange(1500) * 3 + 7)
    q = db[:20] + 0.01
    before = snapshot(index, q)
    path = tmp_path / "x.mlvec"
    index.save(path)
    for mmap in (False, True):
        back = mi.load(path, mmap=mmap)
        assert (back.kind, back.dim, back.metric) == (index.kind, index.dim, index.metric)
        same(before, snapshot(back, q))
    # A mapped index can still be modified (it copies what it changes) and saved elsewhere.
    back = mi.load(path, mmap=True)
    back.remove([7, 10])
    back.add(db[:2], ids=[1, 2])
    back.save(tmp_path / "y.mlvec")
    assert len(mi.load(tmp_path / "y.mlvec")) == 1500


def test_file_errors(tmp_path):
    index, _ = built("IVF8,SQ8")
    path = tmp_path / "x.mlvec"
    index.save(path)
    raw = path.read_bytes()
    cases = {
        "truncated": raw[: len(raw) // 2],
        "tiny": raw[:10],
        "flipped": raw[:300] + bytes([raw[300] ^ 0xFF]) + raw[301:],
        "future": raw[:8] + struct.pack("<I", 99) + raw[12:],
        "foreign": b"PK\x03\x04" + raw[4:],
        "empty": b"",
    }
    for name, data in cases.items():
        p = tmp_path / f"{name}.mlvec"
        p.write_bytes(data)
        with pytest.raises(mlvec.FormatError) as e:
            mi.load(p)
        if name == "future":
            assert "newer" in str(e.value)
        if name == "flipped":
            assert "checksum" in str(e.value)
    with pytest.raises(OSError):
        mi.load(tmp_path / "missing.mlvec")


def test_save_is_atomic_and_leaves_no_temporaries(tmp_path):
    index, _ = built("Flat")
    path = tmp_path / "x.mlvec"
    path.write_bytes(b"old")
    index.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["x.mlvec"]
    assert len(mi.load(path)) == 1500
    with pytest.raises(OSError):
        index.save(tmp_path / "no" / "such" / "dir.mlvec")
    assert [p.name for p in tmp_path.iterdir()] == ["x.mlvec"]


@pytest.mark.parametrize(
    "kind", ["Flat", "IVF8,PQ8x4,rescore", "IVF8,BIN,rescore", "HNSW8", "HNSW8,SQ8", "HNSW8,SQ8,rescore16"]
)
def test_bad_input_raises_and_leaves_the_index_unchanged(kind):
    index, db = built(kind, ids=np.arange(1500) + 100)
    q = db[:5]
    before = snapshot(index, q)
    nan = db[:3].copy()
    nan[1, 4] = np.nan
    inf = db[:3].copy()
    inf[2, 0] = np.inf
    bad_calls = [
        (ValueError, lambda: index.add(db[:3, :16])),
        (ValueError, lambda: index.add(nan)),
        (ValueError, lambda: index.add(inf, ids=[1, 2, 3])),
        (ValueError, lambda: index.add(db[:3], ids=[1, 2, 2])),
        (ValueError, lambda: index.add(db[:3], ids=[1, 2, 100])),
        (ValueError, lambda: index.add(db[:3], ids=[1, 2])),
        (ValueError, lambda: index.add(db[:3], ids=[-5, 1, 2])),
        (TypeError, lambda: index.add(db[:3].astype(np.int32))),
        (TypeError, lambda: index.add(db[:3], ids=[1.5, 2.0, 3.0])),
        (ValueError, lambda: index.remove([100, 99999])),
        (ValueError, lambda: index.remove([100, 100])),
        (ValueError, lambda: index.search(q[:, :8], 3)),
        (ValueError, lambda: index.search(nan, 3)),
        (ValueError, lambda: index.search(q, 0)),
        (ValueError, lambda: index.search(q, -2)),
        (ValueError, lambda: index.search(q, 3, nprobe=0)),
        (ValueError, lambda: index.search(q, 3, ef_search=0)),
        (TypeError, lambda: index.search(q, 2.5)),
        (mlvec.MlvecError, lambda: index.train(db)),
    ]
    for exc, call in bad_calls:
        with pytest.raises(exc):
            call()
        same(before, snapshot(index, q))


def test_state_errors():
    index = mi.index_factory(16, "IVF4,SQ8")
    x = mixture(100, 16)
    with pytest.raises(mlvec.MlvecError, match="trained"):
        index.add(x)
    with pytest.raises(mlvec.MlvecError, match="trained"):
        index.search(x, 3)
    with pytest.raises(ValueError, match="at least 4"):
        index.train(x[:3])
    assert not index.is_trained
    for bad in [
        *("IVF0,Flat", "PQ5", "PQ8x3", "Flat,rescore", "LSH", "IVF4,SQ8,junk", "HNSW8,PQ4", "HNSW0", "HNSW1"),
        *(
            "HNSW8_",
            "HNSW8_0",
            "HNSW_40",
            "HNSW8_4x,SQ8",
            "HNSW8_40_2",
            "HNSW8,rescore16",
            "HNSW8,SQ8,rescore",
        ),
    ]:
        with pytest.raises(ValueError):
            mi.index_factory(16, bad)
    with pytest.raises(ValueError):
        mi.index_factory(16, "Flat", metric="hamming")
    with pytest.raises(ValueError):
        mi.index_factory(0, "Flat")
    graph = mi.index_factory(16, "HNSW8,SQ8")
    with pytest.raises(mlvec.MlvecError, match="trained"):
        graph.add(x)
    assert mi.index_factory(16, "HNSW8").is_trained


def test_k_larger_than_n_pads():
    index, db = built("IVF8,SQ8", n=40)
    s, i = index.search(db[:2], 50, nprobe=8)
    assert s.shape == (2, 50)
    assert (i[:, :40] >= 0).all() and (i[:, 40:] == -1).all()
    assert np.isneginf(s[:, 40:]).all() and np.isfinite(s[:, :40]).all()
    empty = mi.index_factory(8, "Flat")
    s, i = empty.search(np.ones((1, 8), np.float32), 3)
    assert (i == -1).all() and np.isneginf(s).all()


@pytest.mark.parametrize(
    "kind", ["Flat", "IVF8,SQ8", "IVF8,PQ8x4,rescore", "HNSW8", "HNSW8,SQ8", "HNSW8,SQ8,rescore16"]
)
def test_remove_compacts_and_frees_memory(kind):
    index, db = built(kind, n=3000)
    mem = index.memory_usage()
    gone = np.arange(0, 3000, 2)
    assert index.remove(gone) == 1500
    assert len(index) == 1500
    assert index.memory_usage() < 0.7 * mem
    assert set(index.ids().tolist()) == set(range(1, 3000, 2))
    s, i = index.search(db[:50], 10, nprobe=8)
    assert not np.isin(i, gone).any()
    # The survivors are still found exactly where the codec is exact.
    if kind == "Flat":
        _, truth = exact(db[1::2], db[:50], 10)
        np.testing.assert_array_equal(i, truth * 2 + 1)
    if kind.startswith("HNSW"):
        # The rebuilt graph still finds the survivors.
        _, truth = exact(db[1::2], db[:50], 10)
        assert recall(i, truth * 2 + 1) >= 0.9
    index.add(db[:2])
    assert index.ids()[-2:].tolist() == [3000, 3001]


@pytest.mark.parametrize(
    "kind",
    [
        "Flat",
        "IVF16,Flat",
        "IVF16,SQ8",
        "IVF16,PQ8x4,rescore",
        "IVF16,BIN",
        "HNSW8",
        "HNSW8,SQ8",
        "HNSW8,SQ8,rescore16",
    ],
)
@pytest.mark.parametrize("frac", [0.002, 0.05, 0.5])
def test_filters_return_only_allowed_ids_with_good_recall(kind, frac):
    n = 4000
    index, db = built(kind, n=n, ids=np.arange(n) + 1000)
    rng = np.random.default_rng(0)
    allowed = np.sort(rng.choice(n, max(1, int(frac * n)), replace=False))
    q = db[rng.choice(n, 20)] + 0.05
    mask = np.zeros(n + 1000, bool)
    mask[allowed + 1000] = True
    for kw in ({"allow_ids": allowed + 1000}, {"allow_mask": mask}):
        s, i = index.search(q, 10, nprobe=4, **kw)
        got = i[i >= 0]
        assert np.isin(got, allowed + 1000).all()
        _, truth = exact(db[allowed], q, 10)
        want = allowed[truth] + 1000
        k_eff = min(10, len(allowed))
        rec = np.mean([len(set(a[:k_eff]) & set(b[:k_eff])) / k_eff for a, b in zip(i, want, strict=True)])
        floor = 0.3 if kind == "IVF16,BIN" else 0.8
        assert rec >= floor, f"{kind} frac={frac}: filtered recall {rec:.2f}"
        if len(allowed) < 10:
            assert (i[:, len(allowed) :] == -1).all()
    s, i = index.search(q, 5, allow_ids=np.array([], np.int64))
    assert (i == -1).all()


@pytest.mark.parametrize("kind", ["IVF8,SQ8,rescore", "HNSW8"])
def test_concurrent_search_add_remove_is_safe(kind):
    index, db = built(kind, n=2000)
    extra = mixture(2000, 32, seed=12)
    errors = []
    stop = threading.Event()

    def searcher():
        try:
            while not stop.is_set():
                s, i = index.search(db[:16], 10, nprobe=4)
                assert s.shape == (16, 10)
                assert (np.diff(s, axis=1) <= 1e-6).all()
                assert (i >= 0).all()
        except Exception as e:  # surfaced below
            errors.append(e)

    def writer():
        try:
            for step in range(20):
                ids = np.arange(100) + 10_000 + 100 * step
                index.add(extra[step * 100 : (step + 1) * 100], ids=ids)
                if step % 2:
                    index.remove(ids)
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    w = threading.Thread(target=writer)
    for t in threads:
        t.start()
    w.start()
    w.join()
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(index) == 2000 + 1000
    ids = index.ids()
    assert len(np.unique(ids)) == len(ids)


@pytest.mark.parametrize("kind", ["IVF8,SQ8", "HNSW8"])
def test_single_query_threads_match_sequential(kind):
    """Short calls from many threads (the GIL changing hands around every call, a thread between
    calls busy in Python or asleep) return exactly what one thread gets."""
    index, db = built(kind, n=2000)
    q = mixture(64, 32, seed=21)
    want = [index.search(q[r], 10, nprobe=4) for r in range(len(q))]
    got: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    errors = []

    def caller(rows, pause):
        try:
            for r in rows:
                got[r] = index.search(q[r], 10, nprobe=4)
                if pause == "python":
                    sum(range(2000))  # holds the GIL after the call returned
                elif pause == "sleep":
                    time.sleep(0.0005)  # releases it outside mlvec
        except Exception as e:  # surfaced below
            errors.append(e)

    pauses = ["none", "none", "python", "sleep"]
    threads = [
        threading.Thread(target=caller, args=(range(t, len(q), len(pauses)), p)) for t, p in enumerate(pauses)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(got) == list(range(len(q)))
    for r, (s, i) in got.items():
        np.testing.assert_array_equal(i, want[r][1])
        np.testing.assert_array_equal(s, want[r][0])


def test_config_and_factory_agree():
    cfg = mi.IndexConfig(codec="pq4", nlist=16, pq_m=8, rescore=True)
    assert cfg.factory_string() == "IVF16,PQ8x4,rescore"
    assert mi.index_factory(32, cfg).kind == "IVF16,PQ8x4,rescore"
    assert mi.IndexConfig().factory_string() == "Flat"
    with pytest.raises(ValueError):
        mi.IndexConfig(codec="pq8").factory_string()
    graph = mi.IndexConfig(codec="sq8", hnsw_m=16)
    assert graph.factory_string() == "HNSW16,SQ8"
    assert mi.index_factory(32, graph).kind == "HNSW16,SQ8"
    assert mi.index_factory(32, mi.IndexConfig(hnsw_m=8)).kind == "HNSW8"
    efc = mi.IndexConfig(codec="sq8", hnsw_m=8, hnsw_ef_construction=40)
    assert efc.factory_string() == "HNSW8_40,SQ8"
    assert mi.index_factory(32, efc).kind == "HNSW8_40,SQ8"
    r16 = mi.IndexConfig(codec="sq8", hnsw_m=8, hnsw_rescore16=True)
    assert r16.factory_string() == "HNSW8,SQ8,rescore16"
    assert mi.index_factory(32, r16).kind == "HNSW8,SQ8,rescore16"
    for bad in (
        mi.IndexConfig(hnsw_m=8, hnsw_rescore16=True),
        mi.IndexConfig(codec="sq8", hnsw_rescore16=True),
        mi.IndexConfig(codec="pq4", hnsw_m=8),
        mi.IndexConfig(nlist=4, hnsw_m=8),
        mi.IndexConfig(hnsw_m=0),
        mi.IndexConfig(hnsw_m=8, hnsw_ef_construction=0),
        mi.IndexConfig(hnsw_ef_construction=40),
    ):
        with pytest.raises(ValueError):
            bad.factory_string()


@pytest.mark.parametrize("kind", ["HNSW8", "HNSW8,SQ8", "HNSW8,SQ8,rescore16"])
def test_hnsw_takes_half_precision_inputs_through_the_framework(kind):
    # float16 and bfloat16 inputs give the same index as their float32 values.
    db = mixture(800, 32, seed=4)
    q = mixture(10, 32, seed=4)[:10]
    for form in ("f32", "f16", "bf16"):
        if form == "f16":
            data, qq, kw = db.astype(np.float16), q.astype(np.float16), {}
            ref_db, ref_q = data.astype(np.float32), qq.astype(np.float32)
        elif form == "bf16":
            data, qq, kw = mi.float32_to_bf16_bits(db), mi.float32_to_bf16_bits(q), {"bf16": True}
            ref_db, ref_q = mi.bf16_bits_to_float32(data), mi.bf16_bits_to_float32(qq)
        else:
            data, qq, kw = db, q, {}
            ref_db, ref_q = db, q
        # One thread: a parallel build may link near-ties differently from one build to the next,
        # and this test is about the input conversion, not about build order.
        threads = mlvec.get_num_threads()
        mlvec.set_num_threads(1)
        try:
            index = mi.index_factory(32, kind, metric="l2", seed=1)
            index.train(data, **kw)
            index.add(data, **kw)
            ref = mi.index_factory(32, kind, metric="l2", seed=1)
            ref.train(ref_db)
            ref.add(ref_db)
        finally:
            mlvec.set_num_threads(threads)
        got, want = index.search(qq, 5, ef_search=64, **kw), ref.search(ref_q, 5, ef_search=64)
        np.testing.assert_array_equal(got[1], want[1])
        same_id = got[1] == want[1]
        np.testing.assert_allclose(got[0][same_id], want[0][same_id], rtol=1e-5, atol=1e-4)
        _, truth = exact(ref_db, ref_q, 5, "l2")
        assert recall(got[1], truth) >= 0.9


def test_hnsw_file_with_an_inconsistent_graph_is_rejected(tmp_path):
    # A well-formed file (valid checksum) whose graph refers to a missing node.
    import json
    import zlib

    index, _ = built("HNSW8", n=300)
    path = tmp_path / "g.mlvec"
    index.save(path)
    raw = bytearray(path.read_bytes())
    (hlen,) = struct.unpack("<Q", raw[16:24])
    header = json.loads(raw[24 : 24 + hlen].decode())
    arr = next(a for a in header["arrays"] if a["name"] == "hnsw_neighbors")
    raw[arr["offset"] : arr["offset"] + 4] = struct.pack("<I", 10**6)
    raw[-12:-8] = struct.pack("<I", zlib.crc32(bytes(raw[:-12])))
    bad = tmp_path / "bad.mlvec"
    bad.write_bytes(bytes(raw))
    with pytest.raises(mlvec.FormatError, match="out of range"):
        mi.load(bad)
    assert len(mi.load(path)) == 300


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_sq8_memory_is_codes_slots_norms_and_centroids(metric):
    """A bulk add sizes each list exactly; default (sequential) ids are not stored."""
    n, d, nlist = 4000, 32, 16
    index, _ = built(f"IVF{nlist},SQ8", n=n, d=d, metric=metric)
    per_vector = d + 4 + (4 if metric == "l2" else 0)  # code, slot, squared norm for L2
    params = 4 * nlist * (d + 1) + 8 * d  # centroids + their norms, per-dimension min and step
    assert index.memory_usage() == n * per_vector + params
    # Explicit ids that are not the slot numbers cost 8 bytes each.
    explicit, _ = built(f"IVF{nlist},SQ8", n=n, d=d, metric=metric, ids=np.arange(n) * 2 + 1)
    assert explicit.memory_usage() == index.memory_usage() + 8 * n
    # Sequential ids survive persistence and give the same results as stored ones.
    assert index.ids().tolist() == list(range(n))


def test_sequential_ids_switch_to_stored_when_broken():
    index, db = built("IVF8,Flat", n=1000, metric="l2")  # exact: a vector is its own nearest
    index.remove([999])
    base = index.memory_usage()  # removing the last slot keeps ids sequential
    assert index.ids().tolist() == list(range(999))
    index.remove([5])
    assert index.ids().tolist() == [i for i in range(999) if i != 5]
    assert index.memory_usage() >= 8 * 998
    index.add(db[:3])  # default ids continue after the largest id ever given (999 is not reused)
    assert index.ids().tolist()[-3:] == [1000, 1001, 1002]
    s, i = index.search(db[10:11], 1, nprobe=8)
    assert i[0, 0] == 10
    assert index.memory_usage() > base


def test_sq8_l2_scores_are_distances_to_the_reconstruction():
    """L2 over SQ8 codes scores -||q - x_hat||^2 (x_hat the decoded vector), as a numpy SQ8 does.

    Reference: the codec re-derived in float64 numpy (residuals to the training mean, per-dimension
    min and step = range / 255, codes rounded and clamped), then exact L2 to the reconstructions.
    """
    rng = np.random.default_rng(5)
    d = 24
    db = (mixture(3000, d, seed=4) + 40.0).astype(np.float32)  # far from the origin: ||q|| >> ||q - x||
    q = db[rng.choice(3000, 40, replace=False)] + rng.normal(0, 0.05, (40, d)).astype(np.float32)
    index = mi.index_factory(d, "SQ8", metric="l2")
    index.train(db)
    index.add(db)
    scores, ids = index.search(q, 10)

    x = db.astype(np.float64)
    mean = x.mean(0)
    r = x - mean
    vmin = r.min(0)
    step = (r.max(0) - vmin) / 255.0
    codes = np.clip(np.round((r - vmin) / step), 0, 255)
    rec = mean + vmin + codes * step
    dist = ((q.astype(np.float64)[:, None, :] - rec[None]) ** 2).sum(-1)
    want_ids = np.argsort(dist, axis=1)[:, :10]
    got = -np.take_along_axis(dist, ids, axis=1)
    np.testing.assert_allclose(scores, got, rtol=1e-4, atol=2e-2)
    assert (ids == want_ids).mean() > 0.97
