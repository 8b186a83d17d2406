"""MaxSim on the CPU: mlvec's native kernel against the usual baselines, side by side in one process.

Peers: (a) padded ``torch.einsum`` + masked max (the PyLate way), (b) mixedbread's ``maxsim-cpu``
(PyPI, where it installs). Cases (issue 2): one 32x128 query against 1,000 documents of 300 tokens
(fp32); the same with lengths drawn from 64..512; an all-pairs 256x256 batch of 32- and 300-token
sets (training shape); and bfloat16. Each method runs round-robin with the others, ``--repeats``
times, each timed call after reading an array larger than the last-level cache (so every method
reads its inputs from memory); the table shows medians and the ratio of mlvec to each peer. The
fixed-length case also reports the GB/s of document bytes mlvec streams next to the machine's read
bandwidth measured in the same run (numpy summing a large array, on one thread and on all cores).

Usage::

    python benches/bench_maxsim.py            # full sizes (a few minutes on 2 cores)
    python benches/bench_maxsim.py --quick    # small sizes, a smoke run of seconds

mlvec is called through ``mlvec._native.maxsim.forward`` with pre-packed arrays (rows + offsets),
so the numbers are the kernel's, without Python-side conversion.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from mlvec import _native

try:  # peer (b), optional
    import maxsim_cpu
except ImportError:  # pragma: no cover - depends on the platform's wheels
    maxsim_cpu = None


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """fp32 numpy -> bfloat16 as uint16 bits (what `_native` takes with ``bf16=True``)."""
    return torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def offsets_of(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def last_level_cache_bytes() -> int:
    """Size of the CPU's largest cache (Linux sysfs), or 64 MiB where it cannot be read."""
    sizes = []
    for f in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*/size"):
        text = open(f).read().strip()
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        try:
            sizes.append(int(text.rstrip("KMG")) * mult)
        except ValueError:
            pass
    return max(sizes, default=64 << 20)


