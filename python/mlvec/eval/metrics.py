"""Ranking metrics (recall@k, MRR@k, nDCG@k), vectorised over queries with numpy.

A *run* is either a score matrix ``[n_queries, n_docs]`` (higher is better; ties go to the lower
doc id) or ranked doc ids ``int [n_queries, depth]`` (best first; ``-1`` pads short lists).
*Relevance* is either a dense graded matrix ``[n_queries, n_docs]`` (grade > 0 is relevant) or,
per query, an iterable of relevant doc ids (grade 1) or a ``{doc_id: grade}`` dict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

Relevance = np.ndarray | Sequence[Iterable[int] | Mapping[int, float]]

__all__ = ["ranked_ids", "recall_at_k", "mrr_at_k", "ndcg_at_k", "evaluate"]


def ranked_ids(scores: np.ndarray, k: int) -> np.ndarray:
    """Top-``k`` doc ids of each row of ``scores [nq, nd]``, best first, ``int64 [nq, min(k, nd)]``.

    Ties are broken towards the lower doc id (a stable sort on the negated scores).
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [n_queries, n_docs], got shape {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    k = min(_check_k(k), scores.shape[1])
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        # argpartition does not keep ties stable: widen to every doc tied with the k-th score.
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
        if (np.sum(scores >= kth, axis=1) > k).any():
            return np.argsort(-scores, axis=1, kind="stable")[:, :k].astype(np.int64)
        sub = np.take_along_axis(scores, part, axis=1)
        order = np.lexsort((part, -sub), axis=1)
        return np.take_along_axis(part, order, axis=1).astype(np.int64)
    return np.argsort(-scores, axis=1, kind="stable").astype(np.int64)


def _check_k(k: int) -> int:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _as_ranked(run: np.ndarray, k: int, ranked: bool | None) -> np.ndarray:
    run = np.asarray(run)
    if run.ndim != 2:
        raise ValueError(f"run must be 2-D (scores [nq, nd] or ranked ids [nq, depth]), got shape {run.shape}")
    if ranked is None:
        ranked = np.issubdtype(run.dtype, np.integer)
    if ranked:
        if not np.issubdtype(run.dtype, np.integer):
            raise TypeError(f"ranked ids must be integers, got dtype {run.dtype}")
        return run[:, :k].astype(np.int64)
    return ranked_ids(run, k)


def _gains(ids: np.ndarray, relevance: Relevance) -> tuple[np.ndarray, np.ndarray]:
    """``(gain of each ranked id [nq, depth], sorted gains of each query's judged docs [nq, max_rel])``."""
    nq = ids.shape[0]
    if isinstance(relevance, np.ndarray):
        rel = relevance
        if rel.ndim != 2 or rel.shape[0] != nq:
            raise ValueError(f"relevance must be [n_queries={nq}, n_docs], got shape {rel.shape}")
        if ids.size and ids.max() >= rel.shape[1]:
            raise ValueError(f"run has doc id {int(ids.max())} but relevance covers {rel.shape[1]} docs")
        valid = ids >= 0
        gains = np.where(valid, rel[np.arange(nq)[:, None], np.where(valid, ids, 0)], 0.0)
        ideal = -np.sort(-np.clip(rel, 0, None), axis=1)
        return np.clip(gains, 0, None).astype(np.float64), ideal.astype(np.float64)
    if len(relevance) != nq:
        raise ValueError(f"relevance has {len(relevance)} queries, run has {nq}")
    q_idx, d_idx, grade = [], [], []
    for q, judged in enumerate(relevance):
        items = judged.items() if isinstance(judged, Mapping) else ((d, 1.0) for d in judged)
        for d, g in items:
            if g > 0:
                q_idx.append(q)
                d_idx.append(int(d))
                grade.append(float(g))
    if not q_idx:
        return np.zeros(ids.shape, dtype=np.float64), np.zeros((nq, 0), dtype=np.float64)
    q_arr = np.array(q_idx, dtype=np.int64)
    d_arr = np.array(d_idx, dtype=np.int64)
    g_arr = np.array(grade, dtype=np.float64)
    width = int(max(ids.max(initial=-1), d_arr.max(initial=-1))) + 2
    # Look up (query, doc) pairs by a combined key with a binary search: no dense [nq, nd] matrix.
    keys = q_arr * width + d_arr
    order = np.argsort(keys, kind="stable")
    keys, g_sorted = keys[order], g_arr[order]
    probe = np.arange(nq)[:, None] * width + np.where(ids >= 0, ids, width - 1)
    pos = np.minimum(np.searchsorted(keys, probe), len(keys) - 1)
    gains = np.where((keys[pos] == probe) & (ids >= 0), g_sorted[pos], 0.0)
    counts = np.bincount(q_arr, minlength=nq)
    ideal = np.zeros((nq, int(counts.max(initial=0))), dtype=np.float64)
    by_q = np.lexsort((-g_arr, q_arr))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    col = np.arange(len(by_q)) - np.repeat(starts, counts)
    ideal[q_arr[by_q], col] = g_arr[by_q]
    return gains.astype(np.float64), ideal


def _reduce(values: np.ndarray, reduce: str) -> np.ndarray | float:
    if reduce == "mean":
        return float(values.mean()) if values.size else 0.0
    if reduce == "none":
        return values
    raise ValueError(f"reduce must be 'mean' or 'none', got {reduce!r}")


def recall_at_k(run: np.ndarray, relevance: Relevance, k: int, *, ranked: bool | None = None,
                reduce: str = "mean") -> np.ndarray | float:
    """Share of each query's relevant docs found in its top ``k`` (0 for a query with none).

    Args:
        run: scores ``[nq, nd]`` or ranked ids ``int [nq, depth]`` (``ranked`` forces the reading;
            by default integer arrays are ranked ids).
        relevance: dense ``[nq, nd]`` grades, or per query relevant ids / ``{id: grade}``.
        k: cut-off.
        reduce: ``"mean"`` (float) or ``"none"`` (``float64 [nq]``).

    Example:
        >>> recall_at_k(np.array([[0.9, 0.1, 0.5]]), [[2]], k=2)
        1.0
    """
    k = _check_k(k)
    gains, ideal = _gains(_as_ranked(run, k, ranked), relevance)
    n_rel = (ideal > 0).sum(axis=1)
    hits = (gains > 0).sum(axis=1)
    return _reduce(np.where(n_rel > 0, hits / np.maximum(n_rel, 1), 0.0), reduce)


def mrr_at_k(run: np.ndarray, relevance: Relevance, k: int, *, ranked: bool | None = None,
             reduce: str = "mean") -> np.ndarray | float:
    """Reciprocal rank of the first relevant doc within the top ``k`` (0 if none). Arguments as :func:`recall_at_k`."""
    k = _check_k(k)
    gains, _ = _gains(_as_ranked(run, k, ranked), relevance)
    hit = gains > 0
    first = np.argmax(hit, axis=1)
    return _reduce(np.where(hit.any(axis=1), 1.0 / (first + 1), 0.0), reduce)


def ndcg_at_k(run: np.ndarray, relevance: Relevance, k: int, *, ranked: bool | None = None,
              gain: str = "linear", reduce: str = "mean") -> np.ndarray | float:
    """Normalised discounted cumulative gain at ``k`` (Järvelin & Kekäläinen).

    ``DCG@k = sum_i g_i / log2(i + 1)`` over ranks ``i = 1..k``, with ``g = grade`` (``gain="linear"``,
    as trec_eval and ranx's ``ndcg``) or ``2**grade - 1`` (``"exponential"``, Burges); divided by
    the DCG of the ideal ordering of the query's judged docs. 0 for a query with no relevant doc.
    """
    k = _check_k(k)
    gains, ideal = _gains(_as_ranked(run, k, ranked), relevance)
    if gain == "exponential":
        gains, ideal = np.expm1(gains * np.log(2)), np.expm1(ideal * np.log(2))
    elif gain != "linear":
        raise ValueError(f"gain must be 'linear' or 'exponential', got {gain!r}")
    ideal = ideal[:, :k]
    disc = 1.0 / np.log2(np.arange(2, max(gains.shape[1], ideal.shape[1]) + 2))
    dcg = (gains * disc[: gains.shape[1]]).sum(axis=1)
    idcg = (ideal * disc[: ideal.shape[1]]).sum(axis=1)
    return _reduce(np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1.0), 0.0), reduce)


def evaluate(run: np.ndarray, relevance: Relevance, ks: Sequence[int] = (1, 10), *,
             ranked: bool | None = None) -> dict[str, float]:
    """Mean ``recall@k``, ``mrr@k`` and ``ndcg@k`` for every ``k`` in ``ks``, as a dict.

    Example:
        >>> evaluate(scores, [[i] for i in range(len(scores))], ks=(1, 10))
        {'recall@1': ..., 'mrr@1': ..., 'ndcg@1': ..., 'recall@10': ..., ...}
    """
    depth = max(_check_k(k) for k in ks)
    ids = _as_ranked(run, depth, ranked)
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = float(recall_at_k(ids[:, :k], relevance, k, ranked=True))
        out[f"mrr@{k}"] = float(mrr_at_k(ids[:, :k], relevance, k, ranked=True))
        out[f"ndcg@{k}"] = float(ndcg_at_k(ids[:, :k], relevance, k, ranked=True))
    return out
