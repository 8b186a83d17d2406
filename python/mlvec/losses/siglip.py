"""SigLIP (sigmoid) loss, exact and tiled, over a (possibly sharded) global batch."""

from __future__ import annotations

from typing import Any

import torch

from mlvec.losses._common import run
from mlvec.losses._openclip import OpenClipLoss, open_clip_arguments, warn_if_log_scale
from mlvec.losses._scorers import DenseScorer
from mlvec.losses.clip import _dense_inputs


def siglip_loss(
    features_a: torch.Tensor,
    features_b: torch.Tensor,
    logit_scale: torch.Tensor | float,
    logit_bias: torch.Tensor | float | None = None,
    *,
    labels: torch.Tensor | None = None,
    positives: torch.Tensor | list | None = None,
    group: Any = None,
    strategy: str = "all_gather",
    tile_size: int | None = None,
) -> torch.Tensor:
    """Exact SigLIP loss ``-(1/B_a) * sum_ij log sigmoid(z_ij * (scale * <a_i, b_j> + bias))``.

    ``z_ij = +1`` for positive pairs (the diagonal by default, or ``labels`` / ``positives`` as in
    :func:`clip_loss`; positives of a row must be distinct) and ``-1`` otherwise; ``B_a`` is the
    global number of rows. This is open_clip's ``SigLipLoss`` on the concatenated global batch.
    ``logit_scale`` is the multiplier (exponentiated, as open_clip passes it). Tiled: memory
    O(B * d + tile^2). Distributed arguments and gradient convention as in :func:`clip_loss`.

    When autograd will need gradients (grad mode on and an input requiring grad), the loss and
    all gradients come from one sweep over the tiles (three GEMMs per tile instead of four for
    a separate forward and backward); the O(B * d) gradients are held until ``backward``. For
    evaluation, call it under ``torch.no_grad()`` to get the value alone.

    Args:
        features_a: ``[B_a, d]`` float32/float16/bfloat16/float64.
        features_b: ``[B_b, d]`` same dtype and device.

    Returns:
        A 0-dim tensor.

    Example:
        >>> import torch, mlvec.losses as L
        >>> loss = L.siglip_loss(torch.randn(8, 16), torch.randn(8, 16), torch.tensor(10.0), torch.tensor(-10.0))
    """
    warn_if_log_scale(logit_scale, features_a, "siglip_loss")
    a, b, errs = _dense_inputs(features_a, features_b)
    return run(
        scorer_factory=lambda dtype, device: DenseScorer(dtype),
        kind="sigmoid",
        rows=(a,),
        cols=(b,),
        names=("features_a", "features_b"),
        logit_scale=logit_scale,
        logit_bias=logit_bias,
        labels=labels,
        positives=positives,
        symmetric=False,
        label_smoothing=0.0,
        group=group,
        strategy=strategy,
        tile_size=tile_size,
        local_errors=errs,
    )


class SigLipLoss(OpenClipLoss):
    """Module form of :func:`siglip_loss`, a drop-in for ``open_clip.loss.SigLipLoss``.

    ``forward(image_features, text_features, logit_scale, logit_bias, output_dict=False)`` as in
    open_clip. With several ranks the value returned is the global loss (open_clip returns each
    rank's local part); gradients after DDP averaging are the same as open_clip's.

    open_clip's constructor arguments (``cache_labels``, ``rank``, ``world_size``, ``dist_impl``,
    ``bidir``, ``use_horovod``) are accepted as described in ``mlvec.losses._openclip``:
    ``dist_impl`` picks the strategy, ``rank`` / ``world_size`` are checked against the group.

    Example:
        >>> loss = SigLipLoss()(torch.randn(4, 8), torch.randn(4, 8), torch.tensor(10.0), torch.tensor(-10.0))
    """

    def __init__(
        self,
        cache_labels: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        dist_impl: str | None = None,
        bidir: bool = True,
        use_horovod: bool = False,
        *,
        group: Any = None,
        strategy: str | None = None,
        tile_size: int | None = None,
    ):
        del bidir  # open_clip's two-way neighbour exchange; every strategy here gives the exact loss
        ranks, strategy = open_clip_arguments(
            local_loss=False, gather_with_grad=True, cache_labels=cache_labels, rank=rank, world_size=world_size,
            use_horovod=use_horovod, strategy=strategy, dist_impl=dist_impl,
        )  # fmt: skip
        super().__init__(siglip_loss, ranks, group, strategy, tile_size)
