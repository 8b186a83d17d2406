"""open_clip's constructor arguments, so ``ClipLoss(...)`` / ``SigLipLoss(...)`` written for
open_clip construct here with the same meaning, and a check that ``logit_scale`` was exponentiated.

What each argument means here:

- ``rank`` / ``world_size``: mlvec reads both from the process group; given ones are checked
  against it when the loss runs (a mismatch is an error, not a silent difference).
- ``gather_with_grad``: mlvec's gradients always flow through every rank's features (the exact
  gradient of the global loss, open_clip's ``gather_with_grad=True``) without holding gathered
  copies for autograd, so the memory ``False`` saves in open_clip is never spent. With several
  ranks ``False`` is accepted with a warning: open_clip's feature gradients would be
  ``world_size`` times smaller.
- ``local_loss``: open_clip's ``True`` scores local rows against all columns and returns each
  rank's part; mlvec returns the global loss on every rank (the mean of those parts). The
  gradients after DDP averaging are the same either way.
- ``cache_labels``: no labels tensor is built here; accepted, nothing to cache.
- ``use_horovod``: not supported (torch.distributed only): an error.
- ``dist_impl`` (SigLIP): ``"gather"`` / ``"reduce"`` → ``strategy="all_gather"``, ``"bidir"`` /
  ``"shift"`` → ``strategy="ring"`` (neighbour exchange); every strategy gives the exact loss.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

_DIST_IMPLS = {None: None, "gather": "all_gather", "reduce": "all_gather", "bidir": "ring", "shift": "ring"}
# A raw log-scale parameter (CLIP initialises it to log(1/0.07) = 2.66, SigLIP to log(10) = 2.30)
# passed without .exp() is at most about this; trained exponentiated scales sit at 10-100.
_RAW_LOG_SCALE_MAX = 5.0


@dataclass(frozen=True)
class RankCheck:
    """The ``rank`` / ``world_size`` a caller gave, checked against the process group at run time."""

    rank: int | None = None
    world_size: int | None = None

    def check(self, group: Any) -> None:
        if self.rank is None and self.world_size is None:
            return
        import torch.distributed as dist

        ready = dist.is_available() and dist.is_initialized()
        rank = dist.get_rank(group) if ready else 0
        world = dist.get_world_size(group) if ready else 1
        for name, given, actual in (("rank", self.rank, rank), ("world_size", self.world_size, world)):
            if given is not None and given != actual:
                where = "the process group" if ready else "a single process (torch.distributed is not initialised)"
                raise ValueError(f"{name}={given} was given, but {where} has {name}={actual}")


def open_clip_arguments(
    *,
    local_loss: bool,
    gather_with_grad: bool,
    cache_labels: bool,
    rank: int | None,
    world_size: int | None,
    use_horovod: bool,
    strategy: str | None,
    dist_impl: str | None = None,
) -> tuple[RankCheck, str]:
    """Validate open_clip's constructor arguments; returns the rank check and the strategy."""
    del local_loss, cache_labels  # same training either way (see the module docs)
    if use_horovod:
        raise ValueError("use_horovod=True: mlvec runs on torch.distributed process groups, not Horovod")
    if dist_impl not in _DIST_IMPLS:
        raise ValueError(f"dist_impl must be one of {sorted(k for k in _DIST_IMPLS if k)} or None, got {dist_impl!r}")
    mapped = _DIST_IMPLS[dist_impl]
    if strategy is not None and mapped is not None and strategy != mapped:
        raise ValueError(f"dist_impl={dist_impl!r} means strategy={mapped!r}, but strategy={strategy!r} was given")
    if world_size is not None and world_size > 1 and not gather_with_grad:
        warnings.warn(
            "gather_with_grad=False: mlvec always computes the exact gradient through every rank's features "
            "(open_clip's gather_with_grad=True) and needs no gathered copies for it; open_clip's False would "
            f"give feature gradients {world_size}x smaller",
            UserWarning,
            stacklevel=3,
        )
    return RankCheck(rank, world_size), strategy or mapped or "all_gather"


def warn_if_log_scale(logit_scale: Any, features: torch.Tensor, loss: str) -> None:
    """Warn when ``logit_scale`` looks like the raw log parameter (not exponentiated) while the
    features are L2-normalised: logits would span only about ±2.7, and training would crawl."""
    if isinstance(logit_scale, torch.Tensor):
        if logit_scale.numel() != 1 or logit_scale.device.type != "cpu":
            return  # reading a GPU scalar would synchronise the stream on every step
        value = float(logit_scale.detach().reshape(()))
    elif isinstance(logit_scale, (int, float)):
        value = float(logit_scale)
    else:
        return
    if not 0 < value <= _RAW_LOG_SCALE_MAX or not isinstance(features, torch.Tensor) or features.dim() < 2:
        return
    rows = features.detach().reshape(-1, features.shape[-1])[:64].float()
    if rows.numel() and bool(((rows.norm(dim=-1) - 1).abs() < 1e-2).all()):
        warnings.warn(
            f"{loss}: logit_scale={value:.3g} with L2-normalised features looks like the log of the scale; "
            "mlvec (like open_clip's losses) takes the multiplier itself: pass logit_scale.exp()",
            UserWarning,
            stacklevel=3,
        )


class OpenClipLoss(nn.Module):
    """What ``ClipLoss`` and ``SigLipLoss`` share: open_clip's ``forward(image_features,
    text_features, logit_scale, logit_bias=None, output_dict=False)`` over a loss function, with
    the process group, strategy and tile size set once and the ranks checked at each call."""

    def __init__(self, loss: Callable[..., torch.Tensor], ranks: RankCheck, group: Any, strategy: str,
                 tile_size: int | None, **options: Any):  # fmt: skip
        super().__init__()
        self._loss, self._ranks, self._options = loss, ranks, options
        self.group, self.strategy, self.tile_size = group, strategy, tile_size

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor | float,
        logit_bias: torch.Tensor | float | None = None,
        output_dict: bool = False,
        *,
        labels: torch.Tensor | None = None,
        positives: torch.Tensor | list | None = None,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        self._ranks.check(self.group)
        loss = self._loss(
            image_features, text_features, logit_scale, logit_bias, labels=labels, positives=positives,
            group=self.group, strategy=self.strategy, tile_size=self.tile_size, **self._options,
        )  # fmt: skip
        return {"contrastive_loss": loss} if output_dict else loss
