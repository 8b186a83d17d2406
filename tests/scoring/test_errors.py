"""Bad input to the scoring API: a clear ValueError/TypeError naming the argument, never a crash."""

import numpy as np
import pytest
import torch

import mlvec

RNG = np.random.default_rng(0)
Q = RNG.standard_normal((2, 3, 8)).astype(np.float32)
D = RNG.standard_normal((4, 5, 8)).astype(np.float32)
D_ROWS = RNG.standard_normal((9, 8)).astype(np.float32)


def _lib(x, lib):
    return torch.from_numpy(np.ascontiguousarray(x)) if lib == "torch" and isinstance(x, np.ndarray) else x


LIBS = pytest.mark.parametrize("lib", ["numpy", "torch"])
FUNCS = pytest.mark.parametrize(
    "fn",
    [
        lambda q, d, **kw: mlvec.maxsim(q, d, **kw),
        lambda q, d, **kw: mlvec.filip_maxsim(q, d, **kw),
        lambda q, d, **kw: mlvec.rerank(q, d, 1, **kw),
    ],
    ids=["maxsim", "filip_maxsim", "rerank"],
)


@LIBS
@FUNCS
def test_mismatched_dim(fn, lib):
    d = RNG.standard_normal((4, 5, 16)).astype(np.float32)
    with pytest.raises(ValueError, match=r"documents: embedding dimension 16 .* queries' 8"):
        fn(_lib(Q, lib), _lib(d, lib))


@LIBS
@pytest.mark.parametrize(
    "q,d,arg",
    [
        (Q[0, 0], D, "queries"),
        (Q[None], D, "queries"),
        (Q, D[0, 0], "documents"),
        (Q, np.float32(1.0), "documents"),
    ],
    ids=["query-1d", "query-4d", "doc-1d", "doc-scalar"],
)
def test_wrong_ndim(q, d, arg, lib):
    with pytest.raises((ValueError, TypeError), match=arg):
        mlvec.maxsim(_lib(q, lib), _lib(np.asarray(d), lib) if d.ndim else d)


@LIBS
def test_offsets_need_packed_rows(lib):
    with pytest.raises(ValueError, match=r"documents: with document_offsets the tokens must be packed"):
        mlvec.maxsim(_lib(Q, lib), _lib(D, lib), document_offsets=_lib(np.array([0, 5, 10]), lib))


@LIBS
@pytest.mark.parametrize(
    "kw,arg",
    [
        (dict(document_mask=np.ones((4, 4), bool)), "document_mask"),
        (dict(query_mask=np.ones((3, 2), bool)), "query_mask"),
        (dict(document_mask=np.ones(20, bool)), "document_mask"),
    ],
)
def test_mask_shape_mismatch(kw, arg, lib):
    kw = {k: _lib(v, lib) for k, v in kw.items()}
    with pytest.raises(ValueError, match=rf"{arg}: expected shape"):
        mlvec.maxsim(_lib(Q, lib), _lib(D, lib), **kw)


@LIBS
def test_packed_mask_length_mismatch(lib):
    with pytest.raises(ValueError, match=r"document_mask: expected shape \(9,\)"):
        mlvec.maxsim(
            _lib(Q, lib),
            _lib(D_ROWS, lib),
            document_offsets=_lib(np.array([0, 4, 9]), lib),
            document_mask=_lib(np.ones(8, bool), lib),
        )


@LIBS
def test_float_mask_is_rejected(lib):
    with pytest.raises(TypeError, match="document_mask: expected a bool"):
        mlvec.maxsim(_lib(Q, lib), _lib(D, lib), document_mask=_lib(np.ones((4, 5), np.float32), lib))


@LIBS
@pytest.mark.parametrize(
    "offsets,match",
    [
        ([0, 6, 3, 9], r"document_offsets: must be non-decreasing, but document_offsets\[1\] = 6 > document_offsets\[2\] = 3"),
        ([0, 4, 12], r"document_offsets: last offset 12 is past the end of the 9 packed token rows"),
        ([0, 4, 7], r"document_offsets: last offset 7 is short of the 9 packed token rows"),
        ([1, 4, 9], r"document_offsets: must start at 0"),
        ([0, -1, 9], r"document_offsets: must be non-decreasing"),
    ],
    ids=["not-monotone", "past-end", "short", "not-from-0", "negative"],
)
def test_bad_offsets(offsets, match, lib):
    with pytest.raises(ValueError, match=match):
        mlvec.maxsim(_lib(Q, lib), _lib(D_ROWS, lib), document_offsets=_lib(np.array(offsets), lib))


@LIBS
def test_bad_query_offsets_are_named(lib):
    q_rows = RNG.standard_normal((5, 8)).astype(np.float32)
    with pytest.raises(ValueError, match=r"query_offsets: last offset 6 is past the end"):
        mlvec.maxsim(_lib(q_rows, lib), _lib(D, lib), query_offsets=_lib(np.array([0, 2, 6]), lib))


