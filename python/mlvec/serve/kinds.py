"""Collection kinds: what a collection's points are and which index holds them.

The service's collections, log and snapshots are written once over :class:`CollectionKind`; a
kind says how a point's vectors arrive in a request, how they are packed into a log record, and
how its index is built, searched and saved. ``"single"`` (one vector per point, any
:func:`mlvec.index.index_factory` description) is the kind there is; a multi-vector kind (a
token matrix per point, MaxSim scoring) slots in beside it, and the request fields it needs
(``tokens``) are already reserved.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mlvec.serve.errors import ApiError, bad_field


@dataclass(frozen=True)
class CollectionSpec:
    """A collection's fixed settings, written once in ``collection.json``."""

    name: str
    kind: str
    dim: int
    index: str
    metric: str
    encoder: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "dim": self.dim, "index": self.index,
                "metric": self.metric, "encoder": self.encoder}


@dataclass(frozen=True)
class SearchParams:
    """Per-search knobs; ``None`` leaves the index's default."""

    nprobe: int | None = None
    ef_search: int | None = None
    rescore: int | None = None

    def kwargs(self) -> dict[str, int]:
        return {k: v for k, v in (("nprobe", self.nprobe), ("ef_search", self.ef_search),
                                  ("rescore", self.rescore)) if v is not None}


