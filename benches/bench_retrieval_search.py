"""Search stages of the retrieval runner against peers, side by side in one process.

- exact single-vector search (``mlvec.eval.exact_search``: mlvec's Flat index, built per call) vs
  numpy sgemm + partial sort (what the runner used before) and faiss ``IndexFlatIP``;
- MaxSim rerank of the top candidates (``mlvec.eval.maxsim_rerank``: Rust ``maxsim_forward``) vs a
  plain numpy reference (per query: ``einsum`` + max + sum) — results checked equal.

Synthetic unit vectors of e5 size (384-d; ~40 tokens per verse). Prints medians and ratios.

    python benches/bench_retrieval_search.py            # 1,000 queries x 10,000 docs
    python benches/bench_retrieval_search.py --quick    # seconds
"""

from __future__ import annotations

import argparse

import numpy as np

from mlvec.encoders import TokenEmbeddings
from mlvec.eval import exact_search, maxsim_rerank

from harness.timing import median_seconds


def _unit(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _tokens(rng, n, lo, hi, dim):
    lens = rng.integers(lo, hi, n)
    off = np.zeros(n + 1, np.int64)
    np.cumsum(lens, out=off[1:])
    return TokenEmbeddings(_unit(rng, (int(off[-1]), dim)), off)


def _numpy_rerank(q_tok, d_tok, cand):
    scores = np.empty(cand.shape, np.float32)
    for i, row in enumerate(cand):
        q = q_tok[i]
        for j, d in enumerate(row):
            scores[i, j] = (q @ d_tok[int(d)].T).max(axis=1).sum()
    return scores


def _numpy_exact(q, d, k):
    scores = q @ d.T
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    sub = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-sub, axis=1, kind="stable")
    return np.take_along_axis(sub, order, axis=1), np.take_along_axis(part, order, axis=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--docs", type=int, default=10000)
    ap.add_argument("--depth", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    nq, nd, depth, reps = args.queries, args.docs, args.depth, args.repeats
    if args.quick:
        nq, nd, depth, reps = 20, 200, 8, 2
    rng = np.random.default_rng(0)
    dim = 384
    q, d = _unit(rng, (nq, dim)), _unit(rng, (nd, dim))

    # Each method runs once untimed first: its result is checked, and the call warms it up.
    _, ids = exact_search(q, d, 10)
    t_ours = median_seconds(lambda: exact_search(q, d, 10), reps)
    rows = [("exact top-10, mlvec", t_ours, nq / t_ours)]
    _, n_ids = _numpy_exact(q, d, 10)
    t_numpy = median_seconds(lambda: _numpy_exact(q, d, 10), reps)
    rows.append(("exact top-10, numpy sgemm + argpartition", t_numpy, nq / t_numpy))
    same_ids = float((n_ids == ids).mean())
    try:
        import faiss

        index = faiss.IndexFlatIP(dim)
        index.add(d)
        _, f_ids = index.search(q, 10)
        t_faiss = median_seconds(lambda: index.search(q, 10), reps)
        agree = float((f_ids[:, 0] == ids[:, 0]).mean())
        rows.append(("exact top-10, faiss IndexFlatIP", t_faiss, nq / t_faiss))
    except ImportError:
        t_faiss, agree = float("nan"), float("nan")

    q_tok, d_tok = _tokens(rng, nq, 8, 24, dim), _tokens(rng, nd, 20, 60, dim)
    cand = rng.integers(0, nd, (nq, depth))
    r_scores, _ = maxsim_rerank(q_tok, d_tok, cand)
    t_mx = median_seconds(lambda: maxsim_rerank(q_tok, d_tok, cand), reps)
    n_ref = min(nq, 100)
    q_ref = q_tok.select(range(n_ref))
    ref = _numpy_rerank(q_ref, d_tok, cand[:n_ref])
    t_np = median_seconds(lambda: _numpy_rerank(q_ref, d_tok, cand[:n_ref]), 1)
    ours_sorted = np.sort(r_scores[:n_ref], axis=1)
    np.testing.assert_allclose(ours_sorted, np.sort(ref, axis=1), rtol=1e-4, atol=1e-3)
    t_np_all = t_np * nq / n_ref
    rows += [(f"MaxSim rerank of {depth}, mlvec", t_mx, nq / t_mx),
             (f"MaxSim rerank of {depth}, numpy loop", t_np_all, nq / t_np_all)]

    print(f"{nq} queries, {nd} docs, dim {dim}; medians of {reps}")
    for name, secs, qps in rows:
        print(f"  {name:40s} {secs * 1e3:10.2f} ms  {qps:12,.0f} queries/s")
    print(f"  exact: mlvec / faiss time ratio {t_ours / t_faiss:.2f} (top-1 agreement {agree:.3f})")
    print(f"  exact: mlvec / numpy time ratio {t_ours / t_numpy:.2f} (ids equal to numpy's: {same_ids:.4f})")
    print(f"  rerank: mlvec / numpy time ratio {t_mx / t_np_all:.2f}")
    return rows


if __name__ == "__main__":
    main()
