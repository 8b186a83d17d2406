"""One adapter per index library, so every index benchmark builds, searches and sizes them alike.

A :class:`Peer` is one index of one library: ``build`` it (train + add), ``tune`` its search
parameter (``knob``: ``ef``, ``efSearch`` or ``nprobe``), ``set_threads`` for the library's own
threads, ``search`` a batch or ``search_one`` query, and read its ``bytes``: the size in memory
where the library reports it (mlvec's and usearch's ``memory_usage``), else the serialized size
(faiss, hnswlib), which is what those hold in memory. :func:`measure` times one search setting.

    >>> peer = FaissPeer("HNSW32", "l2")
    >>> peer.build(base, threads=2)
    >>> peer.tune(64)
    >>> measure(peer, queries, truth, k=10, batch_threads=[1, 2], single_threads=[1, 2])
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import partial

import numpy as np

from harness.timing import median_seconds, one_query_per_call
from harness.truth import recall

METRICS = ("ip", "l2")


class Peer(ABC):
    """One index of one library. ``lib`` names the library, ``label`` the index (as tables print it)."""

    lib = ""

    def __init__(self, metric: str, label: str, knob: str = "") -> None:
        if metric not in METRICS:
            raise ValueError(f"metric: the peers are compared with {METRICS}, got {metric!r}")
        self.metric, self.label, self.knob = metric, label, knob
        self.index = None

    @abstractmethod
    def build(self, x: np.ndarray, *, threads: int, train: np.ndarray | None = None) -> None:
        """Build over ``x`` float32 ``[n, d]`` (ids ``0..n-1``) with ``threads`` threads, trained
        on ``train`` (default ``x``) where the index needs training."""

    @abstractmethod
    def set_threads(self, threads: int) -> None:
        """The library's own threads for the searches that follow."""

    def tune(self, value: int) -> None:
        """Set the search parameter named by ``knob`` for the searches that follow."""
        raise ValueError(f"{self.lib} {self.label} has no search parameter to tune")

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Ids ``[nq, k]`` of the ``k`` best matches of each of ``queries`` ``[nq, d]``, in one call."""

    def search_one(self, query: np.ndarray, k: int) -> np.ndarray:
        """Ids ``[k]`` of the best matches of one ``query`` ``[d]``."""
        return self.search(query[None], k)[0]

    @abstractmethod
    def bytes(self) -> int:
        """Bytes the built index holds."""

    def release(self) -> None:
        """Drop the built index (its memory is freed once nothing else holds it)."""
        self.index = None


class MlvecPeer(Peer):
    """``mlvec.index.index_factory(d, kind, metric)``; ``knob`` is ``ef`` for a graph, ``nprobe`` for IVF."""

    lib = "mlvec"

    def __init__(self, kind: str, metric: str, label: str | None = None) -> None:
        knob = "ef" if kind.startswith("HNSW") else "nprobe" if kind.startswith("IVF") else ""
        super().__init__(metric, label or kind, knob)
        self.kind = kind
        self._param: dict[str, int] = {}

    def build(self, x, *, threads, train=None):
        import mlvec.index as mi

        self.set_threads(threads)
        self.index = mi.index_factory(x.shape[1], self.kind, metric=self.metric)
        self.index.train(x if train is None else train)
        self.index.add(x)

    def set_threads(self, threads):
        import mlvec

        # Changing the count rebuilds the pool: only do it when it changes.
        if mlvec.get_num_threads() != threads:
            mlvec.set_num_threads(threads)

    def tune(self, value):
        if not self.knob:
            super().tune(value)
        self._param = {"ef_search" if self.knob == "ef" else "nprobe": value}

    def search(self, queries, k):
        param = self._param
        if "ef_search" in param and param["ef_search"] < k:
            param = {"ef_search": k}  # a graph search keeps at least k candidates
        return self.index.search(queries, k, **param)[1]

    def bytes(self):
        return self.index.memory_usage()


class FaissPeer(Peer):
    """``faiss.index_factory(d, spec, metric)``; ``knob`` is ``nprobe`` for IVF, else ``efSearch``.

    ``ef_construction`` sets a graph's ``efConstruction`` (faiss's default is 40). A refined index
    (``RFlat``) re-ranks ``refine_k_factor`` times k candidates, as mlvec's ``rescore`` does.
    """

    lib = "faiss"

    def __init__(
        self, spec: str, metric: str, *, ef_construction: int | None = None, refine_k_factor: float = 4,
        label: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(metric, label or spec, "nprobe" if "IVF" in spec else "efSearch")
        self.spec, self.ef_construction = spec, ef_construction
        self.refine_k_factor = refine_k_factor if "RFlat" in spec else None
        self._params = None
        import faiss

        self.faiss = faiss

    def build(self, x, *, threads, train=None):
        f = self.faiss
        self.set_threads(threads)
        metric = f.METRIC_INNER_PRODUCT if self.metric == "ip" else f.METRIC_L2
        self.index = f.index_factory(x.shape[1], self.spec, metric)
        if self.ef_construction is not None:
            self.index.hnsw.efConstruction = self.ef_construction
        self.index.train(x if train is None else train)
        self.index.add(x)
        if self.refine_k_factor is not None:
            self._params = f.IndexRefineSearchParameters(k_factor=self.refine_k_factor)

    def set_threads(self, threads):
        self.faiss.omp_set_num_threads(threads)

    def tune(self, value):
        if self.knob == "nprobe":
            self.faiss.extract_index_ivf(self.index).nprobe = value
        else:
            self.index.hnsw.efSearch = value

    def search(self, queries, k):
        if self._params is None:
            return self.index.search(queries, k)[1]
        return self.index.search(queries, k, params=self._params)[1]

    def bytes(self):
        return int(self.faiss.serialize_index(self.index).size)


class HnswlibPeer(Peer):
    """``hnswlib.Index`` with ``M`` links per node, built with ``ef_construction``; ``knob`` is ``ef``."""

    lib = "hnswlib"

    def __init__(
        self, metric: str, m: int = 16, ef_construction: int = 200, label: str | None = None
    ) -> None:
        default = f"HNSW M={m}" + ("" if ef_construction == 200 else f" efc={ef_construction}")
        super().__init__(metric, label or default, "ef")
        self.m, self.ef_construction = m, ef_construction
        import hnswlib

        self.hnswlib = hnswlib

    def build(self, x, *, threads, train=None):
        self.index = self.hnswlib.Index(space=self.metric, dim=x.shape[1])
        self.index.init_index(max_elements=len(x), M=self.m, ef_construction=self.ef_construction)
        self.set_threads(threads)
        self.index.add_items(x, np.arange(len(x)))

    def set_threads(self, threads):
        self.index.set_num_threads(threads)

    def tune(self, value):
        self.index.set_ef(value)

    def search(self, queries, k):
        return self.index.knn_query(queries, k)[0]

    def bytes(self):
        return self.index.index_file_size()


class UsearchPeer(Peer):
    """``usearch.index.Index`` (float32) with ``connectivity`` links per node; ``knob`` is ``ef``
    (``expansion_search``). ``expansion_add`` defaults to usearch's own."""

    lib = "usearch"

    def __init__(
        self, metric: str, connectivity: int = 16, expansion_add: int | None = None, label: str | None = None
    ) -> None:
        super().__init__(metric, label or f"HNSW M={connectivity} (f32)", "ef")
        self.connectivity, self.expansion_add = connectivity, expansion_add
        self.threads = 1
        from usearch.index import Index

        self.Index = Index

    def build(self, x, *, threads, train=None):
        extra = {} if self.expansion_add is None else {"expansion_add": self.expansion_add}
        metric = "ip" if self.metric == "ip" else "l2sq"
        self.index = self.Index(
            ndim=x.shape[1], metric=metric, dtype="f32", connectivity=self.connectivity, **extra
        )
        self.index.add(np.arange(len(x)), x, threads=threads)

    def set_threads(self, threads):
        self.threads = threads  # usearch takes the count per call

    def tune(self, value):
        self.index.expansion_search = value

    def search(self, queries, k):
        return np.asarray(self.index.search(queries, k, threads=self.threads).keys).reshape(len(queries), -1)

    def bytes(self):
        return self.index.memory_usage


