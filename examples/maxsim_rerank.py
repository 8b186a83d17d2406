"""MaxSim scoring and reranking with mlvec: numpy in, torch in, and a gradient step.

Synthetic late-interaction data: each query's tokens are noisy copies of some tokens of one
"relevant" document, hidden among distractors of variable length. The script

1. reranks the candidates for a batch of queries with numpy arrays (padded + mask) and checks
   that the relevant document comes first, timing mlvec against a plain numpy einsum;
2. does the same with packed torch tensors (bfloat16) and FILIP scores;
3. trains a small token projection with an in-batch ColBERT contrastive loss for a few steps,
   gradients flowing through ``mlvec.maxsim``.

Runs in a few seconds on a laptop CPU: ``python examples/maxsim_rerank.py [--quick]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import mlvec


def make_data(rng, n_queries, n_docs, dim, lq, ld_range, noise=0.3):
    """Padded documents ``[n_docs, Ld, dim]`` + mask and queries built from their relevant doc."""
    lengths = rng.integers(ld_range[0], ld_range[1] + 1, size=n_docs)
    ld = int(lengths.max())
    docs = rng.standard_normal((n_docs, ld, dim)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=-1, keepdims=True)
    mask = np.arange(ld)[None, :] < lengths[:, None]
    relevant = rng.choice(n_docs, size=n_queries, replace=False)
    queries = np.empty((n_queries, lq, dim), np.float32)
    for i, doc in enumerate(relevant):
        picks = rng.integers(0, lengths[doc], size=lq)
        noisy = docs[doc, picks] + noise * rng.standard_normal((lq, dim)).astype(np.float32) / np.sqrt(dim)
        queries[i] = noisy / np.linalg.norm(noisy, axis=-1, keepdims=True)
    return queries, docs, mask, relevant


def numpy_einsum_maxsim(q, d, dmask):
    """The textbook formulation, for timing and a cross-check: all token pairs, masked max."""
    sim = np.einsum("qid,njd->qnij", q, d, optimize=True)
    sim = np.where(dmask[None, :, None, :], sim, -np.inf)
    return sim.max(-1).sum(-1)


def best_of(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller problem (used by the tests)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n_docs = 100 if args.quick else 1000
    n_queries, dim, lq = (2 if args.quick else 4), 128, 32
    queries, docs, dmask, relevant = make_data(rng, n_queries, n_docs, dim, lq, (64, 300))
    print(f"mlvec {mlvec.__version__}, {mlvec.get_num_threads()} threads, CPU features: "
          f"{', '.join(f for f in mlvec.cpu_features() if f.startswith('avx')) or 'portable'}")
    print(f"{n_queries} queries x {lq} tokens against {n_docs} documents of 64-300 tokens, dim {dim}")

    # 1. numpy: padded documents + mask, all queries at once.
    (scores, top), t_mlvec = best_of(lambda: mlvec.rerank(queries, docs, 10, document_mask=dmask), 2)
    ref, t_einsum = best_of(lambda: numpy_einsum_maxsim(queries, docs, dmask), 1)
    hits = int((top[:, 0] == relevant).sum())
    err = float(np.abs(mlvec.maxsim(queries, docs, document_mask=dmask) - ref).max())
    print("\n[numpy, float32, padded]")
    print(f"  relevant document ranked first for {hits}/{n_queries} queries")
    print(f"  query 0: top-3 {top[0, :3].tolist()} scores {', '.join(f'{x:.3f}' for x in scores[0, :3])} (relevant: {relevant[0]})")
    print(f"  mlvec {t_mlvec * 1e3:.1f} ms ({n_queries * n_docs / t_mlvec:,.0f} query-doc pairs/s), "
          f"numpy einsum {t_einsum * 1e3:.1f} ms; max |difference| {err:.2e}")

    # 2. torch: packed bfloat16 documents (only the valid tokens, no padding), FILIP too.
    import torch

    lengths = dmask.sum(1)
    packed = torch.from_numpy(docs[dmask]).to(torch.bfloat16)  # [total_tokens, dim]
    offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]))
    q_bf16 = torch.from_numpy(queries).to(torch.bfloat16)
    (t_scores, t_top), t_bf16 = best_of(
        lambda: mlvec.rerank(q_bf16, packed, 10, document_offsets=offsets), 2
    )
    i2t, t2i = mlvec.filip_maxsim(q_bf16, packed, document_offsets=offsets)
    print("\n[torch, bfloat16, packed]")
    print(f"  relevant document ranked first for {int((t_top[:, 0].numpy() == relevant).sum())}/{n_queries} queries")
    print(f"  FILIP query->doc mean-max of the relevant pair, query 0: {float(i2t[0, relevant[0]]):.3f}"
          f" (doc->query {float(t2i[0, relevant[0]]):.3f})")
    print(f"  mlvec {t_bf16 * 1e3:.1f} ms for {packed.shape[0]:,} packed tokens")

    # 3. a gradient step: learn a projection of the token embeddings with an in-batch ColBERT loss.
    torch.manual_seed(0)
    proj = torch.nn.Linear(64, 32, bias=False)
    opt = torch.optim.Adam(proj.parameters(), lr=1e-2)
    qs, ds, ms, pos = make_batch(rng)
    print("\n[training a 64 -> 32 token projection, in-batch ColBERT contrastive loss]")
    t = time.perf_counter()
    steps = 10 if args.quick else 30
    for step in range(steps):
        scores = mlvec.maxsim(proj(qs), proj(ds), document_mask=ms, normalize=True)  # [16, 16]
        loss = torch.nn.functional.cross_entropy(scores * 20.0, pos)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 5 == 4 or step == 0:
            acc = float((scores.argmax(1) == pos).float().mean())
            print(f"  step {step:2d}: loss {loss.item():.3f}, in-batch accuracy {acc:.2f}")
    print(f"  {steps} steps in {time.perf_counter() - t:.2f} s")


def make_batch(rng):
    """A training batch: 16 queries whose positive is the document at the same index."""
    import torch

    q, d, m, rel = make_data(rng, 16, 16, 64, 16, (20, 60), noise=3.0)
    # make_data picks the relevant documents at random; reorder so that query i's positive is i.
    d, m = d[rel], m[rel]
    return torch.from_numpy(q), torch.from_numpy(d), torch.from_numpy(m), torch.arange(16)


if __name__ == "__main__":
    main()
