"""Clustered test data and an fp64 exact-search reference for the index tests."""

from __future__ import annotations

import numpy as np


def mixture(n: int, d: int, *, clusters: int = 32, intrinsic: int = 8, seed: int = 0) -> np.ndarray:
    """Gaussian mixture with low intrinsic dimension, float32 ``[n, d]``."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((intrinsic, d))
    centers = rng.standard_normal((clusters, intrinsic)) * 3.0
    z = centers[rng.integers(0, clusters, n)] + rng.standard_normal((n, intrinsic))
    x = z @ basis + 0.1 * rng.standard_normal((n, d))
    return x.astype(np.float32)


def exact(db: np.ndarray, q: np.ndarray, k: int, metric: str = "ip") -> tuple[np.ndarray, np.ndarray]:
    """fp64 exact top-k: ``(scores, row indices)``, higher score first, ties by smaller index."""
    db64, q64 = db.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        db64 = db64 / np.maximum(np.linalg.norm(db64, axis=1, keepdims=True), 1e-300)
        q64 = q64 / np.maximum(np.linalg.norm(q64, axis=1, keepdims=True), 1e-300)
    s = q64 @ db64.T
    if metric == "l2":
        s = 2 * s - (q64**2).sum(1)[:, None] - (db64**2).sum(1)[None, :]
    order = np.lexsort((np.broadcast_to(np.arange(db.shape[0]), s.shape), -s), axis=1)[:, :k]
    return np.take_along_axis(s, order, 1), order


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the true top-k present in the found ids."""
    k = truth.shape[1]
    return float(
        np.mean([len(set(f.tolist()) & set(t.tolist())) / k for f, t in zip(found, truth, strict=True)])
    )
