"""Type stubs of the compiled extension ``mlvec._native`` (checked against it in tests/core/test_stubs.py).

The top level holds what concerns the whole library; each domain is a submodule, importable as
``mlvec._native.<name>``: :mod:`maxsim`, :mod:`contrastive`, :mod:`cuda` and :mod:`index`.
"""

import numpy as np
from numpy.typing import NDArray

from . import contrastive as contrastive
from . import cuda as cuda
from . import index as index
from . import maxsim as maxsim

__version__: str

class MlvecError(Exception): ...
class FormatError(MlvecError): ...

def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def cpu_features() -> list[str]: ...

# --- HNSW ---------------------------------------------------------------------------------------
class HnswIndex:
    """HNSW graph index (Malkov & Yashunin) over float32 vectors or SQ8 codes.

    The low-level graph: ``mlvec.index.index_factory(dim, "HNSW16")`` wraps the same graph with
    the index framework's API and file format. This class additionally offers a chosen
    ``ef_construction`` and removal without immediate compaction (``remove`` then ``compact``).

    ``HnswIndex(dim, metric="ip", M=16, ef_construction=200, storage="f32", ef_search=64)``;
    ``metric`` is ``"ip"``, ``"l2"`` or ``"cosine"`` (vectors and queries normalised),
    ``storage`` ``"f32"``, ``"sq8"`` (one byte per dimension, range trained on the first add) or
    ``"sq8_f16"`` (SQ8 codes for the walk plus float16 copies, values within ±65504, that re-rank
    the walk's ``ef_search`` candidates).
    Scores are higher-is-better: ``<q, x>`` (ip, cosine) or ``-|q - x|²`` (l2).

    Thread safety: searches share an internal read lock and run without the GIL, so searches from
    several Python threads run in parallel; ``add``/``remove``/``compact`` take the lock
    exclusively and are safe to call while other threads search.

    Example::

        index = HnswIndex(128, metric="l2", M=16)
        index.add(x)                        # x: float32 [n, 128]
        scores, ids = index.search(q, 10)   # q: float32 [nq, 128] -> [nq, 10] each
    """

    def __init__(
        self,
        dim: int,
        metric: str = "ip",
        M: int = 16,
        ef_construction: int = 200,
        storage: str = "f32",
        ef_search: int = 64,
    ) -> None: ...
    def add(self, x: NDArray[np.float32], ids: NDArray[np.int64] | None = None) -> NDArray[np.int64]:
        """Add rows ``x`` (float32 ``[n, dim]``) with non-negative int64 ``ids`` ``[n]`` (default:
        consecutive from one past the largest id added). Returns the ids. Wrong dim, NaN/inf,
        duplicate or present ids raise ``ValueError``; the index is then unchanged."""
    def search(
        self,
        q: NDArray[np.float32],
        k: int,
        ef_search: int | None = None,
        allow: NDArray[np.int64] | None = None,
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """``(scores float32 [nq, k], ids int64 [nq, k])``, best first, padded with -inf / -1.

        ``allow`` restricts results to these ids; the graph walk passes through other nodes, and
        a selective allow-list is answered by an exact scan of the allowed vectors instead."""
    def remove(self, ids: NDArray[np.int64]) -> None:
        """Remove ids (all present and distinct, else ``ValueError`` and nothing changes). They
        stop appearing in results at once; ``compact()`` frees their space."""
    def compact(self) -> None:
        """Rebuild the graph over the live vectors, freeing the space of removed ones."""
    def memory_usage(self) -> int:
        """Bytes held by vectors, links and ids."""
    def __len__(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def storage(self) -> str: ...
    @property
    def ef_search(self) -> int: ...
    @ef_search.setter
    def ef_search(self, value: int) -> None: ...
