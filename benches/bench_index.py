"""mlvec.index against faiss-cpu, hnswlib and usearch, side by side in one process.

Data: (1) real multilingual-e5-small passage embeddings of the Bible (database: all Spanish
verses plus the English ones except 1,000 held-out English queries); (2) a synthetic Gaussian
mixture with low intrinsic dimension (default 1M x 128, a few thousand clusters). Ground truth is
exact search. For every index and search setting: recall@10 and queries/s with 1 and 2 threads,
one batch call and one query per call (2 threads = 2 Python threads calling concurrently),
plus build time and bytes per vector. Also: Flat vs faiss IndexFlatIP, and GB/s of codes scanned
by the 4-bit fast-scan and binary kernels next to the machine's memory read bandwidth.

    python benches/bench_index.py                       # full run (tens of minutes on 2 cores)
    python benches/bench_index.py --synthetic-n 200000  # smaller synthetic set
    python benches/bench_index.py --quick               # seconds: smoke run

Writes a markdown table to stdout (and --table), and a recall-vs-QPS plot (--plot).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import mlvec
import mlvec.index as mi

from harness.data import BIBLE_E5, bible_e5, synthetic
from harness.memory import PeakRss, read_bandwidth
from harness.peers import FaissPeer, HnswlibPeer, MlvecPeer, Peer, UsearchPeer, measure
from harness.timing import median_seconds
from harness.truth import exact_knn, recall

K = 10
# M=32 with SQ8 codes reaches recall@10 0.95 on the e5 set at a lower ef than M=16, and
# ef_construction=128 builds it in about half the time of 200 for nearly the same search curve.
# HNSW32_40 is faiss's HNSW32 (M=32, efConstruction=40): the like-for-like build comparison.
# HNSW32_400,SQ8 is the denser SQ8 graph (hnswlib also runs at M=32, efConstruction=400).
DEFAULT_HNSW_KINDS = [
    "HNSW16",
    "HNSW16,SQ8",
    "HNSW16,SQ8,rescore16",
    "HNSW32_128,SQ8,rescore16",
    "HNSW32_400,SQ8,rescore16",
    "HNSW32_40",
]
REPEAT = 3  # timing repeats (median); 1 in --quick mode


def exact_ids(db: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    """The exact top-K row indices of ``db`` for each query."""
    return exact_knn(db, q, K, metric)[1]


# --- the libraries --------------------------------------------------------------------------------
def index_peers(metric, nlist, pq_m, peers, hnsw_kinds, ivf, codecs) -> list[Peer]:
    """mlvec's graphs and IVF codecs, then each peer's counterparts, in the order of the table."""
    codecs = codecs or [f"PQ{pq_m}x4,rescore", "SQ8", "BIN,rescore"]
    out: list[Peer] = [MlvecPeer(kind, metric) for kind in hnsw_kinds]
    out += [MlvecPeer(f"IVF{nlist},{c}", metric) for c in codecs] if ivf else []
    if "faiss" in peers:
        specs = [f"IVF{nlist},PQ{pq_m}x4fs,RFlat", f"IVF{nlist},SQ8"] if ivf else []
        out += [FaissPeer(spec, metric) for spec in [*specs, "HNSW32"]]
    if "hnswlib" in peers:
        # Its usual configuration, and a denser graph like mlvec's HNSW32_400,SQ8 (so neither side
        # wins by graph parameters alone).
        out += [HnswlibPeer(metric, 16, 200), HnswlibPeer(metric, 32, 400)]
    if "usearch" in peers:
        out.append(UsearchPeer(metric, 16))
    return out


def index_runs(peers, db, q, truth, train, threads, nq_single, sweep, hnsw_ef) -> list[dict]:
    """Build each index (its build time and bytes per vector), then measure every search setting
    of its sweep (nprobe for IVF, ef for graphs): recall and queries/s, batch and one per call."""
    rows = []
    for peer in peers:
        t0 = time.perf_counter()
        peer.build(db, threads=max(threads), train=train)
        build = time.perf_counter() - t0
        bpv = peer.bytes() / len(db)
        for value in sweep if peer.knob == "nprobe" else hnsw_ef:
            peer.tune(value)
            m = measure(
                peer, q, truth, K, batch_threads=threads, single_threads=threads, single_queries=nq_single,
                repeat=REPEAT,
            )  # fmt: skip
            param = f"{peer.knob}={value}"
            rows.append(dict(lib=peer.lib, index=peer.label, param=param, build=build, bpv=bpv, **m))
        peer.release()
    return rows


# --- flat and scan bandwidth ---------------------------------------------------------------------
def flat_vs_faiss(db, q, metric, threads):
    ours, ref = MlvecPeer("Flat", metric), FaissPeer("Flat", metric)
    lines = []
    for peer in (ours, ref):
        peer.build(db, threads=max(threads))
    for t in threads:
        rates = []
        for peer in (ours, ref):
            peer.set_threads(t)
            rates.append(len(q) / median_seconds(lambda peer=peer: peer.search(q, K), REPEAT))
        same = float((ours.search(q, K) == ref.search(q, K)).mean())
        a, b = rates
        lines.append(f"| {t} | {a:,.0f} | {b:,.0f} | {a / b:.2f}x | {same:.4f} |")
    return lines


DRAM_BUFFER = 512 << 20  # beyond the 260 MiB L3 seen here: a main-memory read


def scan_bandwidth(db, q, metric, pq_m):
    """GB/s of codes read by a full scan (one list, 50 queries, 1 thread) next to numpy's read
    speed of main memory and of a buffer as large as the codes."""
    repeat = max(REPEAT, 3)
    dram = read_bandwidth(DRAM_BUFFER, repeat=repeat)
    lines = [
        f"Code scan speed, 1 thread, no IVF; 1-thread numpy read speed of main memory (512 MiB buffer): "
        f"{dram:.1f} GB/s, and of a buffer the size of the codes (same cache level as the scan):",
        "",
        "| codec | bytes/vector scanned | codes MB | scan GB/s | % of main-memory read | same-size read GB/s | % of same-size read |",
        "|---|---|---|---|---|---|---|",
    ]
    mlvec.set_num_threads(1)
    for kind, code in [(f"PQ{pq_m}x4", pq_m / 2), ("BIN", int(np.ceil(db.shape[1] / 64) * 8))]:
        index = mi.index_factory(db.shape[1], kind, metric=metric)
        index.train(db[: min(len(db), 20000)])
        index.add(db)
        qs = q[:50]
        t = median_seconds(lambda index=index, qs=qs: index.search(qs, K), max(REPEAT, 5), warmup=1)
        gbs = len(qs) * len(db) * code / t / 1e9
        same = read_bandwidth(int(len(db) * code), repeat=repeat)
        lines.append(
            f"| {kind} | {code:g} | {len(db) * code / 1e6:.1f} | {gbs:.2f} | {100 * gbs / dram:.0f} % "
            f"| {same:.1f} | {100 * gbs / same:.0f} % |"
        )
    return lines


# --- removal --------------------------------------------------------------------------------------
def removal(db, q, metric, kinds, threads, fractions, ef=128):
    """remove() (which compacts: re-links around the removed nodes, frees their space) against
    building afresh over the remaining vectors: seconds and recall@10 vs exact search."""
    out = [
        f"Removal ({threads} threads): `remove` of a random fraction (compaction included) against a "
        f"fresh build over the rest; recall@10 at ef={ef} against exact search over the rest:",
        "",
        "| index | removed | remove s | recall after remove | fresh build s | fresh recall |",
        "|---|---|---|---|---|---|",
    ]
    mlvec.set_num_threads(threads)
    rng = np.random.default_rng(0)
    for kind in kinds:
        for frac in fractions:
            gone = rng.choice(len(db), int(frac * len(db)), replace=False)
            live = np.setdiff1d(np.arange(len(db)), gone)
            truth = live[exact_ids(db[live], q, metric)]
            index = mi.index_factory(db.shape[1], kind, metric=metric)
            index.train(db)
            index.add(db)
            t = time.perf_counter()
            index.remove(gone)
            t_rm = time.perf_counter() - t
            r_rm = recall(index.search(q, K, ef_search=ef)[1], truth)
            fresh = mi.index_factory(db.shape[1], kind, metric=metric)
            t = time.perf_counter()
            fresh.train(db[live])
            fresh.add(db[live], ids=live)
            t_new = time.perf_counter() - t
            r_new = recall(fresh.search(q, K, ef_search=ef)[1], truth)
            out.append(f"| {kind} | {frac:.0%} | {t_rm:.1f} | {r_rm:.3f} | {t_new:.1f} | {r_new:.3f} |")
    return out


# --- peak build memory -------------------------------------------------------------------------
def build_memory_child(path: str, spec: str, metric: str, threads: int) -> None:
    """In a fresh process: print the peak RSS growth while building ``spec`` (an mlvec kind, or
    ``faiss:<factory string>``) over the array saved at ``path``, and the built index's bytes."""
    db = np.load(path)  # float32 as saved: no conversion copy
    peer = FaissPeer(spec[6:], metric) if spec.startswith("faiss:") else MlvecPeer(spec, metric)
    # A small warm-up build first, so lazy imports and thread pools are not counted.
    peer.build(db[:200], threads=threads)
    peer.release()
    with PeakRss() as mem:
        peer.build(db, threads=threads)
    print(mem.grown, peer.bytes())


