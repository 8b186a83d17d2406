"""Adapters turning a Hugging Face encoder into pooled or token-level embeddings."""

from __future__ import annotations

import contextlib
import sys
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
            self.unk_id = _first_id(vocab, ("<unk>", "[UNK]"), default=None)
            self.vocab = vocab
            self.special_ids = {i for t, i in vocab.items() if t.startswith(("<", "[")) and t.endswith((">", "]"))}
        elif callable(tok) and hasattr(tok, "get_vocab"):
            self.kind = "transformers"
            self._tok = tok
            self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
            self.mask_id = getattr(tok, "mask_token_id", None)
            self.unk_id = getattr(tok, "unk_token_id", None)
            self.vocab = tok.get_vocab()
            self.special_ids = set(getattr(tok, "all_special_ids", []))
        else:
            raise TypeError(
                "tokenizer must be a transformers tokenizer or a tokenizers.Tokenizer, "
                f"got {type(tok).__name__}"
            )

    def ids_of(self, tokens: Sequence[str]) -> set[int]:
        """Vocabulary ids of ``tokens``; a string that is no single entry counts as the first
        token it encodes to (how ColBERT turns its skiplist symbols into ids), unless that is the
        unknown token (a symbol the vocabulary lacks never appears as itself)."""
        out = set()
        for token in tokens:
            idx = self.vocab.get(token)
            if idx is None:
                if self.kind == "transformers":
                    pieces = self._tok(token, add_special_tokens=False)["input_ids"]
                else:
                    pieces = self._tok.encode(token, add_special_tokens=False).ids
                idx = pieces[0] if pieces else None
            if idx is not None and idx != self.unk_id:
                out.add(int(idx))
        return out

    def __len__(self) -> int:
        """Entries of the vocabulary, added tokens included."""
        return len(self.vocab)

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
        token_head: a ready token projection instead of ``token_dim`` (an ``nn.Linear`` or an
            ``nn.Sequential`` of them, e.g. the trained head of a ColBERT checkpoint).
        max_length: token limit of documents (and of queries without ``query_length``); default
            the model's position limit, at most 512.
        query_prefix / passage_prefix: text prepended to texts (E5 wants ``"query: "`` /
            ``"passage: "``).
        query_marker / document_marker: a vocabulary token inserted right after the first token
            (``[CLS]``) of queries / documents, as ColBERT does with ``[unused0]`` / ``[unused1]``
            (Stanford checkpoints) or ``[Q] `` / ``[D] `` (PyLate); it counts in the length.
        skip_punctuation: drop punctuation tokens (Unicode category ``P*``) from document token sets.
        skiplist: drop exactly these tokens (strings, looked up in the vocabulary) from document
            token sets instead (ColBERT's ``string.punctuation`` skiplist).
        query_augment: pad query token sets to ``query_length`` with the mask token (ColBERT's
            query augmentation); those positions are kept in the output.
        query_length: query token budget (default 32 with ``query_augment``, else ``max_length``).
        attend_to_mask_tokens: let the encoder attend to the augmentation tokens (ColBERTv2: no).
        device / dtype: where and in which precision (``torch.float32`` or ``torch.bfloat16``) to run.

    Outputs are float32 regardless of ``dtype``. The module is a ``torch.nn.Module``: calling it
    (``encoder(texts)``) keeps gradients, so it can be fine-tuned with mlvec's losses. The
    ``encode*`` methods run without gradients unless ``grad=True``, and always in eval mode (no
    dropout): the caller's train/eval mode is restored afterwards, so the same text encodes the
    same way in the middle of a training loop. A new encoder takes its mode from ``model``.

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
        token_head: nn.Module | None = None,
        max_length: int | None = None,
        query_prefix: str = "",
        passage_prefix: str = "",
        query_marker: str | None = None,
        document_marker: str | None = None,
        skip_punctuation: bool = False,
        skiplist: Sequence[str] | None = None,
        query_augment: bool = False,
        query_length: int | None = None,
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
        if token_head is not None and token_dim is not None and _out_features(token_head) != token_dim:
            raise ValueError(
                f"token_dim={token_dim} disagrees with the token head, which outputs "
                f"{_out_features(token_head)} dimensions"
            )
        if token_head is not None:
            if _in_features(token_head) != hidden:
                raise ValueError(
                    f"the token head takes {_in_features(token_head)} inputs, but the model's hidden size is {hidden}"
                )
            self.token_proj = token_head
        else:
            self.token_proj = nn.Linear(hidden, token_dim, bias=False) if token_dim else None
        limit = getattr(getattr(model, "config", None), "max_position_embeddings", 512) or 512
        self._position_limit = int(limit)
        self.max_length = int(min(512 if max_length is None else max_length, limit))
        # A marker takes one position, and [CLS] + [SEP] two more: fewer leaves no room for text.
        least = 3 if (query_marker or document_marker) else 2
        if self.max_length < least:
            raise ValueError(f"max_length must be >= {least}, got {max_length}")
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self.query_marker = query_marker or None
        self.document_marker = document_marker or None
        self._marker_ids = {True: self._lookup_marker("query_marker", self.query_marker),
                            False: self._lookup_marker("document_marker", self.document_marker)}
        self.skip_punctuation = skip_punctuation
        self.skiplist = list(skiplist) if skiplist is not None else None
        if query_augment and self.tok.mask_id is None:
            raise ValueError("query_augment needs a tokenizer with a mask token ([MASK] or <mask>)")
        if query_length is not None and query_length < least:
            raise ValueError(f"query_length must be >= {least}, got {query_length}")
        self.query_augment = query_augment
        if query_length is None and query_augment:
            query_length = 32
        self.query_length = None if query_length is None else int(min(query_length, self._position_limit))
        self.attend_to_mask_tokens = attend_to_mask_tokens
        self._skip_ids: np.ndarray | None = None
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)
        # The wrapper follows the wrapped model's mode (a loaded model is in eval mode).
        self.train(model.training)

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
        return _out_features(self.token_proj) if self.token_proj is not None else self.hidden_size

    def _lookup_marker(self, name: str, token: str | None) -> int | None:
        if token is None:
            return None
        idx = self.tok.vocab.get(token)
        if idx is None:
            raise ValueError(f"{name}: token {token!r} is not in the tokenizer's vocabulary")
        return int(idx)

    def options(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this encoder around the same model and tokenizer
        (JSON-able; the token head's weights are not in it, only its shape)."""
        return {
            "pooling": self.pooling,
            "normalize": self.normalize,
            "pooled_dim": self.pooled_proj.out_features if self.pooled_proj is not None else None,
            "max_length": self.max_length,
            "query_prefix": self.query_prefix,
            "passage_prefix": self.passage_prefix,
            "query_marker": self.query_marker,
            "document_marker": self.document_marker,
            "skip_punctuation": self.skip_punctuation,
            "skiplist": self.skiplist,
            "query_augment": self.query_augment,
            "query_length": self.query_length,
            "attend_to_mask_tokens": self.attend_to_mask_tokens,
        }

    def save(self, path: str | Path) -> Path:
        """Write the model, its tokenizer, the projection heads and every option to directory
        ``path`` (created if needed); :func:`load_encoder` reads it back to an encoder that gives
        the same embeddings. Weights are saved as safetensors. Returns the directory.

        Example:
            >>> enc.save("my-e5")                       # after fine-tuning
            >>> same = mlvec.encoders.load_encoder("my-e5")
        """
        from mlvec.encoders._checkpoints import save_encoder

        return save_encoder(self, Path(path))

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
        limit = self.query_length if is_query and self.query_length is not None else self.max_length
        marker = self._marker_ids[is_query]
        # The marker goes in after tokenisation, so the text gets one position less.
        text_limit = limit - (marker is not None)
        ids, attn = self.tok(texts, text_limit, pad_to=text_limit if augment else None)
        if marker is not None:
            ids = np.insert(ids, 1, marker, axis=1)
            attn = np.insert(attn, 1, 1, axis=1)
        out_mask = attn.astype(bool)
        if augment:
            pad = attn == 0
            ids[pad] = self.tok.mask_id
            out_mask[:] = True
            if self.attend_to_mask_tokens:
                attn[:] = 1
        elif (self.skip_punctuation or self.skiplist is not None) and not is_query:
            out_mask &= ~np.isin(ids, self._skipped_ids())
        dev = self.device
        return {
            "input_ids": torch.from_numpy(ids).to(dev),
            "attention_mask": torch.from_numpy(attn).to(dev),
            "output_mask": torch.from_numpy(out_mask).to(dev),
        }

    def _skipped_ids(self) -> np.ndarray:
        """Token ids dropped from documents: the ``skiplist``'s, else every punctuation entry."""
        if self._skip_ids is None:
            if self.skiplist is not None:
                self._skip_ids = np.array(sorted(self.tok.ids_of(self.skiplist)), dtype=np.int64)
            else:
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

        Texts are batched by length (order is preserved); a progress bar shows for long runs on a
        terminal (``show_progress=None``: more than 8 batches and stderr is a terminal).
        """
        texts = _check_texts(texts)
        if convert_to not in ("numpy", "torch"):
            raise ValueError(f"convert_to must be 'numpy' or 'torch', got {convert_to!r}")
        parts, order = [], []
        with torch.set_grad_enabled(grad), self._eval_mode():
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
        with torch.no_grad(), self._eval_mode():
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
        with torch.no_grad(), self._eval_mode():
            for idx in self._batches(texts, batch_size, show_progress, "encode"):
                batch = self.tokenize([texts[i] for i in idx], is_query=is_query)
                h = self._hidden(batch)
                pooled[idx] = self.pool(h, batch["attention_mask"]).cpu().numpy()
                emb, mask = self._token_outputs(h, batch["output_mask"])
                emb, mask = emb.cpu().numpy(), mask.cpu().numpy()
                for j, i in enumerate(idx):
                    per_text[i] = emb[j][mask[j]]
        return pooled, _pack(per_text, self.token_dim)

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Eval mode (no dropout) for the duration, then the caller's mode back, module by module."""
        modes = [(m, m.training) for m in self.modules()]
        self.eval()
        try:
            yield
        finally:
            for m, training in modes:
                m.training = training

    def _batches(self, texts: list[str], batch_size: int, show_progress: bool | None, desc: str) -> Iterator[np.ndarray]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        # Longest first so padding is small within a batch and memory peaks early.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if show_progress is None:
            # Long runs on a terminal only: a log file gets no progress-bar lines.
            show_progress = len(chunks) > 8 and sys.stderr.isatty()
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


def _linear_layers(head: nn.Module) -> list[nn.Linear]:
    layers = [head] if isinstance(head, nn.Linear) else list(head.children())
    if not layers or not all(isinstance(m, nn.Linear) for m in layers):
        raise TypeError(f"a token head must be an nn.Linear or an nn.Sequential of them, got {head}")
    return layers


def _in_features(head: nn.Module) -> int:
    return _linear_layers(head)[0].in_features


def _out_features(head: nn.Module) -> int:
    return _linear_layers(head)[-1].out_features


def _hidden_size(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    for name in ("hidden_size", "d_model", "dim"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise ValueError(f"cannot tell the hidden size of {type(model).__name__} (no config.hidden_size)")
