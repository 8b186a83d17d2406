"""Single-process losses against the dense float64 reference, and gradcheck."""

from __future__ import annotations

import pytest
import torch

import mlvec.losses as L

from support.losses_reference import clip_ref, colbert_ref, filip_ref, siglip_ref


def _leaf(t, dtype=torch.float64):
    return t.detach().to(dtype).clone().requires_grad_(True)


def _grads(loss, inputs):
    return torch.autograd.grad(loss, inputs)


def _close(got, want, rtol, atol):
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g.double(), w.double(), rtol=rtol, atol=atol)


TARGETS = ["diag", "labels", "positives"]


def _targets(kind, na, nb, gen):
    if kind == "diag":
        return {}, None
    if kind == "labels":
        lab = torch.randint(0, nb, (na,), generator=gen)
        lab[0] = lab[1]  # two rows sharing a positive
        return {"labels": lab}, lab.reshape(-1, 1)
    pos = torch.full((na, 3), -1, dtype=torch.int64)
    for i in range(na):
        k = 1 + i % 3
        pos[i, :k] = torch.randperm(nb, generator=gen)[:k]
    pos[2] = -1  # a row without positives is left out
    return {"positives": pos}, pos


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("with_bias", [False, True])
def test_clip_matches_dense_reference(target, symmetric, eps, with_bias):
    gen = torch.Generator().manual_seed(1)
    na = 23
    nb = na if target == "diag" else 31
    a = _leaf(torch.randn(na, 12, generator=gen))
    b = _leaf(torch.randn(nb, 12, generator=gen))
    scale = _leaf(torch.tensor(2.5))
    bias = _leaf(torch.tensor(-0.7)) if with_bias else None
    kw, row_pos = _targets(target, na, nb, gen)
    got = L.clip_loss(a, b, scale, bias, symmetric=symmetric, label_smoothing=eps, tile_size=5, **kw)
    want = clip_ref(a, b, scale, bias, row_pos=row_pos, symmetric=symmetric, eps=eps)
    inputs = [a, b, scale] + ([bias] if with_bias else [])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    _close(_grads(got, inputs), _grads(want, inputs), 1e-10, 1e-12)


