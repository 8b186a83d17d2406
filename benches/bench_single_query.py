"""One query per call from 1 and 2 Python threads: mlvec.index against faiss, hnswlib, usearch.

The serving pattern of a request handler: each call searches one query, from one or two Python
threads at once. Each library's indexes are swept for the cheapest search parameter reaching
recall@10 >= ``--target`` (ground truth by exact search), then every chosen setting is timed
round-robin, ``--repeat`` times, so the machine's drift (this one is shared and swings by tens
of per cent within minutes) hits all of them alike; the report gives medians and each library's
best over the best peer.

    python benches/bench_single_query.py                          # synthetic 300k x 128
    python benches/bench_single_query.py --synthetic-n 20000 --repeat 2   # quick
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from bench_index import K, exact_truth, one_query_per_call, recall, synthetic

import mlvec
import mlvec.index as mi


def rate(search, q: np.ndarray, threads: int, n: int) -> float:
    """Queries/s of ``n`` one-query calls split over ``threads`` Python threads."""
    qs = q[np.arange(n) % len(q)]
    t0 = time.perf_counter()
    one_query_per_call(search, qs, threads)
    return n / (time.perf_counter() - t0)


def cheapest(make_search, values, q, truth, target):
    """The first of ``values`` whose search reaches ``target`` recall: ``(value, recall)``."""
    best = None
    for v in values:
        r = recall(make_search(v)(q), truth)
        best = (v, r)
        if r >= target:
            return best
    return best


def candidates(db, metric, nlist, peers):
    """``(lib, index label, knob name, knob values, make_search(value) -> (q -> ids))``; bytes per
    vector are in ``bench_index.py``'s table (mlvec IVF SQ8 140, HNSW32_128,SQ8 434)."""
    out = []
    for kind in (f"IVF{nlist},SQ8", "HNSW32_128,SQ8"):
        index = mi.index_factory(db.shape[1], kind, metric=metric)
        mlvec.set_num_threads(2)
        index.train(db)
        index.add(db)
        if kind.startswith("IVF"):
            out.append(
                (
                    "mlvec",
                    kind,
                    "nprobe",
                    [1, 2, 4, 8, 16],
                    lambda v, i=index: lambda x: i.search(x, K, nprobe=v)[1],
                )
            )
        else:
            out.append(
                (
                    "mlvec",
                    kind,
                    "ef",
                    [16, 32, 64, 128],
                    lambda v, i=index: lambda x: i.search(x, K, ef_search=v)[1],
                )
            )
    if "faiss" in peers:
        import faiss

        faiss.omp_set_num_threads(2)
        fm = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
        for spec in (f"IVF{nlist},SQ8", "HNSW32"):
            index = faiss.index_factory(db.shape[1], spec, fm)
            index.train(db)
            index.add(db)

            def make(v, index=index, spec=spec):
                if spec == "HNSW32":
                    index.hnsw.efSearch = v
                else:
                    faiss.extract_index_ivf(index).nprobe = v
                return lambda x: index.search(x, K)[1]

            vals = [16, 32, 64, 128] if spec == "HNSW32" else [1, 2, 4, 8, 16]
            out.append(("faiss", spec, "efSearch" if spec == "HNSW32" else "nprobe", vals, make))
    if "hnswlib" in peers:
        import hnswlib

        for m_links, efc in ((16, 200), (32, 400)):
            index = hnswlib.Index(space="ip" if metric == "ip" else "l2", dim=db.shape[1])
            index.init_index(max_elements=len(db), M=m_links, ef_construction=efc)
            index.set_num_threads(2)
            index.add_items(db)
            index.set_num_threads(1)

            def make(v, index=index):
                index.set_ef(v)
                return lambda x: index.knn_query(x, K)[0]

            out.append(("hnswlib", f"HNSW M={m_links} efc={efc}", "ef", [16, 32, 64, 128], make))
    if "usearch" in peers:
        from usearch.index import Index

        index = Index(
            ndim=db.shape[1], metric="ip" if metric == "ip" else "l2sq", dtype="f32", connectivity=16
        )
        index.add(np.arange(len(db)), db, threads=2)

        def make(v, index=index):
            index.expansion_search = v
            return lambda x: np.asarray(index.search(x, K, threads=1).keys).reshape(len(x), -1)

        out.append(("usearch", "HNSW M=16 (f32)", "ef", [16, 32, 64, 128], make))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--synthetic-n", type=int, default=300_000)
    p.add_argument("--clusters", type=int, default=4000)
    p.add_argument("--nlist", type=int, default=2048)
    p.add_argument("--target", type=float, default=0.95, help="recall@10 each setting must reach")
    p.add_argument("--calls", type=int, default=3000, help="one-query calls per timing")
    p.add_argument("--repeat", type=int, default=9, help="round-robin rounds (medians reported)")
    p.add_argument("--peers", nargs="*", default=["faiss", "hnswlib", "usearch"])
    args = p.parse_args()

    name, db, q, metric = synthetic(args.synthetic_n, 128, args.clusters)
    truth = exact_truth(db, q, metric)
    print(f"mlvec {mlvec.__version__}; {name}; target recall@10 >= {args.target}", flush=True)
    chosen = []
    for lib, label, knob, values, make in candidates(db, metric, args.nlist, args.peers):
        v, r = cheapest(make, values, q, truth, args.target)
        if r >= args.target:
            chosen.append((lib, label, f"{knob}={v}", r, make(v)))
        else:
            print(f"{lib} {label}: recall {r:.3f} at {knob}={v}, below the target: left out")
    mlvec.set_num_threads(1)
    if "faiss" in args.peers:
        import faiss

        faiss.omp_set_num_threads(1)
    times = {(i, t): [] for i in range(len(chosen)) for t in (1, 2)}
    for _ in range(args.repeat):
        for i, c in enumerate(chosen):
            for t in (1, 2):
                times[(i, t)].append(rate(c[4], q, t, args.calls))

    print()
    print("| library | index | param | recall@10 | 1T q/s (median) | 2T q/s (median) | 2T / 1T |")
    print("|---|---|---|---|---|---|---|")
    med = {key: statistics.median(v) for key, v in times.items()}
    for i, (lib, label, param, r, _) in enumerate(chosen):
        a, b = med[(i, 1)], med[(i, 2)]
        print(f"| {lib} | {label} | {param} | {r:.3f} | {a:,.0f} | {b:,.0f} | {b / a:.2f}x |")
    print()
    for t in (1, 2):
        ours = max((med[(i, t)], i) for i, c in enumerate(chosen) if c[0] == "mlvec")
        peer = max(((med[(i, t)], i) for i, c in enumerate(chosen) if c[0] != "mlvec"), default=None)
        if peer is None:
            continue
        o, p_ = chosen[ours[1]], chosen[peer[1]]
        print(
            f"{t} thread(s), one query per call: mlvec {o[1]} {o[2]} {ours[0]:,.0f} q/s vs best peer "
            f"{p_[0]} {p_[1]} {p_[2]} {peer[0]:,.0f} q/s: {ours[0] / peer[0]:.2f}x"
        )


if __name__ == "__main__":
    main()
