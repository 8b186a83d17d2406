"""MaxSim as torch custom ops (``torch.ops.mlvec.maxsim_fwd`` / ``maxsim_bwd``) with autograd.

Both ops read token sets *packed* (``[rows, dim]`` + ``int64`` offsets ``[n + 1]`` + optional
``bool`` row mask ``[rows]``), as the native kernels do; :mod:`mlvec.scoring` turns padded input
into that form with a reshape. The forward returns, per scored pair, the ColBERT sum
``q2d`` (and FILIP's other direction ``d2q`` when asked) plus the argmax positions the backward
needs: the gradient is a gather for the queries and a scatter-add for the documents, done in Rust
(``_native.maxsim.backward``), so nothing of size ``[Lq, Ld]`` per pair is ever kept.

Both ops have fake (meta) implementations, so they trace under ``torch.compile``; the backward is
itself an op, so compiled training steps keep it in the graph. Double backward is not supported.
"""

import numpy as np
import torch
from torch import Tensor

from mlvec import _native
from mlvec._arrays import as_native, longest_set, native_sets

__all__ = ["maxsim_fwd", "maxsim_bwd"]


def _native_sides(
    q: Tensor, q_offsets: Tensor, q_mask: Tensor | None, d: Tensor, d_offsets: Tensor, d_mask: Tensor | None
):
    """Both sides as the native kernels' positional arguments ``(q, q_offsets, q_mask, d,
    d_offsets, d_mask)`` (numpy views, offsets checked) and whether they are bfloat16 bits."""
    qa, bf16, qo, qm = native_sets(q, q_offsets, q_mask, "query_offsets")
    da, _, do, dm = native_sets(d, d_offsets, d_mask, "document_offsets")
    return (qa, qo, qm, da, do, dm), bf16


def _pairs(q_offsets: Tensor, d_offsets: Tensor, paired: bool):
    nq, nd = q_offsets.shape[0] - 1, d_offsets.shape[0] - 1
    return nq if paired else nq * nd


def _fit_argmax(a: np.ndarray | None, p: int, width: int, name: str) -> Tensor:
    """The native argmax ``[P, l]`` widened with -1 to the caller's static ``[P, width]``."""
    if a is None:
        return torch.empty((0, 0), dtype=torch.int32)
    if a.shape[1] > width:
        raise ValueError(f"{name}: the longest set has {a.shape[1]} rows, more than the {width} given")
    out = torch.full((p, width), -1, dtype=torch.int32)
    out[:, : a.shape[1]] = torch.from_numpy(a)
    return out