class Evict:
    """Reads an array 1.5x the last-level cache, pushing the inputs of the previous call out.

    Some machines' last-level cache (260 MiB on the one in the README) holds most of the 154 MB
    document set, so without this each method would read part of its input from the cache,
    more or less depending on what the method before it read.
    """

    def __init__(self) -> None:
        self.buf = np.ones(int(1.5 * last_level_cache_bytes()) // 4, np.float32)

    def __call__(self) -> None:
        self.buf.sum()


def time_round_robin(
    methods: dict[str, Callable[[], object]], repeats: int, before: Callable[[], None] | None = None
) -> dict[str, float]:
    """Median seconds per call of each method; one warm-up call each, then interleaved runs.

    A short pause before each timed call lets the previous method's worker threads (OpenMP,
    rayon) stop spinning, so no method pays for the one before it; `before` (untimed) runs
    ahead of each timed call, e.g. an `Evict`.
    """
    for f in methods.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in methods}
    for _ in range(repeats):
        for k, f in methods.items():
            if before is not None:
                before()
            time.sleep(0.05)
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def read_bandwidth(nbytes: int, repeats: int) -> tuple[float, float]:
    """GB/s of numpy summing a float32 array of `nbytes`: one thread, and split over all cores."""
    a = np.ones(nbytes // 4, np.float32)
    n = os.cpu_count() or 1
    parts = np.array_split(a, n)
    pool = ThreadPoolExecutor(n)

    def parallel() -> float:
        return sum(pool.map(np.sum, parts))  # np.sum releases the GIL on large arrays

    t = time_round_robin({"one": lambda: a.sum(), "all": parallel}, repeats)
    pool.shutdown()
    return a.nbytes / t["one"] / 1e9, a.nbytes / t["all"] / 1e9


# --- peers --------------------------------------------------------------------------------------


def einsum_scores(q: torch.Tensor, docs: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """PyLate-style ColBERT scores of queries `[Nq, Lq, d]` against padded documents `[Nd, L, d]`."""
    s = torch.einsum("aqd,bld->abql", q, docs)
    if mask is not None:
        s = s.masked_fill(~mask[None, :, None, :], float("-inf"))
    return s.max(-1).values.sum(-1)


def einsum_chunked(
    q: torch.Tensor, docs: torch.Tensor, mask: torch.Tensor | None, chunk: int
) -> torch.Tensor:
    """All-pairs einsum a few queries at a time, so the `[Nq, Nd, Lq, Ld]` scores fit in memory."""
    return torch.cat([einsum_scores(q[i : i + chunk], docs, mask) for i in range(0, len(q), chunk)])


# --- cases --------------------------------------------------------------------------------------


def check(name: str, got: np.ndarray, want: np.ndarray, rtol: float) -> None:
    got, want = np.asarray(got, np.float64).ravel(), np.asarray(want, np.float64).ravel()
    if not np.allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max()):
        raise SystemExit(f"{name}: scores disagree (max abs diff {np.abs(got - want).max():.3g})")


def case_fixed(rng, n_docs, ld, lq, dim, repeats, evict=None):
    q = rng.standard_normal((lq, dim), dtype=np.float32)
    docs = rng.standard_normal((n_docs, ld, dim), dtype=np.float32)
    flat = docs.reshape(-1, dim)
    qo = np.array([0, lq], np.int64)
    do = offsets_of(np.full(n_docs, ld))
    qt, dt = torch.from_numpy(q)[None], torch.from_numpy(docs)

    def mlvec():
        return _native.maxsim.forward(q, qo, None, flat, do, None)[0]

    methods = {"mlvec": mlvec, "torch einsum": lambda: einsum_scores(qt, dt, None)}
    if maxsim_cpu is not None:
        methods["maxsim-cpu"] = lambda: maxsim_cpu.maxsim_scores(q, docs)
    ref = einsum_scores(qt, dt, None).numpy()
    check("fixed/mlvec", mlvec(), ref, 1e-4)
    if maxsim_cpu is not None:
        check("fixed/maxsim-cpu", maxsim_cpu.maxsim_scores(q, docs), ref, 1e-4)
    t = time_round_robin(methods, repeats, evict)
    return t, n_docs, flat.nbytes


def case_variable(rng, n_docs, lo, hi, lq, dim, repeats, evict=None):
    q = rng.standard_normal((lq, dim), dtype=np.float32)
    lens = rng.integers(lo, hi + 1, size=n_docs)
    flat = rng.standard_normal((int(lens.sum()), dim), dtype=np.float32)
    do = offsets_of(lens)
    qo = np.array([0, lq], np.int64)
    padded = np.zeros((n_docs, hi, dim), np.float32)
    mask = np.zeros((n_docs, hi), bool)
    for i, n in enumerate(lens):
        padded[i, :n] = flat[do[i] : do[i + 1]]
        mask[i, :n] = True
    doc_list = [flat[do[i] : do[i + 1]] for i in range(n_docs)]
    qt, pt, mt = torch.from_numpy(q)[None], torch.from_numpy(padded), torch.from_numpy(mask)

    def mlvec():
        return _native.maxsim.forward(q, qo, None, flat, do, None)[0]

    methods = {"mlvec": mlvec, "torch einsum": lambda: einsum_scores(qt, pt, mt)}
    if maxsim_cpu is not None:
        methods["maxsim-cpu"] = lambda: maxsim_cpu.maxsim_scores_variable(q, doc_list)
    ref = einsum_scores(qt, pt, mt).numpy()
    check("variable/mlvec", mlvec(), ref, 1e-4)
    if maxsim_cpu is not None:
        check("variable/maxsim-cpu", maxsim_cpu.maxsim_scores_variable(q, doc_list), ref, 1e-4)
    return time_round_robin(methods, repeats, evict), n_docs, flat.nbytes


def case_all_pairs(rng, nq, nd, lq, ld, dim, repeats, evict=None):
    qs = rng.standard_normal((nq, lq, dim), dtype=np.float32)
    docs = rng.standard_normal((nd, ld, dim), dtype=np.float32)
    qflat, dflat = qs.reshape(-1, dim), docs.reshape(-1, dim)
    qo, do = offsets_of(np.full(nq, lq)), offsets_of(np.full(nd, ld))
    qt, dt = torch.from_numpy(qs), torch.from_numpy(docs)

    def mlvec():
        return _native.maxsim.forward(qflat, qo, None, dflat, do, None)[0]

    methods = {"mlvec": mlvec, "torch einsum": lambda: einsum_chunked(qt, dt, None, 8)}
    if maxsim_cpu is not None:
        methods["maxsim-cpu"] = lambda: np.stack([maxsim_cpu.maxsim_scores(q, docs) for q in qs])
    ref = einsum_chunked(qt, dt, None, 8).numpy()
    check("all-pairs/mlvec", mlvec(), ref, 1e-4)
    return time_round_robin(methods, repeats, evict), nq * nd, dflat.nbytes


def case_bf16(rng, n_docs, ld, lq, dim, repeats, evict=None):
    q = rng.standard_normal((lq, dim), dtype=np.float32)
    flat = rng.standard_normal((n_docs * ld, dim), dtype=np.float32)
    qb, db = bf16_bits(q), bf16_bits(flat)
    qo, do = np.array([0, lq], np.int64), offsets_of(np.full(n_docs, ld))
    qt = torch.from_numpy(q).to(torch.bfloat16)[None]
    dt = torch.from_numpy(flat).to(torch.bfloat16).reshape(n_docs, ld, dim)

    def mlvec_bf16():
        return _native.maxsim.forward(qb, qo, None, db, do, None, bf16=True)[0]

    methods = {
        "mlvec bf16": mlvec_bf16,
        "mlvec fp32": lambda: _native.maxsim.forward(q, qo, None, flat, do, None)[0],
        "torch einsum bf16": lambda: einsum_scores(qt, dt, None),
    }
    ref = einsum_scores(qt.float(), dt.float(), None).numpy()
    check("bf16/mlvec", mlvec_bf16(), ref, 1e-4)
    return time_round_robin(methods, repeats, evict), n_docs, db.nbytes


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and 2 repeats (smoke test)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per method (default 11, quick 2)")
    args = ap.parse_args(argv)
    quick = args.quick
    repeats = args.repeats or (2 if quick else 11)
    rng = np.random.default_rng(0)
    dim, lq = 128, 32
    n_docs = 50 if quick else 1000
    print(
        f"mlvec {_native.__version__} | {_native.get_num_threads()} threads | torch {torch.__version__} "
        f"({torch.get_num_threads()} threads) | maxsim-cpu {'yes' if maxsim_cpu else 'not installed'} | "
        f"CPU features: {' '.join(_native.cpu_features())}"
    )
    rows: list[tuple[str, str, float, float | None]] = []  # case, method, items/s, ratio

    def report(case: str, t: dict[str, float], items: int, base: str) -> None:
        for k, v in t.items():
            rows.append((case, k, items / v, None if k == base else t[k] / t[base]))

    # Every timed call starts with its inputs out of the caches (full sizes only: the quick
    # sizes are cache-resident anyway).
    evict = None if quick else Evict()
    t, items, nbytes = case_fixed(rng, n_docs, 300, lq, dim, repeats, evict)
    report(f"fixed: 1 x {n_docs} docs x 300 tok, fp32", t, items, "mlvec")
    stream = nbytes / t["mlvec"] / 1e9
    bw1, bwn = read_bandwidth((64 if quick else 512) << 20, max(3, repeats))

    t, items, _ = case_variable(rng, n_docs, 64, 512, lq, dim, repeats, evict)
    report(f"variable: 1 x {n_docs} docs x 64-512 tok, fp32", t, items, "mlvec")

    nq = nd = 16 if quick else 256
    t, items, _ = case_all_pairs(
        rng, nq, nd, lq, 300, dim, max(2, repeats // 3) if not quick else repeats, evict
    )
    report(f"all-pairs: {nq} x {nd} (32 x 300 tok), fp32 [pairs/s]", t, items, "mlvec")

    t, items, _ = case_bf16(rng, n_docs, 300, lq, dim, repeats, evict)
    report(f"bf16: 1 x {n_docs} docs x 300 tok", t, items, "mlvec bf16")

    print()
    print("| case | method | docs/s | mlvec speed-up |")
    print("|---|---|---:|---:|")
    for case, k, rate, ratio in rows:
        print(f"| {case} | {k} | {rate:,.0f} | {'' if ratio is None else f'{ratio:.2f}x'} |")
    print()
    print(
        f"fixed fp32: mlvec streams {stream:.1f} GB/s of document bytes; numpy reads "
        f"{bw1:.1f} GB/s on one thread, {bwn:.1f} GB/s on {os.cpu_count()} -> "
        f"{100 * stream / max(bw1, bwn):.0f}% of the best"
    )
    bf = {k: r for c, k, r, _ in rows if c.startswith("bf16")}
    print(f"bf16 / fp32 docs/s (same run): {bf['mlvec bf16'] / bf['mlvec fp32']:.2f}x")


if __name__ == "__main__":
    main()
