"""The tiled, exact contrastive objective shared by every loss in :mod:`mlvec.losses`.

A *scorer* turns a tile of rows (side A) and a tile of columns (side B) into raw similarities;
the engine turns them into logits ``scale * sim + bias`` and computes, without ever holding more
than one ``tile x tile`` block:

- ``"softmax"`` (InfoNCE): an online log-sum-exp over column tiles for every row and, when
  symmetric, over row tiles for every column; positive and label-smoothing terms are picked up
  per tile from a sparse list of positive pairs;
- ``"sigmoid"`` (SigLIP): ``sum softplus(logits) - sum_{positives} logits``, no statistics.

Backward recomputes each tile and forms its logit gradient from the saved per-row and per-column
log-sum-exps (O(B) floats), so memory stays O(B * d + tile^2). The sigmoid loss needs no
statistics, so when a backward pass will follow it computes loss and gradients in one sweep
(three GEMMs per tile instead of four) and keeps the O(B * d) gradients until backward.

Sharding: rank ``r`` owns rows ``A_r`` and columns ``B_r``. It computes the tiles ``A_r x B``
(columns reach it by all-gather, or block by block around a ring), and the column statistics
are combined across ranks with two small all-reduces. In backward the column gradients go back
to their owners (all-reduce, or travelling with their block around the ring).

Gradient convention: the value returned on every rank is the global loss ``L`` (identical on
all ranks). The gradient of every local feature is ``W * dL/dx`` and that of ``logit_scale`` /
``logit_bias`` is ``dL/d(scale)`` on every rank, so after DDP averages parameter gradients over
the ``W`` ranks each parameter holds exactly the gradient of ``L``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from mlvec import _native
from mlvec._arrays import numpy_view
from mlvec.losses._dist import Comm, RingPass, all_gather_rows, all_reduce_

Tensors = tuple[torch.Tensor, ...]


class Scorer:
    """Logits of a row tile against a column tile, and their backward.

    ``rows`` / ``cols`` are tuples whose first tensor is the one that receives gradients.
    ``logits(rows, cols, scale, bias, need_grad)`` returns ``(logits_rows, logits_cols, cache)``:
    ``logits_rows`` feeds the row-wise softmax, ``logits_cols`` the column-wise one (``None`` when
    ``shared``: the same matrix). ``backward(rows, cols, g_rows, g_cols, cache, scale)`` gets the
    loss gradient w.r.t. those logits and returns ``(d rows[0], d cols[0], d scale)``.
    """

    shared: bool = True
    # When True the scorer's sims are ``A @ B^T`` scaled by ``scale``, and it provides
    # ``accumulate(rows, cols, g_rows, g_cols, d_rows, d_cols)`` adding the *unscaled* gradients
    # in place; the engine then derives d(scale) from the totals (see ``_backward``).
    accumulates: bool = False
    compute_dtype: torch.dtype = torch.float32
    grad_dtype: torch.dtype = torch.float32
    default_tile: int = 1024

    def logits(
        self, rows: Tensors, cols: Tensors, scale: float, bias: float, need_grad: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, Any]:
        raise NotImplementedError

    def backward(
        self,
        rows: Tensors,
        cols: Tensors,
        g_rows: torch.Tensor,
        g_cols: torch.Tensor | None,
        cache: Any,
        scale: float,
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        raise NotImplementedError


@dataclass
class Problem:
    """Everything about one loss call that is not a differentiable input."""

    scorer: Scorer
    kind: str  # "softmax" | "sigmoid"
    symmetric: bool
    smoothing: float
    comm: Comm
    strategy: str
    sizes_a: list[int]
    sizes_b: list[int]
    row_pos: torch.Tensor  # [n_a_local, P] global column indices, -1 = padding
    tile: int
    n_rows_tensors: int
    # sigmoid only: compute the gradients in the forward sweep (a backward pass will follow)
    fuse_grad: bool = False
    # filled by the engine
    saved: dict = field(default_factory=dict)

    @property
    def offsets_b(self) -> list[int]:
        out = [0]
        for n in self.sizes_b:
            out.append(out[-1] + n)
        return out


def _slice(ts: Tensors, i0: int, i1: int) -> Tensors:
    return tuple(t[i0:i1] for t in ts)


class _Pairs:
    """The positive pairs of the local rows, sorted by row: ``(row, global col, multiplicity 1)``."""

    def __init__(self, row_pos: torch.Tensor):
        valid = row_pos >= 0
        r, p = valid.nonzero(as_tuple=True)
        self.rows = r
        self.cols = row_pos[r, p]
        self.count = valid.sum(1)

    def in_tile(self, i0: int, i1: int, j0: int, j1: int) -> tuple[torch.Tensor, torch.Tensor]:
        lo = int(torch.searchsorted(self.rows, i0))
        hi = int(torch.searchsorted(self.rows, i1))
        r, c = self.rows[lo:hi], self.cols[lo:hi]
        keep = (c >= j0) & (c < j1)
        return r[keep] - i0, c[keep]


def _col_blocks(pb: Problem, cols: Tensors) -> Iterator[tuple[int, Tensors]]:
    """Column blocks ``(global offset, tensors)`` this rank visits, in order."""
    comm = pb.comm
    if not comm.distributed:
        yield 0, cols
        return
    if pb.strategy == "all_gather":
        yield 0, tuple(all_gather_rows(comm, t, pb.sizes_b) for t in cols)
        return
    ring = RingPass(comm)
    offs = pb.offsets_b
    cur = cols
    for k in range(comm.world):
        src = (comm.rank - k) % comm.world
        last = k == comm.world - 1
        if not last:
            ring.start(cur, pb.sizes_b[(comm.rank - k - 1) % comm.world])
        yield offs[src], cur
        if not last:
            cur = tuple(ring.wait())


def _softplus(x: torch.Tensor) -> torch.Tensor:
    # Exact everywhere (torch's softplus switches to the identity above a threshold).
    return x.clamp(min=0).add_(torch.log1p(torch.exp(-x.abs())))


class TiledLoss(torch.autograd.Function):
    """``apply(problem, scale, bias, *rows, *cols) -> loss`` (a 0-dim tensor)."""

    @staticmethod
    def forward(ctx, pb: Problem, scale: torch.Tensor, bias: torch.Tensor, *tensors: torch.Tensor):
        rows, cols = tensors[: pb.n_rows_tensors], tensors[pb.n_rows_tensors :]
        sv, bv = float(scale.detach().reshape(())), float(bias.detach().reshape(()))
        ctx.fused = None
        if pb.fuse_grad:
            *grads, loss = _backward(pb, rows, cols, sv, bv, with_loss=True)
            ctx.fused = tuple(grads)
        else:
            loss = _forward(pb, rows, cols, sv, bv)
        ctx.pb = pb
        ctx.scale_val, ctx.bias_val = sv, bv
        ctx.save_for_backward(scale, bias, *tensors)
        return torch.tensor(loss, dtype=scale.dtype, device=scale.device)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        pb: Problem = ctx.pb
        saved = ctx.saved_tensors
        scale, bias, tensors = saved[0], saved[1], saved[2:]
        rows, cols = tensors[: pb.n_rows_tensors], tensors[pb.n_rows_tensors :]
        g = float(grad_out)
        if ctx.fused is not None:
            d_rows, d_cols, d_scale, d_bias = ctx.fused
            ctx.fused = None  # scaled in place below; a second backward recomputes
        else:
            d_rows, d_cols, d_scale, d_bias, _ = _backward(pb, rows, cols, ctx.scale_val, ctx.bias_val)
        w = pb.comm.world
        out_rows = [None] * len(rows)
        out_cols = [None] * len(cols)
        # In place: the gradients are O(B * d) and the peak memory is what this module is for.
        out_rows[0] = d_rows.mul_(g * w).to(rows[0].dtype)
        out_cols[0] = d_cols.mul_(g * w).to(cols[0].dtype)
        gs = torch.full_like(scale, d_scale * g)
        gb = torch.full_like(bias, d_bias * g)
        return (None, gs, gb, *out_rows, *out_cols)


def _weights(pb: Problem, pairs: _Pairs, cd: torch.dtype, device: torch.device) -> None:
    """Per-row / per-column weights of the softmax objective (needs the global positive counts)."""
    nb = sum(pb.sizes_b)
    sv = pb.saved
    has_pos = (pairs.count > 0).to(cd)
    n_rows_with_pos = all_reduce_(pb.comm, has_pos.sum().reshape(1).to(torch.float64)).item()
    half = 0.5 if pb.symmetric else 1.0
    sv["w_r"] = has_pos * (half / max(n_rows_with_pos, 1.0))
    sv["inv_n"] = 1.0 / pairs.count.clamp(min=1).to(cd)
    if pb.symmetric:
        q = torch.bincount(pairs.cols, minlength=nb).to(torch.float64)
        all_reduce_(pb.comm, q)
        n_cols_with_pos = float((q > 0).sum())
        sv["w_c"] = ((q > 0).to(cd) * (half / max(n_cols_with_pos, 1.0))).to(device)
        sv["inv_q"] = (1.0 / q.clamp(min=1)).to(cd).to(device)


def _forward(pb: Problem, rows: Tensors, cols: Tensors, scale: float, bias: float) -> float:
    sc = pb.scorer
    cd = sc.compute_dtype
    device = rows[0].device
    n_a = rows[0].shape[0]
    na_glob, nb_glob = sum(pb.sizes_a), sum(pb.sizes_b)
    pairs = _Pairs(pb.row_pos.to(device))
    pb.saved["pairs"] = pairs
    eps = pb.smoothing
    sigmoid = pb.kind == "sigmoid"
    sym = pb.symmetric and not sigmoid
    if not sigmoid:
        _weights(pb, pairs, cd, device)
        w_r, inv_n = pb.saved["w_r"], pb.saved["inv_n"]
        lse_r = torch.full((n_a,), -math.inf, dtype=cd, device=device)
    if sym:
        w_c, inv_q = pb.saved["w_c"], pb.saved["inv_q"]
        lse_c = torch.full((nb_glob,), -math.inf, dtype=cd, device=device)
    total = 0.0
    T = pb.tile
    native = _native_tiles(pb, device)
    for c0, block in _col_blocks(pb, cols):
        nb = block[0].shape[0]
        for j0 in range(0, nb, T):
            j1 = min(j0 + T, nb)
            ct = _slice(block, j0, j1)
            g0, g1 = c0 + j0, c0 + j1
            for i0 in range(0, n_a, T):
                i1 = min(i0 + T, n_a)
                # The native kernels add the bias themselves (no extra pass over the tile).
                lr, lc, _ = sc.logits(_slice(rows, i0, i1), ct, scale, 0.0 if native else bias, False)
                pr, pc = pairs.in_tile(i0, i1, g0, g1)
                if native and sigmoid:
                    total += _native.contrastive.sigmoid_loss(numpy_view(lr), bias)
                    total -= float(lr[pr, pc - g0].sum(dtype=torch.float64)) + bias * len(pr)
                    continue
                if native:
                    # One cache-resident pass: bias added in place, row and column log-sum-exps.
                    rl, cl = _native.contrastive.softmax_stats(numpy_view(lr), bias, cols=sym)
                    torch.logaddexp(lse_r[i0:i1], torch.from_numpy(rl), out=lse_r[i0:i1])
                    wr = w_r[i0:i1]
                    coef = wr[pr] * inv_n[i0:i1][pr] * (1.0 - eps)
                    total -= float((lr[pr, pc - g0] * coef).sum(dtype=torch.float64))
                    if eps:
                        total -= eps / nb_glob * float((lr.sum(1) * wr).sum(dtype=torch.float64))
                    if sym:
                        torch.logaddexp(lse_c[g0:g1], torch.from_numpy(cl), out=lse_c[g0:g1])
                        coef = w_c[pc] * inv_q[pc] * (1.0 - eps)
                        total -= float((lr[pr, pc - g0] * coef).sum(dtype=torch.float64))
                        if eps:
                            total -= eps / na_glob * float((lr.sum(0) * w_c[g0:g1]).sum(dtype=torch.float64))
                    continue
                if sigmoid:
                    total += float(_softplus(lr).sum(dtype=torch.float64))
                    total -= float(lr[pr, pc - g0].sum(dtype=torch.float64))
                    continue
                # Online log-sum-exp over column tiles (rows) and over row tiles (columns).
                torch.logaddexp(lse_r[i0:i1], torch.logsumexp(lr, 1), out=lse_r[i0:i1])
                wr = w_r[i0:i1]
                coef = wr[pr] * inv_n[i0:i1][pr] * (1.0 - eps)
                total -= float((lr[pr, pc - g0] * coef).sum(dtype=torch.float64))
                if eps:
                    total -= eps / nb_glob * float((lr.sum(1) * wr).sum(dtype=torch.float64))
                if sym:
                    lc = lr if lc is None else lc
                    torch.logaddexp(lse_c[g0:g1], torch.logsumexp(lc, 0), out=lse_c[g0:g1])
                    coef = w_c[pc] * inv_q[pc] * (1.0 - eps)
                    total -= float((lc[pr, pc - g0] * coef).sum(dtype=torch.float64))
                    if eps:
                        total -= eps / na_glob * float((lc.sum(0) * w_c[g0:g1]).sum(dtype=torch.float64))
    if sigmoid:
        total /= na_glob
    else:
        pb.saved["lse_r"] = lse_r
        total += float((lse_r * w_r).sum(dtype=torch.float64))
        if sym:
            # Combine every rank's partial column log-sum-exps into the global one.
            if pb.comm.distributed:
                m = lse_c.clone()
                all_reduce_(pb.comm, m, "max")
                safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
                part = torch.exp(lse_c - safe)
                all_reduce_(pb.comm, part)
                lse_c = safe + torch.log(part)
            pb.saved["lse_c"] = lse_c
            lo, hi = pb.offsets_b[pb.comm.rank], pb.offsets_b[pb.comm.rank + 1]
            total += float((lse_c[lo:hi] * w_c[lo:hi]).sum(dtype=torch.float64))
        # Fold the weights into the saved log-sum-exps: backward's softmax times weight is then
        # one exp of (logit - shifted lse); a zero weight becomes a +inf shift, i.e. exactly 0.
        pb.saved["shift_r"] = lse_r - torch.log(w_r)
        if sym:
            pb.saved["shift_c"] = pb.saved["lse_c"] - torch.log(w_c)
    t = torch.tensor([total], dtype=torch.float64)
    all_reduce_(pb.comm, t)
    return float(t)


def _native_tiles(pb: Problem, device: torch.device) -> bool:
    """Whether the tiles' element-wise work runs in the native fused kernels.

    They need one float32 logits matrix per tile (the dense and ColBERT scorers; FILIP has two)
    on the CPU.
    """
    sc = pb.scorer
    return sc.shared and sc.compute_dtype == torch.float32 and device.type == "cpu"


def _tile_grads_native(
    pb: Problem,
    lr: torch.Tensor,
    bias: float,
    i0: int,
    i1: int,
    g0: int,
    g1: int,
    pr: torch.Tensor,
    pc: torch.Tensor,
    with_loss: bool,
) -> tuple[torch.Tensor, None, float, float]:
    """:func:`_tile_grads` for a shared float32 tile without bias, one fused pass. Overwrites ``lr``."""
    sv = pb.saved
    eps = pb.smoothing
    na_glob, nb_glob = sum(pb.sizes_a), sum(pb.sizes_b)
    if pb.kind == "sigmoid":
        # The positives' logits before the kernel overwrites the tile (the loss needs them).
        pos = float(lr[pr, pc - g0].sum(dtype=torch.float64)) + bias * len(pr) if with_loss else 0.0
        sp, total = _native.contrastive.sigmoid_loss_grad(numpy_view(lr), bias, 1.0 / na_glob)
        loss = (sp - pos) / na_glob if with_loss else 0.0
        lr[pr, pc - g0] -= 1.0 / na_glob
        return lr, None, total - len(pr) / na_glob, loss
    sym = pb.symmetric
    shift_c = numpy_view(sv["shift_c"][g0:g1]) if sym else None
    _native.contrastive.softmax_grad(numpy_view(lr), bias, numpy_view(sv["shift_r"][i0:i1]), shift_c)
    wr = sv["w_r"][i0:i1]
    if eps:
        lr.sub_((eps / nb_glob) * wr[:, None])
        if sym:
            lr.sub_((eps / na_glob) * sv["w_c"][None, g0:g1])
    lr.index_put_((pr, pc - g0), -(wr[pr] * sv["inv_n"][i0:i1][pr] * (1.0 - eps)), accumulate=True)
    if sym:
        lr.index_put_((pr, pc - g0), -(sv["w_c"][pc] * sv["inv_q"][pc] * (1.0 - eps)), accumulate=True)
    # Softmax gradients sum to zero in every row and column: the bias cancels exactly.
    return lr, None, 0.0, 0.0


def _tile_grads(
    pb: Problem,
    lr: torch.Tensor,
    lc: torch.Tensor | None,
    i0: int,
    i1: int,
    g0: int,
    g1: int,
    pr: torch.Tensor,
    pc: torch.Tensor,
    with_loss: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, float, float]:
    """Loss gradient w.r.t. the tile's row logits and (if separate) column logits, the tile's
    share of d(loss)/d(bias), and (sigmoid ``with_loss``) the tile's share of the loss.
    Overwrites ``lr`` / ``lc``."""
    sv = pb.saved
    eps = pb.smoothing
    na_glob, nb_glob = sum(pb.sizes_a), sum(pb.sizes_b)
    if pb.kind == "sigmoid":
        loss = 0.0
        if with_loss:
            loss = float(_softplus(lr).sum(dtype=torch.float64))
            loss = (loss - float(lr[pr, pc - g0].sum(dtype=torch.float64))) / na_glob
        gr = torch.sigmoid_(lr).div_(na_glob)
        gr[pr, pc - g0] -= 1.0 / na_glob
        return gr, None, float(gr.sum(dtype=torch.float64)), loss
    gc = None
    if pb.symmetric:
        src = lr if lc is None else lc
        gc = torch.sub(src, sv["shift_c"][None, g0:g1]).exp_()
        if eps:
            gc.sub_((eps / na_glob) * sv["w_c"][None, g0:g1])
        gc.index_put_((pr, pc - g0), -(sv["w_c"][pc] * sv["inv_q"][pc] * (1.0 - eps)), accumulate=True)
    wr = sv["w_r"][i0:i1]
    gr = lr.sub_(sv["shift_r"][i0:i1, None]).exp_()
    if eps:
        gr.sub_((eps / nb_glob) * wr[:, None])
    gr.index_put_((pr, pc - g0), -(wr[pr] * sv["inv_n"][i0:i1][pr] * (1.0 - eps)), accumulate=True)
    # Softmax gradients sum to zero in every row and column: the bias cancels exactly.
    if gc is not None and lc is None:
        return gr.add_(gc), None, 0.0, 0.0
    return gr, gc, 0.0, 0.0


def _backward(
    pb: Problem, rows: Tensors, cols: Tensors, scale: float, bias: float, with_loss: bool = False
) -> tuple[torch.Tensor, torch.Tensor, float, float, float]:
    """Gradients ``(d rows[0], d cols[0], d scale, d bias)`` and, for the sigmoid loss
    ``with_loss``, the loss from the same sweep (else 0)."""
    sc = pb.scorer
    if with_loss:
        pb.saved["pairs"] = _Pairs(pb.row_pos.to(rows[0].device))
    comm = pb.comm
    pairs: _Pairs = pb.saved["pairs"]
    n_a = rows[0].shape[0]
    T = pb.tile
    d_rows = torch.zeros(rows[0].shape, dtype=sc.grad_dtype, device=rows[0].device)
    acc = {"scale": 0.0, "bias": 0.0, "loss": 0.0}
    native = _native_tiles(pb, rows[0].device)

    def visit(c0: int, block: Tensors, d_block: torch.Tensor) -> None:
        nb = block[0].shape[0]
        for j0 in range(0, nb, T):
            j1 = min(j0 + T, nb)
            ct = _slice(block, j0, j1)
            for i0 in range(0, n_a, T):
                i1 = min(i0 + T, n_a)
                rt = _slice(rows, i0, i1)
                lr, lc, cache = sc.logits(rt, ct, scale, 0.0 if native else bias, True)
                pr, pc = pairs.in_tile(i0, i1, c0 + j0, c0 + j1)
                if native:
                    gr, gc, dbias, loss = _tile_grads_native(
                        pb, lr, bias, i0, i1, c0 + j0, c0 + j1, pr, pc, with_loss
                    )
                else:
                    gr, gc, dbias, loss = _tile_grads(pb, lr, lc, i0, i1, c0 + j0, c0 + j1, pr, pc, with_loss)
                acc["bias"] += dbias
                acc["loss"] += loss
                if sc.accumulates:
                    sc.accumulate(rt, ct, gr, gc, d_rows[i0:i1], d_block[j0:j1])
                    continue
                da, db, dscale = sc.backward(rt, ct, gr, gc, cache, scale)
                acc["scale"] += dscale
                d_rows[i0:i1] += da
                d_block[j0:j1] += db

    if not comm.distributed or pb.strategy == "all_gather":
        full = cols if not comm.distributed else tuple(all_gather_rows(comm, t, pb.sizes_b) for t in cols)
        d_full = torch.zeros(full[0].shape, dtype=sc.grad_dtype, device=full[0].device)
        visit(0, full, d_full)
        if comm.distributed:
            all_reduce_(comm, d_full)
            lo, hi = pb.offsets_b[comm.rank], pb.offsets_b[comm.rank + 1]
            d_full = d_full[lo:hi].clone()  # let the full buffer go
        d_cols = d_full
    else:
        # Ring: each column block travels with the gradient accumulated for it so far; after W
        # hops the gradient arrives back at the block's owner.
        ring, gring = RingPass(comm), RingPass(comm)
        offs = pb.offsets_b
        cur = cols
        g_cur = torch.zeros(cols[0].shape, dtype=sc.grad_dtype, device=cols[0].device)
        for k in range(comm.world):
            src = (comm.rank - k) % comm.world
            nxt_rows = pb.sizes_b[(comm.rank - k - 1) % comm.world]
            last = k == comm.world - 1
            if not last:
                ring.start(cur, nxt_rows)
            visit(offs[src], cur, g_cur)
            gring.start([g_cur], nxt_rows)
            if not last:
                cur = tuple(ring.wait())
            (g_cur,) = gring.wait()
        d_cols = g_cur
    if sc.accumulates:
        # Unscaled so far. d(scale) = sum_ij G_ij <a_i, b_j> = sum_i <a_i, (G B)_i>: one O(B * d)
        # pass over this rank's rows, whose gradient rows hold every column's contribution.
        # Row blocks keep the temporaries at tile size (a float64 copy of all B x d would not be).
        acc["scale"] = sum(
            float((rows[0][i : i + T] * d_rows[i : i + T]).sum(dtype=torch.float64)) for i in range(0, n_a, T)
        )
        d_rows.mul_(scale)
        d_cols.mul_(scale)
    red = torch.tensor([acc["scale"], acc["bias"], acc["loss"]], dtype=torch.float64)
    all_reduce_(comm, red)
    return d_rows, d_cols, float(red[0]), float(red[1]), float(red[2])