def measure(
    peer: Peer,
    queries: np.ndarray,
    truth: np.ndarray,
    k: int,
    *,
    batch_threads: Sequence[int],
    single_threads: Sequence[int],
    single_queries: int | None = None,
    repeat: int = 3,
) -> dict[str, float]:
    """recall@k and queries/s of ``peer`` at its current setting.

    Returns ``{"recall": r, "batch{t}": q/s, "single{t}": q/s}``: ``batch{t}`` searches all
    ``queries`` in one call on ``t`` library threads; ``single{t}`` searches the first
    ``single_queries`` one per call, from ``t`` Python threads at once, each call on one library
    thread. Medians of ``repeat`` timings; recall against ``truth`` ``[nq, k]``.
    """
    out: dict[str, float] = {}
    peer.set_threads(max(batch_threads))
    out["recall"] = recall(peer.search(queries, k), truth)  # also the warm-up
    for t in batch_threads:
        peer.set_threads(t)
        out[f"batch{t}"] = len(queries) / median_seconds(lambda: peer.search(queries, k), repeat)
    few = queries[:single_queries]
    peer.set_threads(1)
    search_one = partial(peer.search_one, k=k)
    for t in single_threads:
        seconds = median_seconds(lambda t=t: one_query_per_call(search_one, few, t), repeat)
        out[f"single{t}"] = len(few) / seconds
    return out
