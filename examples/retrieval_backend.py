"""Retrieval backend: a quantized index over a larger corpus, saved, memory-mapped, served from threads.

Data (first that applies):

- ``--data PATH`` / ``../shared/data/bible_e5_passage.npz`` beside the repository: every Bible
  verse in English (WEB) and Spanish (RV1909) embedded with multilingual-e5-small, 62,154 × 384;
- otherwise the bundled 3,000 English–Spanish verse pairs, encoded with the embedded e5;
- ``--synthetic``: random clustered vectors (no encoder, for quick runs and tests).

Queries are English verses held out of the index (their Spanish translations stay in it). The
script builds the index (``--factory``, default ``IVF256,SQ8,rescore``), saves it, reloads it
memory-mapped, and serves batches of queries from several Python threads at once
(``concurrent.futures``; searches release the GIL and share the index under a read lock). It
prints recall@10 against exact search, how often the verse's translation is in the top 10,
queries/s, per-batch latency p50/p95/p99 and the index's bytes.

    python examples/retrieval_backend.py                          # shared e5 embeddings if present
    python examples/retrieval_backend.py --factory "IVF256,PQ96x4fs,rescore" --nprobe 64
    python examples/retrieval_backend.py --quick --synthetic      # seconds
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import mlvec
from mlvec.eval import exact_search
from mlvec.index import index_factory, load

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bible_e5_passage.npz"


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(8, n // 200), dim)).astype(np.float32)
    x = centers[rng.integers(0, len(centers), n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def load_vectors(args: argparse.Namespace) -> tuple[np.ndarray, int, str]:
    """``(vectors [2n, dim] float32, n, source)``: rows ``i`` (English) and ``n + i`` (Spanish) are one verse."""
    data = Path(args.data) if args.data else DEFAULT_DATA
    if args.synthetic:
        n = 2000 if args.quick else 30000
        x = _clustered(n, 128, args.seed)
        # A "translation" is a near copy: row i and row n + i are one item in two languages.
        rng = np.random.default_rng(args.seed + 1)
        y = x + (0.3 / np.sqrt(x.shape[1])) * rng.standard_normal(x.shape).astype(np.float32)
        y /= np.linalg.norm(y, axis=1, keepdims=True)
        return np.concatenate([x, y]).astype(np.float32), n, f"synthetic clustered, {2 * n} x 128"
    if data.is_file():
        z = np.load(data)
        en, es = z["en_web"], z["es_rv1909"]
        n = min(len(en), args.max_verses) if args.max_verses else len(en)
        x = np.concatenate([en[:n], es[:n]]).astype(np.float32)
        return x, n, f"{data.name}: {n:,} verses x 2 languages, e5 {x.shape[1]}-d"
    if args.data:
        raise SystemExit(f"--data: no such file: {data}")
    from mlvec.data import load_bible_en_es
    from mlvec.encoders import load_e5

    n = 300 if args.quick else 3000
    pairs = load_bible_en_es(n)
    enc = load_e5()
    show = False if args.quiet else None
    x = np.concatenate([enc.encode(pairs.en, show_progress=show), enc.encode(pairs.es, show_progress=show)])
    return x.astype(np.float32), n, f"bundled Bible pairs encoded with embedded e5: {n:,} x 2"


def percentiles_ms(lat: list[float]) -> dict[str, float]:
    a = np.asarray(lat) * 1e3
    return {f"p{p}": float(np.percentile(a, p)) for p in (50, 95, 99)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help=f"e5 embeddings .npz (default {DEFAULT_DATA} when present)")
    ap.add_argument("--synthetic", action="store_true", help="random clustered vectors instead of verses")
    ap.add_argument("--max-verses", type=int, default=None, help="use only the first N verses of --data")
    ap.add_argument("--factory", default="IVF256,SQ8,rescore", help="index description (see mlvec.index)")
    ap.add_argument("--nprobe", type=int, default=32, help="inverted lists visited per query")
    ap.add_argument("--queries", type=int, default=2000, help="held-out English verses used as queries")
    ap.add_argument("--batch", type=int, default=32, help="queries per request")
    ap.add_argument("--workers", type=int, default=4, help="Python threads sending requests")
    ap.add_argument("--threads", type=int, default=None, help="mlvec threads per search (default: all)")
    ap.add_argument("--out", help="where to save the index (default: a temporary directory)")
    ap.add_argument("--json", help="write the figures as JSON")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    if args.threads:
        mlvec.set_num_threads(args.threads)
    if args.quick:
        args.queries = min(args.queries, 200)

    x, n, source = load_vectors(args)
    dim = x.shape[1]
    rng = np.random.default_rng(args.seed)
    nq = min(args.queries, n // 2)
    q_rows = np.sort(rng.choice(n, nq, replace=False))
    keep = np.ones(len(x), dtype=bool)
    keep[q_rows] = False  # the English query verses are not in the index; their translations are
    doc_ids = np.flatnonzero(keep).astype(np.int64)
    docs, queries = x[keep], x[q_rows]
    print(f"data: {source}; index holds {len(docs):,} vectors, {nq:,} held-out queries")

    # Build: train on a sample, add all, save.
    t0 = time.perf_counter()
    index = index_factory(dim, args.factory, metric="ip", seed=args.seed)
    if not index.is_trained:
        index.train(docs[rng.choice(len(docs), min(len(docs), 50_000), replace=False)])
    index.add(docs, doc_ids)
    build_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.out) if args.out else Path(tmp) / "backend.mlvec"
        index.save(path)
        file_bytes = path.stat().st_size
        del index
        t0 = time.perf_counter()
        served = load(path, mmap=True)
        load_s = time.perf_counter() - t0

        # Serve: batches of queries from several threads at once.
        batches = [(lo, min(lo + args.batch, nq)) for lo in range(0, nq, args.batch)]
        results = np.empty((nq, 10), dtype=np.int64)
        latencies: list[float] = []

        def request(span: tuple[int, int]) -> float:
            lo, hi = span
            t = time.perf_counter()
            _, ids = served.search(queries[lo:hi], 10, nprobe=args.nprobe)
            results[lo:hi] = ids
            return time.perf_counter() - t

        request(batches[0])  # first touch of the mapped pages is not part of the steady state
        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(max_workers=args.workers) as pool:
            latencies = list(pool.map(request, batches))
        wall = time.perf_counter() - t0
        index_bytes = served.memory_usage()
        kind = served.kind

    # Reference: exact inner-product search over the same vectors.
    t0 = time.perf_counter()
    _, exact_rows = exact_search(queries, docs, 10)
    exact_s = time.perf_counter() - t0
    exact_ids = doc_ids[exact_rows]
    recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(results, exact_ids, strict=True)]))
    translation = n + q_rows  # row of the Spanish verse
    found_ann = float(np.mean((results == translation[:, None]).any(axis=1)))
    found_exact = float(np.mean((exact_ids == translation[:, None]).any(axis=1)))
    lat = percentiles_ms(latencies)
    report = {
        "source": source, "factory": kind, "n_index": int(len(docs)), "dim": int(dim), "n_queries": int(nq),
        "nprobe": args.nprobe, "batch": args.batch, "workers": args.workers,
        "build_s": build_s, "load_s": load_s, "index_bytes": int(index_bytes), "file_bytes": int(file_bytes),
        "float32_bytes": int(docs.nbytes), "queries_per_s": nq / wall, "latency_ms": lat,
        "recall@10_vs_exact": recall, "translation@10": found_ann, "translation@10_exact": found_exact,
        "exact_queries_per_s": nq / exact_s,
    }
    print(f"index: {kind}, built in {build_s:.1f} s, saved {file_bytes / 2**20:.1f} MiB, "
          f"reloaded memory-mapped in {load_s * 1e3:.1f} ms; {index_bytes / 2**20:.1f} MiB "
          f"(float32 vectors alone: {docs.nbytes / 2**20:.1f} MiB)")
    print(f"serving: {args.workers} threads x batches of {args.batch}, nprobe {args.nprobe}")
    print(f"  recall@10 vs exact     {recall:.4f}")
    print(f"  translation in top 10  {found_ann:.4f}  (exact search: {found_exact:.4f})")
    print(f"  queries/s              {report['queries_per_s']:,.0f}  (numpy exact: {report['exact_queries_per_s']:,.0f})")
    print(f"  batch latency ms       p50 {lat['p50']:.2f}  p95 {lat['p95']:.2f}  p99 {lat['p99']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    # Arrays for callers (not in the JSON): the served top-10 ids and the query rows of the data.
    return {**report, "ids": results, "query_rows": q_rows}


if __name__ == "__main__":
    main()
