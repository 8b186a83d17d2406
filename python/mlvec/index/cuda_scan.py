"""Quantized-code scans on CUDA (re-exported by :mod:`mlvec.cuda`): PQ look-up-table distances,
binary Hamming distances and a k-smallest selection that turns either into top-k lists.

Inputs are CUDA tensors; outputs are allocated on their device and launched on torch's current
stream.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mlvec import _native
from mlvec._arrays import cuda_tensor, device_ptr
from mlvec.cuda import launch_place, limits

__all__ = ["pq_scan", "hamming_scan", "topk_smallest"]


def _matrix(t: Tensor, name: str, dtype: torch.dtype, ndim: int, shape: str, device=None) -> Tensor:
    """A CUDA tensor argument of ``dtype`` and ``ndim`` dimensions (``shape`` describes them)."""
    t = cuda_tensor(t, name, device)
    if t.dtype != dtype or t.dim() != ndim:
        raise ValueError(
            f"{name}: expected {str(dtype).removeprefix('torch.')} {shape}, got {t.dtype} {tuple(t.shape)}"
        )
    return t


def pq_scan(codes: Tensor, lut: Tensor) -> Tensor:
    """PQ distances ``dist[q, i] = Σ_s lut[q, s, codes[i, s]]``: uint8 ``codes [n, m]``, float32
    ``lut [nq, m, ksub]`` (ksub <= 256) -> float32 ``[nq, n]``."""
    codes = _matrix(codes, "codes", torch.uint8, 2, "[n, m]")
    lut = _matrix(lut, "lut", torch.float32, 3, f"[nq, {codes.shape[1]}, ksub]", codes.device)
    if lut.shape[1] != codes.shape[1]:
        raise ValueError(
            f"lut: expected float32 [nq, {codes.shape[1]}, ksub], got {lut.dtype} {tuple(lut.shape)}"
        )
    n, m = codes.shape
    nq, _, ksub = lut.shape
    dist = torch.empty((nq, n), dtype=torch.float32, device=codes.device)
    dev, stream = launch_place(codes.device)
    _native.cuda.pq_scan(dev, stream, codes.data_ptr(), n, m, ksub, lut.data_ptr(), nq, dist.data_ptr())
    return dist


def hamming_scan(codes: Tensor, queries: Tensor) -> Tensor:
    """Hamming distances between binary codes: int64 (bit patterns) ``codes [n, words]`` and
    ``queries [nq, words]`` -> float32 ``[nq, n]`` (exact integers)."""
    codes = _matrix(codes, "codes", torch.int64, 2, "[*, words]")
    queries = _matrix(queries, "queries", torch.int64, 2, "[*, words]", codes.device)
    if queries.shape[1] != codes.shape[1]:
        raise ValueError(f"queries: {queries.shape[1]} words per code, but codes have {codes.shape[1]}")
    n, words = codes.shape
    nq = queries.shape[0]
    dist = torch.empty((nq, n), dtype=torch.float32, device=codes.device)
    dev, stream = launch_place(codes.device)
    _native.cuda.hamming_scan(
        dev, stream, codes.data_ptr(), n, words, queries.data_ptr(), nq, dist.data_ptr()
    )
    return dist


def topk_smallest(dist: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` smallest entries of each row of float32 ``dist [rows, n]``, ascending, smaller
    column first on ties: ``(values [rows, k] float32, ids [rows, k] int64)``; when ``n < k`` the
    tail is ``(inf, -1)``. NaN sorts last. ``1 <= k <= 1024``.
    """
    dist = _matrix(dist, "dist", torch.float32, 2, "[rows, n]")
    lim = limits()
    if not 1 <= k <= lim.max_k:
        raise ValueError(f"k: must be in 1..{lim.max_k}, got {k}")
    rows, n = dist.shape
    dev, stream = launch_place(dist.device)
    vals, ids = dist, None
    while True:
        chunks = max(1, -(-n // lim.select_chunk))
        out_v = torch.empty((rows, chunks, k), dtype=torch.float32, device=dist.device)
        out_i = torch.empty((rows, chunks, k), dtype=torch.int64, device=dist.device)
        _native.cuda.select_k(
            dev, stream, device_ptr(vals), device_ptr(ids), rows, n, k, out_v.data_ptr(), out_i.data_ptr()
        )
        if chunks == 1:
            return out_v.reshape(rows, k), out_i.reshape(rows, k)
        vals, ids, n = out_v.reshape(rows, -1), out_i.reshape(rows, -1), chunks * k
