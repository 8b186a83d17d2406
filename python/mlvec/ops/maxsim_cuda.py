"""CUDA implementations of ``mlvec::maxsim_fwd`` / ``mlvec::maxsim_bwd`` (:mod:`mlvec.ops.maxsim`).

They adapt the ops' contract to :func:`mlvec.cuda.maxsim_forward` / :func:`mlvec.cuda.maxsim_backward`:
the static argmax widths ``lq_max`` / ``ld_max`` are handed to the kernels (which fill the tail of
each row with -1, as the CPU path does), the gradients come back in the inputs' dtypes, and
offsets/masks given on the CPU are moved to the embeddings' device.

Registering a kernel for the ``cuda`` dispatch key is pure Python: it needs neither a GPU nor
NVRTC, so importing :mod:`mlvec.ops` works everywhere and the CPU kernels stay as they are.
:mod:`mlvec.cuda` (and with it NVRTC) is only touched when a CUDA tensor actually reaches an op.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mlvec.ops.maxsim import maxsim_bwd, maxsim_fwd

__all__: list[str] = []


def _cuda_module():
    """:mod:`mlvec.cuda`, after checking that its kernels can run (clear error otherwise)."""
    import mlvec.cuda as mc

    ok, why = mc.available()
    if not ok:
        raise RuntimeError(f"mlvec: a CUDA tensor reached mlvec::maxsim, but the CUDA kernels cannot run: {why}")
    return mc


def _on(t: Tensor | None, device: torch.device) -> Tensor | None:
    return None if t is None else t.to(device)


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

    Offsets start at 0, never decrease, end at the row count and no set is longer than the
    static width; with ``check_finite_values`` no valid token row holds NaN or inf.
    """
    stats = []
    sides = (("queries", "query_offsets", q, q_offsets, q_mask), ("documents", "document_offsets", d, d_offsets, d_mask))
    for _, oname, x, offs, mask in sides:
        if offs.dim() != 1 or offs.numel() == 0:
            raise ValueError(f"{oname}: expected a 1-D [n + 1] tensor, got shape {tuple(offs.shape)}")
        rows = x.shape[0]
        steps = offs[1:] - offs[:-1]
        zero = offs.new_zeros(())
        stats += [offs[0], offs[-1], steps.min() if steps.numel() else zero, steps.max() if steps.numel() else zero]
        if check_finite_values and x.numel():
            bad = ~torch.isfinite(x).all(dim=1)
            if mask is not None:
                bad &= mask
            # First bad row, or `rows` when there is none.
            idx = torch.arange(rows, device=x.device)
            stats.append(torch.where(bad, idx, rows).min())
        else:
            stats.append(offs.new_full((), rows))
    vals = torch.stack([s.to(torch.int64) for s in stats]).tolist()
    for k, (name, oname, x, _, _) in enumerate(sides):
        first, last, low, high, bad_row = vals[5 * k : 5 * k + 5]
        rows, width = x.shape[0], (lq_max, ld_max)[k]
        if first != 0:
            raise ValueError(f"{oname}: must start at 0, got {oname}[0] = {first}")
        if low < 0:
            raise ValueError(f"{oname}: must be non-decreasing")
        if last != rows:
            where = "past the end of" if last > rows else "short of"
            raise ValueError(f"{oname}: last offset {last} is {where} the {rows} packed token rows")
        if high > width:
            raise ValueError(f"{name}: the longest set has {high} rows, more than the {width} given")
        if bad_row < rows:
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
    q_offsets, d_offsets = q_offsets.to(dev, torch.int64), d_offsets.to(dev, torch.int64)
    q_mask, d_mask = _on(q_mask, dev), _on(d_mask, dev)
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


def _longest(offsets: Tensor) -> int:
    return int((offsets[1:] - offsets[:-1]).max()) if offsets.numel() > 1 else 0


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
    q_offsets, d_offsets = q_offsets.to(dev, torch.int64), d_offsets.to(dev, torch.int64)
    # The argmax widths are the forward's static lq_max / ld_max; a side without its argmax only
    # needs an upper bound on its longest set (it sizes the scatter grid), read from the offsets.
    lq = q2d_argmax.shape[1] if q2d_argmax is not None else _longest(q_offsets)
    ld = d2q_argmax.shape[1] if d2q_argmax is not None else _longest(d_offsets)
    dq, dd = mc.maxsim_backward(
        q,
        q_offsets,
        _on(q_mask, dev),
        d,
        d_offsets,
        _on(d_mask, dev),
        paired=paired,
        grad_q2d=_on(grad_q2d, dev),
        q2d_argmax=_on(q2d_argmax, dev),
        grad_d2q=_on(grad_d2q, dev),
        d2q_argmax=_on(d2q_argmax, dev),
        deterministic=True,
        max_lens=(lq, ld),
    )
    return dq.to(q.dtype), dd.to(d.dtype)
