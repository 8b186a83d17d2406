"""Type stubs of the compiled extension ``mlvec._native`` (checked against it in tests/core/test_stubs.py).

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
    check_finite: bool = False,
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
    With ``check_finite`` a valid (unmasked) row of any set holding NaN or ±inf raises ValueError
    naming ``queries`` or ``documents`` (queries first), the first such packed row and its set;
    the kernel scans each row as it reads it, so the check costs no extra pass over memory.
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

# --- CUDA ---------------------------------------------------------------------------------------
# Kernels compiled at run time with NVRTC; launches take raw device pointers (torch's data_ptr()),
# a device ordinal and a CUDA stream handle, and trust them. Use the wrappers in mlvec.cuda.
# A token-set argument is (data_ptr, offsets_ptr, mask_ptr or 0, n_sets).

def cuda_configure(
    nvrtc_path: str | None = None, include_dirs: list[str] | None = None, cache_dir: str | None = None
) -> None:
    """Set the NVRTC library file, the CUDA include folders and the cubin cache folder."""

def cuda_nvrtc_version() -> tuple[int, int]: ...
def cuda_compile_check(arch: str) -> list[str]:
    """Compile every kernel for ``arch`` (e.g. ``"sm_90"``; no GPU needed); returns the kernel names."""

def cuda_compute_capability(device: int) -> tuple[int, int]: ...
def cuda_limits() -> tuple[int, int, int, int, int]:
    """``(tile_rows, tile_cols, max_cols, select_chunk, max_k)``."""

def cuda_maxsim_forward(
    dtype_name: str,
    device: int,
    stream: int,
    a: tuple[int, int, int, int],
    b: tuple[int, int, int, int],
    dim: int,
    paired: bool,
    transpose: bool,
    la_max: int,
    lb_max: int,
    sum: int,
    row_arg: int,
    col_sum: int,
    col_arg: int,
) -> None: ...
def cuda_filip_forward(
    dtype_name: str,
    device: int,
    stream: int,
    a: tuple[int, int, int, int],
    b: tuple[int, int, int, int],
    dim: int,
    paired: bool,
    la_max: int,
    lb_max: int,
    a_mean: int,
    b_mean: int,
    a_arg: int,
    b_arg: int,
) -> None: ...
def cuda_maxsim_backward(
    dtype_name: str,
    device: int,
    stream: int,
    kind: str,
    a: tuple[int, int, int, int],
    b: tuple[int, int, int, int],
    dim: int,
    paired: bool,
    transpose: bool,
    la_max: int,
    lb_max: int,
    grad: int,
    argmax: int,
    da: int,
    db: int,
) -> None: ...
def cuda_clip_lse_partials(
    dtype_name: str,
    device: int,
    stream: int,
    x: int,
    y: int,
    m: int,
    n: int,
    dim: int,
    scale: float,
    row_pmax: int,
    row_psum: int,
    col_pmax: int,
    col_psum: int,
) -> None: ...
def cuda_clip_grad(
    dtype_name: str,
    device: int,
    stream: int,
    x: int,
    y: int,
    m: int,
    n: int,
    dim: int,
    scale: float,
    row_lse: int,
    col_lse: int,
    g_row: int,
    g_col: int,
    dx: int,
    dy: int,
    dscale_part: int,
) -> None: ...
def cuda_siglip_forward(
    dtype_name: str,
    device: int,
    stream: int,
    x: int,
    y: int,
    m: int,
    n: int,
    dim: int,
    scale: float,
    bias: float,
    row_offset: int,
    col_offset: int,
    row_part: int,
) -> None: ...
def cuda_siglip_backward(
    dtype_name: str,
    device: int,
    stream: int,
    x: int,
    y: int,
    m: int,
    n: int,
    dim: int,
    scale: float,
    bias: float,
    row_offset: int,
    col_offset: int,
    g_row: int,
    dx: int,
    dy: int,
    dscale_part: int,
    dbias_part: int,
) -> None: ...
def cuda_pq_scan(
    device: int, stream: int, codes: int, n: int, m: int, ksub: int, lut: int, nq: int, dist: int
) -> None: ...
def cuda_hamming_scan(
    device: int, stream: int, codes: int, n: int, words: int, queries: int, nq: int, dist: int
) -> None: ...
def cuda_select_k(
    device: int, stream: int, vals: int, ids: int, rows: int, n: int, k: int, out_vals: int, out_ids: int
) -> None: ...
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
        ef_search: int | None = None,
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

# --- Contrastive tiles ---
def contrastive_softmax_stats(
    tile: NDArray[np.float32], bias: float, *, cols: bool = True
) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
    """InfoNCE statistics of one ``[n, m]`` float32 logits tile (C-contiguous, writable).

    Adds ``bias`` to the tile in place and returns ``(row_lse [n], col_lse [m] or None)``, the
    log-sum-exps over each row and (when ``cols``) each column, in one cache-resident pass.
    """

def contrastive_softmax_grad(
    tile: NDArray[np.float32],
    bias: float,
    shift_r: NDArray[np.float32],
    shift_c: NDArray[np.float32] | None = None,
) -> None:
    """In place: ``tile = exp(tile + bias - shift_r[:, None]) (+ exp(tile + bias - shift_c[None, :]))``.

    A ``+inf`` shift gives exactly 0.
    """

def contrastive_sigmoid_loss(tile: NDArray[np.float32], bias: float) -> float:
    """``sum(softplus(tile + bias))`` of a ``[n, m]`` float32 tile, accumulated in float64."""

def contrastive_sigmoid_loss_grad(
    tile: NDArray[np.float32], bias: float, factor: float
) -> tuple[float, float]:
    """SigLIP forward and backward of one tile in a single pass.

    In place: ``tile = factor * sigmoid(tile + bias)``; returns
    ``(sum(softplus(tile + bias)), sum of the new tile)``, both accumulated in float64.
    """
