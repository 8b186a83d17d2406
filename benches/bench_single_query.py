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
from functools import partial

import numpy as np

import mlvec

from harness.data import synthetic
from harness.peers import FaissPeer, HnswlibPeer, MlvecPeer, Peer, UsearchPeer
from harness.timing import medians, one_query_per_call, round_robin
from harness.truth import exact_knn, recall

K = 10
NPROBES, EFS = [1, 2, 4, 8, 16], [16, 32, 64, 128]


def candidates(metric: str, nlist: int, peers: list[str]) -> list[Peer]:
    """The indexes compared; bytes per vector are in ``bench_index.py``'s table (mlvec IVF SQ8
    140, HNSW32_128,SQ8 434)."""
    out: list[Peer] = [MlvecPeer(f"IVF{nlist},SQ8", metric), MlvecPeer("HNSW32_128,SQ8", metric)]
    if "faiss" in peers:
        out += [FaissPeer(f"IVF{nlist},SQ8", metric), FaissPeer("HNSW32", metric)]
    if "hnswlib" in peers:
        out += [HnswlibPeer(metric, m, efc, label=f"HNSW M={m} efc={efc}") for m, efc in ((16, 200), (32, 400))]
    if "usearch" in peers:
        out.append(UsearchPeer(metric, 16))
    return out


def cheapest(peer: Peer, q: np.ndarray, truth: np.ndarray, target: float) -> tuple[int, float]:
    """The first search parameter whose search reaches ``target`` recall (else the last one):
    ``(value, recall)``; the peer is left tuned to it."""
    for v in NPROBES if peer.knob == "nprobe" else EFS:
        peer.tune(v)
        r = recall(peer.search(q, K), truth)
        if r >= target:
            break
    return v, r


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

    data = synthetic(args.synthetic_n, 128, args.clusters)
    q = data.queries
    _, truth = exact_knn(data.base, q, K, data.metric)
    print(f"mlvec {mlvec.__version__}; {data.name}; target recall@10 >= {args.target}", flush=True)
    chosen = []
    for peer in candidates(data.metric, args.nlist, args.peers):
        peer.build(data.base, threads=2)
        v, r = cheapest(peer, q, truth, args.target)
        if r >= args.target:
            chosen.append((peer, f"{peer.knob}={v}", r))
        else:
            print(f"{peer.lib} {peer.label}: recall {r:.3f} at {peer.knob}={v}, below the target: left out")
            peer.release()
    for peer, _, _ in chosen:  # after every build: builds use 2 threads, searches 1 per call
        peer.set_threads(1)
    calls = q[np.arange(args.calls) % len(q)]
    timed = {
        (i, t): partial(one_query_per_call, partial(peer.search_one, k=K), calls, t)
        for i, (peer, _, _) in enumerate(chosen)
        for t in (1, 2)
    }
    med = {key: args.calls / s for key, s in medians(round_robin(timed, args.repeat)).items()}

    print()
    print("| library | index | param | recall@10 | 1T q/s (median) | 2T q/s (median) | 2T / 1T |")
    print("|---|---|---|---|---|---|---|")
    for i, (peer, param, r) in enumerate(chosen):
        a, b = med[(i, 1)], med[(i, 2)]
        print(f"| {peer.lib} | {peer.label} | {param} | {r:.3f} | {a:,.0f} | {b:,.0f} | {b / a:.2f}x |")
    print()
    for t in (1, 2):
        ours = max((med[(i, t)], i) for i, c in enumerate(chosen) if c[0].lib == "mlvec")
        peer = max(((med[(i, t)], i) for i, c in enumerate(chosen) if c[0].lib != "mlvec"), default=None)
        if peer is None:
            continue
        (o, o_param, _), (p_, p_param, _) = chosen[ours[1]], chosen[peer[1]]
        print(
            f"{t} thread(s), one query per call: mlvec {o.label} {o_param} {ours[0]:,.0f} q/s vs best peer "
            f"{p_.lib} {p_.label} {p_param} {peer[0]:,.0f} q/s: {ours[0] / peer[0]:.2f}x"
        )


if __name__ == "__main__":
    main()
