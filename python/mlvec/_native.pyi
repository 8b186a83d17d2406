"""Type stubs of the compiled extension ``mlvec._native`` (checked against it in tests/test_stubs.py).

Token sets are passed packed: a C-contiguous ``[rows, dim]`` array, ``int64`` offsets of length
``n + 1`` (set ``i`` is rows ``offsets[i]:offsets[i+1]``) and an optional ``bool`` mask ``[rows]``.
Element types: float32, float16, or bfloat16 passed as its ``uint16`` bits with ``bf16=True``.
"""

import numpy as np
from numpy.typing import NDArray

__version__: str

class MlvecError(Exception): ...
class FormatError(MlvecError): ...

def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def cpu_features() -> list[str]: ...
def cuda_status() -> tuple[bool, str]: ...

# --- MaxSim -------------------------------------------------------------------------------------
def maxsim_forward(
    q: NDArray[np.float32] | NDArray[np.float16] | NDArray[np.uint16],
    q_offsets: NDArray[np.int64],
    q_mask: NDArray[np.bool_] | None,
    d: NDArray[np.float32] | NDArray[np.float16] | NDArray[np.uint16],
    d_offsets: NDArray[np.int64],
    d_mask: NDArray[np.bool_] | None,
    *,
    bf16: bool = False,
    paired: bool = False,
    q2d_argmax: bool = False,
    d2q: bool = False,
    d2q_argmax: bool = False,
) -> tuple[
    NDArray[np.float32],
    NDArray[np.int32] | None,
    NDArray[np.float32] | None,
    NDArray[np.int32] | None,
]:
    """Scores P pairs (``nq * nd`` query-major, or ``n`` when ``paired``).

    Returns ``(q2d [P], q2d_argmax [P, lq_max] | None, d2q [P] | None, d2q_argmax [P, ld_max] | None)``:
    ``q2d`` sums over valid query tokens the max over valid document tokens (-inf when the document
    has none and the query has some; 0 when the query has none); ``d2q`` the same the other way.
    Argmax positions are local to the other side's set, first on ties, -1 where not defined.
    """

def maxsim_backward(
    q: NDArray[np.float32] | NDArray[np.float16] | NDArray[np.uint16],
    q_offsets: NDArray[np.int64],
    q_mask: NDArray[np.bool_] | None,
    d: NDArray[np.float32] | NDArray[np.float16] | NDArray[np.uint16],
    d_offsets: NDArray[np.int64],
    d_mask: NDArray[np.bool_] | None,
    *,
    bf16: bool = False,
    paired: bool = False,
    grad_q2d: NDArray[np.float32] | None = None,
    q2d_argmax: NDArray[np.int32] | None = None,
    grad_d2q: NDArray[np.float32] | None = None,
    d2q_argmax: NDArray[np.int32] | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Gradients ``(dq [rows_q, dim], dd [rows_d, dim])`` (float32) of ``sum(grad_q2d * q2d + grad_d2q * d2q)``."""

# --- Index --------------------------------------------------------------------------------------
class NativeIndex:
    """The compiled index behind ``mlvec.index.Index`` (a read-write-locked Rust index)."""

    def __init__(self, dim: int, kind: str, metric: str = "ip", seed: int = 0) -> None: ...
    def train(self, x: NDArray[np.float32] | NDArray[np.float16] | NDArray[np.uint16], *, bf16: bool = False) -> None: ...
    def add(
        self,
        x: NDArray[np.float32] | NDArray[np.float16] | NDArray[np.uint16],
        ids: NDArray[np.int64] | None = None,
        *,
        bf16: bool = False,
    ) -> None: ...
    def search(
        self,
        queries: NDArray[np.float32] | NDArray[np.float16] | NDArray[np.uint16],
        k: int,
        *,
        nprobe: int | None = None,
        rescore: int = 4,
        allow_ids: NDArray[np.int64] | None = None,
        allow_mask: NDArray[np.bool_] | None = None,
        bf16: bool = False,
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """``(scores [nq, k], ids [nq, k])``, padded with ``-inf`` / ``-1``."""
    def remove(self, ids: NDArray[np.int64]) -> int: ...
    def save(self, path: str) -> None: ...
    @staticmethod
    def load(path: str, mmap: bool = True) -> NativeIndex: ...
    def __len__(self) -> int: ...
    def dim(self) -> int: ...
    def metric(self) -> str: ...
    def kind(self) -> str: ...
    def is_trained(self) -> bool: ...
    def nlist(self) -> int: ...
    def memory_usage(self) -> int: ...
    def ids(self) -> NDArray[np.int64]: ...
