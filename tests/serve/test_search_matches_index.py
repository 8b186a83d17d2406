"""Search over HTTP returns what ``mlvec.index`` returns in-process on the same data: the same ids
and the same float32 scores (exact search is also checked against a float64 numpy reference)."""

from __future__ import annotations

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")

DIM = 32
N = 3000


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((30, DIM))
    x = (centers[rng.integers(0, 30, N)] + 0.6 * rng.standard_normal((N, DIM))).astype(np.float32)
    q = (centers[rng.integers(0, 30, 40)] + 0.6 * rng.standard_normal((40, DIM))).astype(np.float32)
    ids = rng.permutation(10 * N)[:N].astype(np.int64)  # sparse, unordered ids
    return x, q, ids


def fill(c: httpx.Client, name: str, index: str, metric: str, x, ids, train: bool) -> None:
    c.post("/v1/collections", json={"name": name, "dim": DIM, "index": index, "metric": metric}).raise_for_status()
    if train:
        c.post(f"/v1/collections/{name}/train", json={"vectors": x.tolist()}).raise_for_status()
    c.post(f"/v1/collections/{name}/points", json={"ids": ids.tolist(), "vectors": x.tolist()}).raise_for_status()


def http_search(c: httpx.Client, name: str, q, k: int, params: dict | None = None, filter_ids=None):
    searches = [{"vector": v.tolist(), "k": k, "with_payload": False,
                 **({"params": params} if params else {}),
                 **({"filter": {"ids": filter_ids}} if filter_ids is not None else {})} for v in q]
    results = c.post(f"/v1/collections/{name}/search/batch", json={"searches": searches}).json()["results"]
    ids = np.full((len(q), k), -1, dtype=np.int64)
    scores = np.full((len(q), k), -np.inf, dtype=np.float32)
    for row, r in enumerate(results):
        for j, h in enumerate(r["hits"]):
            ids[row, j] = h["id"]
            scores[row, j] = np.float32(h["score"])
    return scores, ids


@pytest.mark.parametrize(("index", "metric", "params"), [
    ("Flat", "ip", None),
    ("IVF16,SQ8,rescore", "l2", {"nprobe": 4, "rescore": 2}),
    ("HNSW16", "cosine", {"ef_search": 40}),
])
def test_http_equals_in_process(server_factory, data, index, metric, params):
    from mlvec.index import index_factory, load

    x, q, ids = data
    srv = server_factory("--max-body-mb", "64", "--max-batch", "4096")
    name = index.split(",")[0].lower()
    with httpx.Client(base_url=srv.url, timeout=120) as c:
        fill(c, name, index, metric, x, ids, train=index.startswith("IVF"))
        scores, got = http_search(c, name, q, 10, params)
        c.post(f"/v1/collections/{name}/snapshot").raise_for_status()
        allow = ids[::3].tolist()
        f_scores, f_got = http_search(c, name, q[:5], 10, params, filter_ids=allow)
        single = c.post(f"/v1/collections/{name}/search", json={"vector": q[0].tolist(), "k": 10,
                                                                **({"params": params} if params else {})}).json()
    kw = dict(params or {})
    served = load(next((srv.data / "collections" / name / "snapshots").iterdir()) / "index.mlvec")
    ref_scores, ref_ids = served.search(q, 10, **kw)
    np.testing.assert_array_equal(got, ref_ids)
    np.testing.assert_array_equal(scores, ref_scores)
    assert [h["id"] for h in single["hits"]] == ref_ids[0].tolist()
    fr_scores, fr_ids = served.search(q[:5], 10, allow_ids=np.array(allow), **kw)
    np.testing.assert_array_equal(f_got, fr_ids)
    np.testing.assert_array_equal(f_scores, fr_scores)
    if not index.startswith("HNSW"):  # built the same way in-process: the same index
        own = index_factory(DIM, index, metric=metric)
        if not own.is_trained:
            own.train(x)
        own.add(x, ids)
        own_scores, own_ids = own.search(q, 10, **kw)
        np.testing.assert_array_equal(got, own_ids)
        np.testing.assert_array_equal(scores, own_scores)
    if index == "Flat":  # and exact search is exact
        exact = q.astype(np.float64) @ x.astype(np.float64).T
        order = np.argsort(-exact, axis=1, kind="stable")[:, :10]
        np.testing.assert_array_equal(got, ids[order])
        np.testing.assert_allclose(scores, np.take_along_axis(exact, order, axis=1), rtol=1e-5, atol=1e-4)
