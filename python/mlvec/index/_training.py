"""How much training data a quantizer needs, so a too-small sample is said before recall suffers."""

from __future__ import annotations

import re

# k-means with fewer points per centroid than this leaves centroids that fit noise; faiss warns
# below the same number (39 points per centroid).
MIN_POINTS_PER_CENTROID = 39


def centroids_to_train(kind: str, nlist: int) -> list[tuple[str, int]]:
    """The k-means problems ``kind``'s training solves: ``(what, centroids)`` pairs."""
    out = []
    if nlist > 1:
        out.append((f"the coarse quantizer (IVF{nlist})", nlist))
    pq = re.search(r"PQ(\d+)(x4)?", kind)
    if pq:
        out.append((f"each PQ sub-quantizer ({'16' if pq.group(2) else '256'} codewords)", 16 if pq.group(2) else 256))
    return out


def training_warning(kind: str, nlist: int, n: int) -> str | None:
    """A message when ``n`` training vectors are too few for ``kind``, else ``None``."""
    short = [(what, k) for what, k in centroids_to_train(kind, nlist) if n < MIN_POINTS_PER_CENTROID * k]
    if not short:
        return None
    what, k = max(short, key=lambda s: s[1])
    return (
        f"training {kind} on {n} vectors: {what} gets {n / k:.1f} per centroid; give at least "
        f"{MIN_POINTS_PER_CENTROID * k} ({MIN_POINTS_PER_CENTROID} per centroid) or fewer centroids, "
        "or recall will suffer"
    )
