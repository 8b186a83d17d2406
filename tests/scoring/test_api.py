"""mlvec.maxsim / filip_maxsim / rerank against a plain torch float64 reference."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mlvec
from mlvec import _arrays

from support.maxsim_reference import (
    RTOL,
    assert_scores_close,
    make_sets,
    padded,
    reference,
    side_kwargs,
    to_numpy,
)

DIMS = [1, 3, 7, 8, 13, 16, 17, 31, 64, 100]


@st.composite
def cases(draw, paired_ok=True):
    """A random scoring problem: shapes, layouts, dtype, library, contiguity, pairing."""
    dtype = draw(st.sampled_from(["float32", "float16", "bfloat16"]))
    lib = "torch" if dtype == "bfloat16" else draw(st.sampled_from(["numpy", "torch"]))
    paired = paired_ok and draw(st.booleans())
    nq = draw(st.integers(1, 4))
    nd = nq if paired else draw(st.integers(1, 6))
    return dict(
        seed=draw(st.integers(0, 2**32 - 1)),
        dtype=dtype,
        lib=lib,
        paired=paired,
        nq=nq,
        nd=nd,
        lq=draw(st.integers(1, 9)),
        ld=draw(st.integers(1, 12)),
        dim=draw(st.sampled_from(DIMS)),
        q_layout=draw(st.sampled_from(["padded", "packed"])),
        d_layout=draw(st.sampled_from(["padded", "packed"])),
        q_holes=draw(st.booleans()),
        d_holes=draw(st.booleans()),
        noncontig=draw(st.booleans()),
    )


def build(c):
    rng = np.random.default_rng(c["seed"])
    qs = make_sets(rng, c["nq"], c["lq"], c["dim"], c["dtype"], holes=c["q_holes"])
    ds = make_sets(rng, c["nd"], c["ld"], c["dim"], c["dtype"], holes=c["d_holes"])
    q, qkw = side_kwargs(qs, c["q_layout"], c["lib"], c["noncontig"], "query")
    d, dkw = side_kwargs(ds, c["d_layout"], c["lib"], c["noncontig"], "document")
    ref = reference(qs.ref(), qs.ref_mask(), ds.ref(), ds.ref_mask(), paired=c["paired"])
    # Tolerance scaled by the size of the sums involved (|q.d| <= about dim for unit normals).
    atol = RTOL[c["dtype"]] * max(c["lq"], c["ld"]) * c["dim"]
    return q, d, {**qkw, **dkw}, ref, atol


def check_type(out, c):
    if c["lib"] == "torch":
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.device.type == "cpu"
    else:
        assert isinstance(out, np.ndarray) and out.dtype == np.float32


@settings(max_examples=60, deadline=None)
@given(c=cases(), normalize=st.booleans())
def test_maxsim_matches_reference(c, normalize):
    q, d, kw, (colbert, q2d, _), atol = build(c)
    out = mlvec.maxsim(q, d, paired=c["paired"], normalize=normalize, **kw)
    check_type(out, c)
    assert_scores_close(out, q2d if normalize else colbert, atol=atol, rtol=RTOL[c["dtype"]])


@settings(max_examples=40, deadline=None)
@given(c=cases())
def test_filip_matches_reference(c):
    q, d, kw, (_, q2d, d2q), atol = build(c)
    got_q2d, got_d2q = mlvec.filip_maxsim(q, d, paired=c["paired"], **kw)
    check_type(got_q2d, c)
    check_type(got_d2q, c)
    assert_scores_close(got_q2d, q2d, atol=atol, rtol=RTOL[c["dtype"]])
    assert_scores_close(got_d2q, d2q, atol=atol, rtol=RTOL[c["dtype"]])


@settings(max_examples=30, deadline=None)
@given(c=cases(paired_ok=False), data=st.data())
def test_rerank_matches_topk_of_reference(c, data):
    q, d, kw, (colbert, _, _), atol = build(c)
    k = data.draw(st.integers(1, c["nd"]))
    scores, idx = mlvec.rerank(q, d, k, **kw)
    check_type(scores, c)
    idx = np.asarray(idx)
    assert idx.shape == (c["nq"], k) and idx.dtype == np.int64
    want = torch.topk(colbert, k, dim=-1)
    assert_scores_close(scores, want.values, atol=atol, rtol=RTOL[c["dtype"]])
    # The indices point at documents with those reference scores ...
    picked = torch.gather(colbert, 1, torch.from_numpy(idx))
    assert_scores_close(scores, picked, atol=atol, rtol=RTOL[c["dtype"]])
    # ... in descending order, equal scores by lower index, each document at most once.
    s = to_numpy(scores)
    assert (s[:, 1:] <= s[:, :-1]).all()
    ties = s[:, 1:] == s[:, :-1]
    assert (idx[:, 1:] > idx[:, :-1])[ties].all()
    assert all(len(set(row)) == k for row in idx)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_single_query_drops_the_query_axis(lib):
    rng = np.random.default_rng(0)
    qs = make_sets(rng, 1, 5, 16, "float32", empty_ok=False)
    ds = make_sets(rng, 7, 9, 16, "float32")
    q, qm = padded(qs, lib, force_mask=True)
    d, dm = padded(ds, lib, force_mask=True)
    colbert, _, _ = reference(qs.ref(), qs.ref_mask(), ds.ref(), ds.ref_mask())
    out = mlvec.maxsim(q[0], d, query_mask=qm[0], document_mask=dm)
    assert tuple(out.shape) == (7,)
    assert_scores_close(out, colbert[0], atol=1e-4, rtol=1e-5)
    scores, idx = mlvec.rerank(q[0], d, 3, query_mask=qm[0], document_mask=dm)
    assert tuple(scores.shape) == (3,) and tuple(idx.shape) == (3,)
    assert_scores_close(scores, torch.topk(colbert[0], 3).values, atol=1e-4, rtol=1e-5)
    f_q2d, f_d2q = mlvec.filip_maxsim(q[0], d, query_mask=qm[0], document_mask=dm)
    assert tuple(f_q2d.shape) == (7,) and tuple(f_d2q.shape) == (7,)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_empty_documents_score_minus_infinity_and_empty_queries_zero(lib):
    rng = np.random.default_rng(1)
    q = rng.standard_normal((2, 4, 8)).astype(np.float32)
    d = rng.standard_normal((3, 5, 8)).astype(np.float32)
    qm = np.ones((2, 4), bool)
    qm[1] = False
    dm = np.ones((3, 5), bool)
    dm[2] = False
    if lib == "torch":
        q, d, qm, dm = map(torch.from_numpy, (q, d, qm, dm))
    s = to_numpy(mlvec.maxsim(q, d, query_mask=qm, document_mask=dm))
    assert np.isneginf(s[0, 2]) and np.isfinite(s[0, :2]).all()
    assert (s[1] == 0).all()
    q2d, d2q = (to_numpy(x) for x in mlvec.filip_maxsim(q, d, query_mask=qm, document_mask=dm))
    assert np.isneginf(q2d[0, 2]) and d2q[0, 2] == 0
    assert (q2d[1] == 0).all() and np.isneginf(d2q[1, :2]).all() and d2q[1, 2] == 0


def test_mixed_numpy_and_torch_give_torch():
    rng = np.random.default_rng(2)
    q = rng.standard_normal((2, 3, 8)).astype(np.float32)
    d = rng.standard_normal((4, 5, 8)).astype(np.float32)
    ref = mlvec.maxsim(q, d)
    out = mlvec.maxsim(torch.from_numpy(q), d)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_array_equal(out.numpy(), ref)


def test_integer_masks_are_accepted():
    rng = np.random.default_rng(3)
    q = rng.standard_normal((2, 3, 8)).astype(np.float32)
    d = rng.standard_normal((4, 5, 8)).astype(np.float32)
    dm = rng.random((4, 5)) < 0.6
    dm[:, 0] = True
    np.testing.assert_array_equal(
        mlvec.maxsim(q, d, document_mask=dm.astype(np.int64)), mlvec.maxsim(q, d, document_mask=dm)
    )


def test_nan_in_masked_padding_is_ignored():
    rng = np.random.default_rng(4)
    q = rng.standard_normal((2, 3, 8)).astype(np.float32)
    d = rng.standard_normal((4, 5, 8)).astype(np.float32)
    dm = np.ones((4, 5), bool)
    dm[:, 3:] = False
    d_nan = d.copy()
    d_nan[:, 3:] = np.nan
    np.testing.assert_array_equal(
        mlvec.maxsim(q, d_nan, document_mask=dm), mlvec.maxsim(q, d, document_mask=dm)
    )


def test_empty_batches():
    q = np.zeros((0, 3, 8), np.float32)
    d = np.ones((4, 5, 8), np.float32)
    assert mlvec.maxsim(q, d).shape == (0, 4)
    assert mlvec.maxsim(d, q).shape == (4, 0)


# --- conversion without copies ---------------------------------------------------------------


def test_numpy_contiguous_input_is_not_copied():
    x = np.ones((6, 16), np.float32)
    view, bf16 = _arrays.native_2d(x, "queries")
    assert not bf16 and np.shares_memory(view, x)
    padded3 = np.ones((3, 4, 16), np.float16)
    p = _arrays.pack_numpy(padded3, None, None, "documents", "document_mask", "document_offsets")
    assert np.shares_memory(p.data, padded3)
    assert p.offsets.tolist() == [0, 4, 8, 12]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_torch_contiguous_input_is_not_copied(dtype):
    t = torch.randn(6, 16).to(dtype).requires_grad_()
    view, bf16 = _arrays.native_2d(t, "queries")
    assert bf16 == (dtype == torch.bfloat16)
    assert view.ctypes.data == t.data_ptr()
    if bf16:
        # The uint16 bits read back as the same bfloat16 values.
        back = torch.from_numpy(view.view(np.int16)).view(torch.bfloat16)
        assert torch.equal(back, t.detach())


def test_noncontiguous_input_is_copied_once_and_correct():
    x = np.asfortranarray(np.random.default_rng(5).standard_normal((6, 16)).astype(np.float32))
    view, _ = _arrays.native_2d(x, "queries")
    assert view.flags.c_contiguous and not np.shares_memory(view, x)
    np.testing.assert_array_equal(view, x)


def test_numpy_scoring_does_not_import_torch():
    code = (
        "import sys, numpy as np, mlvec\n"
        "q = np.ones((2, 3, 8), np.float32); d = np.ones((4, 5, 8), np.float32)\n"
        "mlvec.maxsim(q, d); mlvec.filip_maxsim(q, d); mlvec.rerank(q, d, 2)\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_follow_input_type():
    r = np.arange(3, dtype=np.float32)
    assert _arrays.follow_input_type(r, np.ones(2)) is r
    t = _arrays.follow_input_type(r, np.ones(2), torch.ones(2))
    assert isinstance(t, torch.Tensor) and t.data_ptr() == r.ctypes.data
