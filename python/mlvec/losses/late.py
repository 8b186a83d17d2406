"""Late-interaction contrastive losses: FILIP (mean-of-max both ways) and ColBERT (sum-of-max)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mlvec.losses._common import check_features, run
from mlvec.losses._openclip import warn_if_log_scale
from mlvec.losses._scorers import LateInteractionScorer


def _token_inputs(name: str, tokens: torch.Tensor, mask: torch.Tensor | None):
    err = check_features(name, tokens, 3)
    if err:
        return tokens, mask, err
    mname = name.replace("tokens", "mask")
    if mask is None:
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
    elif not isinstance(mask, torch.Tensor) or mask.shape != tokens.shape[:2]:
        got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        return tokens, mask, f"{mname}: expected shape {tuple(tokens.shape[:2])} (bool), got {got}"
    elif mask.device != tokens.device:
        return tokens, mask, f"{mname}: on {mask.device} but {name} is on {tokens.device}"
    mask = mask.to(torch.bool).contiguous()
    if not bool(mask.any(1).all()):
        empty = int((~mask.any(1)).nonzero()[0])
        return tokens, mask, f"{mname}: set {empty} has no valid token"
    return tokens.contiguous(), mask, None


def _late(mode, a, ma, b, mb, names, logit_scale, logit_bias, labels, positives, symmetric,
          label_smoothing, group, strategy, tile_size):  # fmt: skip
    a, ma, ea = _token_inputs(names[0], a, ma)
    b, mb, eb = _token_inputs(names[1], b, mb)
    lengths = [t.shape[1] if isinstance(t, torch.Tensor) and t.dim() == 3 else 0 for t in (a, b)]
    return run(
        scorer_factory=lambda dtype, device: LateInteractionScorer(mode, dtype, device),
        kind="softmax",
        rows=(a, ma),
        cols=(b, mb),
        names=names,
        logit_scale=logit_scale,
        logit_bias=logit_bias,
        labels=labels,
        positives=positives,
        symmetric=symmetric,
        label_smoothing=label_smoothing,
        group=group,
        strategy=strategy,
        tile_size=tile_size,
        local_errors=[ea, eb],
        extra_fields=lengths,
    )


def filip_loss(
    tokens_a: torch.Tensor,
    mask_a: torch.Tensor | None,
    tokens_b: torch.Tensor,
    mask_b: torch.Tensor | None,
    logit_scale: torch.Tensor | float,
    logit_bias: torch.Tensor | float | None = None,
    *,
    labels: torch.Tensor | None = None,
    positives: torch.Tensor | list | None = None,
    symmetric: bool = True,
    label_smoothing: float = 0.0,
    group: Any = None,
    strategy: str = "all_gather",
    tile_size: int | None = None,
) -> torch.Tensor:
    """Exact FILIP loss: token-wise late-interaction similarities fed into InfoNCE, tiled.

    For sets ``A_i`` (valid tokens of ``tokens_a[i]``) and ``B_j``:
    ``s_ab[i, j] = mean_{x in A_i} max_{y in B_j} <x, y>`` drives the row-wise (a -> b) softmax and
    ``s_ba[i, j] = mean_{y in B_j} max_{x in A_i} <x, y>`` the column-wise (b -> a) one, each as
    ``logit_scale * s + logit_bias``; the loss averages the two cross-entropies (only the first
    when ``symmetric=False``). Targets, label smoothing, distribution and the gradient convention
    are those of :func:`clip_loss`.

    Pairs are scored per tile of the ``B x B`` grid by mlvec's MaxSim kernel (CPU; float32,
    float16 or bfloat16 with fp32 accumulation), never materialising ``B x B x La x Lb``.
    float64 inputs and non-CPU tensors use a torch einsum per (smaller) tile.

    Args:
        tokens_a: ``[B_a, La, d]`` token embeddings; ``mask_a``: ``[B_a, La]`` bool (True = valid)
            or None (all valid). Every set needs at least one valid token.
        tokens_b: ``[B_b, Lb, d]``; ``mask_b``: ``[B_b, Lb]`` bool or None.
        logit_scale: exponentiated temperature; ``logit_bias``: optional bias.
        tile_size: sets per tile side (default 64).

    Returns:
        A 0-dim tensor.

    Example:
        >>> import torch, mlvec.losses as L
        >>> img, txt = torch.randn(4, 6, 8), torch.randn(4, 5, 8)
        >>> loss = L.filip_loss(img, None, txt, None, torch.tensor(10.0))
    """
    warn_if_log_scale(logit_scale, tokens_a, "filip_loss")
    return _late("filip", tokens_a, mask_a, tokens_b, mask_b, ("tokens_a", "tokens_b"), logit_scale,
                 logit_bias, labels, positives, symmetric, label_smoothing, group, strategy, tile_size)  # fmt: skip


def colbert_loss(
    query_tokens: torch.Tensor,
    query_mask: torch.Tensor | None,
    doc_tokens: torch.Tensor,
    doc_mask: torch.Tensor | None,
    logit_scale: torch.Tensor | float = 1.0,
    logit_bias: torch.Tensor | float | None = None,
    *,
    labels: torch.Tensor | None = None,
    positives: torch.Tensor | list | None = None,
    symmetric: bool = False,
    label_smoothing: float = 0.0,
    group: Any = None,
    strategy: str = "all_gather",
    tile_size: int | None = None,
) -> torch.Tensor:
    """Exact ColBERT in-batch loss: ``s[i, j] = sum_{q in Q_i} max_{d in D_j} <q, d>`` into InfoNCE.

    Logits ``logit_scale * s + logit_bias``; by default one-directional (query -> documents of the
    global batch, query ``i``'s positive is document ``i`` unless ``labels`` / ``positives`` say
    otherwise; extra hard negatives are simply extra documents with no query pointing at them).
    ``symmetric=True`` adds the document -> query direction on the same scores. Tiling,
    distribution and the gradient convention as in :func:`filip_loss` / :func:`clip_loss`.

    Args:
        query_tokens: ``[B_q, Lq, d]``; ``query_mask``: ``[B_q, Lq]`` bool or None.
        doc_tokens: ``[B_d, Ld, d]``; ``doc_mask``: ``[B_d, Ld]`` bool or None.

    Returns:
        A 0-dim tensor.

    Example:
        >>> import torch, mlvec.losses as L
        >>> q, d = torch.randn(4, 6, 8), torch.randn(8, 5, 8)
        >>> loss = L.colbert_loss(q, None, d, None, 1.0, labels=torch.arange(4) * 2)
    """
    return _late("colbert", query_tokens, query_mask, doc_tokens, doc_mask, ("query_tokens", "doc_tokens"),
                 logit_scale, logit_bias, labels, positives, symmetric, label_smoothing, group, strategy,
                 tile_size)  # fmt: skip


class FilipLoss(nn.Module):
    """Module form of :func:`filip_loss`: ``forward(tokens_a, mask_a, tokens_b, mask_b, logit_scale, logit_bias=None)``.

    Example:
        >>> loss = FilipLoss()(torch.randn(4, 6, 8), None, torch.randn(4, 5, 8), None, torch.tensor(10.0))
    """

    def __init__(self, *, symmetric: bool = True, label_smoothing: float = 0.0, group: Any = None,
                 strategy: str = "all_gather", tile_size: int | None = None):  # fmt: skip
        super().__init__()
        self.kw = dict(symmetric=symmetric, label_smoothing=label_smoothing, group=group, strategy=strategy,
                       tile_size=tile_size)  # fmt: skip

    def forward(self, tokens_a, mask_a, tokens_b, mask_b, logit_scale, logit_bias=None, *, labels=None,
                positives=None) -> torch.Tensor:  # fmt: skip
        return filip_loss(tokens_a, mask_a, tokens_b, mask_b, logit_scale, logit_bias, labels=labels,
                          positives=positives, **self.kw)  # fmt: skip


class ColbertLoss(nn.Module):
    """Module form of :func:`colbert_loss`: ``forward(query_tokens, query_mask, doc_tokens, doc_mask, logit_scale=1.0, ...)``.

    Example:
        >>> loss = ColbertLoss()(torch.randn(4, 6, 8), None, torch.randn(4, 5, 8), None, 5.0)
    """

    def __init__(self, *, symmetric: bool = False, label_smoothing: float = 0.0, group: Any = None,
                 strategy: str = "all_gather", tile_size: int | None = None):  # fmt: skip
        super().__init__()
        self.kw = dict(symmetric=symmetric, label_smoothing=label_smoothing, group=group, strategy=strategy,
                       tile_size=tile_size)  # fmt: skip

    def forward(self, query_tokens, query_mask, doc_tokens, doc_mask, logit_scale=1.0, logit_bias=None, *,
                labels=None, positives=None) -> torch.Tensor:  # fmt: skip
        return colbert_loss(query_tokens, query_mask, doc_tokens, doc_mask, logit_scale, logit_bias,
                            labels=labels, positives=positives, **self.kw)  # fmt: skip
