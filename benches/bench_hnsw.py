"""HNSW side by side: mlvec (f32, SQ8) vs faiss IndexHNSWFlat / IndexHNSWSQ, hnswlib, usearch.

Same M / ef_construction for all. Prints, per data set and library: build time (per thread
count), peak build memory (RSS growth while building), bytes per vector (RSS kept after the build),
and recall@10 / queries per second over a sweep of ef_search, both batched (all queries in one
call) and one query per call. Ratios are to the best peer measured in the same run.

    python benches/bench_hnsw.py                       # bible (if present) + 200k x 128 mixture
    python benches/bench_hnsw.py --quick               # seconds: small synthetic set only
    python benches/bench_hnsw.py --big                 # synthetic 1M x 128
"""

from __future__ import annotations

import argparse
import gc
import os
import threading
import time
from pathlib import Path

import numpy as np

from mlvec import _native

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "bible_e5_passage.npz"
K = 10


# ------------------------------------------------------------------------------------- memory
def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples RSS in a thread while the block runs: peak growth over the start."""

    def __enter__(self):
        gc.collect()
        self.start = rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss())
        self.end = rss()
        self.grown = self.peak - self.start
        self.kept = self.end - self.start


# --------------------------------------------------------------------------------------- data
def bible(path: Path):
    z = np.load(path)
    en, es = z["en_web"].astype(np.float32), z["es_rv1909"].astype(np.float32)
    held = np.random.default_rng(0).choice(len(en), 1000, replace=False)
    keep = np.setdiff1d(np.arange(len(en)), held)
    base = np.ascontiguousarray(np.concatenate([es, en[keep]]))
    return "bible-e5 (ip)", base, np.ascontiguousarray(en[held]), "ip"


def mixture(n: int, d: int = 128, clusters: int = 2000, intrinsic: int = 16, nq: int = 1000, seed: int = 0):
    """Gaussian mixture with low intrinsic dimension: each point is a centre plus noise in a
    random `intrinsic`-dimensional subspace, plus a little isotropic noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)).astype(np.float32)
    basis = rng.normal(size=(intrinsic, d)).astype(np.float32) / np.sqrt(intrinsic)

    def draw(m, r):
        x = centres[r.integers(0, clusters, m)]
        x += r.normal(size=(m, intrinsic)).astype(np.float32) @ basis * 0.7
        x += r.normal(size=(m, d)).astype(np.float32) * 0.05
        return x

    base = np.concatenate([draw(min(50_000, n - i), rng) for i in range(0, n, 50_000)])
    return f"mixture {n // 1000}k x {d} (l2)", base, draw(nq, np.random.default_rng(seed + 1)), "l2"


def ground_truth(base, queries, metric, k=K):
    out = []
    for lo in range(0, len(queries), 256):
        q = queries[lo : lo + 256]
        s = q @ base.T
        if metric == "l2":
            s = 2 * s - (base * base).sum(1)[None]
        out.append(np.argpartition(-s, k, axis=1)[:, :k])
    return np.concatenate(out)


def recall(got, gt):
    return float(np.mean([len(set(g) & set(t)) / len(t) for g, t in zip(got, gt, strict=True)]))


# -------------------------------------------------------------------------------------- peers
class Lib:
    name = ""

    def build(self, x, threads): ...
    def search(self, q, ef, threads): ...

    def memory(self) -> int:
        """Bytes of the index: its serialized size for peers (RSS growth is unreliable once an
        earlier index's freed memory is reused), `memory_usage()` for mlvec."""
        raise NotImplementedError


class Mlvec(Lib):
    def __init__(self, dim, metric, m, efc, storage="f32"):
        self.args = (dim, metric, m, efc, storage)
        self.name = f"mlvec-{storage}"

    def build(self, x, threads):
        _native.set_num_threads(threads)
        dim, metric, m, efc, storage = self.args
        self.index = _native.HnswIndex(dim, metric=metric, M=m, ef_construction=efc, storage=storage)
        self.index.add(x)

    def search(self, q, ef, threads):
        # Changing the count rebuilds the pool: only do it when it changes.
        if _native.get_num_threads() != threads:
            _native.set_num_threads(threads)
        return self.index.search(q, K, ef_search=ef)[1]

    def memory(self):
        return self.index.memory_usage()


class Faiss(Lib):
    def __init__(self, dim, metric, m, efc, sq=False):
        import faiss

        self.faiss, self.args, self.sq = faiss, (dim, metric, m, efc), sq
        self.name = "faiss-hnsw-sq8" if sq else "faiss-hnsw-flat"

    def build(self, x, threads):
        f = self.faiss
        f.omp_set_num_threads(threads)
        dim, metric, m, efc = self.args
        mt = f.METRIC_INNER_PRODUCT if metric == "ip" else f.METRIC_L2
        if self.sq:
            self.index = f.IndexHNSWSQ(dim, f.ScalarQuantizer.QT_8bit, m, mt)
            self.index.train(x)
        else:
            self.index = f.IndexHNSWFlat(dim, m, mt)
        self.index.hnsw.efConstruction = efc
        self.index.add(x)

    def search(self, q, ef, threads):
        self.faiss.omp_set_num_threads(threads)
        self.index.hnsw.efSearch = ef
        return self.index.search(q, K)[1]

    def memory(self):
        return len(self.faiss.serialize_index(self.index))


