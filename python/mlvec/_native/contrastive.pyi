"""``mlvec._native.contrastive``: fused element-wise passes over one contrastive logits tile (CPU)."""

import numpy as np
from numpy.typing import NDArray

def softmax_stats(
    tile: NDArray[np.float32], bias: float, *, cols: bool = True
) -> tuple[NDArray[np.float32], NDArray[np.float32] | None]:
    """InfoNCE statistics of one ``[n, m]`` float32 logits tile (C-contiguous, writable).

    Adds ``bias`` to the tile in place and returns ``(row_lse [n], col_lse [m] or None)``, the
    log-sum-exps over each row and (when ``cols``) each column, in one cache-resident pass.
    """

def softmax_grad(
    tile: NDArray[np.float32],
    bias: float,
    shift_r: NDArray[np.float32],
    shift_c: NDArray[np.float32] | None = None,
) -> None:
    """In place: ``tile = exp(tile + bias - shift_r[:, None]) (+ exp(tile + bias - shift_c[None, :]))``.

    A ``+inf`` shift gives exactly 0.
    """

def sigmoid_loss(tile: NDArray[np.float32], bias: float) -> float:
    """``sum(softplus(tile + bias))`` of a ``[n, m]`` float32 tile, accumulated in float64."""

def sigmoid_loss_grad(
    tile: NDArray[np.float32], bias: float, factor: float
) -> tuple[float, float]:
    """SigLIP forward and backward of one tile in a single pass.

    In place: ``tile = factor * sigmoid(tile + bias)``; returns
    ``(sum(softplus(tile + bias)), sum of the new tile)``, both accumulated in float64.
    """
