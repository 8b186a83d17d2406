"""The contrastive losses' tile passes on torch's OpenMP team against mlvec's own thread pool.

One process, fp32, d=512, forward + backward; calls alternate between the default (the passes
run as regions of the OpenMP runtime torch loaded) and ``MLVEC_OPENMP=0`` (mlvec's rayon pool),
so the machine's drift falls on both alike. Prints each side's median and their ratio.

    python benches/bench_losses_openmp.py                     # CLIP, B=16,384, 8 calls each
    python benches/bench_losses_openmp.py --loss siglip --batch 4096 --calls 10
"""

from __future__ import annotations

import argparse
import os

import torch

from mlvec.losses import clip_loss, siglip_loss

from harness.timing import medians, round_robin


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loss", choices=["clip", "siglip"], default="clip")
    p.add_argument("--batch", type=int, default=16384)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--calls", type=int, default=8, help="timed calls per side (after one warm-up each)")
    args = p.parse_args()

    gen = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(args.batch, args.dim, generator=gen), dim=1)
    b = torch.nn.functional.normalize(torch.randn(args.batch, args.dim, generator=gen), dim=1)
    a.requires_grad_(True)
    b.requires_grad_(True)
    scale = torch.tensor(10.0, requires_grad=True)
    bias = torch.tensor(-10.0, requires_grad=True)

    def call(openmp: bool) -> None:
        if openmp:
            os.environ.pop("MLVEC_OPENMP", None)
        else:
            os.environ["MLVEC_OPENMP"] = "0"
        loss = clip_loss(a, b, scale) if args.loss == "clip" else siglip_loss(a, b, scale, bias)
        loss.backward()
        a.grad = b.grad = scale.grad = bias.grad = None

    times = round_robin({"openmp": lambda: call(True), "pool": lambda: call(False)}, args.calls)
    os.environ.pop("MLVEC_OPENMP", None)
    med = medians(times)
    print(f"{args.loss} B={args.batch} d={args.dim}, forward + backward, {args.calls} alternating calls each")
    for k, v in times.items():
        print(f"  {k:6s} median {med[k]:.3f} s  ({', '.join(f'{t:.2f}' for t in v)})")
    print(f"  mlvec pool / OpenMP team: {med['pool'] / med['openmp']:.2f}x the time")


if __name__ == "__main__":
    main()
