"""``mlvec bench``: retrieval quality and speed per method on the bundled or your own data."""

from __future__ import annotations

import argparse
from pathlib import Path

import mlvec
from mlvec.cli._common import CliError, add_encoder_args, load_encoder_from_args, read_lines


def _read_qrels(path: str, n_queries: int, n_docs: int) -> list[dict[int, float]]:
    qrels: list[dict[int, float]] = [{} for _ in range(n_queries)]
    for lineno, line in enumerate(read_lines(path, "qrels"), 1):
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


def run(args: argparse.Namespace) -> int:
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
        corpus = read_lines(args.corpus, "corpus")
        queries = read_lines(args.queries, "queries")
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
    enc = load_encoder_from_args(args)
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


def add(sub: argparse._SubParsersAction) -> None:
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
    add_encoder_args(p)
    p.set_defaults(func=run)


