"""``mlvec client search|upsert|delete``: call a running ``mlvec serve`` from scripts (JSON out)."""

from __future__ import annotations

import argparse
import json
import os

from mlvec.cli._common import CliError, is_text_file, read_matrix, read_texts

_UPSERT_CHUNK = 256


def _client(args: argparse.Namespace):
    try:
        from mlvec.serve.client import Client
    except ImportError as e:
        raise CliError(f"the client needs the 'serve' extra: pip install 'mlvec[serve]' ({e})") from None
    return Client(args.url, api_key=args.api_key or os.environ.get("MLVEC_API_KEY"), timeout=args.timeout)


def _call(fn, *a, **kw):
    import httpx

    from mlvec.serve.client import ServiceError

    try:
        return fn(*a, **kw)
    except ServiceError as e:
        raise CliError(f"the service answered {e.status}: {e.message}") from None
    except httpx.HTTPError as e:
        raise CliError(f"cannot reach the service: {e}") from None


def _ids(text: str, what: str) -> list[int]:
    try:
        ids = [int(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise CliError(f"{what}: expected integers separated by commas, got {text!r}") from None
    if not ids:
        raise CliError(f"{what}: no ids given")
    return ids


def run_search(args: argparse.Namespace) -> int:
    from mlvec.serve.client import Client

    if (args.text is None) == (args.queries is None):
        raise CliError("give --text TEXT or --queries FILE (texts .txt/.jsonl, or vectors .npy/.npz/.safetensors)")
    params = {"nprobe": args.nprobe, "ef_search": args.ef_search, "rescore": args.rescore}
    filt = _ids(args.filter_ids, "--filter-ids") if args.filter_ids else None
    if args.text is not None:
        bodies = [Client.query(text=args.text, k=args.k, filter_ids=filt, **params)]
    elif is_text_file(args.queries):
        bodies = [Client.query(text=t, k=args.k, filter_ids=filt, **params) for t in read_texts(args.queries, "--queries").texts]
    else:
        bodies = [Client.query(vector=v, k=args.k, filter_ids=filt, **params) for v in read_matrix(args.queries, "--queries")]
    with _client(args) as c:
        results = []
        for lo in range(0, len(bodies), args.batch):
            results += _call(c.search_batch, args.collection, bodies[lo : lo + args.batch])
    print(json.dumps(results[0] if args.text is not None else {"results": results}, ensure_ascii=False))
    return 0


def run_upsert(args: argparse.Namespace) -> int:
    texts = vectors = payloads = None
    if is_text_file(args.input):
        docs = read_texts(args.input, "input")
        texts, payloads = docs.texts, docs.payloads
        ids = docs.ids if docs.ids is not None else list(range(len(texts)))
    else:
        vectors = read_matrix(args.input, "input")
        if not args.ids:
            raise CliError("--ids: vectors need their ids (comma-separated, one per row, or a .npy of int64)")
        if args.ids.endswith(".npy"):
            import numpy as np

            ids = np.load(args.ids, allow_pickle=False).astype(int).tolist()
        else:
            ids = _ids(args.ids, "--ids")
        if len(ids) != len(vectors):
            raise CliError(f"--ids: {len(ids)} ids for {len(vectors)} vectors")
    n = len(ids)
    last = None
    with _client(args) as c:
        for lo in range(0, n, args.batch):
            hi = min(lo + args.batch, n)
            last = _call(c.upsert, args.collection, ids[lo:hi],
                         vectors=None if vectors is None else vectors[lo:hi],
                         texts=None if texts is None else texts[lo:hi],
                         payloads=None if payloads is None else payloads[lo:hi])
    print(json.dumps({"upserted": n, "seq": last["seq"] if last else None}))
    return 0


def run_delete(args: argparse.Namespace) -> int:
    with _client(args) as c:
        print(json.dumps(_call(c.delete, args.collection, _ids(args.ids, "--ids"))))
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("client", help="search, upsert to or delete from a running 'mlvec serve'",
                       description="Call a running 'mlvec serve' and print its JSON answer. The API key comes "
                                   "from --api-key or $MLVEC_API_KEY.")
    csub = p.add_subparsers(dest="client_command", metavar="SUBCOMMAND")
    csub.required = True

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("collection", help="collection name")
        q.add_argument("--url", default="http://127.0.0.1:8000", help="service address (default http://127.0.0.1:8000)")
        q.add_argument("--api-key", default=None, help="API key (default $MLVEC_API_KEY)")
        q.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")

    s = csub.add_parser("search", help="k nearest points of a text or of query vectors",
                        epilog='example: mlvec client search verses --text "the creation of light" -k 5')
    common(s)
    s.add_argument("--text", help="one query text (the collection's encoder embeds it)")
    s.add_argument("--queries", help="query texts (.txt, .jsonl) or vectors (.npy, .npz, .safetensors)")
    s.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    s.add_argument("--nprobe", type=int, help="inverted lists visited (IVF)")
    s.add_argument("--ef-search", type=int, help="candidate list size (HNSW)")
    s.add_argument("--rescore", type=int, help="re-scoring factor (',rescore' indexes)")
    s.add_argument("--filter-ids", help="only these ids (comma-separated)")
    s.add_argument("--batch", type=int, default=256, help="queries per request (default 256)")
    s.set_defaults(func=run_search)
    u = csub.add_parser("upsert", help="write points from texts (.txt/.jsonl) or vectors (.npy/.npz/.safetensors)",
                        epilog="examples: mlvec client upsert verses verses.jsonl\n"
                               "          mlvec client upsert docs vectors.npy --ids ids.npy",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    common(u)
    u.add_argument("input", help=".jsonl (text, id, payload per line) / .txt, or vectors")
    u.add_argument("--ids", help="ids of vector rows: comma-separated, or a .npy of int64")
    u.add_argument("--batch", type=int, default=_UPSERT_CHUNK, help=f"points per request (default {_UPSERT_CHUNK})")
    u.set_defaults(func=run_upsert)
    d = csub.add_parser("delete", help="delete points by id", epilog="example: mlvec client delete verses --ids 4,8,15")
    common(d)
    d.add_argument("--ids", required=True, help="ids to delete (comma-separated)")
    d.set_defaults(func=run_delete)
