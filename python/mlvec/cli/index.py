"""``mlvec index build`` / ``mlvec index search``: embeddings or texts in, ids, scores and text out."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import mlvec
from mlvec.cli._common import (
    CliError,
    add_encoder_args,
    check_output,
    is_text_file,
    load_encoder_from_args,
    progress,
    read_matrix,
    read_texts,
    write_atomically,
)
from mlvec.cli._docs import DocStore, docs_path

_ADD_CHUNK = 65536


def _read_ids(path: str, n: int):
    import numpy as np

    if not Path(path).is_file():
        raise CliError(f"--ids: no such file: {path}")
    try:
        ids = np.load(path, allow_pickle=False)
    except Exception as e:
        raise CliError(f"--ids: cannot read {path}: {e}") from None
    if ids.ndim != 1 or len(ids) != n or not np.issubdtype(ids.dtype, np.integer):
        raise CliError(f"--ids: expected {n} integer ids (shape [{n}]), got {ids.dtype} shape {ids.shape}")
    return ids.astype(np.int64)


def _build_inputs(args: argparse.Namespace):
    """``(vectors [n, dim], ids or None, DocStore or None)`` from embeddings or from texts."""
    import numpy as np

    if not is_text_file(args.input):
        x = read_matrix(args.input, "input")
        ids = _read_ids(args.ids, x.shape[0]) if args.ids else None
        return x, ids, None
    docs = read_texts(args.input, "input")
    if args.ids:
        raise CliError("--ids: texts carry their ids in the JSONL (\"id\" on each line)")
    enc = load_encoder_from_args(args)
    x = enc.encode(docs.texts, batch_size=args.batch_size, show_progress=False if args.quiet else None)
    ids = np.asarray(docs.ids, dtype=np.int64) if docs.ids is not None else np.arange(len(docs.texts), dtype=np.int64)
    payloads = {} if docs.payloads is None else {int(i): p for i, p in zip(ids, docs.payloads, strict=True) if p is not None}
    store = DocStore(args.model or "e5", dict(zip(ids.tolist(), docs.texts, strict=True)), payloads)
    return x, ids, store


def run_build(args: argparse.Namespace) -> int:
    import numpy as np

    from mlvec.index import index_factory

    out = Path(args.out)
    if not out.parent.exists():
        raise CliError(f"--out: directory does not exist: {out.parent}")
    if args.train_size < 1:
        raise CliError(f"--train-size must be >= 1, got {args.train_size}")
    if args.seed < 0:
        raise CliError(f"--seed must be >= 0, got {args.seed}")
    x, ids, store = _build_inputs(args)
    n, dim = x.shape
    try:
        index = index_factory(dim, args.factory, metric=args.metric, seed=args.seed)
    except (ValueError, mlvec.MlvecError) as e:
        raise CliError(f"--factory: {e}") from None
    if not index.is_trained:
        # Train on a random sample: quantizers need a representative subset, not all rows.
        rng = np.random.default_rng(args.seed)
        sample = np.sort(rng.choice(n, size=min(n, args.train_size), replace=False))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                index.train(np.ascontiguousarray(x[sample], dtype=np.float32))
            except ValueError as e:
                raise CliError(f"training on {len(sample)} of {n} vectors: {e}") from None
        for w in caught:
            print(f"mlvec: warning: {w.message}", file=sys.stderr)
    with progress(n, "add", args.quiet) as bar:
        for lo in range(0, n, _ADD_CHUNK):
            hi = min(lo + _ADD_CHUNK, n)
            index.add(np.ascontiguousarray(x[lo:hi], dtype=np.float32), None if ids is None else ids[lo:hi])
            bar.update(hi - lo)
    index.save(out)
    stale = docs_path(out)
    if store is not None:
        store.write(out, index.ids().tolist())
    elif stale.exists():
        stale.unlink()  # texts of an earlier index under this name would not match these vectors
    if not args.quiet:
        print(f"built {index.kind} ({index.metric}) over {len(index)} x {dim}: "
              f"{index.memory_usage():,} bytes -> {out}" + (f" (+ texts in {docs_path(out).name})" if store else ""),
              file=sys.stderr)
    return 0


def _search_kwargs(index, args: argparse.Namespace) -> dict:
    import inspect

    kw: dict[str, object] = {}
    if args.nprobe is not None:
        if args.nprobe < 1:
            raise CliError(f"--nprobe must be >= 1, got {args.nprobe}")
        kw["nprobe"] = args.nprobe
    if args.rescore is not None:
        kw["rescore"] = args.rescore
    if args.ef_search is not None:
        # Graph indexes take ef_search; refuse it clearly where the index has no such parameter.
        if "ef_search" not in inspect.signature(index.search).parameters:
            raise CliError(f"--ef-search: index {index.kind} has no ef_search parameter")
        kw["ef_search"] = args.ef_search
    return kw


def _queries(args: argparse.Namespace, index, store: DocStore | None):
    """``(query vectors, query texts or None)``."""
    if not is_text_file(args.queries):
        return read_matrix(args.queries, "queries"), None
    texts = read_texts(args.queries, "queries").texts
    model = args.model or (store.model if store else None) or "e5"
    enc = load_encoder_from_args(args, model)
    if enc.dim != index.dim:
        raise CliError(f"queries: the encoder '{model}' gives {enc.dim}-d vectors but the index holds {index.dim}-d "
                       "ones; pass the --model that built it")
    return enc.encode(texts, is_query=True, batch_size=args.batch_size, show_progress=False), texts


def _write_results(out: Path, scores, ids, store: DocStore | None) -> None:
    import numpy as np

    def write(tmp: Path) -> None:
        if out.suffix.lower() == ".npz":
            with open(tmp, "wb") as f:
                np.savez(f, scores=scores, ids=ids)
            return
        res: dict[str, object] = {
            "ids": ids.tolist(),
            "scores": [[None if not np.isfinite(s) else float(s) for s in row] for row in scores],
        }
        if store is not None:
            res["texts"] = [[store.texts.get(int(i)) for i in row] for row in ids]
            if store.payloads:
                res["payloads"] = [[store.payloads.get(int(i)) for i in row] for row in ids]
        tmp.write_text(json.dumps(res, ensure_ascii=False))

    write_atomically(out, write)


def _print_table(scores, ids, k: int, show: int) -> None:
    shown = min(len(ids), show)
    cols = min(k, 5)
    print(f"{'query':>5}  " + "  ".join(f"{'id@' + str(j + 1):>8} {'score':>8}" for j in range(cols)))
    for i in range(shown):
        print(f"{i:>5}  " + "  ".join(f"{ids[i, j]:>8} {scores[i, j]:>8.4f}" for j in range(cols)))
    if shown < len(ids):
        print(f"... ({len(ids) - shown} more queries; --out writes all)")


def _print_hits(scores, ids, texts: list[str] | None, store: DocStore | None, show: int, width: int = 100) -> None:
    """Each query (its text when given), then its hits: rank, id, score and the stored text."""
    import numpy as np

    for i in range(min(len(ids), show)):
        print(f"query {i}" + (f": {texts[i]}" if texts else ""))
        for rank, (doc, score) in enumerate(zip(ids[i], scores[i], strict=True), 1):
            if doc < 0 or not np.isfinite(score):
                break
            text = store.texts.get(int(doc), "") if store else ""
            text = text if len(text) <= width else text[: width - 1] + "…"
            print(f"  {rank:>3}. {doc:>8} {score:>8.4f}  {text}")
    if len(ids) > show:
        print(f"... ({len(ids) - show} more queries; --out writes all)")


def run_search(args: argparse.Namespace) -> int:
    import numpy as np

    from mlvec.index import load

    if not Path(args.index).is_file():
        raise CliError(f"index: no such file: {args.index}")
    if args.k < 1:
        raise CliError(f"-k must be >= 1, got {args.k}")
    out = check_output(args.out, "--out", (".npz", ".json")) if args.out else None
    try:
        index = load(args.index, mmap=args.mmap)
    except (ValueError, mlvec.MlvecError) as e:
        raise CliError(f"index: {args.index}: {e}") from None
    store = DocStore.read(args.index)
    queries, texts = _queries(args, index, store)
    if queries.shape[1] != index.dim:
        raise CliError(f"queries: dimension {queries.shape[1]} does not match the index's {index.dim} "
                       f"({args.queries}: shape {tuple(queries.shape)})")
    kw = _search_kwargs(index, args)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    t0 = time.perf_counter()
    scores, ids = index.search(q, args.k, **kw)
    secs = time.perf_counter() - t0
    if out is not None:
        _write_results(out, scores, ids, store)
    elif texts is None and store is None:
        _print_table(scores, ids, args.k, args.show)
    else:
        _print_hits(scores, ids, texts, store, args.show)
    if not args.quiet:
        sys.stdout.flush()  # the results first, then the summary, when both go to one terminal
        print(f"searched {len(q)} queries in {index.kind} ({len(index)} vectors) in {secs * 1e3:.1f} ms "
              f"({len(q) / max(secs, 1e-9):,.0f} queries/s)", file=sys.stderr)
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build a vector index from embeddings or texts, or search one",
                       description="Build an index from embeddings or texts (mlvec index build) or search one "
                                   "with query embeddings or texts (mlvec index search).")
    isub = p.add_subparsers(dest="index_command", metavar="SUBCOMMAND")
    isub.required = True
    b = isub.add_parser(
        "build", help="train and fill an index from embeddings (.npy/.safetensors/.npz) or texts (.txt/.jsonl)",
        description="Read INPUT, train the index on a random sample, add all vectors and save it. INPUT is "
                    "embeddings ([n, dim] .npy, or .safetensors / .npz with tensor 'embeddings' as 'mlvec "
                    "encode' writes) or texts: .txt (one per line, ids 0..n-1) or .jsonl (objects with "
                    "\"text\" and optional \"id\" and \"payload\"), embedded with --model as passages; the "
                    "texts and payloads are kept beside the index (OUT.docs.jsonl) for 'index search'. Factory "
                    "grammar: see mlvec.index (e.g. Flat, SQ8, IVF256,SQ8, IVF1024,PQ48x4,rescore, BIN,rescore).",
        epilog='examples: mlvec index build verses.jsonl --factory "IVF64,SQ8" --out verses.mlvec\n'
               '          mlvec index build docs.npy --factory "IVF256,SQ8" --metric ip --out docs.mlvec',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("input", help="embeddings (.npy, .safetensors, .npz) or texts (.txt, .jsonl)")
    b.add_argument("--factory", default="Flat", help="index description string (default Flat)")
    b.add_argument("--metric", choices=("ip", "cosine", "l2"), default="ip", help="similarity (default ip)")
    b.add_argument("--out", required=True, help="index file to write")
    b.add_argument("--ids", help="int64 ids as .npy, one per row (embeddings input; default 0..n-1)")
    b.add_argument("--train-size", type=int, default=100_000, help="vectors sampled for training (default 100000)")
    b.add_argument("--seed", type=int, default=0, help="sampling and clustering seed (>= 0)")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    add_encoder_args(b)
    b.set_defaults(func=run_build)
    s = isub.add_parser(
        "search", help="k nearest neighbours of query embeddings or texts in a saved index",
        description="Search INDEX with QUERIES: embeddings ([nq, dim] .npy, .safetensors, .npz) or texts "
                    "(.txt, .jsonl; embedded as queries with the model that built the index, or --model). "
                    "Prints each query's hits with their stored text (for indexes built from texts), or a "
                    "table of ids and scores; --out writes all results (.npz: 'scores' [nq, k] float32 and "
                    "'ids' [nq, k] int64; .json: the same as lists, plus 'texts' and 'payloads' when "
                    "stored). Missing results pad with id -1.",
        epilog='examples: mlvec index search verses.mlvec questions.txt -k 5\n'
               '          mlvec index search docs.mlvec queries.npy -k 10 --nprobe 16 --out hits.npz',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("index", help="index file written by 'mlvec index build'")
    s.add_argument("queries", help="query embeddings (.npy, .safetensors, .npz) or texts (.txt, .jsonl)")
    s.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    s.add_argument("--nprobe", type=int, default=None, help="inverted lists to visit (IVF indexes)")
    s.add_argument("--ef-search", type=int, default=None, help="candidate list size (HNSW indexes)")
    s.add_argument("--rescore", type=int, default=None,
                   help="re-rank k x RESCORE candidates with the stored float32 vectors (',rescore' indexes)")
    s.add_argument("--mmap", action="store_true", help="memory-map the index file instead of reading it")
    s.add_argument("--out", help="write results to .npz or .json instead of printing")
    s.add_argument("--show", type=int, default=10, help="queries shown when printing (default 10)")
    s.add_argument("-q", "--quiet", action="store_true", help="no timing summary")
    add_encoder_args(s, default_model=None)
    s.set_defaults(func=run_search)
