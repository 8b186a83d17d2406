"""HNSW side by side: mlvec (f32, SQ8) vs faiss IndexHNSWFlat / IndexHNSWSQ, hnswlib, usearch.

Same M / ef_construction for all, every library through ``harness.peers``. Prints, per data set
and library: build time (per thread count), peak build memory (RSS growth while building) and the
RSS kept after it, bytes per vector of the index (``memory_usage`` for mlvec and usearch, the
serialized size for faiss and hnswlib), and recall@10 / queries per second over a sweep of
ef_search, both batched (all queries in one call) and one query per call. Ratios are to the best
peer measured in the same run.

    python benches/bench_hnsw.py                       # bible (if present) + 200k x 128 mixture
    python benches/bench_hnsw.py --quick               # seconds: small synthetic set only
    python benches/bench_hnsw.py --big                 # synthetic 1M x 128
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import mlvec

from harness.data import BIBLE_E5, Dataset, bible_e5, synthetic
from harness.memory import PeakRss
from harness.peers import FaissPeer, HnswlibPeer, MlvecPeer, Peer, UsearchPeer, measure
from harness.truth import exact_knn

K = 10


def mixture(n: int, d: int = 128, clusters: int = 2000, queries: int = 1000) -> Dataset:
    """The benchmarks' clustered mixture, l2, under this script's label."""
    return synthetic(n, d, clusters, queries=queries, seed=0, name=f"mixture {n // 1000}k x {d} (l2)")


def graph_peers(metric: str, m: int, efc: int) -> list[Peer]:
    """Every library's graph with the same M and ef_construction, named as the tables print them."""
    return [
        MlvecPeer(f"HNSW{m}_{efc}", metric, label="mlvec-f32"),
        MlvecPeer(f"HNSW{m}_{efc},SQ8", metric, label="mlvec-sq8"),
        FaissPeer(f"HNSW{m}", metric, ef_construction=efc, label="faiss-hnsw-flat"),
        FaissPeer(f"HNSW{m},SQ8", metric, ef_construction=efc, label="faiss-hnsw-sq8"),
        HnswlibPeer(metric, m, efc, label="hnswlib"),
        UsearchPeer(metric, m, efc, label="usearch"),
    ]


# ---------------------------------------------------------------------------------------- run
def run(data: Dataset, args):
    base, queries, metric = data.base, data.queries, data.metric
    n = len(base)
    print(f"\n=== {data.name}: {n} vectors, {len(queries)} queries, M={args.M}, ef_construction={args.efc}")
    _, gt = exact_knn(base, queries, K, metric)
    libs = [p for p in graph_peers(metric, args.M, args.efc) if not args.libs or p.label in args.libs]
    threads = [int(t) for t in args.threads.split(",")]
    top = max(threads)
    rows, builds = [], {}
    for lib in libs:
        times = {}
        for t in threads:
            lib.release()
            with PeakRss() as mem:
                t0 = time.perf_counter()
                lib.build(base, threads=t)
                times[t] = time.perf_counter() - t0
        # The index built last (most threads) is the one searched.
        bpv = lib.bytes() / n
        builds[lib.label] = (times, mem.grown, bpv, bpv * n)
        print(
            f"{lib.label:16s} build "
            + "  ".join(f"{t}T {s:7.2f}s" for t, s in times.items())
            + f"  peak build RSS +{mem.grown / 2**20:7.1f} MiB  kept +{mem.kept / 2**20:7.1f} MiB"
            + f"  index bytes/vector {bpv:7.1f}",
            flush=True,
        )
        for ef in args.efs:
            lib.tune(ef)
            m = measure(
                lib, queries, gt, K, batch_threads=[top], single_threads=[1], single_queries=args.single,
                repeat=args.repeat,
            )  # fmt: skip
            rows.append((lib.label, ef, m["recall"], m[f"batch{top}"], m["single1"], bpv))
            r, qb, q1 = rows[-1][2:5]
            print(
                f"  {lib.label:16s} ef={ef:4d} recall@10 {r:.4f}  batch {qb:8.0f} q/s  1-query {q1:7.0f} q/s",
                flush=True,
            )
        lib.release()
        gc.collect()
    print(
        f"\n{'library':16s} {'ef':>5s} {'recall@10':>9s} {'batch q/s':>11s} {'1-query q/s':>11s} {'B/vec':>7s}"
    )
    for name, ef, r, qb, q1, bpv in rows:
        print(f"{name:16s} {ef:5d} {r:9.4f} {qb:11.0f} {q1:11.0f} {bpv:7.1f}")
    summarize(rows, builds, args.target)
    return rows, builds


