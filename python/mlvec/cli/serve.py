"""``mlvec serve``: the HTTP retrieval service over a data folder of collections."""

from __future__ import annotations

import argparse
import os

from mlvec.cli._common import CliError


def run(args: argparse.Namespace) -> int:
    try:
        from mlvec.serve import ApiKeys, EncoderSpec, Limits, ServeConfig
        from mlvec.serve import run as serve
    except ImportError as e:
        raise CliError(f"the service needs the 'serve' extra: pip install 'mlvec[serve]' ({e})") from None
    if not 1 <= args.port <= 65535:
        raise CliError(f"--port must be in [1, 65535], got {args.port}")
    try:
        keys = ApiKeys.from_sources(args.api_keys)
        limits = Limits(max_body_bytes=args.max_body_mb * 2**20, max_batch=args.max_batch, max_k=args.max_k,
                        max_text_chars=args.max_text_chars)
        encoders = tuple(EncoderSpec.parse(e) for e in args.encoder)
        config = ServeConfig(data_dir=os.path.abspath(args.data), encoders=encoders, keys=keys, limits=limits,
                             search_threads=args.search_threads, micro_batch=not args.no_micro_batch,
                             read_only=args.read_only, snapshot_points=args.snapshot_points,
                             snapshot_seconds=args.snapshot_seconds)
        serve(config, host=args.host, port=args.port, workers=args.workers, server=args.server,
              log_level=args.log_level)
    except ValueError as e:
        raise CliError(str(e)) from None
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="HTTP retrieval service: collections, durable writes, search by vector or text",
        description="Serve the collections under --data over HTTP (/v1/..., OpenAPI at /docs): create, "
                    "upsert, delete and search (by vector, or by text with an --encoder). Writes are "
                    "fsynced to a write-ahead log before they are acknowledged; snapshots are taken in "
                    "the background. Without API keys the service listens on loopback only. "
                    "See docs/serve.md.",
        epilog="examples: mlvec serve --data ./mlvec-data --encoder e5\n"
               "          MLVEC_SERVE_WRITE_KEYS=... mlvec serve --data ./d --host 0.0.0.0 --port 8080\n"
               "          mlvec serve --data ./d --read-only --workers 4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", required=True, help="folder of the collections (created if missing)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--encoder", action="append", default=[], metavar="[NAME=]e5|PATH",
                   help="an encoder for text upserts and queries: 'e5' (embedded multilingual-e5-small) or a "
                        "local model folder; repeat for several (collections name the one they use)")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes (more than 1 needs --read-only; they share the mapped index files)")
    p.add_argument("--read-only", action="store_true", help="serve the state found at start; refuse writes")
    p.add_argument("--server", choices=("uvicorn", "granian"), default="uvicorn", help="ASGI server (default uvicorn)")
    p.add_argument("--api-keys", metavar="FILE",
                   help="key file: lines 'read KEY' or 'write KEY' (also $MLVEC_SERVE_READ_KEYS / "
                        "$MLVEC_SERVE_WRITE_KEYS, comma-separated)")
    p.add_argument("--search-threads", type=int, default=2, help="threads running native searches (default 2)")
    p.add_argument("--no-micro-batch", action="store_true",
                   help="run each search alone instead of combining concurrent ones into one native call")
    p.add_argument("--max-body-mb", type=int, default=32, help="request body limit in MiB (default 32)")
    p.add_argument("--max-batch", type=int, default=1024, help="points per upsert / queries per batch (default 1024)")
    p.add_argument("--max-k", type=int, default=1000, help="largest k (default 1000)")
    p.add_argument("--max-text-chars", type=int, default=8192, help="longest text (default 8192 characters)")
    p.add_argument("--snapshot-points", type=int, default=100_000,
                   help="snapshot after this many points written (default 100000)")
    p.add_argument("--snapshot-seconds", type=float, default=300.0,
                   help="snapshot when the oldest unsnapshotted write is this old (default 300)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    p.set_defaults(func=run)
