"""Retrieval benchmark runner: encode, search with each method, report quality and speed."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlvec.eval.metrics import Relevance, evaluate

METHODS = ("exact", "maxsim-rerank")

__all__ = [
    "METHODS",
    "MethodResult",
    "BenchmarkResult",
    "exact_search",
    "maxsim_rerank",
    "run_benchmark",
    "format_table",
    "save_json",
    "plot",
]


def exact_search(queries: np.ndarray, docs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product search: ``(scores float32 [nq, k], ids int64 [nq, k])``, best first.

    ``queries [nq, dim]`` and ``docs [nd, dim]`` are float32; ``k`` is clipped to ``nd``. Runs on
    mlvec's ``Flat`` index (Rust, multi-threaded, GIL released): on 1,000 x 10,000 x 384 it took
    0.4-0.9x the time of numpy's sgemm + partial sort in our runs, building the index included
    (``benches/bench_retrieval_search.py``); ids agree except between scores equal to float32
    rounding.

    Example:
        >>> scores, ids = exact_search(q_emb, d_emb, 10)
    """
    from mlvec.index import index_factory

    queries = np.ascontiguousarray(queries, dtype=np.float32)
    docs = np.ascontiguousarray(docs, dtype=np.float32)
    if queries.ndim != 2 or docs.ndim != 2 or queries.shape[1] != docs.shape[1]:
        raise ValueError(f"queries [nq, dim] and docs [nd, dim] must agree on dim, got {queries.shape} and {docs.shape}")
    k = min(int(k), docs.shape[0])
    if k < 1:
        raise ValueError(f"k must be >= 1 and docs non-empty, got k={k} with {docs.shape[0]} docs")
    index = index_factory(docs.shape[1], "Flat", metric="ip")
    index.add(docs)
    return index.search(queries, k)


