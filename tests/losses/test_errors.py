"""Bad input gets a clear ValueError naming the argument (single process; the distributed
variant, where every rank must raise and none may hang, is in test_losses_distributed.py)."""

from __future__ import annotations

import pytest
import torch

import mlvec.losses as L


def _ab(n=4, m=4, d=6, dtype=torch.float32):
    return torch.randn(n, d, dtype=dtype), torch.randn(m, d, dtype=dtype)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: (*_ab(4, 5), 2.0, {}), "batch sizes differ"),
        (lambda: (torch.randn(4, 6), torch.randn(4, 5), 2.0, {}), "feature dimensions differ"),
        (lambda: (torch.randn(4, 6), torch.randn(4, 6, dtype=torch.float64), 2.0, {}), "dtypes differ"),
        (lambda: (torch.randint(0, 5, (4, 6)), torch.randn(4, 6), 2.0, {}), "features_a: dtype must be"),
        (lambda: (torch.randn(4), torch.randn(4, 6), 2.0, {}), "features_a: expected 2 dimensions"),
        (lambda: (torch.randn(0, 6), torch.randn(0, 6), 2.0, {}), "empty batch"),
        (lambda: ([[1.0]], torch.randn(4, 6), 2.0, {}), "expected a torch.Tensor"),
        (lambda: (_ab()[0], torch.full((4, 6), float("inf")), 2.0, {}), "features_b: contains NaN or infinite"),
        (lambda: (*_ab(), float("nan"), {}), "logit_scale: is not finite"),
        (lambda: (*_ab(), torch.tensor([1.0, 2.0]), {}), "logit_scale: expected a scalar"),
        (lambda: (*_ab(), torch.tensor(1.0, device="meta"), {}), "logit_scale: on device meta"),
        (lambda: (*_ab(), 2.0, {"logit_bias": float("inf")}), "logit_bias: is not finite"),
        (lambda: (*_ab(), 2.0, {"labels": torch.tensor([0, 1, 2, 4])}), "column index 4 >= global column count 4"),
        (lambda: (*_ab(), 2.0, {"labels": torch.tensor([0, 1, 2])}), r"labels: expected shape \(4,\)"),
        (lambda: (*_ab(), 2.0, {"labels": torch.tensor([0.0, 1, 2, 3])}), "labels: expected an int64"),
        (lambda: (*_ab(), 2.0, {"labels": torch.arange(4), "positives": [[0]] * 4}), "at most one"),
        (lambda: (*_ab(), 2.0, {"positives": [[0, 0], [1], [2], [3]]}), "same positive column twice"),
        (lambda: (*_ab(), 2.0, {"positives": [[-1], [-1], [-1], [-1]]}), "no row has any positive"),
        (lambda: (*_ab(), 2.0, {"positives": [["x"], [1], [2], [3]]}), "labels/positives"),
        (lambda: (*_ab(), 2.0, {"strategy": "tree"}), "strategy: expected one of"),
        (lambda: (*_ab(), 2.0, {"label_smoothing": 1.5}), "label_smoothing"),
        (lambda: (*_ab(), 2.0, {"tile_size": 0}), "tile_size"),
    ],
)
def test_clip_bad_input(make, match):
    a, b, scale, kw = make()
    bias = kw.pop("logit_bias", None)
    with pytest.raises(ValueError, match=match):
        L.clip_loss(a, b, scale, bias, **kw)


def test_siglip_bad_input():
    with pytest.raises(ValueError, match="feature dimensions differ"):
        L.siglip_loss(torch.randn(3, 4), torch.randn(3, 5), 1.0, 0.0)
    with pytest.raises(ValueError, match="features_a: contains NaN"):
        L.siglip_loss(torch.full((3, 4), float("nan")), torch.randn(3, 4), 1.0, 0.0)


def test_late_interaction_bad_input():
    ta, tb = torch.randn(3, 4, 8), torch.randn(3, 5, 8)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1] = False
    with pytest.raises(ValueError, match="mask_a: set 1 has no valid token"):
        L.filip_loss(ta, mask, tb, None, 1.0)
    with pytest.raises(ValueError, match=r"doc_mask: expected shape \(3, 5\)"):
        L.colbert_loss(ta, None, tb, torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="tokens_b: expected 3 dimensions"):
        L.filip_loss(ta, None, torch.randn(3, 8), None, 1.0)
    with pytest.raises(ValueError, match="feature dimensions differ"):
        L.filip_loss(ta, None, torch.randn(3, 5, 7), None, 1.0)
    with pytest.raises(ValueError, match="query_tokens: contains NaN"):
        L.colbert_loss(torch.full((3, 4, 8), float("nan")), None, tb, None)


def test_failed_call_leaves_inputs_untouched():
    a, b = _ab()
    a0, b0 = a.clone(), b.clone()
    with pytest.raises(ValueError):
        L.clip_loss(a, b, 2.0, labels=torch.tensor([0, 1, 2, 9]))
    assert torch.equal(a, a0) and torch.equal(b, b0)