def build_memory(db, metric, kinds, threads, peers):
    """Peak RSS growth while building each graph (a fresh process each, data loaded first)
    against the built index's own size (``memory_usage``)."""
    import subprocess
    import sys

    out = [
        f"Peak build memory ({threads} threads): peak RSS growth (VmHWM after a reset) during "
        "train+add in a fresh process that already holds the data, against the index's size "
        "(memory_usage; faiss: serialized size):",
        "",
        "| index | peak growth MB | index MB | ratio |",
        "|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "db.npy")
        np.save(path, np.ascontiguousarray(db, dtype=np.float32))
        runs = list(kinds) + (["faiss:HNSW32"] if "faiss" in peers else [])
        for kind in runs:
            res = subprocess.run(
                [sys.executable, __file__, "--build-child", path, kind, metric, str(threads)],
                capture_output=True,
                text=True,
                check=True,
            )
            grown, size = (int(v) for v in res.stdout.split()[-2:])
            name = kind.replace("faiss:", "faiss ")
            out.append(f"| {name} | {grown / 1e6:,.1f} | {size / 1e6:,.1f} | {grown / size:.2f}x |")
    return out


# --- report --------------------------------------------------------------------------------------
def table(rows, threads):
    cols = ["recall"] + [f"{m}{t}" for t in threads for m in ("batch", "single")]
    head = (
        "| library | index | param | recall@10 | "
        + " | ".join(f"{'batch' if c.startswith('batch') else '1/call'} {c[-1]}T q/s" for c in cols[1:])
        + " | build s | bytes/vec |"
    )
    sep = "|" + "---|" * (head.count("|") - 1)
    out = [head, sep]
    for r in rows:
        vals = " | ".join(f"{r[c]:,.0f}" for c in cols[1:])
        out.append(
            f"| {r['lib']} | {r['index']} | {r['param']} | {r['recall']:.3f} | {vals} | {r['build']:.1f} | {r['bpv']:,.0f} |"
        )
    return out


def best_at(rows, target, col):
    best = {}
    for r in rows:
        if r["recall"] >= target:
            lib = r["lib"]
            if r[col] > best.get(lib, (0, None))[0]:
                best[lib] = (r[col], f"{r['index']} {r['param']}", r["bpv"])
    return best


def summary(rows, threads, target=0.95):
    out = [f"Best queries/s at recall@10 >= {target} (mlvec vs the best peer):", ""]
    out.append("| mode | mlvec | best peer | ratio | memory ratio |")
    out.append("|---|---|---|---|---|")
    for t in threads:
        for mode in ("batch", "single"):
            col = f"{mode}{t}"
            b = best_at(rows, target, col)
            ours = b.get("mlvec")
            peers = {k: v for k, v in b.items() if k != "mlvec"}
            label = f"{'batch' if mode == 'batch' else '1 query/call'}, {t}T"
            if not ours or not peers:
                mine = f"{ours[0]:,.0f} ({ours[1]})" if ours else "none reaches it"
                if peers:
                    lib, peer = max(peers.items(), key=lambda kv: kv[1][0])
                    theirs = f"{peer[0]:,.0f} ({lib} {peer[1]}, {peer[2]:,.0f} B/vec)"
                else:
                    theirs = "none reaches it"
                out.append(f"| {label} | {mine} | {theirs} | n/a | n/a |")
                continue
            lib, peer = max(peers.items(), key=lambda kv: kv[1][0])
            out.append(
                f"| {label} | {ours[0]:,.0f} ({ours[1]}, {ours[2]:,.0f} B/vec) "
                f"| {peer[0]:,.0f} ({lib} {peer[1]}, {peer[2]:,.0f} B/vec) | {ours[0] / peer[0]:.2f}x "
                f"| {ours[2] / peer[2]:.2f}x |"
            )
    return out


def build_summary(rows):
    """Graph build time with the same parameters and threads: mlvec HNSW32_40 vs faiss HNSW32."""
    build = {}
    for r in rows:
        key = (r["lib"], r["index"])
        if key in (("mlvec", "HNSW32_40"), ("faiss", "HNSW32")):
            build[key[0]] = r["build"]
    if len(build) < 2:
        return []
    m, f = build["mlvec"], build["faiss"]
    return [
        f"HNSW build, same parameters (M=32, efConstruction=40) and threads: mlvec HNSW32_40 {m:.1f} s, "
        f"faiss HNSW32 {f:.1f} s ({m / f:.2f}x faiss's time)",
        "",
    ]


def plot(all_rows, threads, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = max(threads)
    fig, axes = plt.subplots(1, len(all_rows), figsize=(7 * len(all_rows), 5), squeeze=False)
    for ax, (name, rows) in zip(axes[0], all_rows, strict=True):
        series = {}
        for r in rows:
            series.setdefault(f"{r['lib']} {r['index']}", []).append((r["recall"], r[f"batch{t}"]))
        for label, pts in series.items():
            pts.sort()
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker="o",
                label=label,
                linestyle="-" if label.startswith("mlvec") else "--",
            )
        ax.set_yscale("log")
        ax.set_xlabel("recall@10")
        ax.set_ylabel(f"queries/s (batch, {t} threads)")
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run_dataset(name, db, q, metric, args, threads):
    print(f"\n## {name}: {len(db):,} vectors, {len(q):,} queries, metric {metric}\n", flush=True)
    d = db.shape[1]
    pq_m = d // 8 if d % 8 == 0 else d // 4
    if args.scan_only:
        out = [f"### {name}", "", f"{len(db):,} vectors", "", *scan_bandwidth(db, q, metric, pq_m)]
        print("\n".join(out), flush=True)
        return out, []
    truth = exact_ids(db, q, metric)
    nlist = args.nlist or int(2 ** round(np.log2(4 * np.sqrt(len(db)))))
    rng = np.random.default_rng(0)
    train = db[rng.choice(len(db), min(len(db), 64 * nlist), replace=False)]
    sweep = [1, 4, 16] if args.quick else args.nprobe
    efs = [16, 64] if args.quick else args.ef
    nq1 = min(len(q), args.single_queries)
    ivf = not args.hnsw_only
    head = f"{len(db):,} vectors, {len(q):,} queries, k={K}" + (f", IVF nlist={nlist}" if ivf else "")
    out = [f"### {name}", "", head, ""]
    if ivf:
        out += ["Flat (exact) against faiss IndexFlat, batch of all queries:", ""]
        out += ["| threads | mlvec q/s | faiss q/s | ratio | same ids |", "|---|---|---|---|---|"]
        out += flat_vs_faiss(db, q, metric, threads)
    peers = index_peers(metric, nlist, pq_m, args.peers, args.hnsw_kinds, ivf, args.ivf_codecs)
    rows = index_runs(peers, db, q, truth, train, threads, nq1, sweep, efs)
    out += ["", *table(rows, threads), "", *summary(rows, threads), "", *build_summary(rows)]
    if args.build_memory:
        out += ["", *build_memory(db, metric, args.hnsw_kinds, max(threads), args.peers)]
    if args.removal:
        out += ["", *removal(db, q, metric, args.hnsw_kinds, max(threads), args.removal)]
    if not ivf:
        print("\n".join(out), flush=True)
        return out, rows
    out += [""]
    out += scan_bandwidth(db, q, metric, pq_m)
    print("\n".join(out), flush=True)
    return out, rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=BIBLE_E5)
    p.add_argument("--synthetic-n", type=int, default=1_000_000)
    p.add_argument("--synthetic-d", type=int, default=128)
    p.add_argument("--clusters", type=int, default=4000)
    p.add_argument("--nlist", type=int, default=0, help="IVF lists (default about 4 sqrt(n))")
    p.add_argument("--single-queries", type=int, default=300, help="queries for one-query-per-call timing")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--nprobe", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64], help="IVF sweep")
    p.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 128, 256], help="HNSW sweep")
    p.add_argument(
        "--hnsw-kinds",
        nargs="+",
        default=DEFAULT_HNSW_KINDS,
        help="mlvec graph descriptions to run (HNSW<M>[_<efc>][,SQ8[,rescore16]])",
    )
    p.add_argument(
        "--ivf-codecs",
        nargs="+",
        default=None,
        help="mlvec IVF codecs to run, e.g. SQ8 'PQ16x4,rescore' 'BIN,rescore' (default: those three)",
    )
    p.add_argument("--hnsw-only", action="store_true", help="graph indexes only (no Flat, IVF or scan runs)")
    p.add_argument(
        "--build-memory",
        action="store_true",
        help="also measure peak RSS growth while building each graph, in a fresh subprocess",
    )
    p.add_argument(
        "--removal",
        type=float,
        nargs="*",
        default=None,
        help="also time remove() of these fractions (e.g. 0.1 0.5) against a fresh build",
    )
    p.add_argument("--peers", nargs="*", default=["faiss", "hnswlib", "usearch"], help="peers to run")
    p.add_argument("--skip-real", action="store_true")
    p.add_argument("--skip-synthetic", action="store_true")
    p.add_argument("--scan-only", action="store_true", help="only the code-scan GB/s table per dataset")
    p.add_argument("--quick", action="store_true", help="tiny sizes, seconds")
    p.add_argument("--plot", type=Path, default=None, help="PNG path for the recall/QPS plot")
    p.add_argument("--table", type=Path, default=None, help="write the markdown report here")
    p.add_argument("--build-child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.build_child:
        path, spec, metric, threads = args.build_child
        return build_memory_child(path, spec, metric, int(threads))
    if args.quick:
        global REPEAT
        REPEAT = 1
        args.synthetic_n = min(args.synthetic_n, 20_000)
        args.clusters, args.single_queries = 100, min(args.single_queries, 20)
    print(f"mlvec {mlvec.__version__}; CPU features: {' '.join(mlvec.cpu_features())}")
    report, all_rows = [], []

    def flush():
        # Written after every dataset, so a long run leaves its finished parts behind.
        if args.table:
            args.table.write_text("\n".join(report) + "\n")
        if args.plot and any(rows for _, rows in all_rows):
            plot(all_rows, args.threads, args.plot)

    if not args.skip_real:
        if args.data.exists():
            data = bible_e5(args.data, base_sample=5000 if args.quick else None)
            q = data.queries[:100] if args.quick else data.queries
            out, rows = run_dataset(data.name, data.base, q, data.metric, args, args.threads)
            report += out
            all_rows.append((data.name, rows))
            flush()
        else:
            print(f"\n(skipping the real-data benchmark: {args.data} not found)")
    if not args.skip_synthetic:
        data = synthetic(args.synthetic_n, args.synthetic_d, args.clusters)
        name, q = data.name, data.queries[:100] if args.quick else data.queries
        out, rows = run_dataset(name, data.base, q, data.metric, args, args.threads)
        report += ["", *out]
        all_rows.append((name, rows))
        flush()
    if args.plot and any(rows for _, rows in all_rows):
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
