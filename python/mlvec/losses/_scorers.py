"""Tile scorers: dense dot products (CLIP, SigLIP) and token-wise late interaction (FILIP, ColBERT)."""

from __future__ import annotations

import numpy as np
import torch

from mlvec import _native
from mlvec._arrays import Packed, as_native, pack_numpy
from mlvec.losses._engine import Scorer, Tensors


class DenseScorer(Scorer):
    """``sim = A_tile @ B_tile.T`` with torch matmuls (BLAS sgemm/dgemm; fp32 accumulation).

    Half-precision inputs are upcast to float32 once, up front (O(B * d)), so every tile runs on
    the fast fp32 GEMM path.
    """

    shared = True
    default_tile = 2048

    def __init__(self, dtype: torch.dtype):
        self.compute_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        self.grad_dtype = self.compute_dtype
        self._buf: torch.Tensor | None = None

    def _out(self, n: int, m: int, like: torch.Tensor) -> torch.Tensor:
        # One tile buffer reused for every tile: the engine consumes each tile before asking for
        # the next, and a fresh tile^2 allocation per tile costs page faults on every call.
        if self._buf is None or self._buf.numel() < n * m or self._buf.device != like.device:
            self._buf = torch.empty(n * m, dtype=like.dtype, device=like.device)
        return self._buf[: n * m].view(n, m)

    def logits(self, rows: Tensors, cols: Tensors, scale: float, bias: float, need_grad: bool):
        # The scale goes on the (tile x d) rows, not on the (tile x tile) product.
        a, b = rows[0], cols[0]
        lg = torch.mm(a * scale, b.T, out=self._out(a.shape[0], b.shape[0], a))
        if bias:
            lg.add_(bias)
        return lg, None, None

    # The gradients are linear in the logit gradient: the engine accumulates ``G @ B`` and
    # ``G^T @ A`` straight into its gradient buffers and applies the scale once at the end.
    accumulates = True

    def accumulate(self, rows, cols, g_rows, g_cols, d_rows: torch.Tensor, d_cols: torch.Tensor) -> None:
        """``d_rows += G @ cols[0]``, ``d_cols += G^T @ rows[0]`` with ``G = g_rows (+ g_cols)``."""
        g = g_rows if g_cols is None else g_rows.add_(g_cols)
        torch.addmm(d_rows, g, cols[0], out=d_rows)
        torch.addmm(d_cols, g.T, rows[0], out=d_cols)


def _packed(tokens: torch.Tensor, mask: torch.Tensor | None, name: str) -> Packed:
    """A ``[n, L, d]`` token tensor as the native kernel's packed layout (views, no copies)."""
    return pack_numpy(tokens, mask, None, name, f"{name} mask", f"{name} offsets")


def _flat_f32(g: torch.Tensor) -> np.ndarray:
    """Per-pair gradients ``[n, m]`` as the native backward's flat float32 ``[n * m]``."""
    return as_native(g.reshape(-1), np.float32)