def test_clip_diagonal_equals_torch_cross_entropy():
    # An independent formulation: torch's own cross_entropy on the full logits.
    gen = torch.Generator().manual_seed(2)
    a, b = (
        torch.randn(17, 8, generator=gen, dtype=torch.float64),
        torch.randn(17, 8, generator=gen, dtype=torch.float64),
    )
    logits = 4.0 * a @ b.T
    y = torch.arange(17)
    ce = torch.nn.functional.cross_entropy
    want = 0.5 * (ce(logits, y, label_smoothing=0.2) + ce(logits.T, y, label_smoothing=0.2))
    got = L.clip_loss(a, b, 4.0, label_smoothing=0.2, tile_size=4)
    torch.testing.assert_close(got, want.to(got.dtype), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("with_bias", [False, True])
def test_siglip_matches_dense_reference(target, with_bias):
    gen = torch.Generator().manual_seed(3)
    na = 19
    nb = na if target == "diag" else 26
    a = _leaf(torch.randn(na, 10, generator=gen))
    b = _leaf(torch.randn(nb, 10, generator=gen))
    scale = _leaf(torch.tensor(3.0))
    bias = _leaf(torch.tensor(-2.0)) if with_bias else None
    kw, row_pos = _targets(target, na, nb, gen)
    got = L.siglip_loss(a, b, scale, bias, tile_size=6, **kw)
    want = siglip_ref(a, b, scale, bias, row_pos=row_pos)
    inputs = [a, b, scale] + ([bias] if with_bias else [])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    _close(_grads(got, inputs), _grads(want, inputs), 1e-10, 1e-12)


def _token_sets(gen, n, length, d, dtype=torch.float64):
    t = torch.randn(n, length, d, generator=gen).to(dtype)
    m = torch.rand(n, length, generator=gen) > 0.35
    m[:, 0] = True
    return t, m


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("symmetric", [True, False])
def test_filip_matches_dense_reference(dtype, target, symmetric):
    gen = torch.Generator().manual_seed(4)
    na = 11
    nb = na if target == "diag" else 14
    ta, ma = _token_sets(gen, na, 5, 6, dtype)
    tb, mb = _token_sets(gen, nb, 7, 6, dtype)
    ta, tb = _leaf(ta, dtype), _leaf(tb, dtype)
    scale, bias = _leaf(torch.tensor(2.0), dtype), _leaf(torch.tensor(0.3), dtype)
    kw, row_pos = _targets(target, na, nb, gen)
    got = L.filip_loss(
        ta, ma, tb, mb, scale, bias, symmetric=symmetric, label_smoothing=0.05, tile_size=4, **kw
    )
    ref_in = [_leaf(x) for x in (ta, tb, scale, bias)]
    want = filip_ref(
        ref_in[0], ma, ref_in[1], mb, ref_in[2], ref_in[3], row_pos=row_pos, symmetric=symmetric, eps=0.05
    )
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.double(), want, **tol)
    _close(_grads(got, [ta, tb, scale, bias]), _grads(want, ref_in), **tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("symmetric", [False, True])
def test_colbert_matches_dense_reference(dtype, symmetric):
    gen = torch.Generator().manual_seed(5)
    nq, nd = 9, 18
    tq, mq = _token_sets(gen, nq, 4, 8, dtype)
    td, md = _token_sets(gen, nd, 6, 8, dtype)
    tq, td = _leaf(tq, dtype), _leaf(td, dtype)
    scale = _leaf(torch.tensor(0.5), dtype)
    labels = torch.arange(nq) * 2  # every query has one positive, the other documents are negatives
    got = L.colbert_loss(tq, mq, td, md, scale, labels=labels, symmetric=symmetric, tile_size=4)
    ref_in = [_leaf(x) for x in (tq, td, scale)]
    want = colbert_ref(
        ref_in[0], mq, ref_in[1], md, ref_in[2], row_pos=labels.reshape(-1, 1), symmetric=symmetric
    )
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.double(), want, **tol)
    _close(_grads(got, [tq, td, scale]), _grads(want, ref_in), **tol)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_inputs_accumulate_in_fp32(dtype):
    gen = torch.Generator().manual_seed(6)
    a = (
        torch.nn.functional.normalize(torch.randn(40, 32, generator=gen), dim=-1)
        .to(dtype)
        .requires_grad_(True)
    )
    b = (
        torch.nn.functional.normalize(torch.randn(40, 32, generator=gen), dim=-1)
        .to(dtype)
        .requires_grad_(True)
    )
    got = L.clip_loss(a, b, 20.0, tile_size=16)
    ga, gb = _grads(got, [a, b])
    assert ga.dtype == dtype and gb.dtype == dtype
    ra, rb = _leaf(a), _leaf(b)  # the same rounded values, in float64
    want = clip_ref(ra, rb, 20.0)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    wa, wb = _grads(want, [ra, rb])
    torch.testing.assert_close(ga.double(), wa, rtol=2e-2, atol=2e-4)
    torch.testing.assert_close(gb.double(), wb, rtol=2e-2, atol=2e-4)
    # FILIP through the native kernel with half-precision tokens.
    ta, ma = _token_sets(gen, 6, 4, 16, dtype)
    tb, mb = _token_sets(gen, 6, 5, 16, dtype)
    ta.requires_grad_(True)
    got = L.filip_loss(ta, ma, tb, mb, 3.0, tile_size=4)
    (gta,) = _grads(got, [ta])
    rta = _leaf(ta)
    want = filip_ref(rta, ma, tb.double(), mb, 3.0)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gta.double(), _grads(want, [rta])[0], rtol=2e-2, atol=2e-4)


