"""Ranking metrics against ranx (an independent implementation) on random runs."""

import numpy as np
import pytest

from mlvec.eval import evaluate, mrr_at_k, ndcg_at_k, ranked_ids, recall_at_k

ranx = pytest.importorskip("ranx")


def _random_case(seed, nq=40, nd=60, graded=True):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((nq, nd))
    rel = np.zeros((nq, nd))
    for q in range(nq):
        n_rel = rng.integers(1, 6)
        docs = rng.choice(nd, n_rel, replace=False)
        rel[q, docs] = rng.integers(1, 4, n_rel) if graded else 1
    return scores, rel


def _ranx_scores(scores, rel, metrics):
    # Zero-padded ids: ranx reports per-query values in sorted id order.
    qrels = ranx.Qrels(
        {f"q{q:04d}": {f"d{d:04d}": int(rel[q, d]) for d in np.flatnonzero(rel[q])} for q in range(len(rel))}
    )
    run = ranx.Run(
        {f"q{q:04d}": {f"d{d:04d}": float(s) for d, s in enumerate(row)} for q, row in enumerate(scores)}
    )
    out = ranx.evaluate(qrels, run, metrics, return_mean=False)
    return {m: np.asarray(out[m], dtype=np.float64) for m in metrics}


@pytest.mark.parametrize("seed", [0, 1])
def test_metrics_match_ranx(seed):
    scores, rel = _random_case(seed)
    ks = (1, 5, 10, 60)
    names = [f"{m}@{k}" for k in ks for m in ("recall", "mrr", "ndcg")] + ["ndcg_burges@10"]
    ref = _ranx_scores(scores, rel, names)
    for k in ks:
        for fn, m in ((recall_at_k, "recall"), (mrr_at_k, "mrr"), (ndcg_at_k, "ndcg")):
            ours = fn(scores, rel, k, reduce="none")
            np.testing.assert_allclose(ours, ref[f"{m}@{k}"], rtol=1e-9, atol=1e-12, err_msg=f"{m}@{k}")
    ours = ndcg_at_k(scores, rel, 10, gain="exponential", reduce="none")
    np.testing.assert_allclose(ours, ref["ndcg_burges@10"], rtol=1e-9, atol=1e-12)


def test_relevance_forms_agree():
    scores, rel = _random_case(3)
    as_dicts = [{int(d): float(rel[q, d]) for d in np.flatnonzero(rel[q])} for q in range(len(rel))]
    as_ids = [np.flatnonzero(rel[q]).tolist() for q in range(len(rel))]
    ids = ranked_ids(scores, 10)
    for k in (1, 3, 10):
        assert ndcg_at_k(scores, rel, k) == pytest.approx(ndcg_at_k(ids, as_dicts, k))
        assert recall_at_k(scores, rel, k) == pytest.approx(recall_at_k(ids, as_ids, k))
        assert mrr_at_k(scores, rel > 0, k) == pytest.approx(mrr_at_k(ids, as_ids, k))


def test_ranked_ids_match_full_sort_and_break_ties_to_lower_id():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(30, 50)).astype(np.float32)  # many ties
    for k in (1, 7, 50):
        expected = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(ranked_ids(scores, k), expected)
    distinct = rng.standard_normal((20, 100))
    np.testing.assert_array_equal(ranked_ids(distinct, 9), np.argsort(-distinct, axis=1)[:, :9])


def test_evaluate_and_padding():
    ids = np.array([[3, 1, -1], [0, 2, 1]])
    rel = [[1], [5]]
    out = evaluate(ids, rel, ks=(1, 3))
    assert out["recall@1"] == 0.0 and out["recall@3"] == 0.5
    assert out["mrr@3"] == pytest.approx(0.25)
    assert recall_at_k(ids, [[], []], 3) == 0.0


def test_bad_input():
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k(np.zeros((2, 3)), [[0], [1]], 0)
    with pytest.raises(ValueError, match="2-D"):
        recall_at_k(np.zeros(3), [[0]], 1)
    with pytest.raises(ValueError, match="relevance"):
        recall_at_k(np.zeros((2, 3)), np.zeros((3, 3)), 1)
    with pytest.raises(ValueError, match="NaN"):
        ranked_ids(np.array([[np.nan, 1.0]]), 1)
    with pytest.raises(ValueError, match="queries"):
        mrr_at_k(np.zeros((2, 3)), [[0]], 1)


def test_search_benchmark_quick_mode_runs():
    from support.scripts import load_script

    mod = load_script("benches/bench_retrieval_search.py")
    rows = mod.main(["--quick"])  # also asserts the MaxSim rerank equals the numpy reference
    assert all(qps > 0 for _, _, qps in rows)


def test_exact_search_matches_fp64_reference():
    from mlvec.eval import exact_search

    rng = np.random.default_rng(3)
    q = rng.standard_normal((40, 24)).astype(np.float32)
    d = rng.standard_normal((300, 24)).astype(np.float32)
    scores, ids = exact_search(q, d, 12)
    ref = q.astype(np.float64) @ d.astype(np.float64).T
    ref_ids = np.argsort(-ref, axis=1, kind="stable")[:, :12]
    assert ids.dtype == np.int64 and ids.shape == (40, 12)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, np.take_along_axis(ref, ref_ids, axis=1), rtol=1e-5, atol=1e-4)
    # k beyond the corpus is clipped; a dimension mismatch is an error.
    assert exact_search(q, d[:5], 10)[1].shape == (40, 5)
    with pytest.raises(ValueError, match="dim"):
        exact_search(q, d[:, :10], 3)


class _RandomEncoder:
    """Deterministic stand-in encoder: text -> fixed random unit vector (near copies for 'q:' queries)."""

    dim = 32

    def encode(self, texts, is_query=False, **_):
        out = []
        for t in texts:
            rng = np.random.default_rng(int(t.split()[-1]))
            v = rng.standard_normal(self.dim)
            if is_query:
                v = v + 2.0 * np.random.default_rng(10_000 + int(t.split()[-1])).standard_normal(self.dim)
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)


def test_runner_factory_flat_row_equals_exact():
    from mlvec.eval import run_benchmark

    docs = [f"doc {i}" for i in range(200)]
    queries = [f"q {i}" for i in range(200)]
    res = run_benchmark(_RandomEncoder(), docs, queries, [[i] for i in range(200)], methods=["exact"],
                        factory="Flat", repeats=1, show_progress=False)
    exact, flat = res.methods
    assert flat.method == "index:Flat" and flat.params["factory"] == "Flat"
    assert flat.metrics == pytest.approx(exact.metrics)
    assert 0.2 < exact.metrics["recall@10"] < 1.0  # the noise makes the task neither trivial nor hopeless
    assert flat.index_bytes >= 200 * 32 * 4
    with pytest.raises(ValueError):
        run_benchmark(_RandomEncoder(), docs, queries, [[i] for i in range(200)], methods=["exact"],
                      factory="PQ5", repeats=1, show_progress=False)  # 5 does not divide 32