class LateInteractionScorer(Scorer):
    """FILIP (mean-of-max both ways, two logit matrices) or ColBERT (sum-of-max, one matrix).

    Rows are ``(tokens [n, La, d], valid [n, La] bool)``, columns ``(tokens [m, Lb, d], valid)``.
    On the CPU for float32/float16/bfloat16 the tiles run in mlvec's native MaxSim kernel (fp32
    accumulation, GIL released); float64 inputs or other devices use a torch einsum per tile.
    """

    default_tile = 64

    def __init__(self, mode: str, dtype: torch.dtype, device: torch.device):
        assert mode in ("filip", "colbert")
        self.mode = mode
        self.shared = mode == "colbert"
        self.native = device.type == "cpu" and dtype in (torch.float32, torch.float16, torch.bfloat16)
        self.compute_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        self.grad_dtype = self.compute_dtype
        if not self.native:
            self.default_tile = 16

    # -- native path -------------------------------------------------------------------------
    def _native_sim(self, rows: Tensors, cols: Tensors, need_grad: bool):
        (ta, ma), (tb, mb) = rows, cols
        n, m = ta.shape[0], tb.shape[0]
        a, b = _packed(ta, ma, "rows"), _packed(tb, mb, "cols")
        filip = self.mode == "filip"
        q2d, q_arg, d2q, d_arg = _native.maxsim.forward(
            a.data, a.offsets, a.mask, b.data, b.offsets, b.mask,
            bf16=a.bf16, q2d_argmax=need_grad, d2q=filip, d2q_argmax=need_grad and filip,
        )  # fmt: skip
        sim_r = torch.from_numpy(q2d).view(n, m)
        if not filip:
            return sim_r, sim_r, (q_arg, None)
        na = ma.sum(1).to(torch.float32)
        nb = mb.sum(1).to(torch.float32)
        sim_r = sim_r / na[:, None]
        sim_c = torch.from_numpy(d2q).view(n, m) / nb[None, :]
        return sim_r, sim_c, (q_arg, d_arg, na, nb)

    def _native_backward(self, rows, cols, g_rows, g_cols, cache):
        (ta, ma), (tb, mb) = rows, cols
        a, b = _packed(ta, ma, "rows"), _packed(tb, mb, "cols")
        if self.mode == "colbert":
            g = g_rows if g_cols is None else g_rows + g_cols
            grads = {"grad_q2d": _flat_f32(g), "q2d_argmax": cache[0]}
        else:
            q_arg, d_arg, na, nb = cache
            # FILIP's sims are means: the sums' gradients divide by the valid counts.
            grads = {"grad_q2d": _flat_f32(g_rows / na[:, None]), "q2d_argmax": q_arg}
            if g_cols is not None:
                grads.update(grad_d2q=_flat_f32(g_cols / nb[None, :]), d2q_argmax=d_arg)
        dq, dd = _native.maxsim.backward(
            a.data, a.offsets, a.mask, b.data, b.offsets, b.mask, bf16=a.bf16, **grads
        )
        return torch.from_numpy(dq).view(ta.shape), torch.from_numpy(dd).view(tb.shape)

    # -- torch path (float64, non-CPU devices) ------------------------------------------------
    def _torch_sims(self, ta, ma, tb, mb):
        s = torch.einsum("ikd,jrd->ijkr", ta.to(self.compute_dtype), tb.to(self.compute_dtype))
        neg = torch.tensor(-torch.inf, dtype=s.dtype, device=s.device)
        q2d_tok = torch.where(mb[None, :, None, :], s, neg).amax(3)  # [i, j, k]
        q2d = torch.where(ma[:, None, :], q2d_tok, torch.zeros_like(q2d_tok)).sum(2)
        if self.mode == "colbert":
            return q2d, q2d
        d2q_tok = torch.where(ma[:, None, :, None], s, neg).amax(2)  # [i, j, r]
        d2q = torch.where(mb[None, :, :], d2q_tok, torch.zeros_like(d2q_tok)).sum(2)
        return q2d / ma.sum(1)[:, None], d2q / mb.sum(1)[None, :]

    def logits(self, rows: Tensors, cols: Tensors, scale: float, bias: float, need_grad: bool):
        if self.native:
            sim_r, sim_c, cache = self._native_sim(rows, cols, need_grad)
        else:
            with torch.no_grad():
                sim_r, sim_c = self._torch_sims(rows[0], rows[1], cols[0], cols[1])
            cache = None
        lr = sim_r * scale + bias
        lc = None if self.shared else sim_c * scale + bias
        return lr, lc, (sim_r, sim_c, cache)

    def backward(self, rows, cols, g_rows, g_cols, cache, scale):
        sim_r, sim_c, inner = cache
        d_scale = float((g_rows * sim_r).sum(dtype=torch.float64))
        if g_cols is not None:
            d_scale += float((g_cols * (sim_r if self.shared else sim_c)).sum(dtype=torch.float64))
        g_rows = g_rows * scale
        g_cols = None if g_cols is None else g_cols * scale
        if self.native:
            da, db = self._native_backward(rows, cols, g_rows, g_cols, inner)
        else:
            da, db = self._torch_backward(rows, cols, g_rows, g_cols)
        return da, db, d_scale

    def _torch_backward(self, rows, cols, g_rows, g_cols):
        ta = rows[0].detach().to(self.compute_dtype).requires_grad_(True)
        tb = cols[0].detach().to(self.compute_dtype).requires_grad_(True)
        with torch.enable_grad():
            sim_r, sim_c = self._torch_sims(ta, rows[1], tb, cols[1])
            outs, grads = [sim_r], [g_rows]
            if g_cols is not None:
                outs.append(sim_c)
                grads.append(g_cols)
            da, db = torch.autograd.grad(outs, [ta, tb], grads)
        return da, db
