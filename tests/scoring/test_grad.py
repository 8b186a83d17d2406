"""Gradients of the MaxSim ops: opcheck, and autograd through a plain torch float64 reference."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mlvec
from mlvec.ops import maxsim_bwd, maxsim_fwd

from support.maxsim_reference import DTYPES, GRAD_RTOL, make_sets, packed, reference

REDUCTIONS = ["colbert", "colbert_normalized", "filip_q2d", "filip_d2q", "filip_both"]


def _finite(x):
    # Pairs with an empty side score -inf; they carry no gradient (and 0 * -inf would be NaN).
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def _loss(reduction, scores, weights):
    colbert, norm, q2d, d2q = scores
    parts = {
        "colbert": [colbert],
        "colbert_normalized": [norm],
        "filip_q2d": [q2d],
        "filip_d2q": [d2q],
        "filip_both": [q2d, d2q],
    }[reduction]
    return sum((_finite(p) * w).sum() for p, w in zip(parts, weights[: len(parts)], strict=True))


def _ours(reduction, q, d, kw, paired):
    if reduction.startswith("colbert"):
        s = mlvec.maxsim(q, d, paired=paired, normalize=reduction == "colbert_normalized", **kw)
        return s, s, None, None
    q2d, d2q = mlvec.filip_maxsim(q, d, paired=paired, **kw)
    return None, None, q2d, d2q


def _leaf(values: np.ndarray, dtype: str):
    return torch.from_numpy(values).to(DTYPES[dtype]).requires_grad_()


def _padded_rows_grad(g: torch.Tensor, lengths) -> torch.Tensor:
    """Gradient w.r.t. padded ``[n, L, dim]`` -> the packed rows it corresponds to."""
    return torch.cat([g[i, :n] for i, n in enumerate(lengths)] + [g.new_zeros((0, g.shape[-1]))])


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from(["float32", "float16", "bfloat16"]),
    reduction=st.sampled_from(REDUCTIONS),
    layout=st.sampled_from(["padded", "packed"]),
    paired=st.booleans(),
    noncontig=st.booleans(),
    nq=st.integers(1, 3),
    nd=st.integers(1, 4),
    lq=st.integers(1, 6),
    ld=st.integers(1, 8),
    dim=st.sampled_from([3, 8, 13, 32]),
)
def test_gradients_match_autograd_through_reference(
    seed, dtype, reduction, layout, paired, noncontig, nq, nd, lq, ld, dim
):
    rng = np.random.default_rng(seed)
    if paired:
        nd = nq
    qs = make_sets(rng, nq, lq, dim, dtype, holes=bool(seed & 1))
    ds = make_sets(rng, nd, ld, dim, dtype, holes=bool(seed & 2))

    # Reference: float64 leaves holding the same (rounded) values.
    rq, rd = qs.ref().requires_grad_(), ds.ref().requires_grad_()
    colbert, q2d, d2q = reference(rq, qs.ref_mask(), rd, ds.ref_mask(), paired=paired)
    norm = colbert / qs.ref_mask().sum(-1).clamp(min=1).double()[:, None if not paired else ...]
    shape = colbert.shape
    weights = [torch.from_numpy(rng.standard_normal(shape)) for _ in range(2)]
    _loss(reduction, (colbert, norm, q2d, d2q), weights).backward()

    # mlvec, in the requested layout and dtype.
    if layout == "padded":
        q_leaf, d_leaf = _leaf(qs.values, dtype), _leaf(ds.values, dtype)
        kw = dict(query_mask=torch.from_numpy(qs.mask), document_mask=torch.from_numpy(ds.mask))
        want_q, want_d = rq.grad, rd.grad
    else:
        q_rows, q_off, q_m = packed(qs, "torch")
        d_rows, d_off, d_m = packed(ds, "torch")
        q_leaf, d_leaf = q_rows.clone().requires_grad_(), d_rows.clone().requires_grad_()
        kw = dict(query_offsets=q_off, query_mask=q_m, document_offsets=d_off, document_mask=d_m)
        want_q = _padded_rows_grad(rq.grad, qs.lengths)
        want_d = _padded_rows_grad(rd.grad, ds.lengths)
    q_in, d_in = q_leaf, d_leaf
    if noncontig:
        q_in = q_leaf.transpose(-1, -2).contiguous().transpose(-1, -2)
        d_in = d_leaf.transpose(-1, -2).contiguous().transpose(-1, -2)
    c, n, a, b = _ours(reduction, q_in, d_in, kw, paired)
    w32 = [w.float() for w in weights]
    _loss(reduction, (c, n, a, b), w32).backward()

    for got, want in ((q_leaf.grad, want_q), (d_leaf.grad, want_d)):
        assert got is not None and got.dtype == DTYPES[dtype] and got.shape == want.shape
        scale = (float(want.abs().max()) if want.numel() else 0.0) + 1.0
        rtol = GRAD_RTOL[dtype]
        torch.testing.assert_close(got.double(), want, rtol=rtol, atol=rtol * scale)


def test_gradient_of_rerank_scores_flows_to_the_picked_documents():
    rng = np.random.default_rng(7)
    q = torch.from_numpy(rng.standard_normal((4, 16)).astype(np.float32)).requires_grad_()
    d = torch.from_numpy(rng.standard_normal((10, 6, 16)).astype(np.float32)).requires_grad_()
    scores, idx = mlvec.rerank(q, d, 3)
    scores.sum().backward()
    touched = d.grad.abs().sum(dim=(1, 2)) > 0
    assert set(torch.nonzero(touched).flatten().tolist()) == set(idx.tolist())


def test_no_grad_inputs_skip_the_argmax():
    q = torch.randn(2, 3, 8)
    d = torch.randn(4, 5, 8)
    out = mlvec.maxsim(q, d)
    assert not out.requires_grad
    with torch.no_grad():
        assert not mlvec.maxsim(q.requires_grad_(), d).requires_grad


def _op_args(rng, dtype, paired, masks, want_d2q, grad=True):
    qs = make_sets(rng, 3, 4, 8, dtype, holes=masks)
    ds = make_sets(rng, 3 if paired else 4, 5, 8, dtype, holes=masks)
    q, qo, qm = packed(qs, "torch")
    d, do, dm = packed(ds, "torch")
    q, d = q.requires_grad_(grad), d.requires_grad_(grad)
    return (q, qo, qm, d, do, dm, int(qs.lengths.max()), int(ds.lengths.max()), paired, True, want_d2q, True)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("paired", [False, True])
@pytest.mark.parametrize("masks,want_d2q", [(False, False), (True, True)])
def test_opcheck_forward(dtype, paired, masks, want_d2q):
    rng = np.random.default_rng(11)
    args = _op_args(rng, dtype, paired, masks, want_d2q)
    torch.library.opcheck(maxsim_fwd, args)


def test_opcheck_backward():
    rng = np.random.default_rng(12)
    args = _op_args(rng, "float32", False, True, True, grad=False)
    q2d, q_arg, d2q, d_arg = maxsim_fwd(*args)
    g1, g2 = torch.randn_like(q2d), torch.randn_like(d2q)
    q, qo, qm, d, do, dm = args[:6]
    torch.library.opcheck(maxsim_bwd, (q, qo, qm, d, do, dm, False, g1, q_arg, g2, d_arg))
    torch.library.opcheck(maxsim_bwd, (q, qo, qm, d, do, dm, False, g1, q_arg, None, None))


def test_backward_accepts_argmax_wider_than_the_longest_set():
    """The op allows static widths above the longest set; gradients must not depend on them."""
    rng = np.random.default_rng(14)
    args = list(_op_args(rng, "float32", False, True, True))
    exact = maxsim_fwd(*args)
    (exact[0].sum() + 2 * exact[2].sum()).backward()
    want = args[0].grad.clone(), args[3].grad.clone()
    args[0].grad = args[3].grad = None
    args[6], args[7] = args[6] + 3, args[7] + 5
    wide = maxsim_fwd(*args)
    assert wide[1].shape[1] == args[6] and wide[3].shape[1] == args[7]
    (wide[0].sum() + 2 * wide[2].sum()).backward()
    torch.testing.assert_close((args[0].grad, args[3].grad), want)


def _compiled_matches_eager(backend):
    def step(q, d, m):
        q2d, d2q = mlvec.filip_maxsim(q, d, document_mask=m)
        return mlvec.maxsim(q, d, document_mask=m, normalize=True).sum() + q2d.sum() + d2q.sum()

    rng = np.random.default_rng(13)
    q = torch.from_numpy(rng.standard_normal((2, 4, 16)).astype(np.float32)).requires_grad_()
    d = torch.from_numpy(rng.standard_normal((3, 5, 16)).astype(np.float32)).requires_grad_()
    m = torch.from_numpy(rng.random((3, 5)) < 0.7)
    m[:, 0] = True
    compiled = torch.compile(step, fullgraph=True, backend=backend)
    got = compiled(q, d, m)
    got.backward()
    got_grads = q.grad.clone(), d.grad.clone()
    q.grad = d.grad = None
    want = step(q, d, m)
    want.backward()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grads, (q.grad, d.grad))


def test_torch_compile_traces_forward_and_backward():
    # aot_eager runs dynamo + AOTAutograd over the fake implementations (the part the ops
    # control) without inductor's C++ code generation, which would take most of the test budget.
    torch._dynamo.reset()
    _compiled_matches_eager("aot_eager")

