"""The benchmark harness (benches/harness) measures what it says: exact search and recall against
plain references, timers against a fake clock, the data sets, the memory helpers and the peers."""

from __future__ import annotations

import importlib.util
import threading

import numpy as np
import pytest

from mlvec.data import load_bible_en_es

from harness import data, memory, peers, timing, truth

# --- truth -----------------------------------------------------------------------------------------


def sorted_reference(scores: np.ndarray, k: int) -> np.ndarray:
    """Row indices by descending score, ties to the smaller index, by Python's sort."""
    return np.array([sorted(range(scores.shape[1]), key=lambda j, r=r: (-r[j], j))[:k] for r in scores])


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("block_scores", [1 << 25, 7 * 13])
def test_exact_knn_ranks_as_a_full_sort_with_ties_to_the_lower_index(metric, block_scores):
    rng = np.random.default_rng(0)
    # Small integers: every score is exact in float64, and the repeated rows make ties.
    rows = rng.integers(-3, 4, (40, 6)).astype(np.float32)
    db = rows[rng.integers(0, len(rows), 300)]
    q = rng.integers(-3, 4, (13, 6)).astype(np.float32)
    d64, q64 = db.astype(np.float64), q.astype(np.float64)
    if metric == "ip":
        ref = np.einsum("id,jd->ij", q64, d64)
    else:
        ref = -((q64[:, None, :] - d64[None, :, :]) ** 2).sum(-1)
    scores, ids = truth.exact_knn(db, q, 10, metric, block_scores=block_scores)
    want = sorted_reference(ref, 10)
    assert ids.dtype == np.int64 and ids.shape == (13, 10)
    np.testing.assert_array_equal(ids, want)
    np.testing.assert_array_equal(scores, np.take_along_axis(ref, want, 1))


def test_exact_knn_cosine_and_short_databases():
    rng = np.random.default_rng(1)
    db = rng.standard_normal((50, 8)).astype(np.float32) * rng.uniform(0.1, 10, (50, 1)).astype(np.float32)
    q = rng.standard_normal((5, 8)).astype(np.float32)
    d64, q64 = db.astype(np.float64), q.astype(np.float64)
    cos = (q64 @ d64.T) / np.linalg.norm(q64, axis=1)[:, None] / np.linalg.norm(d64, axis=1)[None, :]
    scores, ids = truth.exact_knn(db, q, 7, "cosine", block_scores=5 * 9)
    np.testing.assert_array_equal(ids, np.argsort(-cos, axis=1)[:, :7])
    np.testing.assert_allclose(scores, np.take_along_axis(cos, ids, 1), rtol=1e-12)
    # k beyond the database returns every row.
    assert truth.exact_knn(db[:3], q, 10)[1].shape == (5, 3)


def test_exact_knn_rejects_bad_input():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="metric"):
        truth.exact_knn(x, x, 2, "hamming")
    with pytest.raises(ValueError, match="share d"):
        truth.exact_knn(x, np.zeros((4, 2), np.float32), 2)


def test_recall_is_the_share_of_true_neighbours_found():
    rng = np.random.default_rng(2)
    for _ in range(50):
        k, extra = int(rng.integers(1, 10)), int(rng.integers(0, 3))
        want = np.array([rng.choice(30, k, replace=False) for _ in range(8)])
        found = np.array([np.concatenate([rng.choice(30, k, replace=False), -np.ones(extra, int)]) for _ in range(8)])
        found[rng.random(found.shape) < 0.2] = -1  # short results are padded with -1
        ref = np.mean([len(set(f[:k].tolist()) & set(t.tolist())) / k for f, t in zip(found, want, strict=True)])
        assert truth.recall(found, want) == pytest.approx(ref, abs=1e-12)
    assert truth.recall(np.array([[1, 2, 3]]), np.array([[3, 4, 1]])) == pytest.approx(2 / 3)


# --- timing ----------------------------------------------------------------------------------------