def best_at(rows, name, target, col):
    ok = [r[col] for r in rows if r[0] == name and r[2] >= target]
    return max(ok) if ok else None


def summarize(rows, builds, target):
    names = sorted({r[0] for r in rows})
    ours = [n for n in names if n.startswith("mlvec")]
    peers = [n for n in names if not n.startswith("mlvec")]
    print(f"\nAt recall@10 >= {target}: best queries/s (batch, one query per call), bytes/vector")
    for n in names:
        b, s = best_at(rows, n, target, 3), best_at(rows, n, target, 4)
        fmt = lambda v: "   n/a" if v is None else f"{v:8.0f}"  # noqa: E731
        print(f"  {n:16s} {fmt(b)} {fmt(s)}  {builds[n][2]:7.1f} B/vec")
    for col, what in [(3, "batch"), (4, "one query per call")]:
        for o in ours:
            mine = best_at(rows, o, target, col)
            peer = [(best_at(rows, p, target, col), p) for p in peers]
            peer = [x for x in peer if x[0] is not None]
            if mine is None or not peer:
                continue
            pv, pn = max(peer)
            print(f"  {what:18s} {o} / best peer ({pn}): {mine / pv:5.2f}x")
            same_mem = [x for x in peer if builds[x[1]][2] >= builds[o][2]]
            if same_mem:
                pv, pn = max(same_mem)
                print(f"  {what:18s} {o} / best peer using as much memory or more ({pn}): {mine / pv:5.2f}x")
    for t in next(iter(builds.values()))[0]:
        if "faiss-hnsw-flat" in builds:
            f = builds["faiss-hnsw-flat"][0][t]
            for o in ours:
                print(
                    f"  build {t} thread(s): {o} {builds[o][0][t]:.2f}s, faiss-hnsw-flat {f:.2f}s "
                    f"-> faiss/mlvec {f / builds[o][0][t]:.2f}x"
                )
    for o in ours:
        print(f"  {o}: peak build RSS growth / final index size = {builds[o][1] / builds[o][3]:.2f}")
    print("  (index size: memory_usage() for mlvec and usearch, serialized size for faiss and hnswlib)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=str(BIBLE_E5), help="bible_e5_passage.npz")
    ap.add_argument("--quick", action="store_true", help="tiny synthetic run (seconds), for smoke tests")
    ap.add_argument("--big", action="store_true", help="synthetic set of 1M vectors")
    ap.add_argument("--n", type=int, default=200_000, help="synthetic set size")
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--efc", type=int, default=200)
    ap.add_argument(
        "--efs", type=lambda s: [int(v) for v in s.split(",")], default=[16, 32, 48, 64, 96, 128, 256]
    )
    ap.add_argument("--threads", default="1,2", help="build thread counts; searches use the largest")
    ap.add_argument("--single", type=int, default=300, help="queries timed one per call")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--libs", type=lambda s: s.split(","), default=None, help="subset of library names")
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--no-synthetic", action="store_true")
    args = ap.parse_args(argv)
    print("cpu features:", " ".join(mlvec.cpu_features()))
    if args.quick:
        args.efc, args.efs, args.single, args.repeat, args.threads = 40, [16, 64], 20, 1, "1"
        return [run(mixture(3000, d=32, clusters=50, queries=50), args)]
    out = []
    if not args.no_real:
        path = Path(args.data)
        if path.exists():
            out.append(run(bible_e5(path, name="bible-e5 (ip)"), args))
        else:
            print(f"SKIPPED real-data run: {path} not found")
    if not args.no_synthetic:
        out.append(run(mixture(1_000_000 if args.big else args.n), args))
    return out


if __name__ == "__main__":
    main()
