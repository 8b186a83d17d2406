"""Ground truth: exact nearest neighbours in float64, and recall@k against them.

Both rank and count with ``mlvec.eval``'s metrics (``ranked_ids``: best first, ties to the lower
id; ``recall_at_k``), so a benchmark's recall is the same number the evaluation module reports.
"""

from __future__ import annotations

import numpy as np

from mlvec.eval import ranked_ids, recall_at_k

METRICS = ("ip", "l2", "cosine")
# float64 scores held at once (256 MiB): the database is scored in blocks of rows this size
# allows for all the queries, each block's top k merged into the running top k.
_BLOCK_SCORES = 1 << 25


def exact_knn(
    db: np.ndarray, queries: np.ndarray, k: int, metric: str = "ip", *, block_scores: int = _BLOCK_SCORES
) -> tuple[np.ndarray, np.ndarray]:
    """The exact top ``k`` of ``db`` ``[n, d]`` for each of ``queries`` ``[nq, d]``, in float64.

    Scores: the inner product (``"ip"``), the cosine (``"cosine"``) or minus the squared distance
    (``"l2"``), higher first, ties to the smaller row index.

    Returns:
        ``(scores float64 [nq, min(k, n)], row indices int64 [nq, min(k, n)])``.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if db.ndim != 2 or queries.ndim != 2 or db.shape[1] != queries.shape[1]:
        raise ValueError(f"db [n, d] and queries [nq, d] must share d, got {db.shape} and {queries.shape}")
    q64 = _prepared(queries, metric)
    q_sq = (q64**2).sum(1)[:, None]
    n = db.shape[0]
    rows = max(k, block_scores // max(len(q64), 1))
    best_s = np.empty((len(q64), 0))
    best_i = np.empty((len(q64), 0), np.int64)
    for lo in range(0, n, rows):
        db64 = _prepared(db[lo : lo + rows], metric)
        s = q64 @ db64.T
        if metric == "l2":
            s = 2 * s - q_sq - (db64**2).sum(1)[None, :]
        top = ranked_ids(s, k)
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], axis=1)
        cand_i = np.concatenate([best_i, top + lo], axis=1)
        order = np.lexsort((cand_i, -cand_s), axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
    return best_s, best_i


def _prepared(x: np.ndarray, metric: str) -> np.ndarray:
    x64 = np.asarray(x, dtype=np.float64)
    if metric == "cosine":
        x64 = x64 / np.maximum(np.linalg.norm(x64, axis=1, keepdims=True), 1e-300)
    return x64


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """recall@k with ``k = truth.shape[1]``: the mean share of each row of ``truth`` (true ids)
    among the first ``k`` ids of the same row of ``found`` (``-1`` pads a short result)."""
    truth = np.asarray(truth)
    return float(recall_at_k(np.asarray(found), list(truth), truth.shape[1], ranked=True))
