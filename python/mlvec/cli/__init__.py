"""The ``mlvec`` command line: ``mlvec info``, ``encode``, ``bench``, ``index build`` / ``index search``,
``rerank``.

Each subcommand is a module with ``add(subparsers)`` (its parser) and ``run(args)``, listed in
:data:`COMMANDS`. Bad input (missing file, wrong shape or format, an unusable device) prints one
``mlvec: error: ...`` line and exits with code 2; nothing is half-written.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import mlvec
from mlvec.cli import bench, client, encode, index, info, rerank, serve
from mlvec.cli._common import CliError

__all__ = ["main", "build_parser", "CliError", "COMMANDS"]

COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "info": info.add,
    "encode": encode.add,
    "bench": bench.add,
    "index": index.add,
    "rerank": rerank.add,
    "serve": serve.add,
    "client": client.add,
}

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlvec",
        description="mlvec: late-interaction scoring, contrastive losses and quantized ANN search.",
    )
    parser.add_argument("--version", action="version", version=f"mlvec {mlvec.__version__}")
    parser.add_argument("--threads", type=int, default=None, help="threads for mlvec's kernels and torch")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in COMMANDS.values():
        add(sub)
    return parser


def _quiet_libraries() -> None:
    """With --quiet, the progress bars and load reports of transformers and the hub go too."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "quiet", False) or not sys.stderr.isatty():
        _quiet_libraries()
    try:
        if args.threads is not None:
            if args.threads < 1:
                raise CliError(f"--threads must be >= 1, got {args.threads}")
            try:
                mlvec.set_num_threads(args.threads)
            except ValueError as e:
                raise CliError(f"--threads: {e}") from None
            try:
                import torch

                torch.set_num_threads(args.threads)
            except ImportError:
                pass
        return int(args.func(args) or 0)
    except CliError as e:
        print(f"mlvec: error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, NotADirectoryError, ValueError, TypeError, OverflowError, MemoryError,
            mlvec.MlvecError, OSError) as e:  # fmt: skip
        print(f"mlvec: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlvec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