@LIBS
@pytest.mark.parametrize(
    "offsets,exc,match",
    [
        (np.array([0.0, 4.0, 9.0]), TypeError, "document_offsets: expected integer offsets"),
        (np.array([[0, 4, 9]]), ValueError, "document_offsets: expected a 1-D"),
        (np.array([], np.int64), ValueError, "document_offsets"),
    ],
    ids=["float", "2-d", "empty"],
)
def test_offsets_type_and_shape(offsets, exc, match, lib):
    with pytest.raises(exc, match=match):
        mlvec.maxsim(_lib(Q, lib), _lib(D_ROWS, lib), document_offsets=_lib(offsets, lib))


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float64, np.complex64, np.bool_])
def test_unsupported_numpy_dtype(dtype):
    with pytest.raises(TypeError, match=r"queries: expected float32, float16 or bfloat16 embeddings"):
        mlvec.maxsim(Q.astype(dtype), D.astype(dtype))
    with pytest.raises(TypeError, match=r"documents: expected float32, float16 or bfloat16 embeddings"):
        mlvec.maxsim(Q, D.astype(dtype))


@pytest.mark.parametrize("dtype", [torch.int32, torch.float64, torch.uint8])
def test_unsupported_torch_dtype(dtype):
    with pytest.raises(TypeError, match=r"queries: expected float32, float16 or bfloat16 embeddings"):
        mlvec.maxsim(torch.from_numpy(Q).to(dtype), torch.from_numpy(D))


def test_float64_error_says_how_to_cast():
    with pytest.raises(TypeError, match=r"float64.*cast"):
        mlvec.maxsim(Q.astype(np.float64), D)


@LIBS
def test_dtypes_must_match(lib):
    with pytest.raises(TypeError, match=r"documents: dtype float16 does not match the queries' float32"):
        mlvec.maxsim(_lib(Q, lib), _lib(D.astype(np.float16), lib))


def test_not_an_array():
    with pytest.raises(TypeError, match="queries: expected a numpy array or a torch tensor, got list"):
        mlvec.maxsim(Q.tolist(), D)


@LIBS
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("side", ["queries", "documents"])
def test_non_finite_values(bad, side, lib):
    q, d = Q.copy(), D.copy()
    (q if side == "queries" else d)[1, 2, 3] = bad
    with pytest.raises(ValueError, match=rf"{side}: token row \d+ \(packed\) holds NaN or inf"):
        mlvec.maxsim(_lib(q, lib), _lib(d, lib))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_non_finite_half_tensors(dtype):
    d = torch.from_numpy(D).to(dtype)
    d[3, 4, 0] = float("nan")
    with pytest.raises(ValueError, match=r"documents: token row 19 \(packed\) holds NaN or inf"):
        mlvec.maxsim(torch.from_numpy(Q).to(dtype), d)


def test_check_finite_false_skips_the_check():
    d = D.copy()
    d[0, 0, 0] = np.nan
    out = mlvec.maxsim(Q, d, check_finite=False)
    assert out.shape == (2, 4)


def test_non_cpu_tensor_is_rejected_clearly():
    # A meta tensor stands in for any non-CPU device here (CUDA is tested below where present).
    q = torch.empty((2, 3, 8), device="meta")
    with pytest.raises(ValueError, match=r"queries: tensors on meta are not supported yet.*mlvec.cuda_available"):
        mlvec.maxsim(q, torch.from_numpy(D))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensor_is_rejected_clearly():
    if mlvec.cuda_available()[0]:
        match = r"documents: on cuda:0, but the queries are on cpu"  # CUDA is wired: sides must agree
    else:
        match = r"documents: tensors on cuda:0 are not supported yet.*\.cpu\(\)"
    with pytest.raises(ValueError, match=match):
        mlvec.maxsim(torch.from_numpy(Q), torch.from_numpy(D).cuda())


@LIBS
def test_paired_needs_equal_counts(lib):
    with pytest.raises(ValueError, match=r"documents: paired scoring needs as many documents as queries, got 2 queries and 4"):
        mlvec.maxsim(_lib(Q, lib), _lib(D, lib), paired=True)


@LIBS
@pytest.mark.parametrize("k", [0, -1])
def test_rerank_k_not_positive(k, lib):
    with pytest.raises(ValueError, match=rf"k: must be at least 1, got {k}"):
        mlvec.rerank(_lib(Q, lib), _lib(D, lib), k)


@LIBS
def test_rerank_k_more_than_candidates(lib):
    with pytest.raises(ValueError, match=r"k: 5 is more than the 4 candidate documents"):
        mlvec.rerank(_lib(Q, lib), _lib(D, lib), 5)


@pytest.mark.parametrize("k", [2.0, "3", True, None])
def test_rerank_k_not_an_int(k):
    with pytest.raises(TypeError, match="k: expected an int"):
        mlvec.rerank(Q, D, k)


def test_zero_dim_embeddings():
    with pytest.raises(ValueError, match="queries: embedding dimension must be at least 1"):
        mlvec.maxsim(np.zeros((2, 3, 0), np.float32), np.zeros((4, 5, 0), np.float32))
