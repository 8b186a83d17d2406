"""MaxSim on the CPU: mlvec's native kernel against the usual baselines, side by side in one process.

Peers: (a) padded ``torch.einsum`` + masked max (the PyLate way), (b) mixedbread's ``maxsim-cpu``
(PyPI, where it installs). Cases (issue 2): one 32x128 query against 1,000 documents of 300 tokens
(fp32); the same with lengths drawn from 64..512; an all-pairs 256x256 batch of 32- and 300-token
sets (training shape); and bfloat16. Each method runs round-robin with the others, ``--repeats``
times, each timed call after reading an array larger than the last-level cache (so every method
reads its inputs from memory); the table shows medians and the ratio of mlvec to each peer. The
fixed-length case also reports the GB/s of document bytes mlvec streams next to the machine's read
bandwidth measured in the same run (numpy reading a large array, on one thread and on all cores).

Usage::

    python benches/bench_maxsim.py            # full sizes (a few minutes on 2 cores)
    python benches/bench_maxsim.py --quick    # small sizes, a smoke run of seconds

mlvec is called through ``mlvec._native.maxsim.forward`` with pre-packed arrays (rows + offsets),
so the numbers are the kernel's, without Python-side conversion.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

import numpy as np
import torch

from mlvec import _native

from harness.memory import EvictCache, read_bandwidth
from harness.timing import medians, round_robin

try:  # peer (b), optional
    import maxsim_cpu
except ImportError:  # pragma: no cover - depends on the platform's wheels
    maxsim_cpu = None


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """fp32 numpy -> bfloat16 as uint16 bits (what `_native` takes with ``bf16=True``)."""
    return torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def offsets_of(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def check_then_time(
    case: str,
    methods: dict[str, Callable[[], object]],
    ref: np.ndarray,
    checked: list[str],
    repeats: int,
    evict: EvictCache | None,
) -> dict[str, float]:
    """Check the scores of the ``checked`` methods present against ``ref``, then the median
    seconds per call of every method, timed round-robin (each call after ``evict``)."""
    for name in checked:
        if name in methods:
            check(f"{case}/{name}", methods[name](), ref, 1e-4)
    return medians(round_robin(methods, repeats, before=evict))


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


def time_one_query(case, q, flat, do, padded, mask, peer, repeats, evict):
    """One query ``q`` ``[lq, dim]`` against documents given packed (``flat`` rows, offsets ``do``)
    for mlvec and padded (``padded`` ``[n, L, dim]``, ``mask`` ``[n, L]`` or None) for the
    einsum; ``peer`` is maxsim-cpu's call. Checked against the einsum, then timed:
    ``(median seconds per method, documents, document bytes)``."""
    qo = np.array([0, len(q)], np.int64)
    qt, pt = torch.from_numpy(q)[None], torch.from_numpy(padded)
    mt = None if mask is None else torch.from_numpy(mask)
    methods = {
        "mlvec": lambda: _native.maxsim.forward(q, qo, None, flat, do, None)[0],
        "torch einsum": lambda: einsum_scores(qt, pt, mt),
    }
    if maxsim_cpu is not None:
        methods["maxsim-cpu"] = peer
    ref = einsum_scores(qt, pt, mt).numpy()
    return check_then_time(case, methods, ref, ["mlvec", "maxsim-cpu"], repeats, evict), len(padded), flat.nbytes


def case_fixed(rng, n_docs, ld, lq, dim, repeats, evict=None):
    q = rng.standard_normal((lq, dim), dtype=np.float32)
    docs = rng.standard_normal((n_docs, ld, dim), dtype=np.float32)
    do = offsets_of(np.full(n_docs, ld))
    peer = lambda: maxsim_cpu.maxsim_scores(q, docs)  # noqa: E731
    return time_one_query("fixed", q, docs.reshape(-1, dim), do, docs, None, peer, repeats, evict)


def case_variable(rng, n_docs, lo, hi, lq, dim, repeats, evict=None):
    q = rng.standard_normal((lq, dim), dtype=np.float32)
    lens = rng.integers(lo, hi + 1, size=n_docs)
    flat = rng.standard_normal((int(lens.sum()), dim), dtype=np.float32)
    do = offsets_of(lens)
    padded = np.zeros((n_docs, hi, dim), np.float32)
    mask = np.zeros((n_docs, hi), bool)
    for i, n in enumerate(lens):
        padded[i, :n] = flat[do[i] : do[i + 1]]
        mask[i, :n] = True
    doc_list = [flat[do[i] : do[i + 1]] for i in range(n_docs)]
    peer = lambda: maxsim_cpu.maxsim_scores_variable(q, doc_list)  # noqa: E731
    return time_one_query("variable", q, flat, do, padded, mask, peer, repeats, evict)


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
    return check_then_time("all-pairs", methods, ref, ["mlvec"], repeats, evict), nq * nd, dflat.nbytes


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
    return check_then_time("bf16", methods, ref, ["mlvec bf16"], repeats, evict), n_docs, db.nbytes


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
    evict = None if quick else EvictCache()
    t, items, nbytes = case_fixed(rng, n_docs, 300, lq, dim, repeats, evict)
    report(f"fixed: 1 x {n_docs} docs x 300 tok, fp32", t, items, "mlvec")
    stream = nbytes / t["mlvec"] / 1e9
    bw_bytes, bw_repeat = (64 if quick else 512) << 20, max(3, repeats)
    bw1 = read_bandwidth(bw_bytes, repeat=bw_repeat)
    bwn = read_bandwidth(bw_bytes, threads=os.cpu_count() or 1, repeat=bw_repeat)

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
