"""Dense float64 references for the loss tests: the full B x B logits, plain torch formulas."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pair_mask(row_pos: torch.Tensor | None, na: int, nb: int) -> torch.Tensor:
    """``[na, nb]`` float64 0/1 matrix of positive pairs (the diagonal when ``row_pos`` is None)."""
    if row_pos is None:
        return torch.eye(na, nb, dtype=torch.float64)
    m = torch.zeros(na, nb, dtype=torch.float64)
    for i, row in enumerate(row_pos.tolist()):
        for j in row:
            if j >= 0:
                m[i, j] = 1.0
    return m


def softmax_ce(logits: torch.Tensor, mask: torch.Tensor, eps: float) -> torch.Tensor:
    """Mean over rows having a positive of ``-sum_j t_ij log softmax(logits_i)_j``.

    ``t_i = (1 - eps) * mask_i / |mask_i| + eps / ncols`` (torch's label-smoothing convention).
    """
    logp = F.log_softmax(logits, dim=1)
    has = mask.sum(1) > 0
    t = (1 - eps) * mask / mask.sum(1, keepdim=True).clamp(min=1) + eps / logits.shape[1]
    per_row = -(t * logp).sum(1)
    return per_row[has].mean()


def clip_ref(a, b, scale, bias=None, *, row_pos=None, symmetric=True, eps=0.0):
    logits = scale * (a.double() @ b.double().T)
    if bias is not None:
        logits = logits + bias
    m = pair_mask(row_pos, a.shape[0], b.shape[0])
    loss = softmax_ce(logits, m, eps)
    if symmetric:
        loss = 0.5 * (loss + softmax_ce(logits.T, m.T, eps))
    return loss


def siglip_ref(a, b, scale, bias=None, *, row_pos=None):
    logits = scale * (a.double() @ b.double().T)
    if bias is not None:
        logits = logits + bias
    z = 2 * pair_mask(row_pos, a.shape[0], b.shape[0]) - 1
    return -F.logsigmoid(z * logits).sum() / a.shape[0]


def late_sims(ta, ma, tb, mb):
    """``(q2d_sum, d2q_sum, q2d_mean, d2q_mean)`` each ``[na, nb]`` via a full einsum."""
    s = torch.einsum("ikd,jrd->ijkr", ta.double(), tb.double())
    neg = torch.tensor(float("-inf"), dtype=s.dtype)
    q = torch.where(mb[None, :, None, :], s, neg).amax(3)
    q = torch.where(ma[:, None, :], q, torch.zeros_like(q)).sum(2)
    d = torch.where(ma[:, None, :, None], s, neg).amax(2)
    d = torch.where(mb[None, :, :], d, torch.zeros_like(d)).sum(2)
    return q, d, q / ma.sum(1)[:, None], d / mb.sum(1)[None, :]


def filip_ref(ta, ma, tb, mb, scale, bias=None, *, row_pos=None, symmetric=True, eps=0.0):
    _, _, r, c = late_sims(ta, ma, tb, mb)
    b = 0.0 if bias is None else bias
    m = pair_mask(row_pos, ta.shape[0], tb.shape[0])
    loss = softmax_ce(scale * r + b, m, eps)
    if symmetric:
        loss = 0.5 * (loss + softmax_ce((scale * c + b).T, m.T, eps))
    return loss


def colbert_ref(tq, mq, td, md, scale, bias=None, *, row_pos=None, symmetric=False, eps=0.0):
    q, _, _, _ = late_sims(tq, mq, td, md)
    logits = scale * q + (0.0 if bias is None else bias)
    m = pair_mask(row_pos, tq.shape[0], td.shape[0])
    loss = softmax_ce(logits, m, eps)
    if symmetric:
        loss = 0.5 * (loss + softmax_ce(logits.T, m.T, eps))
    return loss