class Hnswlib(Lib):
    name = "hnswlib"

    def __init__(self, dim, metric, m, efc):
        import hnswlib

        self.hnswlib, self.args = hnswlib, (dim, metric, m, efc)

    def build(self, x, threads):
        dim, metric, m, efc = self.args
        self.index = self.hnswlib.Index(space=metric, dim=dim)
        self.index.init_index(max_elements=len(x), ef_construction=efc, M=m)
        self.index.add_items(x, np.arange(len(x)), num_threads=threads)

    def search(self, q, ef, threads):
        self.index.set_ef(ef)
        return self.index.knn_query(q, k=K, num_threads=threads)[0]

    def memory(self):
        return self.index.index_file_size()


class Usearch(Lib):
    name = "usearch"

    def __init__(self, dim, metric, m, efc):
        from usearch.index import Index

        self.Index, self.args = Index, (dim, metric, m, efc)

    def build(self, x, threads):
        dim, metric, m, efc = self.args
        self.index = self.Index(
            ndim=dim,
            metric="ip" if metric == "ip" else "l2sq",
            dtype="f32",
            connectivity=m,
            expansion_add=efc,
        )
        self.index.add(np.arange(len(x)), x, threads=threads)

    def search(self, q, ef, threads):
        self.index.expansion_search = ef
        return self.index.search(q, K, threads=threads).keys

    def memory(self):
        return len(self.index.save())


# ---------------------------------------------------------------------------------------- run
def run(label, base, queries, metric, args):
    n, dim = base.shape
    print(f"\n=== {label}: {n} vectors, {len(queries)} queries, M={args.M}, ef_construction={args.efc}")
    gt = ground_truth(base, queries, metric)
    libs = [
        Mlvec(dim, metric, args.M, args.efc, "f32"),
        Mlvec(dim, metric, args.M, args.efc, "sq8"),
        Faiss(dim, metric, args.M, args.efc),
        Faiss(dim, metric, args.M, args.efc, sq=True),
        Hnswlib(dim, metric, args.M, args.efc),
        Usearch(dim, metric, args.M, args.efc),
    ]
    libs = [lib for lib in libs if not args.libs or lib.name in args.libs]
    threads = [int(t) for t in args.threads.split(",")]
    top = max(threads)
    rows, builds = [], {}
    for lib in libs:
        times = {}
        for t in threads:
            lib.index = None
            gc.collect()
            with PeakRss() as mem:
                t0 = time.perf_counter()
                lib.build(base, t)
                times[t] = time.perf_counter() - t0
        # The index built last (most threads) is the one searched; its RSS growth is its size.
        bpv = lib.memory() / n
        builds[lib.name] = (times, mem.grown, bpv, bpv * n)
        print(
            f"{lib.name:16s} build "
            + "  ".join(f"{t}T {s:7.2f}s" for t, s in times.items())
            + f"  peak build RSS +{mem.grown / 2**20:7.1f} MiB  kept +{mem.kept / 2**20:7.1f} MiB"
            + f"  index bytes/vector {bpv:7.1f}",
            flush=True,
        )
        for ef in args.efs:
            lib.search(queries[:10], ef, top)  # warm-up
            qps_b, qps_1 = [], []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                got = lib.search(queries, ef, top)
                qps_b.append(len(queries) / (time.perf_counter() - t0))
                few = queries[: args.single]
                t0 = time.perf_counter()
                for i in range(len(few)):
                    lib.search(few[i : i + 1], ef, 1)
                qps_1.append(len(few) / (time.perf_counter() - t0))
            rows.append(
                (lib.name, ef, recall(got, gt), float(np.median(qps_b)), float(np.median(qps_1)), bpv)
            )
            r, qb, q1 = rows[-1][2:5]
            print(
                f"  {lib.name:16s} ef={ef:4d} recall@10 {r:.4f}  batch {qb:8.0f} q/s  1-query {q1:7.0f} q/s",
                flush=True,
            )
        lib.index = None
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
    print("  (index size: memory_usage() for mlvec, serialized size for peers)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=str(DEFAULT_DATA), help="bible_e5_passage.npz")
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
    print("cpu features:", " ".join(_native.cpu_features()))
    if args.quick:
        args.efc, args.efs, args.single, args.repeat, args.threads = 40, [16, 64], 20, 1, "1"
        label, base, q, metric = mixture(3000, d=32, clusters=50, nq=50)
        return [run(label, base, q, metric, args)]
    out = []
    if not args.no_real:
        path = Path(args.data)
        if path.exists():
            out.append(run(*bible(path), args))
        else:
            print(f"SKIPPED real-data run: {path} not found")
    if not args.no_synthetic:
        out.append(run(*mixture(1_000_000 if args.big else args.n), args))
    return out


if __name__ == "__main__":
    main()