class FakeClock:
    """``perf_counter`` that moves only when a timed function says how long it took."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


@pytest.fixture
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(timing, "perf_counter", c)
    monkeypatch.setattr(timing, "sleep", c.sleep)
    return c


def test_median_seconds_is_the_median_of_the_timed_calls(clock):
    durations = iter([100.0, 3.0, 1.0, 2.0])  # the first is the warm-up

    def fn():
        clock.now += next(durations)

    assert timing.median_seconds(fn, 3, warmup=1) == 2.0
    with pytest.raises(ValueError, match="repeat"):
        timing.median_seconds(fn, 0)


def test_round_robin_interleaves_alternating_the_order(clock):
    calls, befores = [], []

    def method(name, seconds):
        def fn():
            calls.append(name)
            clock.now += seconds

        return fn

    times = timing.round_robin(
        {"a": method("a", 1.0), "b": method("b", 2.0), "c": method("c", 3.0)},
        3,
        before=lambda: befores.append(len(calls)),
    )
    warm, timed = calls[:3], calls[3:]
    assert warm == ["a", "b", "c"]
    assert timed == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]
    assert befores == list(range(3, 12))  # before every timed call, none before the warm-ups
    assert clock.slept == [0.05] * 9
    assert times == {"a": [1.0] * 3, "b": [2.0] * 3, "c": [3.0] * 3}
    assert timing.medians({"x": [5.0, 1.0, 3.0]}) == {"x": 3.0}


@pytest.mark.parametrize("threads", [1, 3])
def test_one_query_per_call_searches_every_row_once_from_the_threads(threads):
    queries = np.arange(20, dtype=np.float32).reshape(10, 2)
    seen, callers = [], set()
    lock = threading.Lock()

    def search_one(row):
        assert row.shape == (2,)
        with lock:
            seen.append(int(row[0]) // 2)
            callers.add(threading.current_thread())  # the object: idents are reused

    timing.one_query_per_call(search_one, queries, threads)
    assert sorted(seen) == list(range(10))
    if threads == 1:
        assert callers == {threading.current_thread()}  # no thread started for one
    else:
        assert len(callers) == threads and threading.current_thread() not in callers


# --- data ------------------------------------------------------------------------------------------


def test_index_test_data_is_the_mixture_its_floors_were_set_on():
    from support.index_data import mixture

    for n, d, seed in [(3000, 48, 1), (37, 48, 2), (5, 16, 0)]:
        rng = np.random.default_rng(seed)
        basis = rng.standard_normal((8, d))
        centers = rng.standard_normal((32, 8)) * 3.0
        z = centers[rng.integers(0, 32, n)] + rng.standard_normal((n, 8))
        want = (z @ basis + 0.1 * rng.standard_normal((n, d))).astype(np.float32)
        np.testing.assert_array_equal(mixture(n, d, seed=seed), want)


def test_gaussian_mixture_has_the_intrinsic_dimension_and_noise_it_is_given():
    shape = {"clusters": 20, "intrinsic": 5, "centre_scale": 2.0, "spread": 0.5, "basis_scale": 0.3}
    clean, _ = data.gaussian_mixture(4000, 40, noise=0.0, seed=3, **shape)
    sv = np.linalg.svd(clean.astype(np.float64), compute_uv=False)
    assert sv[5] < 1e-5 * sv[0]  # rank 5
    noisy, _ = data.gaussian_mixture(4000, 40, noise=0.2, seed=3, **shape)
    assert noisy.dtype == np.float32
    # Outside the 5 latent directions only the isotropic noise is left: variance 0.2^2 each.
    x = noisy.astype(np.float64)
    sv = np.linalg.svd(x - x.mean(0), compute_uv=False)
    outside = (sv[5:] ** 2).sum() / (len(x) * (40 - 5))
    assert outside == pytest.approx(0.04, rel=0.1)
    # No spread, no noise: every point is one of the centres.
    centres, _ = data.gaussian_mixture(500, 8, clusters=7, intrinsic=3, centre_scale=1.0, spread=0.0, noise=0.0)
    assert len(np.unique(centres, axis=0)) == 7


def test_gaussian_mixture_draws_the_same_numbers_in_blocks(monkeypatch):
    shape = dict(clusters=9, queries=33, seed=5, **data.BENCH_MIXTURE)
    base, queries = data.gaussian_mixture(1000, 12, **shape)
    monkeypatch.setattr(data, "_ROWS_PER_DRAW", 7)
    base_b, queries_b = data.gaussian_mixture(1000, 12, **shape)
    np.testing.assert_array_equal(base, base_b)
    np.testing.assert_array_equal(queries, queries_b)
    assert queries.shape == (33, 12)
    assert not (data.gaussian_mixture(1000, 12, **{**shape, "seed": 6})[0] == base).all()


def test_synthetic_is_the_benchmark_mixture():
    s = data.synthetic(2000, 16, 30, queries=40)
    assert (s.name, s.metric, s.base.shape, s.queries.shape) == ("synthetic GMM (2k x 16)", "l2", (2000, 16), (40, 16))
    base, q = data.gaussian_mixture(2000, 16, clusters=30, queries=40, seed=1, **data.BENCH_MIXTURE)
    np.testing.assert_array_equal(s.base, base)
    np.testing.assert_array_equal(s.queries, q)


@pytest.mark.skipif(not data.BIBLE_E5.exists(), reason=f"{data.BIBLE_E5} not present")
def test_bible_e5_holds_out_english_queries():
    full = data.bible_e5(held_out=500)
    z = np.load(data.BIBLE_E5)
    n = len(z["en_web"])
    assert full.metric == "ip" and full.base.dtype == full.queries.dtype == np.float32
    assert full.base.shape == (2 * n - 500, 384) and full.queries.shape == (500, 384)
    np.testing.assert_array_equal(full.base[:n], z["es_rv1909"].astype(np.float32))
    base_rows = {r.tobytes() for r in full.base}
    small = data.bible_e5(held_out=500, base_sample=1000)
    np.testing.assert_array_equal(small.queries, full.queries)
    assert small.base.shape == (1000, 384) and all(r.tobytes() in base_rows for r in small.base)


def test_bible_corpus_bundled_and_shared():
    bundled = data.bible_corpus(n=20)
    assert bundled == load_bible_en_es(20)
    if not data.BIBLE_TEXT.exists():
        pytest.skip(f"{data.BIBLE_TEXT} not present")
    full = data.bible_corpus(data.BIBLE_TEXT)
    assert len(full) == len(full.en) == len(full.es) == 31_077
    assert full.keys[0] == ("Genesis", 1, 1) or isinstance(full.keys[0][0], str)
    assert len(data.bible_corpus(data.BIBLE_TEXT, n=5)) == 5


# --- memory ----------------------------------------------------------------------------------------


def test_peak_rss_sees_a_block_that_allocates_and_frees():
    with memory.PeakRss() as mem:
        buf = np.ones(64 << 20, np.uint8)  # touched: resident
        del buf
    assert mem.grown >= 60 << 20
    assert mem.kept < 16 << 20
    assert memory.rss_bytes() > 0 and memory.available_bytes() > 0


def test_read_bandwidth_and_cache_helpers(monkeypatch):
    for threads in (1, 2):
        gbs = memory.read_bandwidth(1 << 20, threads=threads, repeat=1)
        assert np.isfinite(gbs) and gbs > 0
    with pytest.raises(ValueError, match="threads"):
        memory.read_bandwidth(1 << 20, threads=0)
    assert memory.last_level_cache_bytes() > 0
    monkeypatch.setattr(memory, "last_level_cache_bytes", lambda: 1 << 20)
    evict = memory.EvictCache()
    assert evict.buf.nbytes == int(1.5 * (1 << 20)) // 4 * 4
    evict()


# --- peers -----------------------------------------------------------------------------------------

PEERS = [
    ("mlvec", lambda m: peers.MlvecPeer("HNSW16_100", m), 64),
    ("mlvec", lambda m: peers.MlvecPeer("IVF16,SQ8", m), 16),
    ("mlvec", lambda m: peers.MlvecPeer("Flat", m), None),
    ("faiss", lambda m: peers.FaissPeer("HNSW16", m, ef_construction=100), 64),
    ("faiss", lambda m: peers.FaissPeer("IVF16,PQ16x4fs,RFlat", m), 16),
    ("hnswlib", lambda m: peers.HnswlibPeer(m, 16, 100), 64),
    ("usearch", lambda m: peers.UsearchPeer(m, 16), 64),
]


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("lib, make, value", PEERS, ids=[f"{p[0]}-{i}" for i, p in enumerate(PEERS)])
def test_every_peer_builds_searches_and_measures(lib, make, value, metric):
    if lib != "mlvec" and importlib.util.find_spec(lib) is None:
        pytest.skip(f"{lib} not installed")
    s = data.synthetic(2000, 32, 20, queries=30)
    base, queries = s.base, s.queries
    _, want = truth.exact_knn(base, queries, 10, metric)
    peer = make(metric)
    assert peer.lib == lib
    peer.build(base, threads=2)
    if value is None:
        assert peer.knob == ""
        with pytest.raises(ValueError, match="no search parameter"):
            peer.tune(8)
    else:
        peer.tune(value)
    peer.set_threads(1)
    ids = np.asarray(peer.search(queries, 10))
    assert ids.shape == (30, 10) and np.issubdtype(ids.dtype, np.integer)
    assert truth.recall(ids, want) >= 0.8  # the adapters at work, not the libraries at their best
    np.testing.assert_array_equal(peer.search_one(queries[3], 10), ids[3])
    assert peer.bytes() > 0
    m = peers.measure(peer, queries, want, 10, batch_threads=[1, 2], single_threads=[2], single_queries=7, repeat=1)
    assert set(m) == {"recall", "batch1", "batch2", "single2"}
    assert m["recall"] == truth.recall(ids, want) and all(m[key] > 0 for key in ("batch1", "batch2", "single2"))
    peer.release()
    assert peer.index is None


def test_peers_compare_ip_and_l2_only():
    with pytest.raises(ValueError, match="metric"):
        peers.MlvecPeer("Flat", "cosine")