class CollectionKind(ABC):
    """How one kind of collection stores and searches its points.

    ``vectors`` below is whatever the kind uses for a batch of points (a float32 ``[n, dim]``
    matrix for ``"single"``); the collection only passes it between these methods.
    """

    name: ClassVar[str]
    vector_field: ClassVar[str]
    """The request field that carries a point's (or a query's) vectors."""

    # -- the index --------------------------------------------------------------------------
    @abstractmethod
    def new_index(self, spec: CollectionSpec) -> Any: ...

    @abstractmethod
    def load_index(self, path: Path, mmap: bool) -> Any: ...

    @abstractmethod
    def save_index(self, index: Any, path: Path) -> None: ...

    @abstractmethod
    def describe_index(self, index: Any) -> dict[str, Any]:
        """``count``, ``trained``, ``memory_bytes`` and the canonical ``index`` description."""

    @abstractmethod
    def is_trained(self, index: Any) -> bool: ...

    @abstractmethod
    def stored_ids(self, index: Any) -> np.ndarray: ...

    @abstractmethod
    def train(self, index: Any, vectors: Any) -> None: ...

    @abstractmethod
    def add(self, index: Any, ids: np.ndarray, vectors: Any) -> None: ...

    @abstractmethod
    def remove(self, index: Any, ids: np.ndarray) -> None: ...

    @abstractmethod
    def search(self, index: Any, queries: Any, k: int, params: SearchParams,
               allow_ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """``(scores [nq, k] float32, ids [nq, k] int64)``, padded with ``-inf`` / ``-1``."""

    # -- requests ---------------------------------------------------------------------------
    @abstractmethod
    def check_params(self, spec: CollectionSpec, params: SearchParams) -> None:
        """Refuse, naming the field, a parameter the collection's index does not take."""

    @abstractmethod
    def vectors_from_json(self, spec: CollectionSpec, rows: list, field: str, *, indexed: bool = True) -> Any:
        """Checked vectors of a batch from their JSON form (400 naming ``field[i]``, or ``field``
        when not ``indexed``, if bad)."""

    @abstractmethod
    def vectors_from_encoder(self, encoder: Any, texts: list[str], is_query: bool) -> Any: ...

    # -- batches ----------------------------------------------------------------------------
    @abstractmethod
    def count(self, vectors: Any) -> int: ...

    @abstractmethod
    def take(self, vectors: Any, rows: np.ndarray) -> Any:
        """The vectors of ``rows`` of a batch."""

    @abstractmethod
    def concat(self, batches: list[Any]) -> Any: ...

    @abstractmethod
    def pack(self, vectors: Any) -> tuple[dict[str, Any], bytes]:
        """``(JSON-able description, bytes)`` for a log record; :meth:`unpack` inverts it."""

    @abstractmethod
    def unpack(self, meta: dict[str, Any], data: memoryview) -> Any: ...


class SingleVectorKind(CollectionKind):
    """One float32 vector per point, in any :func:`mlvec.index.index_factory` index."""

    name = "single"
    vector_field = "vector"

    def new_index(self, spec: CollectionSpec):
        from mlvec.index import index_factory

        return index_factory(spec.dim, spec.index, metric=spec.metric)  # type: ignore[arg-type]

    def load_index(self, path: Path, mmap: bool):
        from mlvec.index import load

        return load(path, mmap=mmap)

    def save_index(self, index, path: Path) -> None:
        index.save(path)

    def describe_index(self, index) -> dict[str, Any]:
        return {"index": index.kind, "count": len(index), "trained": index.is_trained,
                "memory_bytes": index.memory_usage()}

    def is_trained(self, index) -> bool:
        return index.is_trained

    def stored_ids(self, index) -> np.ndarray:
        return index.ids()

    def train(self, index, vectors: np.ndarray) -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "few vectors per centroid" is the caller's choice
            index.train(vectors)

    def add(self, index, ids: np.ndarray, vectors: np.ndarray) -> None:
        index.add(vectors, ids)

    def remove(self, index, ids: np.ndarray) -> None:
        index.remove(ids)

    def search(self, index, queries: np.ndarray, k: int, params: SearchParams, allow_ids):
        return index.search(queries, k, allow_ids=allow_ids, **params.kwargs())

    def check_params(self, spec: CollectionSpec, params: SearchParams) -> None:
        kind = spec.index.upper()
        if params.nprobe is not None and not kind.startswith("IVF"):
            raise bad_field("params.nprobe", f"index {spec.index} has no inverted lists (nprobe is for IVF indexes)")
        if params.ef_search is not None and not kind.startswith("HNSW"):
            raise bad_field("params.ef_search", f"index {spec.index} is not a graph (ef_search is for HNSW indexes)")
        if params.rescore is not None and ",RESCORE" not in kind.replace(" ", ""):
            raise bad_field("params.rescore", f"index {spec.index} keeps no float32 vectors to re-score with")

    def vectors_from_json(self, spec: CollectionSpec, rows: list, field: str, *, indexed: bool = True) -> np.ndarray:
        def where(i: int) -> str:
            return f"{field}[{i}]" if indexed else field

        for i, row in enumerate(rows):
            if len(row) != spec.dim:
                raise bad_field(where(i), f"expected {spec.dim} numbers (the collection's dimension), got {len(row)}")
        x = np.asarray(rows, dtype=np.float32).reshape(len(rows), spec.dim)
        finite = np.isfinite(x).all(axis=1)
        if not finite.all():
            bad = int(np.flatnonzero(~finite)[0])
            raise bad_field(where(bad), "holds NaN, infinity or a number too large for float32")
        if spec.metric == "cosine":
            zero = ~x.any(axis=1)
            if zero.any():
                raise bad_field(where(int(np.flatnonzero(zero)[0])), "is all zeros, which has no cosine similarity")
        return x

    def vectors_from_encoder(self, encoder, texts: list[str], is_query: bool) -> np.ndarray:
        return np.ascontiguousarray(encoder.encode(texts, is_query=is_query, show_progress=False), dtype=np.float32)

    def count(self, vectors: np.ndarray) -> int:
        return int(vectors.shape[0])

    def take(self, vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(vectors[rows])

    def concat(self, batches: list[np.ndarray]) -> np.ndarray:
        return batches[0] if len(batches) == 1 else np.concatenate(batches)

    def pack(self, vectors: np.ndarray) -> tuple[dict[str, Any], bytes]:
        x = np.ascontiguousarray(vectors, dtype="<f4")
        return {"shape": list(x.shape)}, x.tobytes()

    def unpack(self, meta: dict[str, Any], data: memoryview) -> np.ndarray:
        n, dim = meta["shape"]
        return np.frombuffer(data, dtype="<f4", count=n * dim).reshape(n, dim).astype(np.float32)


KINDS: dict[str, CollectionKind] = {SingleVectorKind.name: SingleVectorKind()}
PLANNED_KINDS = ("multi",)


def kind_named(name: str) -> CollectionKind:
    if name in KINDS:
        return KINDS[name]
    if name in PLANNED_KINDS:
        raise ApiError(400, f"kind: '{name}' collections (one token matrix per point) are not available yet; "
                            f"kinds: {', '.join(KINDS)}", "kind")
    raise bad_field("kind", f"unknown collection kind {name!r}; kinds: {', '.join(KINDS)}")
