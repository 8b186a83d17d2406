"""The native MaxSim functions against a plain numpy float64 reference.

Token sets are packed rows + int64 offsets + optional bool mask, as `_native/maxsim.pyi` documents.
bfloat16 travels as its uint16 bits (made with torch, the usual source of bf16 tensors).
"""

import numpy as np
import pytest
import torch

from mlvec import _native

DTYPES = ["float32", "float16", "bfloat16"]


def to_native(x: np.ndarray, dtype: str) -> tuple[np.ndarray, bool]:
    """fp32 values -> the array passed to the native call, and its `bf16` flag."""
    if dtype == "bfloat16":
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(torch.bfloat16)
        return t.view(torch.int16).numpy().view(np.uint16), True
    return np.ascontiguousarray(x, dtype=dtype), False


def as_f64(a: np.ndarray, bf16: bool) -> np.ndarray:
    """The exact values the kernel reads, in float64."""
    if bf16:
        return (a.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return a.astype(np.float64)


def make_sets(rng, n, max_len, dim, *, integer=False, masked=False, lead=0, trail=0):
    lens = rng.integers(0, max_len + 1, size=n)
    if n:
        lens[rng.integers(0, n)] = 1  # always one set of length 1
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64) + lead
    rows = int(offsets[-1]) + trail
    if integer:
        x = rng.integers(-3, 4, size=(rows, dim)).astype(np.float32)
    else:
        x = rng.standard_normal((rows, dim)).astype(np.float32)
    mask = None
    if masked:
        mask = rng.random(rows) < 0.75
        if n > 1:  # one set entirely masked out
            i = int(rng.integers(0, n))
            mask[offsets[i] : offsets[i + 1]] = False
    return x, offsets, mask


def reference(q, qo, qm, d, do, dm, paired):
    """float64 MaxSim: (q2d, q2d_argmax, d2q, d2q_argmax, S per pair) with the documented rules."""
    nq, nd = len(qo) - 1, len(do) - 1
    pairs = [(i, i) for i in range(nq)] if paired else [(i, j) for i in range(nq) for j in range(nd)]
    lq = int(np.max(np.diff(qo), initial=0))
    ld = int(np.max(np.diff(do), initial=0))
    q2d = np.zeros(len(pairs))
    d2q = np.zeros(len(pairs))
    qa = np.full((len(pairs), lq), -1, np.int64)
    da = np.full((len(pairs), ld), -1, np.int64)
    sims = []
    for p, (i, j) in enumerate(pairs):
        qs, qe, ds, de = qo[i], qo[i + 1], do[j], do[j + 1]
        qv = np.ones(qe - qs, bool) if qm is None else qm[qs:qe]
        dv = np.ones(de - ds, bool) if dm is None else dm[ds:de]
        s = q[qs:qe] @ d[ds:de].T
        s = np.where(qv[:, None] & dv[None, :], s, -np.inf)
        sims.append((s, qv, dv))
        for a in np.flatnonzero(qv):
            if dv.any():
                qa[p, a] = int(np.argmax(s[a]))
                q2d[p] += s[a].max()
            else:
                q2d[p] += -np.inf
        for b in np.flatnonzero(dv):
            if qv.any():
                da[p, b] = int(np.argmax(s[:, b]))
                d2q[p] += s[:, b].max()
            else:
                d2q[p] += -np.inf
    return q2d, qa, d2q, da, sims


def run(q, qo, qm, d, do, dm, dtype, paired):
    qn, bf = to_native(q, dtype)
    dn, _ = to_native(d, dtype)
    out = _native.maxsim.forward(
        qn, qo, qm, dn, do, dm, bf16=bf, paired=paired, q2d_argmax=True, d2q=True, d2q_argmax=True
    )
    return out, as_f64(qn, bf), as_f64(dn, bf)


