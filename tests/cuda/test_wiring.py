"""The CUDA registrations of the MaxSim ops, checked without a GPU.

On a GPU machine ``tests/test_cuda_gpu.py`` runs the real kernels through the public API. Here:
the registration imports and leaves the CPU kernels alone (opcheck), the CUDA kernels'
argument adaptation (static argmax widths, output dtypes, validation) is driven through a stand-in
for :mod:`mlvec.cuda` that follows its documented contract on the CPU and is compared with the CPU
op, and non-CPU tensors keep a clear error that carries ``mlvec.cuda_available()``'s reason.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

import mlvec
from mlvec import _native
from mlvec.ops import maxsim_bwd, maxsim_fwd
from mlvec.ops import maxsim_cuda as wiring

from support.maxsim_reference import make_sets, packed


def _op_args(rng, dtype, paired, want_d2q, extra_width=0):
    qs = make_sets(rng, 3, 4, 8, dtype, holes=True)
    ds = make_sets(rng, 3 if paired else 4, 5, 8, dtype, holes=True)
    q, qo, qm = packed(qs, "torch")
    d, do, dm = packed(ds, "torch")
    lq, ld = int(qs.lengths.max()) + extra_width, int(ds.lengths.max()) + extra_width
    return (q, qo, qm, d, do, dm, lq, ld, paired, True, want_d2q, True)


def test_cuda_kernels_are_registered_next_to_the_cpu_ones():
    for op in ("mlvec::maxsim_fwd", "mlvec::maxsim_bwd"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA")
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CPU")


@pytest.mark.parametrize("paired", [False, True])
def test_cpu_ops_still_pass_opcheck(paired):
    rng = np.random.default_rng(3)
    args = _op_args(rng, "bfloat16", paired, True)
    args[0].requires_grad_()
    args[3].requires_grad_()
    torch.library.opcheck(maxsim_fwd, args)
    q, qo, qm, d, do, dm = (a.detach() if isinstance(a, torch.Tensor) else a for a in args[:6])
    q2d, q_arg, d2q, d_arg = maxsim_fwd(q, qo, qm, d, do, dm, *args[6:])
    g = torch.randn_like(q2d)
    torch.library.opcheck(maxsim_bwd, (q, qo, qm, d, do, dm, paired, g, q_arg, g.flip(0), d_arg))


def _to_np(t):
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


class _CpuStandIn(types.SimpleNamespace):
    """``mlvec.cuda``'s MaxSim contract, played on the CPU: argmax widths are the ``max_lens``
    given (tails -1), gradients float32, argmax shapes checked against ``max_lens``."""

    @staticmethod
    def maxsim_forward(q, qo, qm, d, do, dm, *, paired, q2d_argmax, d2q, d2q_argmax, max_lens):
        s, qa, ds, da = _native.maxsim.forward(
            _to_np(q), qo.numpy(), None if qm is None else qm.numpy(), _to_np(d), do.numpy(),
            None if dm is None else dm.numpy(), bf16=q.dtype == torch.bfloat16, paired=paired,
            q2d_argmax=q2d_argmax, d2q=d2q or d2q_argmax, d2q_argmax=d2q_argmax,
        )  # fmt: skip

        def widen(a, width):
            if a is None:
                return None
            assert a.shape[1] <= width
            out = torch.full((a.shape[0], width), -1, dtype=torch.int32)
            out[:, : a.shape[1]] = torch.from_numpy(a)
            return out

        return (
            torch.from_numpy(s),
            widen(qa, max_lens[0]),
            torch.from_numpy(ds) if d2q else None,
            widen(da, max_lens[1]),
        )

    @staticmethod
    def maxsim_backward(q, qo, qm, d, do, dm, *, paired, grad_q2d, q2d_argmax, grad_d2q, d2q_argmax, **kw):
        lq, ld = kw["max_lens"]
        for arg, width in ((q2d_argmax, lq), (d2q_argmax, ld)):
            assert arg is None or arg.shape[1] == width
        dq, dd = _native.maxsim.backward(
            _to_np(q), qo.numpy(), None if qm is None else qm.numpy(), _to_np(d), do.numpy(),
            None if dm is None else dm.numpy(), bf16=q.dtype == torch.bfloat16, paired=paired,
            grad_q2d=None if grad_q2d is None else grad_q2d.float().numpy(),
            q2d_argmax=None if q2d_argmax is None else q2d_argmax.numpy(),
            grad_d2q=None if grad_d2q is None else grad_d2q.float().numpy(),
            d2q_argmax=None if d2q_argmax is None else d2q_argmax.numpy(),
        )  # fmt: skip
        return torch.from_numpy(np.asarray(dq, np.float32)), torch.from_numpy(np.asarray(dd, np.float32))


@pytest.fixture
def stand_in(monkeypatch):
    monkeypatch.setattr(wiring, "_cuda_module", lambda: _CpuStandIn())


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("paired", [False, True])
def test_cuda_kernels_adapt_the_op_contract(stand_in, dtype, paired):
    rng = np.random.default_rng(5)
    # Static widths wider than the longest sets: the argmax tails must be -1, as on the CPU.
    for extra in (3, 0):
        args = _op_args(rng, dtype, paired, True, extra_width=extra)
        got = wiring._maxsim_fwd_cuda(*args)
        want = maxsim_fwd(*args)
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype and g.shape == w.shape
            torch.testing.assert_close(g, w)
    # The CPU op's backward reads argmax exactly as wide as the longest sets (what the public API
    # passes), so the backward is compared at those widths.
    q, qo, qm, d, do, dm = args[:6]
    _, q_arg, _, d_arg = want
    g = torch.randn(q_arg.shape[0])
    for grads in ((g, q_arg, 2 * g, d_arg), (g, q_arg, None, None), (None, None, g, d_arg)):
        got = wiring._maxsim_bwd_cuda(q, qo, qm, d, do, dm, paired, *grads)
        want = maxsim_bwd(q, qo, qm, d, do, dm, paired, *grads)
        for gt, wt in zip(got, want, strict=True):
            assert gt.dtype == wt.dtype == q.dtype and gt.shape == wt.shape
            torch.testing.assert_close(gt, wt)


def test_cuda_kernels_validate_like_the_cpu_op(stand_in):
    rng = np.random.default_rng(6)
    q, qo, qm, d, do, dm, lq, ld, *rest = _op_args(rng, "float32", False, False)
    with pytest.raises(ValueError, match="longest set"):
        wiring._maxsim_fwd_cuda(q, qo, qm, d, do, dm, lq, ld - 1, *rest)
    bad = do.clone()
    bad[-1] += 1
    with pytest.raises(ValueError, match="document_offsets: last offset"):
        wiring._maxsim_fwd_cuda(q, qo, qm, d, bad, dm, lq, ld, *rest)
    bad = qo.clone()
    bad[1] = bad[-1] + 1
    with pytest.raises(ValueError, match="query_offsets: must be non-decreasing"):
        wiring._maxsim_fwd_cuda(q, bad, qm, d, do, dm, lq, ld, *rest)
    row = int(torch.nonzero(dm)[0, 0])
    d = d.clone()
    d[row, 0] = float("nan")
    with pytest.raises(ValueError, match=f"documents: token row {row} "):
        wiring._maxsim_fwd_cuda(q, qo, qm, d, do, dm, lq, ld, *rest)
    dm = dm.clone()
    dm[row] = False  # a masked row may hold anything
    wiring._maxsim_fwd_cuda(q, qo, qm, d, do, dm, lq, ld, *rest)


def test_cuda_kernels_say_why_they_cannot_run(monkeypatch):
    import mlvec.cuda

    monkeypatch.setattr(mlvec.cuda, "available", lambda: (False, "no device in this test"))
    q = torch.randn(4, 8)
    offs = torch.tensor([0, 4])
    with pytest.raises(RuntimeError, match="no device in this test"):
        wiring._maxsim_fwd_cuda(q, offs, None, q, offs, None, 4, 4, False, False, False, False)


def test_non_cpu_tensors_keep_a_clear_error_with_the_reason():
    ok, why = mlvec.cuda_available()
    if ok:
        pytest.skip("CUDA kernels are usable here: tests/test_cuda_gpu.py covers CUDA tensors")
    q = torch.randn(2, 3, 8, device="meta")
    with pytest.raises(ValueError, match="queries: tensors on meta") as e:
        mlvec.maxsim(q, torch.randn(2, 3, 8))
    assert why in str(e.value)
    # The numpy-only paths (mask given on another device) keep their message too.
    with pytest.raises(ValueError, match="document_mask: tensors on meta"):
        mlvec.maxsim(torch.randn(2, 3, 8), torch.randn(2, 3, 8), document_mask=torch.ones(2, 3, device="meta"))
