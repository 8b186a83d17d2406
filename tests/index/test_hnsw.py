"""HNSW through mlvec.index against exact numpy search: recall, scores, filters, removal, threads, bad input."""

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mlvec.index as mi

N, D, NQ, K = 4000, 32, 100, 10

# The graph's vector storage, as a description suffix.
STORAGE = {"f32": "", "sq8": ",SQ8", "sq8_f16": ",SQ8,rescore16"}


def graph(dim, metric="ip", m=16, efc=None, storage="f32", train=None):
    """An HNSW index: ``m`` links per node, ``efc`` candidates while inserting (default 200),
    trained on ``train`` when its storage learns a range."""
    kind = f"HNSW{m}" + (f"_{efc}" if efc is not None else "") + STORAGE[storage]
    index = mi.index_factory(dim, kind, metric=metric)
    if not index.is_trained:
        index.train(train)
    return index


def mixture(n, d, clusters, seed, centres_seed=0):
    """Gaussian mixture: `clusters` centres shared across calls with the same `centres_seed`."""
    centres = np.random.default_rng(centres_seed).normal(size=(clusters, d)) * 2.0
    rng = np.random.default_rng(seed)
    return (centres[rng.integers(0, clusters, n)] + rng.normal(size=(n, d)) * 0.6).astype(np.float32)


def exact_scores(x, q, metric):
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        x64 = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
        q64 = q64 / np.linalg.norm(q64, axis=1, keepdims=True)
    if metric == "l2":
        return -((q64[:, None, :] - x64[None]) ** 2).sum(-1)
    return q64 @ x64.T


def exact_topk(x, ids, q, k, metric, mask=None):
    s = exact_scores(x, q, metric)
    if mask is not None:
        s[:, ~mask] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    out = ids[order]
    if mask is not None:
        out = np.where(np.take_along_axis(s, order, 1) == -np.inf, -1, out)
    return out


def recall(got, want):
    hits = sum(len(set(g[g >= 0]) & set(w[w >= 0])) for g, w in zip(got, want, strict=True))
    return hits / max(1, sum((w >= 0).sum() for w in want))


@pytest.fixture(scope="module")
def data():
    x = mixture(N, D, 40, seed=1)
    q = mixture(NQ, D, 40, seed=2)
    ids = np.arange(N, dtype=np.int64) * 7 + 1_000_000_000_000
    return x, q, ids


@pytest.mark.parametrize("storage", ["f32", "sq8", "sq8_f16"])
@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_recall_against_numpy(data, metric, storage):
    x, q, ids = data
    index = graph(D, metric, m=16, efc=100, storage=storage, train=x)
    index.add(x, ids)
    assert index.ids().tolist() == ids.tolist()
    assert len(index) == N and index.dim == D
    scores, got = index.search(q, K, ef_search=64)
    assert scores.shape == got.shape == (NQ, K)
    assert scores.dtype == np.float32 and got.dtype == np.int64
    want = exact_topk(x, ids, q, K, metric)
    r = recall(got, want)
    assert r >= (0.95 if storage == "f32" else 0.9), r
    assert np.all(np.diff(scores, axis=1) <= 0)
    if storage != "sq8":
        # Returned scores are the metric's own values for the returned ids: of the float32
        # vectors, or of their float16 copies (normalised first for cosine) after re-scoring.
        xs = x
        if storage == "sq8_f16":
            if metric == "cosine":
                xs = x / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
            xs = xs.astype(np.float16)
        ref = exact_scores(xs, q, metric)
        pos = np.searchsorted(ids, got)
        np.testing.assert_allclose(scores, np.take_along_axis(ref, pos, 1), rtol=1e-4, atol=1e-3)


