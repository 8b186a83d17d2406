"""``mlvec encode``: embed a text file into pooled or token embeddings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlvec.cli._common import CliError, add_encoder_args, load_encoder_from_args, read_lines, write_arrays


def run(args: argparse.Namespace) -> int:
    texts = read_lines(args.input, "input")
    out = Path(args.output)
    suffix = out.suffix.lower()
    allowed = (".safetensors", ".npz") if args.tokens else (".npy", ".safetensors")
    if suffix not in allowed:
        kind = "token embeddings" if args.tokens else "embeddings"
        raise CliError(f"output: {kind} are written as {' or '.join(allowed)}, got '{out.name}'")
    if not out.parent.exists():
        raise CliError(f"output: directory does not exist: {out.parent}")
    enc = load_encoder_from_args(args)
    show = None if not args.quiet else False
    if args.tokens:
        toks = enc.encode_tokens(texts, is_query=args.query, batch_size=args.batch_size, show_progress=show)
        arrays = {"embeddings": toks.data, "offsets": toks.offsets}
        shape = f"{toks.data.shape[0]} tokens x {toks.dim} over {len(texts)} texts"
    else:
        emb = enc.encode(texts, is_query=args.query, batch_size=args.batch_size, show_progress=show)
        arrays = {"embeddings": emb}
        shape = f"{emb.shape[0]} x {emb.shape[1]}"
    write_arrays(out, arrays)
    if not args.quiet:
        print(f"wrote {shape} float32 to {out}", file=sys.stderr)
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "encode", help="embed a text file (one text per line) into .npy / .safetensors",
        description="Embed each line of INPUT (UTF-8, one text per line) and write the embeddings. "
                    "Pooled embeddings: float32 [n, dim] to .npy or .safetensors (tensor 'embeddings'). "
                    "With --tokens: packed token embeddings to .safetensors or .npz "
                    "(tensors 'embeddings' [rows, dim] and 'offsets' int64 [n + 1]).",
        epilog="example: mlvec encode verses.txt -o verses.safetensors --query",
    )
    p.add_argument("input", help="text file, one text per line")
    p.add_argument("-o", "--output", required=True, help="output file (.npy, .safetensors, or .npz with --tokens)")
    p.add_argument("--query", action="store_true", help="embed as queries (E5: 'query: ' prefix; default: passages)")
    p.add_argument("--tokens", action="store_true", help="write token-level embeddings for late interaction")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    add_encoder_args(p)
    p.set_defaults(func=run)


