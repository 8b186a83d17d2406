"""Small datasets shipped with mlvec (public domain). See ``README.md`` beside this file."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from importlib import resources

__all__ = ["ParallelCorpus", "load_bible_en_es"]

_BIBLE = "bible_en_es_3000.json.gz"


@dataclass
class ParallelCorpus:
    """Aligned sentence pairs: ``en[i]`` and ``es[i]`` translate each other (key ``keys[i]``)."""

    keys: list[tuple[str, int, int]]
    en: list[str]
    es: list[str]

    def __len__(self) -> int:
        return len(self.keys)


def load_bible_en_es(n: int | None = None, *, offset: int = 0) -> ParallelCorpus:
    """Up to 3,000 aligned Bible verses, English (WEB) and Spanish (RV1909), public domain.

    Args:
        n: number of pairs (default: all 3,000 from ``offset``).
        offset: first pair to return, e.g. to hold out a disjoint evaluation split.

    Example:
        >>> pairs = load_bible_en_es(1000)
        >>> pairs.en[0], pairs.es[0]
    """
    with resources.files(__package__).joinpath(_BIBLE).open("rb") as f:
        data = json.loads(gzip.decompress(f.read()))
    total = len(data["keys"])
    if offset < 0 or offset > total:
        raise ValueError(f"offset must be in [0, {total}], got {offset}")
    end = total if n is None else offset + int(n)
    if n is not None and (n < 0 or end > total):
        raise ValueError(f"n must be in [0, {total - offset}] for offset {offset}, got {n}")
    keys = [(str(b), int(c), int(v)) for b, c, v in data["keys"][offset:end]]
    return ParallelCorpus(keys, data["en"][offset:end], data["es"][offset:end])
