"""The benchmarks' data sets.

- :func:`bible_e5`: multilingual-e5-small passage embeddings of the Bible (``../shared/data``):
  all Spanish verses plus the English ones except held-out English queries, inner product.
- :func:`bible_corpus`: aligned English/Spanish verse texts: the 31,077 of ``../shared/data`` or
  the 3,000 bundled with mlvec (:func:`mlvec.data.load_bible_en_es`).
- :func:`gaussian_mixture` / :func:`synthetic`: clustered vectors of low intrinsic dimension, the
  shape real embeddings have and uniform random data lacks.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlvec.data import ParallelCorpus, load_bible_en_es

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BIBLE_E5 = SHARED_DATA / "bible_e5_passage.npz"
BIBLE_TEXT = SHARED_DATA / "bible_en_es.json.gz"


@dataclass
class Dataset:
    """A search benchmark's inputs: ``base`` float32 ``[n, d]`` searched by ``queries`` float32 ``[nq, d]``."""

    name: str
    base: np.ndarray
    queries: np.ndarray
    metric: str


def bible_e5(
    path: Path | str = BIBLE_E5, *, held_out: int = 1000, base_sample: int | None = None, seed: int = 0,
    name: str = "bible-e5 (384-d)",
) -> Dataset:  # fmt: skip
    """The e5 embeddings of ``path`` (arrays ``en_web`` and ``es_rv1909``, float16 ``[31077, 384]``).

    ``held_out`` English verses (drawn with ``default_rng(seed)``) are the queries; the base is
    every Spanish verse then the other English ones, or ``base_sample`` of them drawn next from
    the same generator (a quick run's smaller set).
    """
    z = np.load(path)
    en, es = z["en_web"].astype(np.float32), z["es_rv1909"].astype(np.float32)
    rng = np.random.default_rng(seed)
    held = rng.choice(len(en), held_out, replace=False)
    keep = np.setdiff1d(np.arange(len(en)), held)
    base = np.concatenate([es, en[keep]])
    if base_sample is not None:
        base = base[rng.choice(len(base), base_sample, replace=False)]
    return Dataset(name, base, np.ascontiguousarray(en[held]), "ip")


def bible_corpus(path: Path | str | None = None, n: int | None = None) -> ParallelCorpus:
    """English (WEB) / Spanish (RV1909) verse pairs: the first ``n`` (default all) of the JSON at
    ``path`` (keys ``keys``, ``en_web``, ``es_rv1909``; e.g. :data:`BIBLE_TEXT`), or of the
    3,000 bundled with mlvec when ``path`` is None."""
    if path is None:
        return load_bible_en_es(n)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        data = json.load(f)
    end = len(data["keys"]) if n is None else n
    keys = [(str(b), int(c), int(v)) for b, c, v in data["keys"][:end]]
    return ParallelCorpus(keys, data["en_web"][:end], data["es_rv1909"][:end])


# The benchmarks' mixture: 16 intrinsic dimensions, the basis scaled by 1/sqrt(16) so a latent
# step of unit variance has unit variance in every coordinate, whatever d.
BENCH_MIXTURE = {"intrinsic": 16, "centre_scale": 2.0, "spread": 0.6, "noise": 0.05, "basis_scale": 0.25}
_ROWS_PER_DRAW = 1 << 16  # rows made at once: float64 temporaries stay small for millions of rows


def gaussian_mixture(
    n: int,
    d: int,
    *,
    clusters: int,
    intrinsic: int,
    centre_scale: float,
    spread: float,
    noise: float,
    basis_scale: float = 1.0,
    queries: int = 0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian mixture with low intrinsic dimension: ``(base float32 [n, d], queries float32 [queries, d])``.

    Each point is ``(c + spread * e) @ B + noise * e'``: a centre ``c ~ centre_scale * N(0, I)``
    (one of ``clusters``, drawn uniformly) of an ``intrinsic``-dimensional latent space, a latent
    step ``e ~ N(0, I)``, a fixed basis ``B ~ basis_scale * N(0, 1)`` ``[intrinsic, d]`` into the
    ``d``-dimensional space, and isotropic noise ``e' ~ N(0, I_d)``. The queries are drawn from
    the same mixture after the base, by the same generator ``default_rng(seed)``. Computed in
    float64, rounded once to float32.
    """
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((intrinsic, d)) * basis_scale
    centres = rng.standard_normal((clusters, intrinsic)) * centre_scale

    def draw(m: int) -> np.ndarray:
        z = centres[rng.integers(0, clusters, m)] + rng.standard_normal((m, intrinsic)) * spread
        out = np.empty((m, d), np.float32)
        # Row blocks draw the same numbers in the same order as one draw of [m, d] would.
        for lo in range(0, m, _ROWS_PER_DRAW):
            hi = min(m, lo + _ROWS_PER_DRAW)
            out[lo:hi] = z[lo:hi] @ basis + noise * rng.standard_normal((hi - lo, d))
        return out

    base = draw(n)
    return base, draw(queries)


def synthetic(
    n: int, d: int = 128, clusters: int = 4000, *, queries: int = 1000, seed: int = 1, name: str | None = None
) -> Dataset:
    """The benchmarks' synthetic set: :func:`gaussian_mixture` of :data:`BENCH_MIXTURE`'s shape, l2."""
    base, q = gaussian_mixture(n, d, clusters=clusters, queries=queries, seed=seed, **BENCH_MIXTURE)
    return Dataset(name or f"synthetic GMM ({n // 1000}k x {d})", base, q, "l2")