def test_default_ids_and_incremental_add(data):
    x, q, _ = data
    index = graph(D, "l2", m=12, efc=80)
    index.add(x[: N // 2])
    assert index.ids().tolist() == list(range(N // 2))
    index.add(x[N // 2 :])
    assert index.ids()[N // 2 :].tolist() == list(range(N // 2, N))
    _, got = index.search(q, K, ef_search=64)
    assert recall(got, exact_topk(x, np.arange(N), q, K, "l2")) >= 0.95


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.01, 0.001])
def test_filters_keep_recall(data, fraction):
    x, q, ids = data
    index = graph(D, "l2", m=16, efc=100)
    index.add(x, ids)
    rng = np.random.default_rng(3)
    mask = rng.random(N) < fraction
    allow = ids[mask]
    _, got = index.search(q, K, ef_search=64, allow_ids=allow)
    assert np.isin(got[got >= 0], allow).all()
    want = exact_topk(x, ids, q, K, "l2", mask)
    assert recall(got, want) >= 0.95
    # Padding exactly where fewer than k are allowed.
    assert ((got >= 0).sum(1) == (want >= 0).sum(1)).all()


def test_allow_list_with_unknown_ids_and_empty(data):
    x, q, ids = data
    index = graph(D, "ip")
    index.add(x[:100], ids[:100])
    s, got = index.search(q[:3], 5, allow_ids=np.array([ids[3], 5, 17], dtype=np.int64))
    assert (got[:, 0] == ids[3]).all() and (got[:, 1:] == -1).all() and np.isneginf(s[:, 1:]).all()
    _, got = index.search(q[:3], 5, allow_ids=np.array([], dtype=np.int64))
    assert (got == -1).all()


def test_remove_frees_memory_and_keeps_recall(data):
    x, q, ids = data
    index = graph(D, "cosine", m=16, efc=100)
    index.add(x, ids)
    before = index.memory_usage()
    gone = ids[::3]
    assert index.remove(gone) == len(gone)
    assert len(index) == N - len(gone)
    mask = ~np.isin(ids, gone)
    want = exact_topk(x, ids, q, K, "cosine", mask)
    _, got = index.search(q, K, ef_search=96)
    assert not np.isin(got, gone).any()
    assert recall(got, want) >= 0.95
    with pytest.raises(ValueError, match="unknown id"):
        index.remove(gone[:1])
    # Removal re-links the graph and copies it at once: the space is freed.
    assert len(index) == N - len(gone)
    assert index.memory_usage() < before * 0.8
    # A removed id may be added again.
    index.add(x[:1], gone[:1])
    assert index.search(x[:1], 1)[1][0, 0] == gone[0]


def test_concurrent_search_add_remove(data):
    x, q, ids = data
    index = graph(D, "l2", m=12, efc=60)
    index.add(x[:2000], ids[:2000])
    errors, stop = [], threading.Event()
    valid = set(ids.tolist())

    def searcher():
        try:
            while not stop.is_set():
                _, got = index.search(q[:20], K, ef_search=32)
                assert set(got[got >= 0].tolist()) <= valid
                assert (got >= 0).all()
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for lo in range(2000, N, 500):
            index.add(x[lo : lo + 500], ids[lo : lo + 500])
            index.remove(ids[lo - 2000 : lo - 2000 + 100])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    removed = np.concatenate([ids[lo - 2000 : lo - 1900] for lo in range(2000, N, 500)])
    assert len(index) == N - len(removed)
    mask = ~np.isin(ids, removed)
    _, got = index.search(q, K, ef_search=64)
    assert recall(got, exact_topk(x, ids, q, K, "l2", mask)) >= 0.95


def test_bad_input_leaves_index_unchanged(data):
    x, q, ids = data
    index = graph(D, "l2", storage="sq8", train=x[:500])
    index.add(x[:500], ids[:500])
    ref = index.search(q, K)
    bad_nan = x[:2].copy()
    bad_nan[1, 3] = np.nan
    bad_inf = x[:2].copy()
    bad_inf[0, 0] = np.inf
    with pytest.raises(ValueError, match="x"):
        index.add(x[:2, :-1])
    with pytest.raises(ValueError, match="non-finite"):
        index.add(bad_nan)
    with pytest.raises(ValueError, match="non-finite"):
        index.add(bad_inf)
    with pytest.raises(TypeError, match="float32"):
        index.add(x[:2].astype(np.int32))
    with pytest.raises(ValueError, match="duplicate id 5"):
        index.add(x[:2], np.array([5, 5], dtype=np.int64))
    with pytest.raises(ValueError, match=f"duplicate id {ids[0]}"):
        index.add(x[:2], np.array([5, ids[0]], dtype=np.int64))
    with pytest.raises(ValueError, match="non-negative"):
        index.add(x[:2], np.array([5, -3], dtype=np.int64))
    with pytest.raises(ValueError, match="1 ids for 2 vectors"):
        index.add(x[:2], np.array([5], dtype=np.int64))
    with pytest.raises(ValueError, match="unknown id"):
        index.remove(np.array([ids[0], 42], dtype=np.int64))
    with pytest.raises(ValueError, match="given twice"):
        index.remove(np.array([ids[0], ids[0]], dtype=np.int64))
    with pytest.raises(ValueError, match="k"):
        index.search(q, 0)
    with pytest.raises(ValueError, match="ef_search"):
        index.search(q, 3, ef_search=0)
    with pytest.raises(ValueError, match="q"):
        index.search(q[:, :5], 3)
    with pytest.raises(ValueError, match="non-finite"):
        index.search(bad_nan, 3)
    with pytest.raises(ValueError, match="metric"):
        mi.index_factory(D, "HNSW16", metric="hamming")
    with pytest.raises(ValueError, match="Flat or SQ8"):
        mi.index_factory(D, "HNSW16,PQ8")
    with pytest.raises(ValueError, match="M"):
        mi.index_factory(D, "HNSW1")
    assert len(index) == 500
    after = index.search(q, K)
    np.testing.assert_array_equal(after[1], ref[1])
    np.testing.assert_array_equal(after[0], ref[0])


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(1, 300),
    dim=st.integers(2, 40),
    k=st.integers(1, 20),
    metric=st.sampled_from(["ip", "l2", "cosine"]),
    seed=st.integers(0, 2**16),
)
def test_small_indexes_searched_with_large_ef(n, dim, k, metric, seed):
    x = mixture(n, dim, 5, seed, centres_seed=seed + 1)
    q = mixture(4, dim, 5, seed + 7, centres_seed=seed + 1)
    index = graph(dim, metric, m=8, efc=64)
    index.add(x)
    scores, got = index.search(q, k, ef_search=max(n, k))
    kk = min(k, n)
    # Padding exactly past the number of vectors; real scores everywhere before it.
    assert (got[:, kk:] == -1).all() and np.isneginf(scores[:, kk:]).all()
    assert (got[:, :kk] >= 0).all()
    # Returned scores are true scores of the returned ids, best first.
    ref = exact_scores(x, q, metric)
    np.testing.assert_allclose(scores[:, :kk], np.take_along_axis(ref, got[:, :kk], 1), rtol=1e-3, atol=1e-3)
    assert np.all(np.diff(scores[:, :kk], axis=1) <= 1e-6)
    # HNSW does not promise a connected graph on tiny, low-dimensional sets, so ask for high
    # recall rather than exactness (ties between equal scores count as hits).
    kth = np.sort(ref, axis=1)[:, ::-1][:, kk - 1 : kk]
    hit = np.take_along_axis(ref, got[:, :kk], 1) >= kth - 1e-4
    assert hit.mean() >= 0.8, hit.mean()
