"""Clustered test data for the index tests (exact search and recall: ``harness.truth``)."""

from __future__ import annotations

import numpy as np

from harness.data import gaussian_mixture


def mixture(n: int, d: int, *, clusters: int = 32, intrinsic: int = 8, seed: int = 0) -> np.ndarray:
    """Gaussian mixture with low intrinsic dimension, float32 ``[n, d]``: well separated clusters
    (centres 3 latent standard deviations apart on average) over an unscaled basis, noise 0.1."""
    base, _ = gaussian_mixture(
        n, d, clusters=clusters, intrinsic=intrinsic, centre_scale=3.0, spread=1.0, noise=0.1, seed=seed
    )
    return base