def test_gradcheck_clip_siglip():
    gen = torch.Generator().manual_seed(7)
    a, b = _leaf(torch.randn(6, 4, generator=gen)), _leaf(torch.randn(6, 4, generator=gen))
    s, bias = _leaf(torch.tensor(1.5)), _leaf(torch.tensor(0.2))
    pos = torch.tensor([[0, 2], [1, -1], [2, -1], [3, 4], [5, -1], [4, -1]])
    assert torch.autograd.gradcheck(
        lambda a, b, s, c: L.clip_loss(a, b, s, c, positives=pos, label_smoothing=0.1, tile_size=4),
        (a, b, s, bias),
    )
    assert torch.autograd.gradcheck(
        lambda a, b, s, c: L.siglip_loss(a, b, s, c, tile_size=4), (a, b, s, bias)
    )


def test_gradcheck_filip_colbert():
    gen = torch.Generator().manual_seed(8)
    ta, ma = _token_sets(gen, 4, 3, 4)
    tb, mb = _token_sets(gen, 4, 5, 4)
    ta, tb = _leaf(ta), _leaf(tb)
    s = _leaf(torch.tensor(1.5))
    assert torch.autograd.gradcheck(lambda x, y, s: L.filip_loss(x, ma, y, mb, s, tile_size=3), (ta, tb, s))
    assert torch.autograd.gradcheck(
        lambda x, y, s: L.colbert_loss(x, ma, y, mb, s, symmetric=True, tile_size=3), (ta, tb, s)
    )


def test_modules_match_functions():
    gen = torch.Generator().manual_seed(9)
    a, b = torch.randn(10, 6, generator=gen), torch.randn(10, 6, generator=gen)
    s = torch.tensor(5.0)
    assert torch.equal(L.ClipLoss(tile_size=3)(a, b, s), L.clip_loss(a, b, s, tile_size=3))
    out = L.ClipLoss()(a, b, s, output_dict=True)
    assert set(out) == {"contrastive_loss"}
    assert torch.equal(L.SigLipLoss()(a, b, s, -1.0), L.siglip_loss(a, b, s, -1.0))
    ta, tb = torch.randn(5, 3, 6, generator=gen), torch.randn(5, 4, 6, generator=gen)
    assert torch.equal(L.FilipLoss()(ta, None, tb, None, s), L.filip_loss(ta, None, tb, None, s))
    assert torch.equal(L.ColbertLoss()(ta, None, tb, None), L.colbert_loss(ta, None, tb, None))


def test_agrees_with_open_clip_single_process():
    open_clip_loss = pytest.importorskip("open_clip.loss")
    gen = torch.Generator().manual_seed(10)
    a = torch.nn.functional.normalize(torch.randn(33, 16, generator=gen, dtype=torch.float64), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(33, 16, generator=gen, dtype=torch.float64), dim=-1)
    for ours, theirs, bias in (
        (L.ClipLoss(tile_size=8), open_clip_loss.ClipLoss(), None),
        (L.SigLipLoss(tile_size=8), open_clip_loss.SigLipLoss(), torch.tensor(-3.0, dtype=torch.float64)),
    ):
        x, y = _leaf(a), _leaf(b)
        s = _leaf(torch.tensor(2.3)).exp()  # open_clip passes the exponentiated scale
        args = (x, y, s) if bias is None else (x, y, s, bias)
        got = ours(*args)
        x2, y2 = _leaf(a), _leaf(b)
        s2 = _leaf(torch.tensor(2.3)).exp()
        want = theirs(*((x2, y2, s2) if bias is None else (x2, y2, s2, bias)))
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        s.retain_grad()
        _close(_grads(got, [x, y]), _grads(want, [x2, y2]), 1e-10, 1e-12)


def test_tile_size_does_not_change_the_result():
    gen = torch.Generator().manual_seed(11)
    a, b = torch.randn(50, 8, generator=gen), torch.randn(50, 8, generator=gen)
    results = [float(L.clip_loss(a, b, 7.0, tile_size=t)) for t in (1, 7, 50, 4096)]
    assert max(results) - min(results) < 1e-5


def test_no_grad_and_python_scale():
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    with torch.no_grad():
        v = L.clip_loss(a, b, 2.0)
    assert v.dim() == 0 and torch.isfinite(v)


