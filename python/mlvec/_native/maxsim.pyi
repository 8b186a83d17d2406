"""``mlvec._native.maxsim``: MaxSim over packed token sets on the CPU.

Token sets are passed packed: a C-contiguous ``[rows, dim]`` array, ``int64`` offsets of length
``n + 1`` (set ``i`` is rows ``offsets[i]:offsets[i+1]``) and an optional ``bool`` mask ``[rows]``.
Element types: float32, float16, or bfloat16 passed as its ``uint16`` bits with ``bf16=True``.
"""

import numpy as np
from numpy.typing import NDArray

def forward(
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

def backward(
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
