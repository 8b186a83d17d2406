"""Plain torch float64 MaxSim reference and random token sets in every layout the API accepts.

The reference is the usual padded formulation (einsum over all token pairs, masked max with −∞),
deliberately independent of mlvec's packing and of its native kernels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
NP_DTYPES = {"float32": np.float32, "float16": np.float16}
# Relative accumulation error allowed per unit of sum |q_i . d_j| magnitude. Products of f16/bf16
# values are exact in f32, so all dtypes only see f32 accumulation against the reference on the
# same (rounded) values; the looser bounds for the half types leave room for kernels that round
# intermediate sums differently.
RTOL = {"float32": 2e-5, "float16": 2e-4, "bfloat16": 2e-4}
# Gradients come back in the input dtype, so they carry its rounding.
GRAD_RTOL = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1.6e-2}


def reference(q, qmask, d, dmask, *, paired=False):
    """ColBERT sums and FILIP means, float64, from padded ``[N, L, dim]`` + bool masks ``[N, L]``.

    Returns ``(colbert, filip_q2d, filip_d2q)``, each ``[Nq, Nd]`` (or ``[N]`` when paired).
    A max over no valid token is −∞, a sum over none 0, a mean over none 0.
    """
    s = torch.einsum("qid,njd->qnij", q, d)
    neg = torch.tensor(float("-inf"), dtype=s.dtype)
    qm = qmask[:, None, :, None]
    dm = dmask[None, :, None, :]
    best_d = torch.where(dm, s, neg).max(dim=-1).values  # [q, n, i]
    colbert = torch.where(qmask[:, None, :], best_d, 0.0).sum(-1)
    best_q = torch.where(qm, s, neg).max(dim=-2).values  # [q, n, j]
    d2q_sum = torch.where(dmask[None, :, :], best_q, 0.0).sum(-1)
    qc = qmask.sum(-1).clamp(min=1).to(s.dtype)
    dc = dmask.sum(-1).clamp(min=1).to(s.dtype)
    q2d = colbert / qc[:, None]
    d2q = d2q_sum / dc[None, :]
    if paired:
        return colbert.diagonal(), q2d.diagonal(), d2q.diagonal()
    return colbert, q2d, d2q


@dataclass
class Sets:
    """``n`` token sets as padded float32 values (already rounded to ``dtype``) + masks.

    ``lengths[i]`` rows of set ``i`` are its packed rows; inside them ``mask`` may have holes;
    rows past ``lengths[i]`` are padding (mask False, garbage values).
    """

    values: np.ndarray  # [n, L, dim] float32
    mask: np.ndarray  # [n, L] bool
    lengths: np.ndarray  # [n]
    holes: bool  # whether some rows inside lengths are masked
    dtype: str

    def ref(self) -> torch.Tensor:
        return torch.from_numpy(self.values).double()

    def ref_mask(self) -> torch.Tensor:
        return torch.from_numpy(self.mask)


def round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    return torch.from_numpy(x).to(DTYPES[dtype]).float().numpy()


def make_sets(rng: np.random.Generator, n: int, length: int, dim: int, dtype: str, *, empty_ok=True,
              holes=False) -> Sets:
    values = rng.standard_normal((n, length, dim)).astype(np.float32)
    lengths = rng.integers(0 if empty_ok else 1, length + 1, size=n)
    mask = np.arange(length)[None, :] < lengths[:, None]
    if holes:
        mask &= rng.random((n, length)) < 0.7
    # Padding holds large values so that a padding row that wrongly took part would win every max.
    values = np.where(mask[..., None], values, np.float32(50.0))
    return Sets(round_to(values, dtype), mask, lengths, holes, dtype)


def _make_noncontiguous(x):
    """The same values in a layout that is not C-contiguous."""
    if isinstance(x, torch.Tensor):
        return x.transpose(-1, -2).contiguous().transpose(-1, -2)
    return np.ascontiguousarray(np.swapaxes(x, -1, -2)).swapaxes(-1, -2)


def _convert(x: np.ndarray, lib: str, dtype: str, noncontig: bool):
    if lib == "torch":
        out = torch.from_numpy(x).to(DTYPES[dtype])
    else:
        out = x.astype(NP_DTYPES[dtype])
    return _make_noncontiguous(out) if noncontig else out


def padded(s: Sets, lib: str, noncontig: bool = False, force_mask: bool = False):
    """``(x [n, L, dim], mask [n, L] | None)`` in the requested library."""
    x = _convert(s.values, lib, s.dtype, noncontig)
    need = force_mask or not s.mask.all()
    m = None if not need else (torch.from_numpy(s.mask) if lib == "torch" else s.mask)
    return x, m


def packed(s: Sets, lib: str, noncontig: bool = False):
    """``(rows [T, dim], offsets [n + 1], row mask [T] | None)`` in the requested library."""
    n, _, dim = s.values.shape
    rows = np.concatenate([s.values[i, : s.lengths[i]] for i in range(n)] + [np.zeros((0, dim), np.float32)])
    rmask = np.concatenate([s.mask[i, : s.lengths[i]] for i in range(n)] + [np.zeros(0, bool)])
    offsets = np.concatenate([[0], np.cumsum(s.lengths)]).astype(np.int64)
    x = _convert(rows, lib, s.dtype, noncontig)
    m = rmask if s.holes else None
    if lib == "torch":
        offsets = torch.from_numpy(offsets)
        m = None if m is None else torch.from_numpy(m)
    return x, offsets, m


def side_kwargs(s: Sets, layout: str, lib: str, noncontig: bool, prefix: str):
    """``(array, kwargs)`` for one side of a scoring call: ``prefix`` is "query" or "document"."""
    if layout == "padded":
        x, m = padded(s, lib, noncontig)
        return x, {f"{prefix}_mask": m}
    x, offs, m = packed(s, lib, noncontig)
    return x, {f"{prefix}_mask": m, f"{prefix}_offsets": offs}


def to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().double().numpy()
    return np.asarray(x, dtype=np.float64)


def assert_scores_close(got, want: torch.Tensor, atol: float, rtol: float) -> None:
    """Equal within tolerance, with −∞ exactly where the reference has −∞."""
    got = to_numpy(got)
    want = want.numpy()
    assert got.shape == want.shape, (got.shape, want.shape)
    inf_g, inf_w = np.isneginf(got), np.isneginf(want)
    assert (inf_g == inf_w).all(), f"-inf positions differ:\n{got}\n{want}"
    assert np.isfinite(got[~inf_g]).all()
    np.testing.assert_allclose(got[~inf_g], want[~inf_w], rtol=rtol, atol=atol)