def assert_scores_close(got, want, tol):
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape
    inf = np.isinf(want)
    assert np.array_equal(np.isinf(got), inf) and np.array_equal(got[inf], want[inf])
    np.testing.assert_allclose(got[~inf], want[~inf], rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("paired", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_forward_matches_float64_reference(dtype, paired, masked):
    rng = np.random.default_rng(DTYPES.index(dtype) * 4 + paired * 2 + masked)
    dim = 37  # not a multiple of any SIMD width
    nq = 3
    nd = nq if paired else 4
    q, qo, qm = make_sets(rng, nq, 45, dim, masked=masked, lead=2, trail=1)
    d, do, dm = make_sets(rng, nd, 60, dim, masked=masked, trail=3)
    (q2d, qa, d2q, da), q64, d64 = run(q, qo, qm, d, do, dm, dtype, paired)
    rq2d, rqa, rd2q, rda, sims = reference(q64, qo, qm, d64, do, dm, paired)
    # Inputs are the same rounded values; only fp32 accumulation differs from float64.
    assert q2d.dtype == np.float32 and qa.dtype == np.int32
    assert_scores_close(q2d, rq2d, 1e-3)
    assert_scores_close(d2q, rd2q, 1e-3)
    assert qa.shape == rqa.shape and da.shape == rda.shape
    # Argmaxes are defined where the reference's are, and point at a (near-)maximal score.
    assert np.array_equal(qa < 0, rqa < 0) and np.array_equal(da < 0, rda < 0)
    for p, (s, _qv, _dv) in enumerate(sims):
        for a in np.flatnonzero(rqa[p] >= 0):
            assert s[a, qa[p, a]] >= s[a].max() - 1e-4 * (1 + abs(s[a].max()))
        for b in np.flatnonzero(rda[p] >= 0):
            assert s[da[p, b], b] >= s[:, b].max() - 1e-4 * (1 + abs(s[:, b].max()))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("paired", [False, True])
def test_integer_inputs_agree_exactly_first_on_ties(dtype, paired):
    # Small integers: every product and sum is exact in fp32, so the scores and the argmaxes
    # (first position on ties, like torch.max / np.argmax) must match exactly. Lengths over 32
    # and 64 span several SIMD chunks of query lanes.
    rng = np.random.default_rng(5)
    for dim in (1, 8, 16, 31, 64):
        nq = 3
        nd = nq if paired else 5
        q, qo, qm = make_sets(rng, nq, 70, dim, integer=True, masked=True, lead=1)
        d, do, dm = make_sets(rng, nd, 40, dim, integer=True, masked=dim % 2 == 1, trail=2)
        (q2d, qa, d2q, da), q64, d64 = run(q, qo, qm, d, do, dm, dtype, paired)
        rq2d, rqa, rd2q, rda, _ = reference(q64, qo, qm, d64, do, dm, paired)
        assert np.array_equal(q2d, rq2d) and np.array_equal(d2q, rd2q)
        assert np.array_equal(qa, rqa) and np.array_equal(da, rda)


def test_empty_and_all_masked_sets():
    dim = 4
    q = np.ones((3, dim), np.float32)
    d = np.ones((4, dim), np.float32)
    qo = np.array([0, 2, 2, 3], np.int64)  # query 1 is empty
    do = np.array([0, 2, 4], np.int64)
    dm = np.array([True, True, False, False])  # document 1 is all masked
    q2d, qa, d2q, da = _native.maxsim.forward(
        q, qo, None, d, do, dm, q2d_argmax=True, d2q=True, d2q_argmax=True
    )
    q2d, d2q = q2d.reshape(3, 2), d2q.reshape(3, 2)
    assert q2d[0, 0] == 2 * dim and q2d[2, 0] == dim
    assert np.isneginf(q2d[0, 1]) and np.isneginf(q2d[2, 1])  # no valid document token: -inf
    assert q2d[1, 0] == 0 and q2d[1, 1] == 0  # no query token: empty sum
    assert np.isneginf(d2q[1, 0])  # document tokens with no query token to match
    assert d2q[1, 1] == 0 and d2q[0, 1] == 0
    assert (qa.reshape(3, 2, 2)[:, 1] == -1).all() and (da.reshape(3, 2, 2)[:, 1] == -1).all()
    assert (da.reshape(3, 2, 2)[1] == -1).all()
    # Nothing to score at all.
    out = _native.maxsim.forward(q[:0], np.array([0], np.int64), None, d, do, None)
    assert out[0].shape == (0,)


def test_thread_count_does_not_change_results():
    rng = np.random.default_rng(1)
    q, qo, _ = make_sets(rng, 4, 40, 64)
    d, do, _ = make_sets(rng, 30, 80, 64)
    before = _native.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 3):
            _native.set_num_threads(n)
            outs.append(_native.maxsim.forward(q, qo, None, d, do, None, q2d_argmax=True, d2q=True))
    finally:
        _native.set_num_threads(before)
    for o in outs[1:]:
        assert np.array_equal(o[0], outs[0][0]) and np.array_equal(o[1], outs[0][1])
        assert np.array_equal(o[2], outs[0][2])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("paired", [False, True])
def test_backward_matches_float64_scatter(dtype, paired):
    rng = np.random.default_rng(11)
    dim = 19
    nq = 3
    nd = nq if paired else 4
    q, qo, qm = make_sets(rng, nq, 20, dim, masked=True, lead=1)
    d, do, dm = make_sets(rng, nd, 30, dim, masked=True, trail=1)
    (_, qa, _, da), q64, d64 = run(q, qo, qm, d, do, dm, dtype, paired)
    g1 = rng.standard_normal(len(qa)).astype(np.float32)
    g2 = rng.standard_normal(len(da)).astype(np.float32)
    qn, bf = to_native(q, dtype)
    dn, _ = to_native(d, dtype)
    dq, dd = _native.maxsim.backward(
        qn, qo, qm, dn, do, dm, bf16=bf, paired=paired, grad_q2d=g1, q2d_argmax=qa, grad_d2q=g2, d2q_argmax=da
    )
    assert dq.shape == q.shape and dd.shape == d.shape and dq.dtype == np.float32
    rdq, rdd = np.zeros_like(q64), np.zeros_like(d64)
    pairs = [(i, i) for i in range(nq)] if paired else [(i, j) for i in range(nq) for j in range(nd)]
    for p, (i, j) in enumerate(pairs):
        for a in np.flatnonzero(qa[p] >= 0):
            rdq[qo[i] + a] += g1[p] * d64[do[j] + qa[p, a]]
            rdd[do[j] + qa[p, a]] += g1[p] * q64[qo[i] + a]
        for b in np.flatnonzero(da[p] >= 0):
            rdq[qo[i] + da[p, b]] += g2[p] * d64[do[j] + b]
            rdd[do[j] + b] += g2[p] * q64[qo[i] + da[p, b]]
    np.testing.assert_allclose(dq, rdq, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dd, rdd, rtol=1e-5, atol=1e-5)


# --- bad input at the native level --------------------------------------------------------------


def _ok():
    q = np.zeros((4, 8), np.float32)
    d = np.zeros((6, 8), np.float32)
    return q, np.array([0, 2, 4], np.int64), d, np.array([0, 3, 6], np.int64)


@pytest.mark.parametrize(
    "change, exc, words",
    [
        (
            lambda a: a.update(d_offsets=np.array([0, 4, 3], np.int64)),
            ValueError,
            ["documents", "non-decreasing"],
        ),
        (lambda a: a.update(q_offsets=np.array([0, 2, 9], np.int64)), ValueError, ["queries", "outside"]),
        (lambda a: a.update(q_offsets=np.array([-1, 2, 4], np.int64)), ValueError, ["queries", "outside"]),
        (lambda a: a.update(d_mask=np.ones(5, bool)), ValueError, ["documents", "mask"]),
        (lambda a: a.update(d=np.zeros((6, 7), np.float32)), ValueError, ["documents", "dimension"]),
        (lambda a: a.update(d=np.zeros((6, 8), np.float16)), TypeError, ["documents", "float16", "float32"]),
        (lambda a: a.update(q=np.zeros((4, 8), np.float64)), TypeError, ["queries", "float64"]),
        (lambda a: a.update(q=np.zeros((4, 2, 4), np.float32)), TypeError, ["queries"]),
        (lambda a: a.update(paired=True, d_offsets=np.array([0, 6], np.int64)), ValueError, ["documents"]),
    ],
)
def test_bad_input_names_the_argument(change, exc, words):
    q, qo, d, do = _ok()
    args = dict(q=q, q_offsets=qo, q_mask=None, d=d, d_offsets=do, d_mask=None, paired=False)
    change(args)
    with pytest.raises(exc) as err:
        _native.maxsim.forward(**args)
    for w in words:
        assert w in str(err.value), str(err.value)


def test_backward_bad_argmax_is_a_value_error():
    q, qo, d, do = _ok()
    g = np.ones(4, np.float32)
    bad = np.full((4, 2), 7, np.int32)  # documents have 3 rows
    with pytest.raises(ValueError, match="q2d_argmax"):
        _native.maxsim.backward(q, qo, None, d, do, None, grad_q2d=g, q2d_argmax=bad)
    with pytest.raises(ValueError, match="q2d"):
        _native.maxsim.backward(q, qo, None, d, do, None, grad_q2d=g[:3], q2d_argmax=bad[:3])


# --- check_finite: the kernel's fused NaN/inf check -------------------------------------------


def first_bad(x: np.ndarray, bf16: bool, offsets: np.ndarray, mask) -> tuple[int, int] | None:
    """Independent reference: the first valid packed row (inside a set) holding NaN/inf, and its set."""
    vals = as_f64(x, bf16)
    inside = np.zeros(vals.shape[0], bool)
    inside[offsets[0] : offsets[-1]] = True
    bad = ~np.isfinite(vals).all(axis=1) & inside
    if mask is not None:
        bad &= mask
    if not bad.any():
        return None
    r = int(np.argmax(bad))
    return r, int(np.searchsorted(offsets, r, side="right") - 1)


def expected_error(q, qb, qo, qm, d, db, do, dm):
    for name, x, b, o, m in (("queries", q, qb, qo, qm), ("documents", d, db, do, dm)):
        hit = first_bad(x, b, o, m)
        if hit is not None:
            return f"{name}: token row {hit[0]} (packed) holds NaN or inf, in set {hit[1]}"
    return None


def forward_checked(q, qb, qo, qm, d, do, dm, paired, **kw):
    return _native.maxsim.forward(q, qo, qm, d, do, dm, bf16=qb, paired=paired, check_finite=True, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("paired", [False, True])
@pytest.mark.parametrize("side", ["queries", "documents"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_finite_names_side_row_and_set(dtype, paired, side, bad):
    rng = np.random.default_rng(7)
    q32, qo, qm = make_sets(rng, 4, 9, 20, masked=True)
    d32, do, dm = make_sets(rng, 4, 30, 20, masked=True)
    x32, o, m = (q32, qo, qm) if side == "queries" else (d32, do, dm)
    valid = np.flatnonzero(m)
    r_masked = int(np.flatnonzero(~m)[0])
    x32[r_masked, 3] = bad  # masked rows may hold anything
    r_bad = int(valid[len(valid) // 2])
    x32[r_bad, 19] = bad
    x32[valid[-1], 0] = bad  # a later bad row: the first one is reported
    q, qb = to_native(q32, dtype)
    d, db = to_native(d32, dtype)
    want = expected_error(q, qb, qo, qm, d, db, do, dm)
    assert want is not None and f"token row {r_bad} " in want
    with pytest.raises(ValueError) as e:
        forward_checked(q, qb, qo, qm, d, do, dm, paired, d2q=True)
    assert str(e.value) == want
    # The default (no check) scores the same input without complaint.
    _native.maxsim.forward(q, qo, qm, d, do, dm, bf16=qb, paired=paired)
    # Only masked rows bad: accepted, and the scores are those of the unchecked call.
    x32[r_bad, 19] = x32[valid[-1], 0] = 1.0
    q, _ = to_native(q32, dtype)
    d, _ = to_native(d32, dtype)
    got = forward_checked(q, qb, qo, qm, d, do, dm, paired, d2q=True)
    plain = _native.maxsim.forward(q, qo, qm, d, do, dm, bf16=qb, paired=paired, d2q=True)
    np.testing.assert_array_equal(got[0], plain[0])
    np.testing.assert_array_equal(got[2], plain[2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_check_finite_random_poison_matches_reference(dtype):
    rng = np.random.default_rng(11)
    for trial in range(40):
        dim = int(rng.integers(1, 40))
        paired = bool(trial % 2)
        nq = int(rng.integers(0, 4))
        nd = nq if paired else int(rng.integers(0, 5))
        q32, qo, qm = make_sets(rng, nq, 40, dim, masked=bool(rng.integers(2)), lead=int(rng.integers(2)))
        d32, do, dm = make_sets(rng, nd, 40, dim, masked=bool(rng.integers(2)), trail=int(rng.integers(2)))
        for x in (q32, d32):
            for _ in range(int(rng.integers(0, 3))):
                if x.size:
                    x.flat[int(rng.integers(0, x.size))] = rng.choice([np.nan, np.inf, -np.inf])
        q, qb = to_native(q32, dtype)
        d, db = to_native(d32, dtype)
        want = expected_error(q, qb, qo, qm, d, db, do, dm)
        if want is None:
            forward_checked(q, qb, qo, qm, d, do, dm, paired, d2q=True, q2d_argmax=True)
        else:
            with pytest.raises(ValueError) as e:
                forward_checked(q, qb, qo, qm, d, do, dm, paired, d2q=True, q2d_argmax=True)
            assert str(e.value) == want


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_check_finite_half_overflow_is_inf_and_large_finite_is_accepted(dtype):
    big = 65504.0 if dtype == "float16" else 3.0e38  # largest finite values (bf16 rounds to one)
    q, qb = to_native(np.full((2, 8), big, np.float32), dtype)
    qo = np.array([0, 2], np.int64)
    # Huge finite inputs (whose bfloat16 dot products overflow to inf) are not an input error.
    scores, *_ = forward_checked(q, qb, qo, None, q, qo, None, False)
    plain, *_ = _native.maxsim.forward(q, qo, None, q, qo, None, bf16=qb)
    np.testing.assert_array_equal(scores, plain)
    assert np.isinf(scores).all() == (dtype == "bfloat16")
    # A float32 value past the half type's range becomes inf when converted: rejected.
    x = np.ones((3, 8), np.float32)
    x[2, 5] = np.finfo(np.float32).max if dtype == "bfloat16" else 70000.0
    with np.errstate(over="ignore"):  # the point of the test: the cast overflows to inf
        d, db = to_native(x, dtype)
    assert not np.isfinite(as_f64(d, db)).all()
    with pytest.raises(ValueError, match=r"^documents: token row 2 \(packed\) holds NaN or inf, in set 1$"):
        forward_checked(q, qb, qo, None, d, np.array([0, 2, 3], np.int64), None, False)


def test_check_finite_float32_extremes_are_accepted():
    x = np.full((3, 16), np.finfo(np.float32).max, np.float32)
    x[1] = np.finfo(np.float32).tiny / 4  # subnormal
    o = np.array([0, 3], np.int64)
    scores, *_ = forward_checked(x, False, o, None, x, o, None, False)
    assert np.isinf(scores).all()


def test_check_finite_reads_rows_no_pair_needs():
    # No documents: no pair reads the queries, which must still be checked (and vice versa).
    q = np.ones((5, 4), np.float32)
    q[3, 1] = np.nan
    qo = np.array([0, 2, 2, 5], np.int64)
    none = np.zeros((0, 4), np.float32)
    no = np.zeros(1, np.int64)
    with pytest.raises(ValueError, match=r"^queries: token row 3 \(packed\) holds NaN or inf, in set 2$"):
        forward_checked(q, False, qo, None, none, no, None, False)
    with pytest.raises(ValueError, match=r"^documents: token row 3 \(packed\) holds NaN or inf, in set 2$"):
        forward_checked(none, False, no, None, q, qo, None, False)
    # A query whose rows are all masked scores 0 without reading a document row; bad document
    # rows are still found.
    qm = np.zeros(5, bool)
    with pytest.raises(ValueError, match=r"^documents: token row 3"):
        forward_checked(q, False, qo, qm, q, qo, None, False)


def test_check_finite_queries_reported_before_documents():
    rng = np.random.default_rng(3)
    q, qo, _ = make_sets(rng, 3, 6, 8)
    d, do, _ = make_sets(rng, 50, 20, 8)
    q[-1, 0] = np.inf
    d[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^queries: "):
        forward_checked(q, False, qo, None, d, do, None, False)
