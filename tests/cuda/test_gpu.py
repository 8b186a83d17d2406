"""The CUDA kernels against the CPU path (``_native``) and plain torch/numpy references.

Needs a CUDA GPU; skipped (with the reason) elsewhere. Run by scripts/gpu_check.sh on a GPU
machine. Integer-valued embeddings make every dot product exact in fp32 for all three dtypes,
so argmax positions (with many ties: first wins) must match exactly; random-normal embeddings
check the sums within fp32 tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

import mlvec
from mlvec import _native

torch = pytest.importorskip("torch")


def _gpu_reason() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA GPU visible to torch"
    import mlvec.cuda

    ok, why = mlvec.cuda.available()
    return None if ok else f"mlvec CUDA kernels unavailable: {why}"


_REASON = _gpu_reason()
if _REASON is not None and __import__("os").environ.get("MLVEC_REQUIRE_GPU"):
    # scripts/gpu_check.sh: on the GPU machine a skip would hide a failure.
    raise RuntimeError(f"MLVEC_REQUIRE_GPU is set but the GPU tests cannot run: {_REASON}")
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]

if _REASON is None:
    import mlvec.cuda as mc

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
DEV = "cuda"


def _sets(rng, lengths, dim, dtype, *, integer, mask_p=0.0):
    """Packed sets on the GPU + their numpy fp64 copy (of the rounded values) and mask."""
    rows = int(sum(lengths))
    if integer:
        x = rng.integers(-3, 4, size=(rows, dim)).astype(np.float64)
    else:
        x = rng.standard_normal((rows, dim))
    t = torch.tensor(x, dtype=dtype, device=DEV)
    x64 = t.double().cpu().numpy()
    off = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int64, device=DEV)
    mask = None
    if mask_p > 0:
        m = rng.random(rows) >= mask_p
        mask = torch.tensor(m, device=DEV)
    return t, off, mask, x64


def _np_mask(mask, rows):
    return np.ones(rows, bool) if mask is None else mask.cpu().numpy()


def _reference(q64, qo, qm, d64, do, dm, paired):
    """fp64 numpy MaxSim with first-on-ties argmax: (q2d, q_arg, d2q, d_arg)."""
    qo, do = qo.cpu().numpy(), do.cpu().numpy()
    qm, dm = _np_mask(qm, len(q64)), _np_mask(dm, len(d64))
    nq, nd = len(qo) - 1, len(do) - 1
    lq = max([qo[i + 1] - qo[i] for i in range(nq)] + [0])
    ld = max([do[i + 1] - do[i] for i in range(nd)] + [0])
    pairs = [(i, i) for i in range(nq)] if paired else [(i, j) for i in range(nq) for j in range(nd)]
    q2d = np.zeros(len(pairs))
    d2q = np.zeros(len(pairs))
    qa = -np.ones((len(pairs), lq), np.int32)
    da = -np.ones((len(pairs), ld), np.int32)
    for p, (i, j) in enumerate(pairs):
        qs, qe, ds, de = qo[i], qo[i + 1], do[j], do[j + 1]
        s = q64[qs:qe] @ d64[ds:de].T
        vq, vd = qm[qs:qe], dm[ds:de]
        for r in np.nonzero(vq)[0]:
            row = np.where(vd, s[r], -np.inf)
            if vd.any():
                qa[p, r] = int(np.argmax(row))
                q2d[p] += row[qa[p, r]]
            else:
                q2d[p] = -np.inf
        for c in np.nonzero(vd)[0]:
            col = np.where(vq, s[:, c], -np.inf)
            if vq.any():
                da[p, c] = int(np.argmax(col))
                d2q[p] += col[da[p, c]]
            else:
                d2q[p] = -np.inf
    return q2d, qa, d2q, da


def _cpu_native(q, qo, qm, d, do, dm, paired, **kw):
    def arr(t):
        if t.dtype == torch.bfloat16:
            return t.cpu().view(torch.int16).numpy().view(np.uint16)
        return t.cpu().numpy()

    return _native.maxsim.forward(
        arr(q), qo.cpu().numpy(), None if qm is None else qm.cpu().numpy(),
        arr(d), do.cpu().numpy(), None if dm is None else dm.cpu().numpy(),
        bf16=q.dtype == torch.bfloat16, paired=paired, **kw,
    )  # fmt: skip


SHAPES = [
    # (query lengths, document lengths, dim)
    ([32], [300] * 5, 128),
    ([1, 7, 33], [0, 1, 64, 65, 130], 24),
    ([40, 0, 5], [3, 77, 1], 130),
    ([2, 3], [5, 4], 1),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", range(len(SHAPES)))
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("paired", [False, True])
def test_forward_exact_on_integer_data(dtype, shape, masked, paired):
    lq, ld, dim = SHAPES[shape]
    if paired:
        n = min(len(lq), len(ld))
        lq, ld = lq[:n], ld[:n]
    rng = np.random.default_rng(shape * 7 + masked)
    q, qo, qm, q64 = _sets(rng, lq, dim, dtype, integer=True, mask_p=0.3 if masked else 0)
    d, do, dm, d64 = _sets(rng, ld, dim, dtype, integer=True, mask_p=0.3 if masked else 0)
    got = mc.maxsim_forward(q, qo, qm, d, do, dm, paired=paired, q2d_argmax=True, d2q=True, d2q_argmax=True)
    ref = _reference(q64, qo, qm, d64, do, dm, paired)
    cpu = _cpu_native(q, qo, qm, d, do, dm, paired, q2d_argmax=True, d2q=True, d2q_argmax=True)
    np.testing.assert_array_equal(got[0].cpu().numpy(), ref[0])
    np.testing.assert_array_equal(got[1].cpu().numpy(), ref[1])
    np.testing.assert_array_equal(got[2].cpu().numpy(), ref[2])
    np.testing.assert_array_equal(got[3].cpu().numpy(), ref[3])
    for g, c in zip(got, cpu, strict=True):
        np.testing.assert_array_equal(g.cpu().numpy(), c)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_forward_sums_on_random_data(dtype):
    rng = np.random.default_rng(3)
    q, qo, qm, q64 = _sets(rng, [32, 17, 5], 96, dtype, integer=False, mask_p=0.1)
    d, do, dm, d64 = _sets(rng, [300, 45, 129, 2], 96, dtype, integer=False, mask_p=0.1)
    got = mc.maxsim_forward(q, qo, qm, d, do, dm, d2q=True)
    ref = _reference(q64, qo, qm, d64, do, dm, False)
    np.testing.assert_allclose(got[0].cpu().numpy(), ref[0], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(got[2].cpu().numpy(), ref[2], rtol=1e-4, atol=1e-3)


def test_forward_long_documents_use_the_swapped_pass():
    _, _, max_cols, _, _ = _native.cuda.limits()
    rng = np.random.default_rng(5)
    q, qo, qm, q64 = _sets(rng, [9, 3], 16, torch.bfloat16, integer=True)
    d, do, dm, d64 = _sets(rng, [max_cols + 37, 4], 16, torch.bfloat16, integer=True, mask_p=0.2)
    got = mc.maxsim_forward(q, qo, qm, d, do, dm, q2d_argmax=True, d2q=True, d2q_argmax=True)
    ref = _reference(q64, qo, qm, d64, do, dm, False)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_array_equal(g.cpu().numpy(), r)


def _torch_loss_reference(q64, qo, qm, d64, do, dm, paired, gq, gd):
    """Autograd through a padded, masked fp64 max: gradients of sum(gq*q2d + gd*d2q)."""
    q = torch.tensor(q64, requires_grad=True)
    d = torch.tensor(d64, requires_grad=True)
    qo, do = qo.cpu().tolist(), do.cpu().tolist()
    qm, dm = _np_mask(qm, len(q64)), _np_mask(dm, len(d64))
    nq, nd = len(qo) - 1, len(do) - 1
    pairs = [(i, i) for i in range(nq)] if paired else [(i, j) for i in range(nq) for j in range(nd)]
    total = torch.zeros((), dtype=torch.float64)
    for p, (i, j) in enumerate(pairs):
        vq = torch.tensor(qm[qo[i] : qo[i + 1]])
        vd = torch.tensor(dm[do[j] : do[j + 1]])
        if not vq.any() or not vd.any():
            continue
        s = q[qo[i] : qo[i + 1]] @ d[do[j] : do[j + 1]].T
        s = s.masked_fill(~vd[None, :], -torch.inf).masked_fill(~vq[:, None], -torch.inf)
        total = total + gq[p] * s.max(dim=1).values[vq].sum() + gd[p] * s.max(dim=0).values[vd].sum()
    total.backward()
    return q.grad.numpy(), d.grad.numpy()


def _np_backward(q64, qo, d64, do, paired, gq, gd, qa, da):
    """numpy scatter of the gradients through given argmax positions (first-on-ties reference)."""
    qo, do = qo.cpu().numpy(), do.cpu().numpy()
    nq, nd = len(qo) - 1, len(do) - 1
    pairs = [(i, i) for i in range(nq)] if paired else [(i, j) for i in range(nq) for j in range(nd)]
    dq, dd = np.zeros_like(q64), np.zeros_like(d64)
    for p, (i, j) in enumerate(pairs):
        for r, c in enumerate(qa[p]):
            if c >= 0:
                dq[qo[i] + r] += gq[p] * d64[do[j] + c]
                dd[do[j] + c] += gq[p] * q64[qo[i] + r]
        for c, r in enumerate(da[p]):
            if r >= 0:
                dq[qo[i] + r] += gd[p] * d64[do[j] + c]
                dd[do[j] + c] += gd[p] * q64[qo[i] + r]
    return dq, dd


def _arr(t):
    return t.cpu().view(torch.int16).numpy().view(np.uint16) if t.dtype == torch.bfloat16 else t.cpu().numpy()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("paired", [False, True])
@pytest.mark.parametrize("deterministic", [True, False])
def test_backward_matches_cpu_and_reference(dtype, paired, deterministic):
    rng = np.random.default_rng(11)
    lq, ld = ([5, 33, 2], [70, 1, 9]) if paired else ([5, 33], [70, 1, 9])
    # Integer data: exact dot products with many ties (first position wins).
    q, qo, qm, q64 = _sets(rng, lq, 40, dtype, integer=True, mask_p=0.2)
    d, do, dm, d64 = _sets(rng, ld, 40, dtype, integer=True, mask_p=0.2)
    fwd = mc.maxsim_forward(q, qo, qm, d, do, dm, paired=paired, q2d_argmax=True, d2q=True, d2q_argmax=True)
    p = fwd[0].numel()
    gq = torch.tensor(rng.standard_normal(p), dtype=torch.float32, device=DEV)
    gd = torch.tensor(rng.standard_normal(p), dtype=torch.float32, device=DEV)
    dq, dd = mc.maxsim_backward(
        q, qo, qm, d, do, dm, paired=paired, grad_q2d=gq, q2d_argmax=fwd[1], grad_d2q=gd, d2q_argmax=fwd[3],
        deterministic=deterministic,
    )  # fmt: skip
    _, ref_qa, _, ref_da = _reference(q64, qo, qm, d64, do, dm, paired)
    rq, rd = _np_backward(q64, qo, d64, do, paired, gq.double().cpu().numpy(), gd.double().cpu().numpy(), ref_qa, ref_da)
    np.testing.assert_allclose(dq.cpu().numpy(), rq, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dd.cpu().numpy(), rd, rtol=1e-5, atol=1e-4)
    cq, cd = _native.maxsim.backward(
        _arr(q), qo.cpu().numpy(), qm.cpu().numpy(), _arr(d), do.cpu().numpy(), dm.cpu().numpy(),
        bf16=dtype == torch.bfloat16, paired=paired, grad_q2d=gq.cpu().numpy(), q2d_argmax=fwd[1].cpu().numpy(),
        grad_d2q=gd.cpu().numpy(), d2q_argmax=fwd[3].cpu().numpy(),
    )  # fmt: skip
    np.testing.assert_allclose(dq.cpu().numpy(), cq, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dd.cpu().numpy(), cd, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_backward_matches_torch_autograd(dtype):
    """Random data (no ties): autograd through a padded, masked fp64 max."""
    rng = np.random.default_rng(12)
    q, qo, qm, q64 = _sets(rng, [5, 33], 40, dtype, integer=False, mask_p=0.2)
    d, do, dm, d64 = _sets(rng, [70, 1, 9], 40, dtype, integer=False, mask_p=0.2)
    fwd = mc.maxsim_forward(q, qo, qm, d, do, dm, q2d_argmax=True, d2q=True, d2q_argmax=True)
    p = fwd[0].numel()
    gq = torch.tensor(rng.standard_normal(p), dtype=torch.float32, device=DEV)
    gd = torch.tensor(rng.standard_normal(p), dtype=torch.float32, device=DEV)
    dq, dd = mc.maxsim_backward(
        q, qo, qm, d, do, dm, grad_q2d=gq, q2d_argmax=fwd[1], grad_d2q=gd, d2q_argmax=fwd[3]
    )
    rq, rd = _torch_loss_reference(q64, qo, qm, d64, do, dm, False, gq.double().cpu(), gd.double().cpu())
    np.testing.assert_allclose(dq.cpu().numpy(), rq, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dd.cpu().numpy(), rd, rtol=1e-4, atol=1e-4)


def test_deterministic_backward_is_bitwise_repeatable():
    rng = np.random.default_rng(2)
    q, qo, qm, _ = _sets(rng, [32] * 8, 128, torch.bfloat16, integer=False)
    d, do, dm, _ = _sets(rng, [300] * 16, 128, torch.bfloat16, integer=False)
    fwd = mc.maxsim_forward(q, qo, qm, d, do, dm, q2d_argmax=True)
    g = torch.randn(fwd[0].numel(), device=DEV)
    a = mc.maxsim_backward(q, qo, qm, d, do, dm, grad_q2d=g, q2d_argmax=fwd[1])
    b = mc.maxsim_backward(q, qo, qm, d, do, dm, grad_q2d=g, q2d_argmax=fwd[1])
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("paired", [False, True])
def test_filip_tile_matches_means(dtype, paired):
    rng = np.random.default_rng(4)
    la, lb = [7, 50, 1], [77, 3, 12]
    a, ao, am, a64 = _sets(rng, la, 32, dtype, integer=True, mask_p=0.25)
    b, bo, bm, b64 = _sets(rng, lb, 32, dtype, integer=True, mask_p=0.25)
    a_mean, b_mean, a_arg, b_arg = mc.filip_forward(a, ao, am, b, bo, bm, paired=paired, argmax=True)
    q2d, qa, d2q, da = _reference(a64, ao, am, b64, bo, bm, paired)
    ma, mb = _np_mask(am, len(a64)), _np_mask(bm, len(b64))
    ao_, bo_ = ao.cpu().numpy(), bo.cpu().numpy()
    pairs = [(i, i) for i in range(3)] if paired else [(i, j) for i in range(3) for j in range(3)]
    ca = np.array([ma[ao_[i] : ao_[i + 1]].sum() for i, _ in pairs])
    cb = np.array([mb[bo_[j] : bo_[j + 1]].sum() for _, j in pairs])
    exp_a = np.where(ca > 0, q2d / np.maximum(ca, 1), 0.0)
    exp_b = np.where(cb > 0, d2q / np.maximum(cb, 1), 0.0)
    np.testing.assert_allclose(a_mean.cpu().numpy(), exp_a, rtol=1e-6)
    np.testing.assert_allclose(b_mean.cpu().numpy(), exp_b, rtol=1e-6)
    np.testing.assert_array_equal(a_arg.cpu().numpy(), qa)
    np.testing.assert_array_equal(b_arg.cpu().numpy(), da)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m,n,dim", [(100, 70, 64), (33, 130, 17), (1, 1, 8)])
def test_clip_lse_and_gradient(dtype, m, n, dim):
    gen = torch.Generator().manual_seed(m * n)
    x = torch.randn(m, dim, generator=gen).to(dtype).to(DEV)
    y = torch.randn(n, dim, generator=gen).to(dtype).to(DEV)
    scale = 3.7
    row, col = mc.clip_lse(x, y, scale)
    x64 = x.double().cpu().requires_grad_()
    y64 = y.double().cpu().requires_grad_()
    s64 = torch.tensor(scale, dtype=torch.float64, requires_grad=True)
    logits = s64 * x64 @ y64.T
    r_ref, c_ref = torch.logsumexp(logits, 1), torch.logsumexp(logits, 0)
    torch.testing.assert_close(row.cpu().double(), r_ref.detach(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(col.cpu().double(), c_ref.detach(), rtol=1e-5, atol=1e-4)
    g_row = torch.randn(m, generator=gen)
    g_col = torch.randn(n, generator=gen)
    ((r_ref * g_row.double()).sum() + (c_ref * g_col.double()).sum()).backward()
    dx, dy, ds = mc.clip_lse_backward(x, y, scale, row, col, g_row.to(DEV), g_col.to(DEV))
    torch.testing.assert_close(dx.cpu().double(), x64.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dy.cpu().double(), y64.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ds.cpu().double(), s64.grad, rtol=1e-4, atol=1e-3)


def test_clip_loss_composes_with_positive_logits():
    """InfoNCE both ways from the tiles equals the materialised torch loss."""
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(200, 64, generator=gen), dim=-1).to(DEV)
    y = torch.nn.functional.normalize(torch.randn(200, 64, generator=gen), dim=-1).to(DEV)
    scale = 14.3
    row, col = mc.clip_lse(x, y, scale)
    pos = scale * (x * y).sum(-1)
    loss = ((row - pos).mean() + (col - pos).mean()) / 2
    logits = scale * x @ y.T
    labels = torch.arange(200, device=DEV)
    ref = (torch.nn.functional.cross_entropy(logits, labels) + torch.nn.functional.cross_entropy(logits.T, labels)) / 2
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("offsets", [(0, 0), (64, 0), (0, 5)])
def test_siglip_rows_and_gradient(dtype, offsets):
    gen = torch.Generator().manual_seed(1)
    m, n, dim = 97, 70, 48
    x = torch.randn(m, dim, generator=gen).to(dtype).to(DEV)
    y = torch.randn(n, dim, generator=gen).to(dtype).to(DEV)
    scale, bias = 2.3, -1.7
    rows = mc.siglip_rows(x, y, scale, bias, *offsets)
    x64 = x.double().cpu().requires_grad_()
    y64 = y.double().cpu().requires_grad_()
    s64 = torch.tensor(scale, dtype=torch.float64, requires_grad=True)
    b64 = torch.tensor(bias, dtype=torch.float64, requires_grad=True)
    z = -torch.ones(m, n, dtype=torch.float64)
    for i in range(m):
        j = offsets[0] + i - offsets[1]
        if 0 <= j < n:
            z[i, j] = 1.0
    ref_rows = torch.nn.functional.softplus(-z * (s64 * x64 @ y64.T + b64)).sum(1)
    torch.testing.assert_close(rows.cpu().double(), ref_rows.detach(), rtol=1e-5, atol=1e-4)
    g = torch.randn(m, generator=gen)
    (ref_rows * g.double()).sum().backward()
    dx, dy, ds, db = mc.siglip_backward(x, y, scale, bias, g.to(DEV), *offsets)
    torch.testing.assert_close(dx.cpu().double(), x64.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dy.cpu().double(), y64.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ds.cpu().double(), s64.grad, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(db.cpu().double(), b64.grad, rtol=1e-4, atol=1e-3)


def test_pq_scan_and_topk():
    gen = torch.Generator().manual_seed(9)
    n, m, ksub, nq = 5000, 8, 256, 3
    codes = torch.randint(0, ksub, (n, m), generator=gen, dtype=torch.uint8)
    lut = torch.randn(nq, m, ksub, generator=gen)
    dist = mc.pq_scan(codes.to(DEV), lut.to(DEV))
    ref = lut[:, torch.arange(m)[None, :], codes.long()].sum(-1)  # [nq, n]
    torch.testing.assert_close(dist.cpu(), ref, rtol=1e-5, atol=1e-5)
    vals, ids = mc.topk_smallest(dist, 10)
    rv, ri = torch.sort(dist.cpu(), dim=1, stable=True)
    torch.testing.assert_close(vals.cpu(), rv[:, :10])
    assert torch.equal(ids.cpu(), ri[:, :10])


@pytest.mark.parametrize("n,k", [(10_000, 1), (10_000, 100), (5, 8), (4096, 1024)])
def test_topk_ties_break_on_smaller_id(n, k):
    gen = torch.Generator().manual_seed(n + k)
    dist = torch.randint(0, 20, (4, n), generator=gen).float()
    dist[0, 3] = float("nan")
    vals, ids = mc.topk_smallest(dist.to(DEV), k)
    key = torch.where(dist.isnan(), torch.inf, dist)
    order = torch.sort(key, dim=1, stable=True).indices  # stable: smaller id first on ties
    kk = min(k, n)
    assert torch.equal(ids.cpu()[:, :kk], order[:, :kk])
    if k > n:
        assert (ids.cpu()[:, n:] == -1).all() and torch.isinf(vals.cpu()[:, n:]).all()


def test_hamming_scan():
    rng = np.random.default_rng(8)
    n, words, nq = 3000, 4, 5
    codes = rng.integers(-(2**63), 2**63 - 1, size=(n, words), dtype=np.int64)
    queries = rng.integers(-(2**63), 2**63 - 1, size=(nq, words), dtype=np.int64)
    dist = mc.hamming_scan(torch.from_numpy(codes).to(DEV), torch.from_numpy(queries).to(DEV))
    x = (queries.view(np.uint64)[:, None, :] ^ codes.view(np.uint64)[None, :, :]).view(np.uint8)
    ref = np.unpackbits(x, axis=-1).sum(axis=-1).astype(np.float32)
    np.testing.assert_array_equal(dist.cpu().numpy(), ref)


def test_opcheck_on_a_custom_op_backed_by_the_kernel():
    """The launch functions compose with torch.library custom ops (how the MaxSim ops dispatch)."""

    @torch.library.custom_op("mlvec_cuda_test::maxsim", mutates_args=())
    def op(q: torch.Tensor, qo: torch.Tensor, d: torch.Tensor, do: torch.Tensor) -> torch.Tensor:
        return mc.maxsim_forward(q, qo, None, d, do, None)[0]

    @op.register_fake
    def _(q, qo, d, do):
        return q.new_empty(((qo.shape[0] - 1) * (do.shape[0] - 1),), dtype=torch.float32)

    rng = np.random.default_rng(0)
    q, qo, _, _ = _sets(rng, [4, 9], 32, torch.bfloat16, integer=False)
    d, do, _, _ = _sets(rng, [30, 2, 17], 32, torch.bfloat16, integer=False)
    torch.library.opcheck(op, (q, qo, d, do), test_utils=("test_schema", "test_faketensor"))


def test_cache_dir_gets_the_cubins(tmp_path, monkeypatch):
    """A fresh process with MLVEC_CACHE_DIR compiles once and leaves cubins there."""
    import subprocess
    import sys

    code = (
        "import torch, mlvec.cuda as mc;"
        "x=torch.randn(4,8,device='cuda');print(mc.clip_lse(x,x,1.0)[0].sum().item())"
    )
    env = dict(**__import__("os").environ, MLVEC_CACHE_DIR=str(tmp_path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)
    assert len(list(tmp_path.glob("*.cubin"))) == 4
    assert mlvec.cuda_available()[0]


def test_benchmark_quick_mode_runs(tmp_path):
    import json

    from support.scripts import run_bench

    out = tmp_path / "bench.json"
    run_bench("bench_cuda.py", "--quick", "--json", str(out))
    res = json.loads(out.read_text())
    assert res["rerank"][0]["max_rel_err_vs_fp32"] < 1e-2
    assert res["training"]["ours_ms"] > 0


# ---- the public API on CUDA tensors: mlvec::maxsim_fwd / maxsim_bwd dispatch to the kernels ----


def _api_side(rng, n, length, dim, dtype, layout):
    """One side as integer-valued tokens (exact in every dtype, many ties): ``(x, kwargs)`` on the CPU."""
    lengths = rng.integers(0, length + 1, size=n)
    lengths[0] = length
    x = rng.integers(-3, 4, size=(n, length, dim)).astype(np.float32)
    mask = (np.arange(length)[None, :] < lengths[:, None]) & (rng.random((n, length)) < 0.8)
    if layout == "padded":
        return torch.tensor(x, dtype=dtype), {"mask": torch.tensor(mask)}
    rows = np.concatenate([x[i, : lengths[i]] for i in range(n)])
    rmask = np.concatenate([mask[i, : lengths[i]] for i in range(n)])
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.int64)
    return torch.tensor(rows, dtype=dtype), {"mask": torch.tensor(rmask), "offsets": offsets}


def _api_kwargs(qkw, dkw, device):
    out = {f"query_{k}": v.to(device) for k, v in qkw.items()}
    out.update({f"document_{k}": v.to(device) for k, v in dkw.items()})
    return out


def _finite(x):
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


API_FUNCS = {
    "maxsim": lambda q, d, **kw: (mlvec.maxsim(q, d, **kw),),
    "maxsim_normalized": lambda q, d, **kw: (mlvec.maxsim(q, d, normalize=True, **kw),),
    "filip": lambda q, d, **kw: mlvec.filip_maxsim(q, d, **kw),
}


def _api_run(fn, q, d, kw, device, weights):
    q = q.to(device).requires_grad_()
    d = d.to(device).requires_grad_()
    outs = API_FUNCS[fn](q, d, **kw)
    loss = sum((_finite(o) * w.to(device)).sum() for o, w in zip(outs, weights[: len(outs)], strict=True))
    loss.backward()
    return [o.detach() for o in outs], q.grad, d.grad


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["padded", "packed"])
@pytest.mark.parametrize("paired", [False, True])
@pytest.mark.parametrize("fn", list(API_FUNCS))
def test_public_api_on_cuda_matches_the_cpu_path(dtype, layout, paired, fn):
    rng = np.random.default_rng([11, DTYPES.index(dtype), int(paired), len(fn)])
    nq, nd = 3, 3 if paired else 5
    q, qkw = _api_side(rng, nq, 7, 24, dtype, layout)
    d, dkw = _api_side(rng, nd, 37, 24, dtype, "packed" if layout == "padded" else "padded")
    shape = (nq,) if paired else (nq, nd)
    weights = [torch.tensor(rng.integers(-2, 3, size=shape), dtype=torch.float32) for _ in range(2)]
    got, gq, gd = _api_run(fn, q, d, _api_kwargs(qkw, dkw, DEV), DEV, weights)
    want, wq, wd = _api_run(fn, q, d, _api_kwargs(qkw, dkw, "cpu"), "cpu", weights)
    for g, w in zip(got, want, strict=True):
        assert g.device.type == torch.device(DEV).type and g.dtype == torch.float32 and g.shape == w.shape
        torch.testing.assert_close(g.cpu(), w)  # -inf where the CPU path has -inf
    for g, w in ((gq, wq), (gd, wd)):
        assert g.device.type == torch.device(DEV).type and g.dtype == dtype and g.shape == w.shape
        # Integer data and weights: the gradients are sums of small integers (means divide them).
        torch.testing.assert_close(g.cpu(), w, rtol=1e-2 if dtype != torch.float32 else 1e-5, atol=1e-2)


def test_public_api_on_cuda_takes_cpu_masks_and_offsets():
    rng = np.random.default_rng(21)
    q, qkw = _api_side(rng, 2, 5, 16, torch.bfloat16, "packed")
    d, dkw = _api_side(rng, 4, 9, 16, torch.bfloat16, "padded")
    cpu_kw = _api_kwargs(qkw, dkw, "cpu")
    got = mlvec.maxsim(q.to(DEV), d.to(DEV), **cpu_kw)
    torch.testing.assert_close(got.cpu(), mlvec.maxsim(q, d, **cpu_kw))
    scores, idx = mlvec.rerank(q.to(DEV), d.to(DEV), 3, **cpu_kw)
    want_scores, want_idx = mlvec.rerank(q, d, 3, **cpu_kw)
    torch.testing.assert_close(scores.cpu(), want_scores)
    assert torch.equal(idx.cpu(), want_idx)


def test_public_api_on_cuda_rejects_bad_input_clearly():
    q = torch.randn(2, 4, 8, device=DEV)
    d = torch.randn(3, 5, 8, device=DEV)
    with pytest.raises(ValueError, match="documents: on cpu, but the queries are on cuda"):
        mlvec.maxsim(q, d.cpu())
    d[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="documents: token row 7 .*NaN or inf"):
        mlvec.maxsim(q, d)
    mask = torch.ones(3, 5, dtype=torch.bool, device=DEV)
    mask[1, 2] = False
    assert torch.isfinite(mlvec.maxsim(q, d, document_mask=mask)).all()
    with pytest.raises(ValueError, match="document_offsets: last offset"):
        mlvec.maxsim(q, d.reshape(15, 8), document_offsets=torch.tensor([0, 5, 16], device=DEV))


def _cuda_op_args(rng, dtype, paired, masks, want_d2q):
    from support.maxsim_reference import make_sets, packed

    qs = make_sets(rng, 3, 4, 8, dtype, holes=masks)
    ds = make_sets(rng, 3 if paired else 4, 40, 8, dtype, holes=masks)
    q, qo, qm = (None if t is None else t.to(DEV) for t in packed(qs, "torch"))
    d, do, dm = (None if t is None else t.to(DEV) for t in packed(ds, "torch"))
    return (q, qo, qm, d, do, dm, int(qs.lengths.max()), int(ds.lengths.max()), paired, True, want_d2q, True)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("paired", [False, True])
@pytest.mark.parametrize("masks,want_d2q", [(False, False), (True, True)])
def test_opcheck_of_the_maxsim_ops_on_cuda(dtype, paired, masks, want_d2q):
    from mlvec.ops import maxsim_bwd, maxsim_fwd

    rng = np.random.default_rng(31)
    args = _cuda_op_args(rng, dtype, paired, masks, want_d2q)
    q, qo, qm, d, do, dm = args[:6]
    torch.library.opcheck(maxsim_fwd, (q.requires_grad_(), qo, qm, d.requires_grad_(), do, dm, *args[6:]))
    q, d = q.detach(), d.detach()
    q2d, q_arg, d2q, d_arg = maxsim_fwd(q, qo, qm, d, do, dm, *args[6:])
    assert q2d.device.type == torch.device(DEV).type and q_arg.shape == (q2d.shape[0], args[6])
    g = torch.randn_like(q2d)
    if want_d2q:
        torch.library.opcheck(maxsim_bwd, (q, qo, qm, d, do, dm, paired, g, q_arg, g.flip(0), d_arg))
    torch.library.opcheck(maxsim_bwd, (q, qo, qm, d, do, dm, paired, g, q_arg, None, None))
