"""Token sets as the encoders return them (TokenEmbeddings) and as PyLate passes them (a list of
per-set arrays) plug into maxsim / filip_maxsim / rerank, checked against the padded fp64 formula."""

import numpy as np
import pytest
import torch

import mlvec
from mlvec.encoders import TokenEmbeddings


def _sets(rng, lengths, dim=16):
    return [rng.standard_normal((n, dim)).astype(np.float32) for n in lengths]


def _reference(qs, ds):
    out = np.zeros((len(qs), len(ds)))
    for i, q in enumerate(qs):
        for j, d in enumerate(ds):
            out[i, j] = (q.astype(np.float64) @ d.astype(np.float64).T).max(1).sum()
    return out


def _packed(sets):
    offsets = np.zeros(len(sets) + 1, np.int64)
    np.cumsum([len(s) for s in sets], out=offsets[1:])
    return TokenEmbeddings(np.concatenate(sets), offsets)


def test_token_embeddings_and_lists_match_the_padded_formula():
    rng = np.random.default_rng(0)
    qs, ds = _sets(rng, [3, 7]), _sets(rng, [5, 1, 9, 4])
    want = _reference(qs, ds)
    for q in (_packed(qs), qs, tuple(qs)):
        for d in (_packed(ds), ds):
            np.testing.assert_allclose(mlvec.maxsim(q, d), want, rtol=1e-5)
    np.testing.assert_allclose(mlvec.maxsim(_packed(qs)[1], _packed(ds)), want[1], rtol=1e-5)
    top, idx = mlvec.rerank(qs, _packed(ds), 2)
    np.testing.assert_array_equal(idx, np.argsort(-want, axis=1, kind="stable")[:, :2])
    q2d, d2q = mlvec.filip_maxsim(_packed(qs), ds)
    np.testing.assert_allclose(q2d, want / np.array([3, 7])[:, None], rtol=1e-5)


def test_a_list_of_tensors_keeps_gradients():
    rng = np.random.default_rng(1)
    qs = [torch.tensor(s, requires_grad=True) for s in _sets(rng, [2, 4])]
    ds = [torch.tensor(s, requires_grad=True) for s in _sets(rng, [3, 6, 1])]
    got = mlvec.maxsim(qs, ds)
    assert isinstance(got, torch.Tensor) and got.shape == (2, 3)
    got.sum().backward()
    want = sum(max_j for q in qs for d in ds for max_j in (q @ d.T).max(1).values)
    ref_q = [q.detach().clone().requires_grad_(True) for q in qs]
    ref_d = [d.detach().clone().requires_grad_(True) for d in ds]
    sum((q @ d.T).max(1).values.sum() for q in ref_q for d in ref_d).backward()
    torch.testing.assert_close(got.sum(), want.detach())
    for a, b in zip(qs + ds, ref_q + ref_d, strict=True):
        torch.testing.assert_close(a.grad, b.grad)


def test_token_set_errors_name_the_argument():
    rng = np.random.default_rng(2)
    qs, ds = _sets(rng, [2]), _sets(rng, [3, 4])
    with pytest.raises(ValueError, match="document_offsets: documents"):
        mlvec.maxsim(qs, _packed(ds), document_offsets=np.array([0, 3, 7]))
    with pytest.raises(ValueError, match="document_mask"):
        mlvec.maxsim(qs, ds, document_mask=np.ones(7, bool))
    with pytest.raises(ValueError, match=r"documents\[1\]"):
        mlvec.maxsim(qs, [ds[0], rng.standard_normal((2, 5)).astype(np.float32)])
    with pytest.raises(TypeError, match=r"queries\[0\]"):
        mlvec.maxsim([np.ones(4, np.float32)], ds)
    with pytest.raises(ValueError, match="empty list"):
        mlvec.maxsim([], ds)