@pytest.mark.parametrize("target", ["diag", "positives"])
def test_siglip_float32_one_sweep_matches_reference(target):
    # float32 on the CPU runs the native tiles; with gradients wanted, loss and gradients come
    # from one sweep. Compare both the value without gradients and the gradients with the fp64
    # dense reference on the same (float32-representable) inputs.
    gen = torch.Generator().manual_seed(12)
    na, nb = 37, 37 if target == "diag" else 45
    a32 = torch.nn.functional.normalize(torch.randn(na, 24, generator=gen), dim=-1)
    b32 = torch.nn.functional.normalize(torch.randn(nb, 24, generator=gen), dim=-1)
    kw, row_pos = _targets(target, na, nb, gen)
    a, b = a32.clone().requires_grad_(True), b32.clone().requires_grad_(True)
    s, bias = torch.tensor(8.0, requires_grad=True), torch.tensor(-4.0, requires_grad=True)
    got = L.siglip_loss(a, b, s, bias, tile_size=16, **kw)
    with torch.no_grad():
        value_only = L.siglip_loss(a32, b32, 8.0, -4.0, tile_size=16, **kw)
    ra, rb, rs, rbias = _leaf(a32), _leaf(b32), _leaf(torch.tensor(8.0)), _leaf(torch.tensor(-4.0))
    want = siglip_ref(ra, rb, rs, rbias, row_pos=row_pos)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(value_only.double(), want, rtol=1e-5, atol=1e-6)
    got.backward(retain_graph=True)
    first = [t.grad.clone() for t in (a, b, s, bias)]
    wants = _grads(want, [ra, rb, rs, rbias])
    for g, w in zip(first, wants, strict=True):
        torch.testing.assert_close(g.double(), w, rtol=1e-4, atol=1e-6)
    # A second backward through the same graph recomputes and gives the same gradients.
    for t in (a, b, s, bias):
        t.grad = None
    (2.0 * got).backward()
    for t, g in zip((a, b, s, bias), first, strict=True):
        torch.testing.assert_close(t.grad, 2.0 * g, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("loss", ["clip", "siglip"])
def test_openmp_team_and_own_pool_agree_bit_for_bit(loss, monkeypatch):
    # float32 tiles on the CPU run their element-wise passes on torch's OpenMP team when it is
    # loaded, or on mlvec's pool with MLVEC_OPENMP=0; per-part results are combined in part order,
    # so which threads ran the parts must not change a bit. 1,024-wide tiles are split into 16
    # row chunks (64K floats each) and 4 statistics parts, so there is more than one part.
    gen = torch.Generator().manual_seed(13)
    a32 = torch.nn.functional.normalize(torch.randn(1100, 16, generator=gen), dim=-1)
    b32 = torch.nn.functional.normalize(torch.randn(1100, 16, generator=gen), dim=-1)

    def run():
        a, b = a32.clone().requires_grad_(True), b32.clone().requires_grad_(True)
        s, bias = torch.tensor(10.0, requires_grad=True), torch.tensor(-5.0, requires_grad=True)
        out = (
            L.clip_loss(a, b, s, tile_size=1024)
            if loss == "clip"
            else L.siglip_loss(a, b, s, bias, tile_size=1024)
        )
        out.backward()
        return [out.detach(), a.grad, b.grad, s.grad]

    team = run()
    monkeypatch.setenv("MLVEC_OPENMP", "0")
    pool = run()
    for x, y in zip(team, pool, strict=True):
        assert torch.equal(x, y)
    # And both are the loss and its gradients: against the float64 dense reference.
    ra, rb, rs = _leaf(a32), _leaf(b32), _leaf(torch.tensor(10.0))
    want = clip_ref(ra, rb, rs) if loss == "clip" else siglip_ref(ra, rb, rs, _leaf(torch.tensor(-5.0)))
    torch.testing.assert_close(team[0].double(), want, rtol=1e-5, atol=1e-6)
    for g, w in zip(team[1:], _grads(want, [ra, rb, rs]), strict=True):
        torch.testing.assert_close(g.double(), w, rtol=1e-4, atol=1e-6)
