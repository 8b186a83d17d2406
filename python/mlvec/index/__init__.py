"""Exact, quantized and graph vector indexes (Rust core): Flat, IVF, SQ8, PQ, 4-bit PQ fast-scan, binary, HNSW.

Build an index from a description string (or a typed :class:`IndexConfig`), train it on a sample,
add vectors, search::

    >>> import numpy as np, mlvec.index as mi
    >>> x = np.random.default_rng(0).standard_normal((5000, 64)).astype(np.float32)
    >>> index = mi.index_factory(64, "IVF64,PQ16x4,rescore", metric="cosine")
    >>> index.train(x)
    >>> index.add(x)                      # ids 0..4999
    >>> scores, ids = index.search(x[:3], k=10, nprobe=8)
    >>> ids[:, 0]
    array([0, 1, 2])
    >>> index.save("vectors.mlvec"); again = mi.load("vectors.mlvec", mmap=True)

Description grammar (case-insensitive, comma-separated)::

    spec   := [ "IVF" <nlist> "," ] codec [ "," "rescore" ]
            | "HNSW" <M> [ "_" <efc> ] [ "," "SQ8" [ "," "rescore16" ] ]
                                                HNSW graph, M links per node (2M on layer 0), over
                                                float32 vectors or SQ8 codes; efc: ef_construction
    codec  := "Flat"                             float32 vectors, exact scores
            | "SQ8"                              1 byte per dimension (per-dimension min/step)
            | "PQ" <m> [ "x8" ]                  product quantization, m bytes per vector
            | "PQ" <m> "x4" [ "fs" ]             4-bit PQ with in-register table look-ups, m/2 bytes
            | "BIN" | "RaBitQ"                   1 bit per dimension after a random rotation

HNSW graphs are built with ``ef_construction=200`` unless the description sets it
(``"HNSW32_100,SQ8"``: M=32, ``ef_construction=100``) and searched with ``ef_search`` candidates
(default 64, per call ``search(..., ef_search=...)``); ``train`` is a no-op for ``"HNSW<M>"`` and
learns the per-dimension range for ``"HNSW<M>,SQ8"``. ``remove`` re-links the nodes that pointed
to removed ones (from their neighbours' neighbours) and copies the rest into fresh arrays, so the
space is freed at once; each call copies the index, so batch removals. A loaded
HNSW index is held in memory even with ``mmap=True`` (its links are updated in place).

``rescore`` also keeps the float32 vectors (in memory, or memory-mapped after
``load(mmap=True)``) and re-ranks the ``k * rescore`` best quantized candidates exactly.
A graph's ``rescore16`` (``"HNSW32,SQ8,rescore16"``) keeps float16 copies of the vectors
(2 bytes per dimension, values within ±65504) beside the codes: the walk runs on the 8-bit codes
and its whole candidate list (``ef_search`` nodes) is re-ranked with the float16 vectors, which
recovers the recall the 8-bit distances lose at the same ``ef_search``.

Scores are "higher is better": inner product (``"ip"``), cosine similarity (``"cosine"``; inputs
are L2-normalised) or ``-‖q − x‖²`` (``"l2"``). Results are ``(scores [nq, k] float32,
ids [nq, k] int64)``, padded with ``-inf`` / ``-1`` when fewer than ``k`` vectors exist or pass
the filter (``k`` larger than the index is allowed and pads; ``k <= 0`` is an error).

Inputs: numpy arrays or CPU torch tensors of float32, float16 or bfloat16 (numpy bfloat16
travels as ``uint16`` bits with ``bf16=True``).

Thread safety: an index may be shared by Python threads. Searches run concurrently (the GIL is
released, the index is read-locked); ``train``/``add``/``remove`` take an exclusive lock, so each
search sees the index wholly before or wholly after a modification. Every call that fails
(bad shape, NaN, duplicate or unknown ids, search before train, ...) leaves the index unchanged.

Filtered search: ``allow_ids=`` (ids) or ``allow_mask=`` (bool array indexed by id). When the
filter keeps fewer vectors than the probed lists hold, or too few to fill ``k`` from them, the
search scans the allowed vectors exhaustively instead, so recall does not collapse.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mlvec import _native
from mlvec._arrays import as_allow_mask, as_ids, as_matrix, bf16_bits_to_float32, float32_to_bf16_bits
from mlvec.index._training import training_warning

__all__ = [
    "Index",
    "IndexConfig",
    "index_factory",
    "load",
    "float32_to_bf16_bits",
    "bf16_bits_to_float32",
]

Metric = Literal["ip", "l2", "cosine"]


@dataclass(frozen=True)
class IndexConfig:
    """A typed index description, equivalent to a factory string.

    Attributes:
        codec: ``"flat"``, ``"sq8"``, ``"pq8"``, ``"pq4"`` (fast-scan) or ``"binary"``.
        nlist: inverted lists of the IVF coarse quantizer; 0 for none (scan everything).
        pq_m: sub-quantizers for ``"pq8"``/``"pq4"`` (must divide the dimension).
        rescore: keep float32 vectors and re-rank quantized candidates exactly.
        hnsw_m: build an HNSW graph with this many links per node instead of inverted lists
            (``codec`` ``"flat"`` or ``"sq8"``; ``nlist``, ``pq_m`` and ``rescore`` must be unset).
        hnsw_ef_construction: candidate list size while inserting into the graph (default 200;
            smaller builds faster, larger gives a better graph). Only with ``hnsw_m``.
        hnsw_rescore16: with ``hnsw_m`` and ``codec="sq8"``, also keep float16 copies of the
            vectors (2 bytes per dimension) and re-rank the walk's whole candidate list
            (``ef_search`` nodes) with them: the 8-bit codes steer the search, the returned
            order and scores come from the float16 vectors.

    Example::

        >>> IndexConfig(codec="pq4", nlist=1024, pq_m=48, rescore=True).factory_string()
        'IVF1024,PQ48x4,rescore'
        >>> IndexConfig(codec="sq8", hnsw_m=32).factory_string()
        'HNSW32,SQ8'
        >>> IndexConfig(codec="sq8", hnsw_m=32, hnsw_ef_construction=100).factory_string()
        'HNSW32_100,SQ8'
        >>> IndexConfig(codec="sq8", hnsw_m=32, hnsw_rescore16=True).factory_string()
        'HNSW32,SQ8,rescore16'
    """

    codec: Literal["flat", "sq8", "pq8", "pq4", "binary"] = "flat"
    nlist: int = 0
    pq_m: int | None = None
    rescore: bool = False
    hnsw_m: int | None = None
    hnsw_ef_construction: int | None = None
    hnsw_rescore16: bool = False

    def factory_string(self) -> str:
        """The description string of this configuration."""
        if self.hnsw_m is not None:
            if self.hnsw_m < 1:
                raise ValueError(f"hnsw_m: must be >= 1, got {self.hnsw_m}")
            if self.nlist or self.pq_m is not None or self.rescore:
                raise ValueError("hnsw_m: an HNSW graph takes no nlist, pq_m or rescore")
            codec = self.codec.lower()
            if codec not in ("flat", "sq8"):
                raise ValueError(f"codec: HNSW stores 'flat' or 'sq8' vectors, got {self.codec!r}")
            efc = self.hnsw_ef_construction
            if efc is not None and efc < 1:
                raise ValueError(f"hnsw_ef_construction: must be >= 1, got {efc}")
            if self.hnsw_rescore16 and codec != "sq8":
                raise ValueError("hnsw_rescore16: re-scoring applies to codec 'sq8' graphs")
            head = f"HNSW{self.hnsw_m}" + (f"_{efc}" if efc is not None else "")
            return head + (",SQ8" if codec == "sq8" else "") + (",rescore16" if self.hnsw_rescore16 else "")
        if self.hnsw_ef_construction is not None:
            raise ValueError("hnsw_ef_construction: only applies to an HNSW graph (set hnsw_m)")
        if self.hnsw_rescore16:
            raise ValueError("hnsw_rescore16: only applies to an HNSW graph (set hnsw_m)")
        if self.nlist < 0:
            raise ValueError(f"nlist: must be >= 0, got {self.nlist}")
        codec = self.codec.lower()
        if codec in ("pq8", "pq4"):
            if not self.pq_m or self.pq_m < 1:
                raise ValueError(f"pq_m: codec {codec!r} needs a positive pq_m, got {self.pq_m}")
            body = f"PQ{self.pq_m}" + ("x4" if codec == "pq4" else "")
        elif codec in ("flat", "sq8", "binary"):
            body = {"flat": "Flat", "sq8": "SQ8", "binary": "BIN"}[codec]
        else:
            raise ValueError(f"codec: unknown codec {self.codec!r}")
        parts = ([f"IVF{self.nlist}"] if self.nlist else []) + [body] + (["rescore"] if self.rescore else [])
        return ",".join(parts)


class Index:
    """A vector index. Create with :func:`index_factory` or :func:`load`.

    Example::

        >>> index = index_factory(128, "IVF256,SQ8", metric="l2")
        >>> index.train(train_vectors)          # [n, 128] float32/float16/bfloat16
        >>> index.add(vectors, ids=my_ids)      # int64 ids, or sequential when omitted
        >>> scores, ids = index.search(queries, k=10, nprobe=16)
    """

    def __init__(self, native: Any) -> None:
        self._native = native

    # -- properties ---------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self._native.dim()

    @property
    def metric(self) -> str:
        """``"ip"``, ``"l2"`` or ``"cosine"``."""
        return self._native.metric()

    @property
    def kind(self) -> str:
        """Canonical description string, e.g. ``"IVF1024,PQ48x4,rescore"``."""
        return self._native.kind()

    @property
    def is_trained(self) -> bool:
        """Whether :meth:`add` may be called (Flat needs no training)."""
        return self._native.is_trained()

    @property
    def nlist(self) -> int:
        """Number of inverted lists (1 without a coarse quantizer)."""
        return self._native.nlist()

    def __len__(self) -> int:
        return len(self._native)

    def __repr__(self) -> str:
        return f"mlvec.index.Index({self.kind!r}, dim={self.dim}, metric={self.metric!r}, n={len(self)})"

    def memory_usage(self) -> int:
        """Bytes of the index's data (codes, vectors, ids, centroids, codebooks; mapped parts included)."""
        return self._native.memory_usage()

    def ids(self) -> np.ndarray:
        """The stored ids, int64 ``[len]`` (in internal order)."""
        return self._native.ids()

    # -- building -----------------------------------------------------------------------------
    def train(self, x: Any, *, bf16: bool = False) -> None:
        """Train the coarse quantizer and codec on ``x`` ``[n, dim]`` (only while empty).

        IVF needs ``n >= nlist``; 8-bit PQ needs ``n >= 256``. Fewer than 39 vectors per centroid
        (of the coarse quantizer or a PQ sub-quantizer) trains but warns (``UserWarning``): the
        centroids would fit noise. The GIL is released.
        """
        a, b = as_matrix(x, "x", bf16=bf16)
        self._native.train(a, bf16=b)
        message = training_warning(self.kind, self.nlist, a.shape[0])
        if message:
            warnings.warn(message, UserWarning, stacklevel=2)

    def add(self, x: Any, ids: Any = None, *, bf16: bool = False) -> None:
        """Add vectors ``x`` ``[n, dim]`` with optional unique non-negative int64 ``ids`` ``[n]``.

        Without ids, ids continue from one past the largest id so far. Duplicate ids (within the
        call or with stored ones), NaN/inf values or a wrong dimension raise ``ValueError`` and
        add nothing.
        """
        a, b = as_matrix(x, "x", bf16=bf16)
        i = None if ids is None else as_ids(ids, "ids")
        self._native.add(a, i, bf16=b)

    def remove(self, ids: Any) -> int:
        """Remove vectors by id and compact storage (memory is freed). Returns the count removed.

        Unknown or repeated ids raise ``ValueError`` and remove nothing.
        """
        return self._native.remove(as_ids(ids, "ids"))

    # -- searching ----------------------------------------------------------------------------
    def search(
        self,
        queries: Any,
        k: int,
        *,
        nprobe: int | None = None,
        rescore: int = 4,
        ef_search: int | None = None,
        allow_ids: Any = None,
        allow_mask: Any = None,
        bf16: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best matches of each query.

        Args:
            queries: ``[nq, dim]`` (or ``[dim]``) float32/float16/bfloat16.
            k: results per query (>= 1; more than stored pads with ``-inf`` / ``-1``).
            nprobe: inverted lists visited (IVF); default ``min(nlist, max(8, nlist // 32))``.
            rescore: with stored float32 vectors, re-rank ``max(k * rescore, 32)`` candidates
                exactly (binary codes: 4x as many, skipping those whose error bound rules them
                out); 0 disables.
            ef_search: candidate list size of an HNSW search (default 64); larger is slower and
                more accurate. Ignored by the other kinds.
            allow_ids: only these ids may be returned (int64 array).
            allow_mask: only ids ``i`` with ``allow_mask[i]`` may be returned (bool array).

        Returns:
            ``(scores [nq, k] float32, ids [nq, k] int64)``, best first.
        """
        a, b = as_matrix(queries, "queries", bf16=bf16)
        ai = None if allow_ids is None else as_ids(allow_ids, "allow_ids")
        am = None if allow_mask is None else as_allow_mask(allow_mask, "allow_mask")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k: expected an int, got {type(k).__name__}")
        return self._native.search(
            a,
            int(k),
            nprobe=nprobe,
            rescore=int(rescore),
            ef_search=ef_search,
            allow_ids=ai,
            allow_mask=am,
            bf16=b,
        )

    # -- persistence --------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the index to ``path`` atomically (temporary file, fsync, rename).

        The format is documented in ``docs/index-format.md``.
        """
        self._native.save(os.fspath(path))


def index_factory(
    dim: int, kind: str | IndexConfig = "Flat", metric: Metric = "ip", *, seed: int = 0
) -> Index:
    """A new empty index of dimension ``dim`` from a description string or :class:`IndexConfig`.

    Example::

        >>> index_factory(384, "IVF1024,PQ48x4,rescore", metric="cosine")
        mlvec.index.Index('IVF1024,PQ48x4,rescore', dim=384, metric='cosine', n=0)
    """
    if isinstance(kind, IndexConfig):
        kind = kind.factory_string()
    if not isinstance(kind, str):
        raise TypeError(f"kind: expected a description string or IndexConfig, got {type(kind).__name__}")
    return Index(_native.index.NativeIndex(int(dim), kind, metric, int(seed)))


def load(path: str | os.PathLike[str], mmap: bool = True) -> Index:
    """Read an index written by :meth:`Index.save`.

    With ``mmap=True`` the arrays stay in the memory-mapped file until the index is modified.
    Truncated, corrupted, foreign or newer-version files raise :class:`mlvec.FormatError`.
    """
    return Index(_native.index.NativeIndex.load(os.fspath(path), mmap))
