"""The native fused tile kernels of the contrastive losses against plain float64 torch."""

import numpy as np
import pytest
import torch

from mlvec import _native


def _tile(n, m, span=30.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand(n, m, generator=g, dtype=torch.float64) * 2 - 1) * span).to(torch.float32)


@pytest.mark.parametrize("n,m", [(1, 1), (5, 33), (300, 700)])
def test_softmax_stats(n, m):
    t = _tile(n, m)
    x = t.double() - 0.75
    buf = t.clone().numpy()
    rl, cl = _native.contrastive.softmax_stats(buf, -0.75)
    torch.testing.assert_close(torch.from_numpy(rl).double(), torch.logsumexp(x, 1), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(cl).double(), torch.logsumexp(x, 0), rtol=1e-6, atol=1e-5)
    assert torch.equal(torch.from_numpy(buf), t - 0.75)  # bias added in place
    rl2, none = _native.contrastive.softmax_stats(t.clone().numpy(), -0.75, cols=False)
    assert none is None and np.array_equal(rl, rl2)


def test_softmax_grad():
    t = _tile(64, 300)
    sr = torch.linspace(20, 30, 64, dtype=torch.float32)
    sr[5] = float("inf")
    sc = torch.linspace(25, 15, 300, dtype=torch.float32)
    buf = t.clone().numpy()
    _native.contrastive.softmax_grad(buf, 0.5, sr.numpy(), sc.numpy())
    x = (t + 0.5).double()
    want = torch.exp(x - sr.double()[:, None]) + torch.exp(x - sc.double()[None, :])
    # Row 5 has an infinite shift: only the column term is left, checked to the same tolerance.
    torch.testing.assert_close(torch.from_numpy(buf).double(), want, rtol=1e-5, atol=0)


def test_sigmoid():
    t = _tile(40, 513, span=60.0)
    x = (t - 3.0).double()
    got = _native.contrastive.sigmoid_loss(t.numpy(), -3.0)
    assert got == pytest.approx(float(torch.nn.functional.softplus(x, threshold=1e9).sum()), rel=1e-6)
    buf = t.clone().numpy()
    loss, s = _native.contrastive.sigmoid_loss_grad(buf, -3.0, 0.25)
    assert loss == pytest.approx(got, rel=1e-6)
    want = torch.sigmoid(x) * 0.25
    torch.testing.assert_close(torch.from_numpy(buf).double(), want, rtol=1e-5, atol=1e-30)
    assert s == pytest.approx(float(want.sum()), rel=1e-6)


def test_bad_input():
    with pytest.raises(TypeError, match="tile"):
        _native.contrastive.softmax_stats(np.zeros((3, 4)), 0.0)  # float64
    with pytest.raises(ValueError, match="C-contiguous"):
        _native.contrastive.sigmoid_loss(np.zeros((4, 3), np.float32).T, 0.0)
    with pytest.raises(ValueError, match="shift_r"):
        _native.contrastive.softmax_grad(np.zeros((3, 4), np.float32), 0.0, np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="empty"):
        _native.contrastive.sigmoid_loss_grad(np.zeros((0, 4), np.float32), 0.0, 1.0)
