"""open_clip's constructor arguments construct mlvec's losses with the same meaning (single
process here; two ranks in test_distributed.py), and an un-exponentiated logit_scale is flagged."""

import warnings

import pytest
import torch

import mlvec.losses as L

open_clip_loss = pytest.importorskip("open_clip.loss")


def _features(n=16, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    return a, b


def _run(loss_fn, a, b, *scalars):
    a, b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    leaves = [torch.tensor(s, dtype=torch.float64, requires_grad=True) for s in scalars]
    args = [leaves[0].exp(), *leaves[1:]]
    loss = loss_fn(a, b, *args)
    loss.backward()
    return [loss.detach(), a.grad, b.grad, *(t.grad for t in leaves)]


@pytest.mark.parametrize("kwargs", [{}, {"local_loss": True, "gather_with_grad": True, "cache_labels": True},
                                    {"rank": 0, "world_size": 1}])
def test_clip_loss_takes_open_clip_arguments(kwargs):
    a, b = _features()
    theirs = _run(open_clip_loss.ClipLoss(**kwargs), a, b, 2.5)
    ours = _run(L.ClipLoss(**kwargs), a, b, 2.5)
    for t, o in zip(theirs, ours, strict=True):
        torch.testing.assert_close(o, t, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kwargs", [{}, {"cache_labels": True, "rank": 0, "world_size": 1, "dist_impl": "bidir"}])
def test_siglip_loss_takes_open_clip_arguments(kwargs):
    a, b = _features(seed=1)
    theirs = _run(open_clip_loss.SigLipLoss(**kwargs), a, b, 2.3, -10.0)
    ours = _run(L.SigLipLoss(**kwargs), a, b, 2.3, -10.0)
    for t, o in zip(theirs, ours, strict=True):
        torch.testing.assert_close(o, t, rtol=1e-9, atol=1e-12)


def test_arguments_that_cannot_mean_the_same_are_refused():
    a, b = _features()
    with pytest.raises(ValueError, match="Horovod"):
        L.ClipLoss(use_horovod=True)
    with pytest.raises(ValueError, match="dist_impl"):
        L.SigLipLoss(dist_impl="allreduce")
    with pytest.raises(ValueError, match="strategy"):
        L.SigLipLoss(dist_impl="gather", strategy="ring")
    # Two ranks claimed in a single process: refused when the loss runs.
    with pytest.raises(ValueError, match="world_size=2 was given"):
        L.ClipLoss(gather_with_grad=True, rank=0, world_size=2)(a, b, 10.0)
    with pytest.raises(ValueError, match="rank=1 was given"):
        L.SigLipLoss(rank=1)(a, b, 10.0, -10.0)


def test_gather_without_grad_on_several_ranks_warns():
    with pytest.warns(UserWarning, match="gather_with_grad=False"):
        L.ClipLoss(rank=0, world_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L.ClipLoss(gather_with_grad=True, rank=0, world_size=4)
        L.ClipLoss()  # one process: nothing to say


@pytest.mark.parametrize("fn", ["clip", "siglip", "filip"])
def test_a_log_scale_passed_as_the_scale_is_flagged(fn):
    a, b = _features()
    raw = torch.tensor(2.6592)  # CLIP's initial log(1 / 0.07), without .exp()

    def call(scale, x, y):
        if fn == "clip":
            return L.clip_loss(x, y, scale)
        if fn == "siglip":
            return L.siglip_loss(x, y, scale, -10.0)
        return L.filip_loss(x[:, None], None, y[:, None], None, scale)

    with pytest.warns(UserWarning, match="logit_scale=2.66"):
        call(raw, a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        call(raw.exp(), a, b)  # exponentiated: fine
        call(raw, 3 * a, 3 * b)  # features not normalised: the scale may be meant
