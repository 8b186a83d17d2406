"""Contrastive logits tiles on CUDA (re-exported by :mod:`mlvec.cuda`): CLIP/InfoNCE row and
column log-sum-exps and SigLIP loss rows of ``scale * x @ y.T (+ bias)``, with their gradients,
computed tile by tile without materialising the logits.

``x [m, dim]`` and ``y [n, dim]`` are CUDA tensors of one float dtype (float32, float16 or
bfloat16, fp32 accumulation); outputs are float32 on their device, launched on torch's current
stream.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mlvec import _native
from mlvec._arrays import check_float, cuda_tensor, device_ptr, dtype_name
from mlvec.cuda import launch_place, limits

__all__ = ["clip_lse", "clip_lse_backward", "siglip_rows", "siglip_backward"]


class _Problem:
    """A checked ``[m, dim] x [n, dim]`` tile problem: operands, dtype, launch place, tile counts."""

    def __init__(self, x: Tensor, y: Tensor):
        self.x = cuda_tensor(x, "x")
        self.y = cuda_tensor(y, "y", self.x.device)
        x, y = self.x, self.y
        if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
            raise ValueError(
                f"x, y: expected [m, dim] and [n, dim], got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        check_float(x, "x")
        if x.dtype != y.dtype:
            raise TypeError(f"y: dtype {y.dtype} does not match x's {x.dtype}")
        self.dtype = dtype_name(x)
        self.m, self.n = x.shape[0], y.shape[0]
        lim = limits()
        # Column tiles (partials per row) and row tiles (partials per column).
        self.col_tiles, self.row_tiles = -(-self.n // lim.tile_cols), -(-self.m // lim.tile_rows)
        self.device, self.stream = launch_place(x.device)

    def is_empty(self) -> bool:
        return self.m == 0 or self.n == 0

    def zeros(self, *shape: int) -> Tensor:
        """A float32 output the kernels accumulate into."""
        return torch.zeros(shape, dtype=torch.float32, device=self.x.device)

    def uninitialized(self, *shape: int) -> Tensor:
        """A float32 output the kernels write in full."""
        return torch.empty(shape, dtype=torch.float32, device=self.x.device)

    def vector(self, t: Tensor | None, name: str, size: int, optional: bool = True) -> Tensor | None:
        """A per-row or per-column input ``[size]`` as float32 on the operands' device (None stays
        None where the input is optional)."""
        if t is None and optional:
            return None
        t = cuda_tensor(t, name, self.x.device).to(torch.float32)
        if t.shape != (size,):
            raise ValueError(f"{name}: expected [{size}], got {tuple(t.shape)}")
        return t

    def head(self, scale: float) -> tuple:
        """The leading launch arguments every tile kernel takes."""
        x, y = self.x, self.y
        where = (self.dtype, self.device, self.stream)
        return (*where, x.data_ptr(), y.data_ptr(), self.m, self.n, x.shape[1], float(scale))


def clip_lse(x: Tensor, y: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """Row and column log-sum-exps of ``scale * x @ y.T`` without materialising it.

    ``x [m, dim]``, ``y [n, dim]`` (one float dtype, fp32 accumulation) -> ``(row_lse [m],
    col_lse [n])`` float32. The InfoNCE/CLIP loss is then ``row_lse - pos`` and ``col_lse - pos``
    with the positive logits ``pos = scale * (x * y[labels]).sum(-1)``, computed by the caller.
    """
    pb = _Problem(x, y)
    rmax, rsum = pb.uninitialized(pb.col_tiles, pb.m), pb.uninitialized(pb.col_tiles, pb.m)
    cmax, csum = pb.uninitialized(pb.row_tiles, pb.n), pb.uninitialized(pb.row_tiles, pb.n)
    if not pb.is_empty():
        _native.cuda.clip_lse_partials(
            *pb.head(scale), rmax.data_ptr(), rsum.data_ptr(), cmax.data_ptr(), csum.data_ptr()
        )

    def merge(pmax, psum):
        top = pmax.max(dim=0).values
        return top + torch.log((psum * torch.exp(pmax - top)).sum(dim=0))

    return merge(rmax, rsum), merge(cmax, csum)


def clip_lse_backward(
    x: Tensor,
    y: Tensor,
    scale: float,
    row_lse: Tensor | None,
    col_lse: Tensor | None,
    grad_row: Tensor | None,
    grad_col: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradient of ``sum(grad_row * row_lse) + sum(grad_col * col_lse)`` by recomputing logit tiles.

    Returns ``(dx [m, dim], dy [n, dim], dscale [])`` float32 (``dscale`` is the gradient with
    respect to ``scale``). Pass ``None`` for a side that does not contribute.
    """
    pb = _Problem(x, y)
    row_lse, grad_row = pb.vector(row_lse, "row_lse", pb.m), pb.vector(grad_row, "grad_row", pb.m)
    col_lse, grad_col = pb.vector(col_lse, "col_lse", pb.n), pb.vector(grad_col, "grad_col", pb.n)
    dx, dy = pb.zeros(*pb.x.shape), pb.zeros(*pb.y.shape)
    part = pb.zeros(pb.col_tiles * pb.row_tiles)
    if not pb.is_empty():
        _native.cuda.clip_grad(
            *pb.head(scale), device_ptr(row_lse), device_ptr(col_lse), device_ptr(grad_row),
            device_ptr(grad_col), dx.data_ptr(), dy.data_ptr(), part.data_ptr(),
        )  # fmt: skip
    return dx, dy, part.sum()


def siglip_rows(
    x: Tensor, y: Tensor, scale: float, bias: float, row_offset: int = 0, col_offset: int = 0
) -> Tensor:
    """Per-row SigLIP loss sums ``Σ_j softplus(-z_ij (scale <x_i, y_j> + bias))`` -> ``[m]`` float32.

    ``z_ij = +1`` where ``row_offset + i == col_offset + j`` (the positives of a shard's block),
    ``-1`` elsewhere.
    """
    pb = _Problem(x, y)
    part = pb.zeros(pb.col_tiles, pb.m)
    if not pb.is_empty():
        _native.cuda.siglip_forward(
            *pb.head(scale), float(bias), int(row_offset), int(col_offset), part.data_ptr()
        )
    return part.sum(dim=0)


def siglip_backward(
    x: Tensor,
    y: Tensor,
    scale: float,
    bias: float,
    grad_rows: Tensor,
    row_offset: int = 0,
    col_offset: int = 0,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradient of ``sum(grad_rows * siglip_rows(...))``: ``(dx, dy, dscale [], dbias [])`` float32."""
    pb = _Problem(x, y)
    g = pb.vector(grad_rows, "grad_rows", pb.m, optional=False)
    dx, dy = pb.zeros(*pb.x.shape), pb.zeros(*pb.y.shape)
    ps, pbias = pb.zeros(pb.col_tiles * pb.row_tiles), pb.zeros(pb.col_tiles * pb.row_tiles)
    if not pb.is_empty():
        _native.cuda.siglip_backward(
            *pb.head(scale), float(bias), int(row_offset), int(col_offset), g.data_ptr(), dx.data_ptr(),
            dy.data_ptr(), ps.data_ptr(), pbias.data_ptr(),
        )  # fmt: skip
    return dx, dy, ps.sum(), pbias.sum()