def maxsim_rerank(q_tokens: Any, d_tokens: Any, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rerank each query's candidate docs by ColBERT MaxSim: ``(scores [nq, c], ids [nq, c])``, best first.

    ``q_tokens`` / ``d_tokens`` are :class:`mlvec.encoders.TokenEmbeddings` (packed float32 token
    sets); ``candidates int64 [nq, c]`` are doc ids (``-1`` pads; those stay last). Scoring runs in
    :func:`mlvec.scoring.maxsim`, one query against its candidates at a time.
    """
    from mlvec.scoring import maxsim

    candidates = np.asarray(candidates, dtype=np.int64)
    if candidates.ndim != 2 or candidates.shape[0] != len(q_tokens):
        raise ValueError(f"candidates must be [n_queries={len(q_tokens)}, c], got shape {candidates.shape}")
    scores = np.full(candidates.shape, -np.inf, dtype=np.float32)
    for i, cand in enumerate(candidates):
        valid = cand >= 0
        if not valid.any():
            continue
        q = q_tokens.select([i])
        d = d_tokens.select(cand[valid])
        s = maxsim(q.data, d.data, query_offsets=q.offsets, document_offsets=d.offsets)
        scores[i, valid] = s[0]
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(candidates, order, axis=1)


@dataclass
class MethodResult:
    """Quality and speed of one retrieval method."""

    method: str
    metrics: dict[str, float]
    queries_per_s: float
    search_s: float
    index_bytes: int
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class BenchmarkResult:
    """Everything :func:`run_benchmark` measured."""

    n_queries: int
    n_docs: int
    encode_s: dict[str, float]
    methods: list[MethodResult]
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _timed(fn, repeats: int):
    times, out = [], None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, float(np.median(times))


def run_benchmark(
    encoder: Any,
    corpus: Sequence[str],
    queries: Sequence[str],
    qrels: Relevance,
    *,
    methods: Sequence[str] = METHODS,
    ks: Sequence[int] = (1, 10),
    rerank_depth: int = 32,
    batch_size: int = 32,
    repeats: int = 3,
    show_progress: bool | None = None,
    info: dict[str, Any] | None = None,
    factory: str | None = None,
    nprobe: int | None = None,
) -> BenchmarkResult:
    """Encode ``corpus`` and ``queries`` with ``encoder``, search with each method, evaluate.

    Methods: ``"exact"`` (exact inner product over pooled embeddings) and ``"maxsim-rerank"``
    (the exact top ``rerank_depth`` reranked by MaxSim over token embeddings). ``qrels`` as in
    :func:`mlvec.eval.evaluate` (e.g. ``[[i] for i in range(n)]`` for aligned pairs). Search time
    is the median of ``repeats`` runs over all queries, encoding excluded (reported apart);
    ``index_bytes`` counts the stored document vectors.

    With ``factory`` (an :func:`mlvec.index.index_factory` description such as
    ``"IVF256,SQ8,rescore"``) one more row, named ``"index:<factory>"``, searches that index (trained
    on and filled with the document embeddings, inner product; ``nprobe`` passed to its search);
    its ``index_bytes`` is the index's own :meth:`~mlvec.index.Index.memory_usage`.

    Example:
        >>> res = run_benchmark(load_e5(), spanish, english, [[i] for i in range(len(english))])
        >>> print(format_table(res))
    """
    methods = list(methods)
    if factory is not None and isinstance(getattr(encoder, "dim", None), int):
        from mlvec.index import index_factory

        # Fail on a bad description (or one that does not fit the dimension) before encoding.
        index_factory(encoder.dim, factory)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {methods}")
    corpus, queries = list(corpus), list(queries)
    if not corpus or not queries:
        raise ValueError(f"need at least one document and one query, got {len(corpus)} and {len(queries)}")
    depth = max(ks)
    need_tokens = "maxsim-rerank" in methods
    encode_s: dict[str, float] = {}
    t0 = time.perf_counter()
    if need_tokens:
        d_emb, d_tok = encoder.encode_with_tokens(corpus, batch_size=batch_size, show_progress=show_progress)
    else:
        d_emb, d_tok = encoder.encode(corpus, batch_size=batch_size, show_progress=show_progress), None
    encode_s["corpus"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if need_tokens:
        q_emb, q_tok = encoder.encode_with_tokens(queries, is_query=True, batch_size=batch_size,
                                                  show_progress=show_progress)
    else:
        q_emb, q_tok = encoder.encode(queries, is_query=True, batch_size=batch_size, show_progress=show_progress), None
    encode_s["queries"] = time.perf_counter() - t0

    results = []
    nq = len(queries)
    if "exact" in methods:
        (_, ids), secs = _timed(lambda: exact_search(q_emb, d_emb, depth), repeats)
        results.append(MethodResult("exact", evaluate(ids, qrels, ks, ranked=True), nq / secs, secs,
                                    int(d_emb.nbytes), {"dim": int(d_emb.shape[1])}))
    if need_tokens:
        cand_depth = max(rerank_depth, depth)

        def search():
            _, cand = exact_search(q_emb, d_emb, cand_depth)
            return maxsim_rerank(q_tok, d_tok, cand)

        (_, ids), secs = _timed(search, repeats)
        results.append(MethodResult(
            "maxsim-rerank", evaluate(ids[:, :depth], qrels, ks, ranked=True), nq / secs, secs,
            int(d_emb.nbytes + d_tok.nbytes),
            {"rerank_depth": int(cand_depth), "token_dim": int(d_tok.dim),
             "doc_tokens_mean": float(d_tok.lengths().mean())},
        ))
    if factory is not None:
        results.append(_index_method(factory, q_emb, d_emb, qrels, ks, depth, nprobe, repeats))
    return BenchmarkResult(nq, len(corpus), encode_s, results, dict(info or {}))


def _index_method(factory: str, q_emb: np.ndarray, d_emb: np.ndarray, qrels: Relevance, ks: Sequence[int],
                  depth: int, nprobe: int | None, repeats: int) -> MethodResult:
    from mlvec.index import index_factory

    t0 = time.perf_counter()
    index = index_factory(d_emb.shape[1], factory, metric="ip")
    d32 = np.ascontiguousarray(d_emb, dtype=np.float32)
    if not index.is_trained:
        index.train(d32)
    index.add(d32)
    build_s = time.perf_counter() - t0
    q32 = np.ascontiguousarray(q_emb, dtype=np.float32)
    (_, ids), secs = _timed(lambda: index.search(q32, depth, nprobe=nprobe), repeats)
    return MethodResult(f"index:{index.kind}", evaluate(ids, qrels, ks, ranked=True), len(q32) / secs, secs,
                        int(index.memory_usage()),
                        {"factory": index.kind, "nprobe": nprobe, "build_s": build_s, "nlist": index.nlist})


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def format_table(result: BenchmarkResult) -> str:
    """A plain-text table: one row per method with its metrics, queries/s and index size."""
    metric_names = list(result.methods[0].metrics) if result.methods else []
    shown = [m for m in metric_names if m.startswith(("recall", "mrr"))] or metric_names
    header = ["method", *shown, "queries/s", "index"]
    rows = [
        [r.method, *(f"{r.metrics[m]:.4f}" for m in shown), f"{r.queries_per_s:,.0f}", _fmt_bytes(r.index_bytes)]
        for r in result.methods
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = [
        "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True))),
        "  ".join("-" * w for w in widths),
    ]
    for row in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    enc = ", ".join(f"{k} {v:.1f} s" for k, v in result.encode_s.items())
    lines.append(f"({result.n_queries} queries, {result.n_docs} docs; encoding: {enc}; search excludes encoding)")
    return "\n".join(lines)


def save_json(result: BenchmarkResult, path: str | Path) -> None:
    """Write the result as JSON (written to a temporary file and renamed into place)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result.to_dict(), indent=2))
    tmp.replace(path)


def plot(result: BenchmarkResult, path: str | Path, *, metric: str | None = None) -> None:
    """Save a PNG of ``metric`` (default: the largest recall@k) against queries/s, one point per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if metric is None:
        recalls = [m for m in result.methods[0].metrics if m.startswith("recall@")]
        metric = max(recalls, key=lambda m: int(m.split("@")[1]))
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for r in result.methods:
        ax.scatter(r.queries_per_s, r.metrics[metric], s=40)
        ax.annotate(r.method, (r.queries_per_s, r.metrics[metric]), textcoords="offset points", xytext=(5, 5))
    ax.set_xscale("log")
    ax.set_xlabel("queries/s (search, log scale)")
    ax.set_ylabel(metric)
    title = result.info.get("title") or f"{result.n_queries} queries, {result.n_docs} docs"
    ax.set_title(str(title))
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
