"""MaxSim on CUDA: the kernel wrappers (re-exported as :mod:`mlvec.cuda`'s) and the CUDA
implementations of ``mlvec::maxsim_fwd`` / ``mlvec::maxsim_bwd`` (:mod:`mlvec.ops.maxsim`).

The op kernels adapt the ops' contract to :func:`maxsim_forward` / :func:`maxsim_backward`: the
static argmax widths ``lq_max`` / ``ld_max`` are handed to the kernels (which fill the tail of
each row with -1, as the CPU path does), the gradients come back in the inputs' dtypes, and
offsets/masks given on the CPU are moved to the embeddings' device.

Registering a kernel for the ``cuda`` dispatch key is pure Python: it needs neither a GPU nor
NVRTC, so importing :mod:`mlvec.ops` works everywhere and the CPU kernels stay as they are.
NVRTC is only touched when a CUDA tensor actually reaches an op.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mlvec import _native
from mlvec._arrays import (
    check_float,
    check_offsets_stats,
    cuda_sets,
    cuda_tensor,
    device_ptr,
    dtype_name,
    longest_set,
    offsets_stats,
    tensor_mask,
    tensor_offsets,
)
from mlvec.cuda import launch_place, limits
from mlvec.ops.maxsim import maxsim_bwd, maxsim_fwd

__all__ = ["maxsim_forward", "maxsim_backward", "filip_forward"]

_SIDES = ("queries", "documents")


def _pair_sets(q, q_offsets, q_mask, d, d_offsets, d_mask, names, paired, max_lens):
    """Both sides of a MaxSim launch, checked against each other: ``(q, d, dtype name, pairs)``
    with each side a :class:`~mlvec._arrays.DeviceSets`."""
    lq_given, ld_given = max_lens if max_lens is not None else (None, None)
    q = cuda_sets(q, q_offsets, q_mask, names[0], max_len=lq_given)
    d = cuda_sets(d, d_offsets, d_mask, names[1], q.data.device, ld_given)
    check_float(q.data, names[0])
    first = f"the {names[0]}'" if names[0].endswith("s") else f"{names[0]}'s"  # "the queries'", "a's"
    if d.data.dtype != q.data.dtype:
        raise TypeError(f"{names[1]}: dtype {d.data.dtype} does not match {first} {q.data.dtype}")
    if d.data.shape[1] != q.data.shape[1]:
        raise ValueError(
            f"{names[1]}: embedding dimension {d.data.shape[1]} does not match {first} {q.data.shape[1]}"
        )
    if paired and q.n != d.n:
        raise ValueError(
            f"{names[1]}: paired scoring needs as many sets as {names[0]}, "
            f"got {q.n} {names[0]} and {d.n} {names[1]}"
        )
    return q, d, dtype_name(q.data), q.n if paired else q.n * d.n


# ---- the wrappers ------------------------------------------------------------------------------


def maxsim_forward(
    q: Tensor,
    q_offsets: Tensor,
    q_mask: Tensor | None,
    d: Tensor,
    d_offsets: Tensor,
    d_mask: Tensor | None,
    *,
    paired: bool = False,
    q2d_argmax: bool = False,
    d2q: bool = False,
    d2q_argmax: bool = False,
    max_lens: tuple[int, int] | None = None,
) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
    """MaxSim of P pairs on the GPU (``nq * nd`` query-major, or ``n`` when ``paired``).

    Args: packed query rows ``q [rows_q, dim]`` with integer ``q_offsets [nq + 1]`` and optional
    bool ``q_mask [rows_q]``; the same for documents; embeddings are CUDA tensors of one float
    dtype (offsets and masks may be given on the CPU).

    Returns ``(q2d [P] float32, q2d_argmax [P, lq_max] int32 | None, d2q [P] float32 | None,
    d2q_argmax [P, ld_max] int32 | None)``, the contract of ``mlvec._native.maxsim.forward``.
    ``max_lens=(lq_max, ld_max)`` skips reading the offsets back (no synchronisation); the caller
    then guarantees valid offsets and those longest set lengths.
    fp16/bf16 products run on tensor cores with fp32 accumulation; the ``[lq, ld]`` similarity
    of a pair never reaches global memory.
    """
    qs, ds, dt, p = _pair_sets(q, q_offsets, q_mask, d, d_offsets, d_mask, _SIDES, paired, max_lens)
    q, lq_max, ld_max = qs.data, qs.longest, ds.longest
    dev, stream = launch_place(q.device)
    f32, i32 = torch.float32, torch.int32
    sums = torch.empty(p, dtype=f32, device=q.device)
    q_arg = torch.empty((p, lq_max), dtype=i32, device=q.device) if q2d_argmax else None
    want_cols = d2q or d2q_argmax
    d_sum = torch.empty(p, dtype=f32, device=q.device) if want_cols else None
    d_arg = torch.empty((p, ld_max), dtype=i32, device=q.device) if d2q_argmax else None
    if p == 0:
        return sums, q_arg, d_sum, d_arg
    qa, da, dim = qs.native_arg(), ds.native_arg(), q.shape[1]
    one_pass = want_cols and ld_max <= limits().max_cols
    _native.cuda.maxsim_forward(
        dt, dev, stream, qa, da, dim, paired, False, lq_max, ld_max,
        sums.data_ptr(), device_ptr(q_arg),
        device_ptr(d_sum) if one_pass else 0, device_ptr(d_arg) if one_pass else 0,
    )  # fmt: skip
    if want_cols and not one_pass:
        # Long document sets: the d->q direction is the q->d kernel with the roles swapped.
        _native.cuda.maxsim_forward(
            dt, dev, stream, da, qa, dim, paired, True, ld_max, lq_max,
            d_sum.data_ptr(), device_ptr(d_arg), 0, 0,
        )  # fmt: skip
    return sums, q_arg, d_sum if d2q else None, d_arg


def maxsim_backward(
    q: Tensor,
    q_offsets: Tensor,
    q_mask: Tensor | None,
    d: Tensor,
    d_offsets: Tensor,
    d_mask: Tensor | None,
    *,
    paired: bool = False,
    grad_q2d: Tensor | None = None,
    q2d_argmax: Tensor | None = None,
    grad_d2q: Tensor | None = None,
    d2q_argmax: Tensor | None = None,
    deterministic: bool = True,
    max_lens: tuple[int, int] | None = None,
) -> tuple[Tensor, Tensor]:
    """Gradients ``(dq [rows_q, dim], dd [rows_d, dim])`` float32 of ``sum(grad_q2d * q2d + grad_d2q * d2q)``.

    Takes the argmax positions saved by :func:`maxsim_forward`. The query-side rows of each
    direction are gathered (deterministic); the other side is scattered either in a fixed order
    (``deterministic=True``) or with atomic adds (faster on large all-pairs batches, summation
    order varies). Positions outside the other set are skipped. ``max_lens`` as in
    :func:`maxsim_forward`.
    """
    qs, ds, dt, p = _pair_sets(q, q_offsets, q_mask, d, d_offsets, d_mask, _SIDES, paired, max_lens)
    q, d, lq_max, ld_max = qs.data, ds.data, qs.longest, ds.longest
    dev, stream = launch_place(q.device)
    dq = torch.zeros(q.shape, dtype=torch.float32, device=q.device)
    dd = torch.zeros(d.shape, dtype=torch.float32, device=q.device)
    qa, da, dim = qs.native_arg(), ds.native_arg(), q.shape[1]
    scatter = "scatter_b" if deterministic else "scatter_b_atomic"
    for name, g, arg, l_max in (("q2d", grad_q2d, q2d_argmax, lq_max), ("d2q", grad_d2q, d2q_argmax, ld_max)):
        if (g is None) != (arg is None):
            raise ValueError(f"grad_{name} and {name}_argmax must be given together")
        if g is None:
            continue
        g = cuda_tensor(g, f"grad_{name}", q.device).to(torch.float32)
        arg = cuda_tensor(arg, f"{name}_argmax", q.device)
        if g.shape != (p,) or arg.shape != (p, l_max) or arg.dtype != torch.int32:
            raise ValueError(
                f"{name}: expected grad [{p}] and int32 argmax [{p}, {l_max}], got {tuple(g.shape)} and "
                f"{arg.dtype} {tuple(arg.shape)}"
            )
        if p == 0:
            continue
        # q2d: A = queries, B = documents. d2q: the roles swap (and all-pairs outputs transpose).
        a, b, ga, gb, transpose = (qa, da, dq, dd, False) if name == "q2d" else (da, qa, dd, dq, True)
        lb_max = ld_max if name == "q2d" else lq_max
        ptrs = (g.data_ptr(), arg.data_ptr(), ga.data_ptr(), gb.data_ptr())
        args = (a, b, dim, paired, transpose, l_max, lb_max, *ptrs)
        _native.cuda.maxsim_backward(dt, dev, stream, "gather_a", *args)
        _native.cuda.maxsim_backward(dt, dev, stream, scatter, *args)
    return dq, dd


def filip_forward(
    a: Tensor,
    a_offsets: Tensor,
    a_mask: Tensor | None,
    b: Tensor,
    b_offsets: Tensor,
    b_mask: Tensor | None,
    *,
    paired: bool = False,
    argmax: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """FILIP tile: token-wise max both ways inside each pair, in one pass.

    Returns ``(a_mean [P], b_mean [P], a_argmax [P, la_max] | None, b_argmax [P, lb_max] | None)``:
    ``a_mean`` is the mean over valid ``a`` tokens of their max over valid ``b`` tokens (0 when
    ``a`` has none), ``b_mean`` the other way. The longest ``b`` set must fit the kernel's shared
    memory (2,048 tokens); :func:`maxsim_forward` has no such limit. For the gradient use
    :func:`maxsim_backward` with the upstream gradients divided by the valid counts.
    """
    sa, sb, dt, p = _pair_sets(a, a_offsets, a_mask, b, b_offsets, b_mask, ("a", "b"), paired, None)
    a, la_max, lb_max = sa.data, sa.longest, sb.longest
    dev, stream = launch_place(a.device)
    a_mean = torch.empty(p, dtype=torch.float32, device=a.device)
    b_mean = torch.empty(p, dtype=torch.float32, device=a.device)
    a_arg = torch.empty((p, la_max), dtype=torch.int32, device=a.device) if argmax else None
    b_arg = torch.empty((p, lb_max), dtype=torch.int32, device=a.device) if argmax else None
    if p:
        _native.cuda.filip_forward(
            dt, dev, stream, sa.native_arg(), sb.native_arg(), a.shape[1], paired, la_max, lb_max,
            a_mean.data_ptr(), b_mean.data_ptr(), device_ptr(a_arg), device_ptr(b_arg),
        )  # fmt: skip
    return a_mean, b_mean, a_arg, b_arg


# ---- the ops' CUDA kernels -----------------------------------------------------------------------


def _cuda_module():
    """:mod:`mlvec.cuda` (whose MaxSim wrappers are this module's), after checking that its
    kernels can run (clear error otherwise)."""
    import mlvec.cuda as mc

    ok, why = mc.available()
    if not ok:
        raise RuntimeError(
            f"mlvec: a CUDA tensor reached mlvec::maxsim, but the CUDA kernels cannot run: {why}"
        )
    return mc


def _on(t: Tensor | None, device: torch.device) -> Tensor | None:
    return None if t is None else t.to(device)


def _sets_on(q: Tensor, q_offsets, q_mask, d: Tensor, d_offsets, d_mask):
    """Both sides' offsets (int64) and masks (bool, flat) on the embeddings' device."""
    dev = q.device
    return (
        tensor_offsets(q_offsets, "query_offsets", dev),
        None if q_mask is None else tensor_mask(q_mask, "query_mask", (q.shape[0],), dev),
        tensor_offsets(d_offsets, "document_offsets", dev),
        None if d_mask is None else tensor_mask(d_mask, "document_mask", (d.shape[0],), dev),
    )


def _validate(
    q: Tensor,
    q_offsets: Tensor,
    q_mask: Tensor | None,
    d: Tensor,
    d_offsets: Tensor,
    d_mask: Tensor | None,
    lq_max: int,
    ld_max: int,
    check_finite_values: bool,
) -> None:
    """The checks the CPU op makes, with a single device-to-host read for both sides.

    The offsets rule of :mod:`mlvec._arrays`, no set longer than the static width and, with
    ``check_finite_values``, no valid token row holding NaN or inf.
    """
    stats = []
    sides = (
        ("queries", "query_offsets", q, q_offsets, q_mask),
        ("documents", "document_offsets", d, d_offsets, d_mask),
    )
    for _, _, x, offs, mask in sides:
        rows = x.shape[0]
        stats.append(offsets_stats(offs))
        if check_finite_values and x.numel():
            bad = ~torch.isfinite(x).all(dim=1)
            if mask is not None:
                bad &= mask
            # First bad row, or `rows` when there is none.
            idx = torch.arange(rows, device=x.device)
            stats.append(torch.where(bad, idx, rows).min().reshape(1))
        else:
            stats.append(offs.new_full((1,), rows))
    vals = torch.cat([s.to(torch.int64) for s in stats]).tolist()
    for k, (name, oname, x, offs, _) in enumerate(sides):
        first, last, low, high, bad_row = vals[5 * k : 5 * k + 5]
        width = (lq_max, ld_max)[k]
        check_offsets_stats(first, last, low, x.shape[0], oname, offs)
        if high > width:
            raise ValueError(f"{name}: the longest set has {high} rows, more than the {width} given")
        if bad_row < x.shape[0]:
            raise ValueError(f"{name}: token row {bad_row} (packed) holds NaN or inf")


@maxsim_fwd.register_kernel("cuda")
def _maxsim_fwd_cuda(
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
    mc = _cuda_module()
    dev = q.device
    q_offsets, q_mask, d_offsets, d_mask = _sets_on(q, q_offsets, q_mask, d, d_offsets, d_mask)
    _validate(q, q_offsets, q_mask, d, d_offsets, d_mask, lq_max, ld_max, check_finite_values)
    q2d, q_arg, d2q, d_arg = mc.maxsim_forward(
        q,
        q_offsets,
        q_mask,
        d,
        d_offsets,
        d_mask,
        paired=paired,
        q2d_argmax=want_argmax,
        d2q=want_d2q,
        d2q_argmax=want_d2q and want_argmax,
        # Validated above; the static widths become the argmax widths (tails filled with -1).
        max_lens=(lq_max, ld_max),
    )
    empty_arg = torch.empty((0, 0), dtype=torch.int32, device=dev)
    return (
        q2d,
        q_arg if q_arg is not None else empty_arg,
        d2q if d2q is not None else torch.empty(0, dtype=torch.float32, device=dev),
        d_arg if d_arg is not None else empty_arg.clone(),
    )


@maxsim_bwd.register_kernel("cuda")
def _maxsim_bwd_cuda(
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
    mc = _cuda_module()
    dev = q.device
    q_offsets, q_mask, d_offsets, d_mask = _sets_on(q, q_offsets, q_mask, d, d_offsets, d_mask)
    # The argmax widths are the forward's static lq_max / ld_max; a side without its argmax only
    # needs an upper bound on its longest set (it sizes the scatter grid), read from the offsets.
    lq = q2d_argmax.shape[1] if q2d_argmax is not None else longest_set(q_offsets)
    ld = d2q_argmax.shape[1] if d2q_argmax is not None else longest_set(d_offsets)
    dq, dd = mc.maxsim_backward(
        q,
        q_offsets,
        q_mask,
        d,
        d_offsets,
        d_mask,
        paired=paired,
        grad_q2d=_on(grad_q2d, dev),
        q2d_argmax=_on(q2d_argmax, dev),
        grad_d2q=_on(grad_d2q, dev),
        d2q_argmax=_on(d2q_argmax, dev),
        deterministic=True,
        max_lens=(lq, ld),
    )
    return dq.to(q.dtype), dd.to(d.dtype)