@torch.library.custom_op("mlvec::maxsim_fwd", mutates_args=(), device_types="cpu")
def maxsim_fwd(
    q: Tensor,
    q_offsets: Tensor,
    q_mask: Tensor | None,
    d: Tensor,
    d_offsets: Tensor,
    d_mask: Tensor | None,
    lq_max: int,
    ld_max: int,
    paired: bool,
    want_argmax: bool,
    want_d2q: bool,
    check_finite_values: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """MaxSim over packed token sets.

    Args:
        q: ``[Tq, dim]`` float32/float16/bfloat16 query token rows.
        q_offsets: ``[nq + 1]`` int64; query ``i`` is rows ``q_offsets[i]:q_offsets[i+1]``.
        q_mask: ``[Tq]`` bool (True = valid) or None.
        d, d_offsets, d_mask: the same for ``nd`` documents.
        lq_max, ld_max: at least the longest query / document (in rows, masked rows included);
            they fix the width of the argmax outputs so that shapes are known before running.
        paired: score query ``i`` against document ``i`` (``nq == nd``) instead of all pairs.
        want_argmax: also return the argmax positions the backward needs (for ``d2q`` too when
            ``want_d2q``); without them the outputs cannot be differentiated.
        want_d2q: also compute FILIP's document-to-query sums and their argmax.
        check_finite_values: raise ValueError if a valid token holds NaN or inf (checked inside
            the kernel as it reads each row, so it costs no extra pass over the inputs).

    Returns:
        ``(q2d [P] float32, q2d_argmax [P, lq_max] int32, d2q [P] float32, d2q_argmax [P, ld_max]
        int32)`` with ``P = nq * nd`` (query-major) or ``nq`` when paired; outputs not asked for
        are empty (``[0]`` / ``[0, 0]``). Argmax positions are local to the other side's set,
        -1 for padding/masked positions or when the other side has no valid token.
    """
    sides, bf16 = _native_sides(q, q_offsets, q_mask, d, d_offsets, d_mask)
    q2d, qarg, d2q, darg = _native.maxsim.forward(
        *sides,
        bf16=bf16,
        paired=paired,
        q2d_argmax=want_argmax,
        d2q=want_d2q,
        d2q_argmax=want_d2q and want_argmax,
        check_finite=check_finite_values,
    )
    p = q2d.shape[0]
    return (
        torch.from_numpy(q2d),
        _fit_argmax(qarg, p, lq_max, "queries"),
        torch.from_numpy(d2q) if d2q is not None else torch.empty(0),
        _fit_argmax(darg, p, ld_max, "documents"),
    )


@maxsim_fwd.register_fake
def _(q, q_offsets, q_mask, d, d_offsets, d_mask, lq_max, ld_max, paired, want_argmax, want_d2q, check_finite_values):
    p = _pairs(q_offsets, d_offsets, paired)
    f32, i32 = torch.float32, torch.int32
    return (
        q.new_empty((p,), dtype=f32),
        q.new_empty((p, lq_max) if want_argmax else (0, 0), dtype=i32),
        q.new_empty((p,) if want_d2q else (0,), dtype=f32),
        q.new_empty((p, ld_max) if want_d2q and want_argmax else (0, 0), dtype=i32),
    )


@torch.library.custom_op("mlvec::maxsim_bwd", mutates_args=(), device_types="cpu")
def maxsim_bwd(
    q: Tensor,
    q_offsets: Tensor,
    q_mask: Tensor | None,
    d: Tensor,
    d_offsets: Tensor,
    d_mask: Tensor | None,
    paired: bool,
    grad_q2d: Tensor | None,
    q2d_argmax: Tensor | None,
    grad_d2q: Tensor | None,
    d2q_argmax: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """Gradients ``(dq [Tq, dim], dd [Td, dim])``, in the dtypes of ``q`` and ``d``, of
    ``sum(grad_q2d * q2d + grad_d2q * d2q)`` through the argmax positions of :func:`maxsim_fwd`.

    ``grad_*`` are ``[P]`` (any float dtype), ``*_argmax`` the ``[P, l]`` int32 outputs of the
    forward; pass None for a direction that carries no gradient. Masked rows get zero.
    """
    sides, bf16 = _native_sides(q, q_offsets, q_mask, d, d_offsets, d_mask)
    qo, do = sides[1], sides[4]

    def g(x: Tensor | None) -> np.ndarray | None:
        return None if x is None else as_native(x, np.float32)

    def a(x: Tensor | None, offsets: np.ndarray) -> np.ndarray | None:
        # The forward may have been given a width wider than the longest set (its columns past
        # the longest set are all -1); the native backward reads exactly the longest set's width.
        return None if x is None else as_native(x[:, : longest_set(offsets)], np.int32)

    dq, dd = _native.maxsim.backward(
        *sides,
        bf16=bf16,
        paired=paired,
        grad_q2d=g(grad_q2d),
        q2d_argmax=a(q2d_argmax, qo),
        grad_d2q=g(grad_d2q),
        d2q_argmax=a(d2q_argmax, do),
    )
    return torch.from_numpy(dq).to(q.dtype), torch.from_numpy(dd).to(d.dtype)


@maxsim_bwd.register_fake
def _(q, q_offsets, q_mask, d, d_offsets, d_mask, paired, grad_q2d, q2d_argmax, grad_d2q, d2q_argmax):
    return torch.empty_like(q, memory_format=torch.contiguous_format), torch.empty_like(
        d, memory_format=torch.contiguous_format
    )


def _setup_context(ctx, inputs, output):
    q, q_offsets, q_mask, d, d_offsets, d_mask, _lq, _ld, paired, want_argmax, want_d2q, _chk = inputs
    _, q_arg, _, d_arg = output
    ctx.save_for_backward(q, q_offsets, q_mask, d, d_offsets, d_mask, q_arg, d_arg)
    ctx.paired = paired
    ctx.has_argmax = want_argmax
    ctx.has_d2q = want_d2q


def _backward(ctx, g_q2d, _g_qarg, g_d2q, _g_darg):
    q, q_offsets, q_mask, d, d_offsets, d_mask, q_arg, d_arg = ctx.saved_tensors
    if not ctx.has_argmax:
        raise RuntimeError("mlvec::maxsim_fwd was called with want_argmax=False, so it cannot be differentiated")
    use_d2q = ctx.has_d2q and g_d2q is not None
    dq, dd = maxsim_bwd(
        q,
        q_offsets,
        q_mask,
        d,
        d_offsets,
        d_mask,
        ctx.paired,
        g_q2d,
        q_arg if g_q2d is not None else None,
        g_d2q if use_d2q else None,
        d_arg if use_d2q else None,
    )
    return dq, None, None, dd, None, None, None, None, None, None, None, None


maxsim_fwd.register_autograd(_backward, setup_context=_setup_context)
