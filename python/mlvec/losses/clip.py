"""CLIP / InfoNCE loss, exact and tiled, over a (possibly sharded) global batch."""

from __future__ import annotations

from typing import Any

import torch

from mlvec.losses._common import check_features, run
from mlvec.losses._openclip import OpenClipLoss, open_clip_arguments, warn_if_log_scale
from mlvec.losses._scorers import DenseScorer


def _dense_inputs(features_a: torch.Tensor, features_b: torch.Tensor) -> tuple[Any, Any, list]:
    errs = [check_features("features_a", features_a, 2), check_features("features_b", features_b, 2)]
    if not any(errs) and features_a.dtype != features_b.dtype:
        errs.append(f"features_a and features_b: dtypes differ ({features_a.dtype} vs {features_b.dtype})")
    if any(errs):
        return features_a, features_b, errs
    cd = torch.float64 if features_a.dtype == torch.float64 else torch.float32
    # Half-precision inputs are upcast once (O(B * d)); tiles then accumulate in float32.
    return features_a.to(cd).contiguous(), features_b.to(cd).contiguous(), errs


def clip_loss(
    features_a: torch.Tensor,
    features_b: torch.Tensor,
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
    """Exact CLIP / InfoNCE loss of the global batch, computed tile by tile.

    Logits are ``logit_scale * features_a @ features_b.T + logit_bias`` over the *global* batch
    (all ranks of ``group`` concatenated in rank order). ``logit_scale`` is the multiplier itself,
    i.e. already exponentiated, exactly as open_clip passes ``model.logit_scale.exp()``.

    Targets (global column indices):

    - default: row ``i`` matches column ``i`` (needs equal batch sizes on each rank);
    - ``labels`` ``[B_a_local]`` int64: one positive column per row (rows may share a column);
    - ``positives`` ``[B_a_local, P]`` int64 padded with ``-1`` (or a list of index lists): several
      positives per row (e.g. several captions of one image). A row's loss is the mean over its
      positives ``p`` of ``-log softmax_row(p)``; rows without positives are left out.

    The loss is the mean over rows of the row-wise cross-entropy and, when ``symmetric``, the
    average of that and the column-wise one (column ``j``'s positives are the rows listing it;
    columns that no row lists are left out). ``label_smoothing`` ``eps`` mixes the target with the
    uniform distribution as ``torch.nn.functional.cross_entropy`` does.

    Memory is O(B * d + tile^2): no ``B x B`` matrix is ever built; backward recomputes each tile.

    Distributed (``group``: a process group, default the world group when initialised): every
    rank passes its local shard (shards may differ in size) and gets the same global loss back.
    ``strategy="all_gather"`` gathers the columns, ``"ring"`` passes them between neighbours so no
    rank holds all of them. Gradients: local features get ``W * dL/dx`` and ``logit_scale`` /
    ``logit_bias`` get ``dL/dscale`` on every rank, so after DDP averages over ``W`` ranks every
    parameter has the true gradient of the global loss (open_clip's ``gather_with_grad=True``).

    Args:
        features_a: ``[B_a, d]`` float32/float16/bfloat16/float64 (e.g. image embeddings).
        features_b: ``[B_b, d]`` same dtype and device (e.g. text embeddings).
        logit_scale: exponentiated temperature, a float or a one-element tensor.
        logit_bias: optional additive bias.
        tile_size: rows/columns per tile (default 2048).

    Returns:
        A 0-dim tensor (dtype of ``logit_scale``).

    Example:
        >>> import torch, mlvec.losses as L
        >>> img = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
        >>> txt = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
        >>> loss = L.clip_loss(img, txt, torch.tensor(10.0))
    """
    warn_if_log_scale(logit_scale, features_a, "clip_loss")
    a, b, errs = _dense_inputs(features_a, features_b)
    return run(
        scorer_factory=lambda dtype, device: DenseScorer(dtype),
        kind="softmax",
        rows=(a,),
        cols=(b,),
        names=("features_a", "features_b"),
        logit_scale=logit_scale,
        logit_bias=logit_bias,
        labels=labels,
        positives=positives,
        symmetric=symmetric,
        label_smoothing=label_smoothing,
        group=group,
        strategy=strategy,
        tile_size=tile_size,
        local_errors=errs,
    )


class ClipLoss(OpenClipLoss):
    """Module form of :func:`clip_loss`, a drop-in for ``open_clip.loss.ClipLoss``.

    ``forward(image_features, text_features, logit_scale, logit_bias=None, output_dict=False)``
    takes the same arguments as open_clip's (``logit_scale`` exponentiated) and returns the
    loss, or ``{"contrastive_loss": loss}`` with ``output_dict=True``. Ranks come from ``group``;
    the value equals open_clip's with ``gather_with_grad=True, local_loss=False``, and so do the
    gradients.

    open_clip's constructor arguments (``local_loss``, ``gather_with_grad``, ``cache_labels``,
    ``rank``, ``world_size``, ``use_horovod``) are accepted with the meaning described in
    ``mlvec.losses._openclip``: ``rank`` / ``world_size`` are checked against the process group,
    ``use_horovod=True`` is an error, the others change nothing about training.

    Example:
        >>> loss_fn = ClipLoss()              # or ClipLoss(local_loss=True, gather_with_grad=True, rank=r, world_size=w)
        >>> loss = loss_fn(torch.randn(4, 8), torch.randn(4, 8), torch.tensor(10.0))
    """

    def __init__(
        self,
        local_loss: bool = False,
        gather_with_grad: bool = False,
        cache_labels: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        use_horovod: bool = False,
        *,
        symmetric: bool = True,
        label_smoothing: float = 0.0,
        group: Any = None,
        strategy: str | None = None,
        tile_size: int | None = None,
    ):
        ranks, strategy = open_clip_arguments(
            local_loss=local_loss, gather_with_grad=gather_with_grad, cache_labels=cache_labels, rank=rank,
            world_size=world_size, use_horovod=use_horovod, strategy=strategy,
        )  # fmt: skip
        super().__init__(clip_loss, ranks, group, strategy, tile_size, symmetric=symmetric,
                         label_smoothing=label_smoothing)  # fmt: skip
