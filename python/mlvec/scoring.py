"""Token-wise late-interaction (MaxSim) scoring: ColBERT sum-of-max, FILIP mean-of-max, rerank.

For a query's valid token embeddings ``Q`` (``Lq x dim``) and a document's ``D`` (``Ld x dim``):

- ColBERT: ``score = sum_i max_j <Q_i, D_j>`` (:func:`maxsim`; ``normalize=True`` divides by the
  query's valid token count);
- FILIP: ``q2d = mean_i max_j <Q_i, D_j>`` and ``d2q = mean_j max_i <Q_i, D_j>``
  (:func:`filip_maxsim`, both directions from one pass).

**Inputs.** Each side (queries, documents) is given independently in one of these layouts:

- padded: ``[N, L, dim]`` with an optional mask ``[N, L]`` (bool, or 0/1 integers; True = valid);
- packed: ``[total_tokens, dim]`` with ``offsets [N + 1]`` (set ``i`` is rows
  ``offsets[i]:offsets[i+1]``; offsets start at 0, never decrease and end at ``total_tokens``)
  and an optional mask ``[total_tokens]``;
- one set: ``[L, dim]`` without offsets (for queries the query axis is then dropped from the
  all-pairs result: ``[Nd]`` instead of ``[1, Nd]``);
- :class:`mlvec.encoders.TokenEmbeddings` (what ``Encoder.encode_tokens`` returns: packed rows and
  their offsets), or a list of ``[L_i, dim]`` arrays or tensors, one per set (PyLate's format;
  concatenated once).

Element types: float32, float16 and bfloat16 (torch only; numpy has no bfloat16), both sides the
same; arithmetic accumulates in float32. float64 is rejected (cast first). numpy arrays and CPU
torch tensors are read without copying when C-contiguous (other layouts are copied once).

**Outputs** follow the inputs: numpy in, numpy out; any torch tensor in, torch out (float32
scores on the inputs' device). torch tensors go through the ``mlvec::maxsim_fwd`` custom op, so the scores
are differentiable (gradients in the input dtype) and work under ``torch.compile``: padded input
traces into one graph; packed input breaks the graph once, to read the longest set's length from
the offsets (it sizes the saved argmax positions).

**CUDA.** CUDA tensors run on mlvec's CUDA kernels (:mod:`mlvec.cuda`) when
``mlvec.cuda_available()`` is true; both sides must be on the same device (masks and offsets
are moved to it). Without usable kernels a CUDA tensor raises ``ValueError`` with the reason.

**Empty sets.** Masked tokens never win a max (−∞ semantics, not 0). A document with no valid
tokens scores −∞ for ColBERT sum-of-max (and for FILIP ``q2d``) against a query with valid
tokens; a query with no valid tokens scores 0 (a sum over nothing), and −∞ for FILIP ``d2q``
against a non-empty document. Means over no tokens are 0.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mlvec import _native
from mlvec._arrays import (
    Packed,
    as_tensor,
    as_token_sets,
    check_same_device,
    describe,
    dtype_name,
    is_tensor,
    pack_numpy,
    pack_torch,
)

if TYPE_CHECKING:
    import torch

    ArrayLike = np.ndarray | torch.Tensor
else:
    ArrayLike = Any

__all__ = ["maxsim", "filip_maxsim", "rerank"]

_QUERIES = ("queries", "query_mask", "query_offsets")
_DOCUMENTS = ("documents", "document_mask", "document_offsets")


@dataclass
class _Scores:
    """Raw per-pair sums and what is needed to shape and normalise them."""

    q2d: Any  # [P] float32 (numpy or torch)
    d2q: Any  # [P] float32 or None
    q_counts: Any  # [nq] valid tokens per query
    d_counts: Any  # [nd] valid tokens per document
    nq: int
    nd: int
    single_query: bool
    paired: bool


def _check_pair(q: Packed, d: Packed, paired: bool) -> None:
    if q.dim == 0:
        raise ValueError("queries: embedding dimension must be at least 1, got 0")
    if q.dim != d.dim:
        raise ValueError(f"documents: embedding dimension {d.dim} does not match the queries' {q.dim}")
    qdtype, ddtype = dtype_name(q.data), dtype_name(d.data)
    if qdtype != ddtype:
        raise TypeError(f"documents: dtype {ddtype} does not match the queries' {qdtype}; cast one side")
    if paired and q.n != d.n:
        raise ValueError(
            f"documents: paired scoring needs as many documents as queries, got {q.n} queries and {d.n} documents"
        )


def _score_numpy(q: Packed, d: Packed, paired: bool, want_d2q: bool, check_finite: bool) -> _Scores:
    _check_pair(q, d, paired)
    q2d, _, d2q, _ = _native.maxsim.forward(
        q.data,
        q.offsets,
        q.mask,
        d.data,
        d.offsets,
        d.mask,
        bf16=q.bf16,
        paired=paired,
        d2q=want_d2q,
        check_finite=check_finite,
    )
    return _Scores(q2d, d2q, q.valid_counts(), d.valid_counts(), q.n, d.n, q.single, paired)


def _score_torch(
    queries: Any,
    documents: Any,
    masks_offsets: tuple[Any, Any, Any, Any],
    paired: bool,
    want_d2q: bool,
    check_finite: bool,
) -> _Scores:
    import torch

    from mlvec.ops.maxsim import maxsim_fwd

    qm, qo, dm, do = masks_offsets
    # A numpy side next to a torch side becomes a tensor sharing its memory.
    q = pack_torch(as_tensor(queries), qm, qo, *_QUERIES)
    d = pack_torch(as_tensor(documents), dm, do, *_DOCUMENTS)
    _check_pair(q, d, paired)
    check_same_device(d.data, "documents", q.data.device, other="queries")
    needs_grad = torch.is_grad_enabled() and (q.data.requires_grad or d.data.requires_grad)
    q2d, _, d2q, _ = maxsim_fwd(
        q.data,
        q.offsets,
        q.mask,
        d.data,
        d.offsets,
        d.mask,
        q.longest,
        d.longest,
        paired,
        needs_grad,
        want_d2q,
        check_finite,
    )
    return _Scores(
        q2d, d2q if want_d2q else None, q.valid_counts(), d.valid_counts(), q.n, d.n, q.single, paired
    )


def _score(
    queries: Any,
    documents: Any,
    query_mask: Any,
    document_mask: Any,
    query_offsets: Any,
    document_offsets: Any,
    paired: bool,
    want_d2q: bool,
    check_finite: bool,
) -> _Scores:
    queries, query_offsets = as_token_sets(queries, query_offsets, query_mask, *_QUERIES)
    documents, document_offsets = as_token_sets(documents, document_offsets, document_mask, *_DOCUMENTS)
    if is_tensor(queries) or is_tensor(documents):
        return _score_torch(
            queries,
            documents,
            (query_mask, query_offsets, document_mask, document_offsets),
            bool(paired),
            want_d2q,
            check_finite,
        )
    for x, name in ((queries, "queries"), (documents, "documents")):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{name}: expected a numpy array or a torch tensor, got {describe(x)}")
    q = pack_numpy(queries, query_mask, query_offsets, *_QUERIES)
    d = pack_numpy(documents, document_mask, document_offsets, *_DOCUMENTS)
    return _score_numpy(q, d, bool(paired), want_d2q, check_finite)


def _mean(total: Any, counts: Any) -> Any:
    """``total / max(counts, 1)``: a mean over no tokens is 0 (and −∞ stays −∞)."""
    if is_tensor(total):
        return total / counts.clamp(min=1).to(total.dtype)
    return total / np.maximum(counts, 1).astype(np.float32)


def _shape(s: _Scores, values: Any) -> Any:
    """``[P]`` pair values -> ``[nq, nd]`` (all pairs), ``[nd]`` (one query) or ``[n]`` (paired)."""
    if s.paired:
        return values
    out = values.reshape(s.nq, s.nd)
    return out[0] if s.single_query else out


def _per_query(s: _Scores, counts: Any, values: Any) -> Any:
    """Divide pair values by a per-query count (all pairs: broadcast over documents)."""
    if s.paired:
        return _mean(values, counts)
    return _mean(values.reshape(s.nq, s.nd), counts[:, None]).reshape(-1)


def _per_doc(s: _Scores, counts: Any, values: Any) -> Any:
    if s.paired:
        return _mean(values, counts)
    return _mean(values.reshape(s.nq, s.nd), counts[None, :]).reshape(-1)


def maxsim(
    queries: ArrayLike,
    documents: ArrayLike,
    *,
    query_mask: ArrayLike | None = None,
    document_mask: ArrayLike | None = None,
    query_offsets: ArrayLike | None = None,
    document_offsets: ArrayLike | None = None,
    paired: bool = False,
    normalize: bool = False,
    check_finite: bool = True,
) -> ArrayLike:
    """ColBERT late-interaction scores: ``sum_i max_j <Q_i, D_j>`` over valid tokens.

    Args:
        queries: ``[Nq, Lq, dim]`` padded, ``[Tq, dim]`` packed (with ``query_offsets``), one
            query ``[Lq, dim]``, ``TokenEmbeddings``, or a list of ``[Lq_i, dim]``; float32,
            float16 or bfloat16 (torch), numpy array or CPU/CUDA tensor.
        documents: ``[Nd, Ld, dim]`` padded, ``[Td, dim]`` packed (with ``document_offsets``),
            one document ``[Ld, dim]``, ``TokenEmbeddings`` or a list of ``[Ld_i, dim]``; same
            dtype and ``dim`` as the queries.
        query_mask: ``[Nq, Lq]`` (padded) or ``[Tq]`` (packed) bool, True = valid token.
        document_mask: ``[Nd, Ld]`` or ``[Td]`` bool.
        query_offsets: ``[Nq + 1]`` integer offsets into packed query rows.
        document_offsets: ``[Nd + 1]`` integer offsets into packed document rows.
        paired: score query ``i`` against document ``i`` only (``Nq == Nd``).
        normalize: divide each score by its query's number of valid tokens.
        check_finite: reject NaN/inf in valid tokens (ValueError naming the side, the first bad
            packed row and its set). The kernel checks each row as it reads it, so this costs
            little; False skips it.

    Returns:
        float32 scores ``[Nq, Nd]`` (all pairs; ``[Nd]`` for a single ``[Lq, dim]`` query) or
        ``[N]`` (paired); a numpy array for numpy inputs, a torch tensor (differentiable with
        respect to both embeddings) when either input is a tensor. A document with no valid
        tokens scores −∞ (against a query with valid tokens); a query with none scores 0.

    Raises:
        TypeError: unsupported dtype (int, float64, ...), dtypes that differ between the sides.
        ValueError: wrong ndim, mismatched ``dim``, mask/offsets shapes or values, NaN/inf,
            CUDA tensors when ``mlvec.cuda_available()`` is false, sides on different devices.

    Example:
        >>> import numpy as np, mlvec
        >>> q = np.random.rand(2, 32, 128).astype(np.float32)    # 2 queries x 32 tokens
        >>> d = np.random.rand(100, 300, 128).astype(np.float32)  # 100 documents x 300 tokens
        >>> dmask = np.ones((100, 300), dtype=bool); dmask[:, 200:] = False
        >>> mlvec.maxsim(q, d, document_mask=dmask).shape
        (2, 100)
    """
    s = _score(
        queries, documents, query_mask, document_mask, query_offsets, document_offsets, paired, False, check_finite
    )
    values = _per_query(s, s.q_counts, s.q2d) if normalize else s.q2d
    return _shape(s, values)


def filip_maxsim(
    queries: ArrayLike,
    documents: ArrayLike,
    *,
    query_mask: ArrayLike | None = None,
    document_mask: ArrayLike | None = None,
    query_offsets: ArrayLike | None = None,
    document_offsets: ArrayLike | None = None,
    paired: bool = False,
    check_finite: bool = True,
) -> tuple[ArrayLike, ArrayLike]:
    """FILIP token-wise similarity in both directions, from one pass over the token pairs.

    ``q2d = mean_i max_j <Q_i, D_j>`` (mean over the query's valid tokens of the best document
    token) and ``d2q = mean_j max_i <Q_i, D_j>`` (mean over the document's valid tokens of the best
    query token).

    Args:
        queries, documents, query_mask, document_mask, query_offsets, document_offsets, paired,
        check_finite: as in :func:`maxsim`.

    Returns:
        ``(q2d, d2q)``, each float32 ``[Nq, Nd]`` (all pairs; ``[Nd]`` for a single query) or
        ``[N]`` (paired); numpy or torch like the inputs, differentiable for torch. A document with
        no valid tokens gives ``q2d = −∞`` and ``d2q = 0``; a query with none gives ``q2d = 0`` and
        ``d2q = −∞`` (against a non-empty other side).

    Example:
        >>> import torch, mlvec
        >>> img = torch.randn(8, 49, 64, requires_grad=True)   # 8 images x 49 patches
        >>> txt = torch.randn(8, 16, 64, requires_grad=True)   # 8 captions x 16 tokens
        >>> i2t, t2i = mlvec.filip_maxsim(img, txt)            # [8, 8] each
        >>> (i2t.diag().sum() + t2i.diag().sum()).backward()
    """
    s = _score(
        queries, documents, query_mask, document_mask, query_offsets, document_offsets, paired, True, check_finite
    )
    q2d = _per_query(s, s.q_counts, s.q2d)
    d2q = _per_doc(s, s.d_counts, s.d2q)
    return _shape(s, q2d), _shape(s, d2q)


def rerank(
    queries: ArrayLike,
    documents: ArrayLike,
    k: int,
    *,
    query_mask: ArrayLike | None = None,
    document_mask: ArrayLike | None = None,
    query_offsets: ArrayLike | None = None,
    document_offsets: ArrayLike | None = None,
    normalize: bool = False,
    check_finite: bool = True,
) -> tuple[ArrayLike, ArrayLike]:
    """Top-``k`` documents of a candidate set per query, by ColBERT MaxSim score.

    Args:
        queries: ``[Nq, Lq, dim]``, packed ``[Tq, dim]`` + ``query_offsets``, or one query
            ``[Lq, dim]`` (see :func:`maxsim`).
        documents: the candidates, ``[Nd, Ld, dim]`` or packed ``[Td, dim]`` + ``document_offsets``.
        k: how many to return, ``1 <= k <= Nd`` (a larger ``k`` is an error rather than padding:
            there is no meaningful score or index to pad with).
        query_mask, document_mask, query_offsets, document_offsets, normalize, check_finite: as in
            :func:`maxsim`.

    Returns:
        ``(scores, indices)``: float32 ``[Nq, k]`` scores in descending order and int64 ``[Nq, k]``
        document indices (``[k]`` each for a single ``[Lq, dim]`` query); equal scores are ordered
        by lower document index; documents with no valid tokens (−∞) come last. numpy or torch
        like the inputs (torch scores are differentiable).

    Example:
        >>> import numpy as np, mlvec
        >>> q = np.random.rand(32, 128).astype(np.float32)          # one query
        >>> cands = np.random.rand(1000, 64, 128).astype(np.float32)
        >>> scores, idx = mlvec.rerank(q, cands, k=10)              # [10], [10]
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k: expected an int, got {type(k).__name__}")
    if k <= 0:
        raise ValueError(f"k: must be at least 1, got {k}")
    scores = maxsim(
        queries,
        documents,
        query_mask=query_mask,
        document_mask=document_mask,
        query_offsets=query_offsets,
        document_offsets=document_offsets,
        normalize=normalize,
        check_finite=check_finite,
    )
    nd = scores.shape[-1]
    if k > nd:
        raise ValueError(f"k: {k} is more than the {nd} candidate documents")
    if is_tensor(scores):
        torch = sys.modules["torch"]
        idx = torch.sort(scores.detach(), dim=-1, descending=True, stable=True).indices[..., :k]
        return torch.gather(scores, -1, idx), idx
    idx = np.argsort(-scores, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(scores, idx, axis=-1), idx.astype(np.int64)
