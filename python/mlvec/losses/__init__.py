"""Exact, tiled contrastive losses over large (sharded) global batches.

- :func:`clip_loss` / :class:`ClipLoss` -- CLIP / InfoNCE (symmetric or one-way, labels, several
  positives per row, label smoothing);
- :func:`siglip_loss` / :class:`SigLipLoss` -- SigLIP (sigmoid with scale and bias);
- :func:`filip_loss` / :class:`FilipLoss` -- FILIP token-wise late interaction into InfoNCE;
- :func:`colbert_loss` / :class:`ColbertLoss` -- ColBERT in-batch loss (sum-of-max).

Every loss is computed tile by tile with an online log-sum-exp and recomputed tile by tile in
backward, so memory is O(B * d + tile^2); no ``B x B`` matrix is materialised. With a
``torch.distributed`` process group each rank passes its shard and receives the global loss;
``strategy`` is ``"all_gather"`` or ``"ring"``. After DDP averages gradients over the ``W`` ranks
every feature, ``logit_scale`` and ``logit_bias`` has the true gradient of the global loss.
``logit_scale`` is always the multiplier itself (exponentiated, as open_clip passes it).
"""

from mlvec.losses.clip import ClipLoss, clip_loss
from mlvec.losses.late import ColbertLoss, FilipLoss, colbert_loss, filip_loss
from mlvec.losses.siglip import SigLipLoss, siglip_loss

__all__ = [
    "clip_loss",
    "ClipLoss",
    "siglip_loss",
    "SigLipLoss",
    "filip_loss",
    "FilipLoss",
    "colbert_loss",
    "ColbertLoss",
]
